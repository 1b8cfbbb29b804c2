"""SMART's growth: a mutation-only, elitist genetic algorithm over extension genomes.

When self-organization (frozen library, only α/β and a head trained) is not good enough, SMART
grows: it evolves *extension genomes* that say which new trainable modules to add to the frozen
library for the new task, trains each candidate briefly, and keeps the best.

The algorithm (SMART: population 6, 6 generations, mutation rate 0.2, the best 2 kept)::

    population ← [initial genome] + mutants of it
    repeat for `generations`:
        evaluate the individuals not evaluated yet        (elites are never re-evaluated;
                                                           `batch` at a time, in slot order)
        rank everyone by fitness of their learning curve  (default: final accuracy, slope tie-break);
            those within `tolerance` of the best come first, cheapest first (parsimony)
        stop if one is good enough                     (the first in slot order: any later one
                                                           of its batch is dropped, so the result
                                                           does not depend on `batch`)
        keep the best `elite`; replace the rest by mutants of the elites (round-robin)

    mutant: each scalar gene v ∈ {lo..hi} with probability `rate` becomes int(0.8·v + 0.2·u),
            u ~ U{lo..hi}; each bit gene (layer type) flips with probability `rate`

This file is the search loop only (EvoTorch-style separation of problem and algorithm); it knows
nothing of torch or of how a candidate is built and trained. The genome's encoding and its
operators are in :mod:`agents.classification.genome`, the fitness of a learning curve in
:mod:`agents.classification.fitness`, the training of candidates in
:mod:`agents.classification.candidates`. The caller supplies ``evaluate(newborns)``, which trains
each :class:`Newborn` candidate for T steps (in turn, or all at once on workers) and returns
objects with a learning ``.curve``; those are kept, so the winner's trained state can be reused
instead of retrained. Every random choice goes through one ``numpy.random.Generator``, so the
same seed gives the same genomes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

import numpy as np

from agents.classification.fitness import CurvePoints, check_criterion, fitness
from agents.classification.genome import (
    DEFAULT_RANGES,
    GeneRanges,
    Genome,
    Rounding,
    initial_genome,
    mutate,
)
from agents.classification.genome import crossover as _crossover  # evolve's `crossover` flag shadows it

DISTINCT_TRIES = 200
"""How many mutants to draw, at most, looking for one whose phenotype was not evaluated yet."""


class Evaluated(Protocol):
    """What ``evaluate(genome)`` returns: anything with a learning curve (and, typically, the
    trained candidate itself, so the winner need not be retrained)."""

    @property
    def curve(self) -> CurvePoints: ...


E = TypeVar("E", bound=Evaluated)


class Newborn(NamedTuple):
    """A genome to evaluate, and where it was born: its generation and its slot in that
    generation's population (elites take the first slots). The slot names the candidate, e.g. to
    give it a random stream of its own."""

    generation: int
    index: int
    genome: Genome


def one_at_a_time(evaluate: Callable[[Genome], E]) -> Callable[[Sequence[Newborn]], list[E]]:
    """An ``evaluate`` for :func:`evolve` from a function of one genome."""
    return lambda newborns: [evaluate(newborn.genome) for newborn in newborns]


@dataclass(frozen=True)
class Candidate(Generic[E]):
    """An evaluated genome: the caller's evaluation object, its fitness key, its birth generation."""

    genome: Genome
    evaluated: E
    fitness: tuple[float, ...]
    generation: int


class CandidateRecord(NamedTuple):
    """A candidate as the history keeps it, JSON-able: (genome dict, fitness key, learning curve)."""

    genome: dict[str, Any]
    fitness: tuple[float, ...]
    curve: list[tuple[int, float]]


@dataclass(frozen=True)
class EvolutionResult(Generic[E]):
    """``best``: the fittest candidate seen. ``history[g]``: generation g's population, ranked best
    first (elites included). ``evaluations``: calls to ``evaluate``."""

    best: Candidate[E]
    history: list[list[CandidateRecord]]
    evaluations: int
    stopped_early: bool


def rank(
    members: list[Candidate[E]], cost: Callable[[E], float] | None, tolerance: float
) -> list[Candidate[E]]:
    """Best first by fitness (stable: earlier wins ties). With ``cost``, every candidate whose
    first fitness figure (accuracy, for all criteria but ``slope``) is within ``tolerance`` of the
    best comes first, cheapest first: a costlier genome wins only by more than ``tolerance``."""
    ordered = sorted(members, key=lambda member: member.fitness, reverse=True)
    if cost is None:
        return ordered
    near = [m for m in ordered if m.fitness[0] >= ordered[0].fitness[0] - tolerance]
    return sorted(near, key=lambda member: cost(member.evaluated)) + ordered[len(near) :]


def _record(member: Candidate[Any]) -> CandidateRecord:
    curve = [(int(step), float(acc)) for step, acc in member.evaluated.curve]
    return CandidateRecord(member.genome.to_dict(), member.fitness, curve)


def _fresh(make: Callable[[], Genome], seen: set[tuple[Any, ...]], tries: int) -> Genome:
    """Draw up to ``tries`` genomes from ``make`` until one's phenotype is new; else the last one."""
    genome = make()
    for _ in range(tries - 1):
        if genome.phenotype() not in seen:
            break
        genome = make()
    seen.add(genome.phenotype())
    return genome


def evolve(
    evaluate: Callable[[Sequence[Newborn]], list[E]],
    n_library_layers: int,
    *,
    rng: np.random.Generator,
    population: int = 6,
    generations: int = 6,
    mutation_rate: float = 0.2,
    elite: int = 2,
    criterion: str = "acc+slope",
    horizon: int | None = None,
    ranges: GeneRanges = DEFAULT_RANGES,
    crossover: bool = False,
    on_candidate: Callable[[int, int, Genome, E], None] | None = None,
    good_enough: Callable[[E], bool] | None = None,
    initial: Genome | None = None,
    rounding: Rounding = "floor",
    distinct_tries: int = DISTINCT_TRIES,
    cost: Callable[[E], float] | None = None,
    tolerance: float = 0.0,
    batch: int = 1,
) -> EvolutionResult[E]:
    """SMART's elitist GA over extension genomes (see the module docstring for the algorithm box).

    Generation 0 is ``initial`` (default :func:`initial_genome`) plus ``population − 1`` mutants
    of it. Each later generation keeps the ``elite`` best and fills the rest with mutants of the
    elites, round-robin (with ``crossover=True`` and ≥ 2 elites: ``mutate(crossover(e_k, e_k+1))``).
    New genomes are redrawn (up to ``distinct_tries``) to avoid a phenotype already evaluated, since
    a training run is the expensive part. Only new individuals are evaluated, so without an early
    stop ``population + (population − elite)·(generations − 1)`` genomes are. ``evaluate`` gets
    up to ``batch`` newborns at a time (e.g. one per worker) and returns their evaluations in
    order; the result is the same for any ``batch`` as long as each evaluation depends only on
    its newborn.

    ``on_candidate(generation, index, genome, evaluated)`` is called after every evaluation
    (``index`` is the slot in that generation's population). ``good_enough(evaluated)`` is asked
    after every evaluation, in slot order; if true, the search stops at once. Ties in fitness go to the
    individual evaluated earlier. Only the current population's evaluation objects are held, so
    trained states of discarded candidates can be freed. With ``cost(evaluated)`` (e.g. compute
    per input), extra cost must buy fitness: see :func:`rank`.
    """
    if population < 1 or generations < 1 or batch < 1:
        raise ValueError(
            f"population, generations and batch must be >= 1, got {population}, {generations}, {batch}"
        )
    if not 1 <= elite <= population:
        raise ValueError(f"elite must be in 1..population ({population}), got {elite}")
    check_criterion(criterion, horizon)
    if ranges.extra_kinds is not None and len(ranges.extra_kinds) != n_library_layers:
        raise ValueError(
            f"gene ranges are for {len(ranges.extra_kinds)} library layers, not {n_library_layers}"
        )
    if initial is not None:
        if initial.n_library_layers != n_library_layers:
            raise ValueError(
                f"initial genome is for {initial.n_library_layers} library layers, not {n_library_layers}"
            )
        initial.validate(ranges)

    def mutant(parent: Genome) -> Genome:
        return mutate(parent, ranges, mutation_rate, rng, rounding=rounding)

    def child(k: int, parents: list[Genome]) -> Callable[[], Genome]:
        first = parents[k % len(parents)]
        if crossover and len(parents) >= 2:
            second = parents[(k + 1) % len(parents)]
            return lambda: mutant(_crossover(first, second, rng, ranges=ranges))
        return lambda: mutant(first)

    start = initial if initial is not None else initial_genome(n_library_layers, ranges, rng)
    seen: set[tuple[Any, ...]] = {start.phenotype()}
    newborn = [start] + [_fresh(lambda: mutant(start), seen, distinct_tries) for _ in range(population - 1)]

    members: list[Candidate[E]] = []
    history: list[list[CandidateRecord]] = []
    evaluations = 0
    stopped = False
    for generation in range(generations):
        if generation > 0:
            parents = [member.genome for member in members]
            newborn = [_fresh(child(k, parents), seen, distinct_tries) for k in range(population - elite)]
        born = [Newborn(generation, len(members) + k, genome) for k, genome in enumerate(newborn)]
        for wave in (born[start : start + batch] for start in range(0, len(born), batch)):
            for (_, index, genome), evaluated in zip(wave, evaluate(wave), strict=True):
                evaluations += 1
                key = fitness(evaluated.curve, criterion, horizon)
                members.append(Candidate(genome, evaluated, key, generation))
                if on_candidate is not None:
                    on_candidate(generation, index, genome, evaluated)
                if good_enough is not None and good_enough(evaluated):
                    stopped = True
                    break
            if stopped:
                break
        members = rank(members, cost, tolerance)
        history.append([_record(member) for member in members])
        if stopped:
            break
        members = members[:elite]
    return EvolutionResult(best=members[0], history=history, evaluations=evaluations, stopped_early=stopped)
