"""SMART's growth: a mutation-only, elitist genetic algorithm over extension genomes, asked and told.

When self-organization (frozen library, only α/β and a head trained) is not good enough, SMART
grows: it evolves *extension genomes* that say which new trainable modules to add to the frozen
library for the new task, trains each candidate briefly, and keeps the best.

The algorithm (SMART: population 6, 6 generations, mutation rate 0.2, the best 2 kept), as
:func:`run` drives a :class:`GA`::

    ga ← GA(budget, …)                   population ← [initial genome] + mutants of it
    until ga.done:
        newborns ← ga.ask(batch)         up to `batch` individuals not evaluated yet, in slot order
                                         (elites are never asked again)
        ga.tell(newborns, evaluate(newborns))
            a good-enough one stops the search   (the first in slot order: any later one of its
                                                  batch is dropped, so the result does not
                                                  depend on `batch`)
            once the whole generation is told:
                rank everyone by fitness of their learning curve  (default: final accuracy,
                    slope tie-break); with a cost, those within `growth_margin` of the best
                    come first, cheapest first (parsimony)
                keep the best `elite`; replace the rest by mutants of the elites (round-robin)
    ga.result                            the best, every generation's ranking, the evaluations

    mutant: each scalar gene v ∈ {lo..hi} with probability `mutation_rate` becomes int(0.8·v + 0.2·u),
            u ~ U{lo..hi}; each bit gene (layer type) flips with probability `mutation_rate`

This file is the search only (EvoTorch-style separation of problem and algorithm); it knows
nothing of torch or of how a candidate is built and trained. The genome's encoding and its
operators are in :mod:`agents.classification.genome`, the fitness of a learning curve in
:mod:`agents.classification.fitness`, the training of candidates in
:mod:`agents.classification.candidates`. The caller evaluates the :class:`Newborn` candidates
``ask`` gives (trains each for T steps, in turn or all at once on workers) and tells the GA
objects with a learning ``.curve``; those are kept, so the winner's trained state can be reused
instead of retrained. Every random choice goes through one ``numpy.random.Generator``, so the
same seed gives the same genomes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

import numpy as np

from agents.classification.budget import Budget
from agents.classification.fitness import CurvePoints, fitness
from agents.classification.genome import (
    DEFAULT_RANGES,
    GeneRanges,
    Genome,
    crossover,
    initial_genome,
    mutate,
)

DISTINCT_TRIES = 200
"""How many mutants to draw, at most, looking for one whose phenotype was not evaluated yet."""


class Evaluated(Protocol):
    """What an evaluation of a newborn is: anything with a learning curve (and, typically, the
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
    """An ``evaluate`` for :func:`run` from a function of one genome."""
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
    first (elites included). ``evaluations``: evaluations told (those a stop dropped not counted)."""

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


def _fresh(make: Callable[[], Genome], seen: set[tuple[Any, ...]]) -> Genome:
    """Draw up to :data:`DISTINCT_TRIES` genomes from ``make`` until one's phenotype is new; else
    the last one."""
    genome = make()
    for _ in range(DISTINCT_TRIES - 1):
        if genome.phenotype() not in seen:
            break
        genome = make()
    seen.add(genome.phenotype())
    return genome


class GA(Generic[E]):
    """SMART's elitist GA over extension genomes, by ask and tell (the module docstring has the
    algorithm box; :func:`run` is its loop).

    From ``budget``: ``population``, ``generations``, ``elite``, ``mutation_rate``, ``rounding``,
    ``crossover`` (with ≥ 2 elites a child is ``mutate(crossover(e_k, e_k+1))``), the fitness
    criterion ``fitness`` (``fit`` extrapolates to ``final_steps``, the winner's training) and,
    with ``cost``, the parsimony tolerance ``growth_margin``. Generation 0 is ``initial`` (default
    :func:`initial_genome`, drawn from ``rng``) plus ``population − 1`` mutants of it; each later
    one keeps the ``elite`` best and fills the rest with children of the elites, round-robin. New
    genomes are redrawn (up to :data:`DISTINCT_TRIES`) to avoid a phenotype already evaluated,
    since a training run is the expensive part; so without an early stop ``population +
    (population − elite)·(generations − 1)`` genomes are asked.

    ``good_enough(evaluated)`` is asked of every evaluation told, in slot order; the first true
    one ends the search. Ties in fitness go to the individual told earlier. With ``cost(evaluated)``
    (e.g. compute per input) extra cost must buy fitness: see :func:`rank`. Only the current
    population's evaluation objects are held, so trained states of discarded candidates can be
    freed.
    """

    def __init__(
        self,
        budget: Budget,
        n_library_layers: int,
        rng: np.random.Generator,
        *,
        ranges: GeneRanges = DEFAULT_RANGES,
        initial: Genome | None = None,
        good_enough: Callable[[E], bool] | None = None,
        cost: Callable[[E], float] | None = None,
    ) -> None:
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
        self.budget = budget
        self.ranges = ranges
        self.rng = rng
        self.good_enough = good_enough
        self.cost = cost
        start = initial if initial is not None else initial_genome(n_library_layers, ranges, rng)
        self._seen: set[tuple[Any, ...]] = {start.phenotype()}
        mutants = [_fresh(lambda: self._mutant(start), self._seen) for _ in range(budget.population - 1)]
        self._waiting = [Newborn(0, index, genome) for index, genome in enumerate([start, *mutants])]
        self._members: list[Candidate[E]] = []  # this generation's evaluated, the elites first
        self._history: list[list[CandidateRecord]] = []
        self._evaluations = 0
        self._stopped = False

    @property
    def done(self) -> bool:
        """True once the last generation is told or a good-enough individual was."""
        return self._stopped or len(self._history) == self.budget.generations

    @property
    def result(self) -> EvolutionResult[E]:
        """The search's outcome (only once :attr:`done`)."""
        if not self.done:
            raise RuntimeError("the search is not done: ask and tell until ga.done")
        return EvolutionResult(self._members[0], self._history, self._evaluations, self._stopped)

    def ask(self, limit: int | None = None) -> list[Newborn]:
        """The first ``limit`` (default: all) individuals of this generation not evaluated yet, in
        slot order; none once :attr:`done`. Asking again before telling gives the same ones."""
        if limit is not None and limit < 1:
            raise ValueError(f"ask at least one individual, not {limit}")
        return self._waiting[:limit]

    def tell(self, newborns: Sequence[Newborn], evaluated: Sequence[E]) -> list[tuple[Newborn, E]]:
        """Take the evaluations of ``newborns`` (the first ones :meth:`ask` gives, in its order);
        once the generation is complete, rank it, record it and breed the next. Returns the ones
        taken: all, or up to the first good-enough one (the rest are dropped and the search ends).
        Telling nothing changes nothing."""
        if not newborns:
            return []
        if list(newborns) != self._waiting[: len(newborns)]:
            raise ValueError("tell the newborns ask gave, in its order")
        if len(evaluated) != len(newborns):
            raise ValueError(f"{len(newborns)} newborns but {len(evaluated)} evaluations")
        taken: list[tuple[Newborn, E]] = []
        for newborn, result in zip(newborns, evaluated, strict=True):
            key = fitness(result.curve, self.budget.fitness, self.budget.final_steps)
            self._members.append(Candidate(newborn.genome, result, key, newborn.generation))
            taken.append((newborn, result))
            if self.good_enough is not None and self.good_enough(result):
                self._stopped = True
                break
        self._evaluations += len(taken)
        self._waiting = [] if self._stopped else self._waiting[len(taken) :]
        if not self._waiting:
            self._next_generation()
        return taken

    def _next_generation(self) -> None:
        """Rank and record the generation just told; unless done, keep the elites and breed."""
        self._members = rank(self._members, self.cost, self.budget.growth_margin)
        self._history.append([_record(member) for member in self._members])
        if self.done:
            return
        self._members = self._members[: self.budget.elite]
        parents = [member.genome for member in self._members]
        generation = len(self._history)
        for k in range(self.budget.population - self.budget.elite):
            genome = _fresh(self._child(k, parents), self._seen)
            self._waiting.append(Newborn(generation, len(parents) + k, genome))

    def _mutant(self, parent: Genome) -> Genome:
        return mutate(parent, self.ranges, self.budget.mutation_rate, self.rng, rounding=self.budget.rounding)

    def _child(self, k: int, parents: list[Genome]) -> Callable[[], Genome]:
        """How to make the ``k``-th child of a generation (a function: it may be redrawn)."""
        first = parents[k % len(parents)]
        if self.budget.crossover and len(parents) >= 2:
            second = parents[(k + 1) % len(parents)]
            return lambda: self._mutant(crossover(first, second, self.rng, ranges=self.ranges))
        return lambda: self._mutant(first)


def run(
    ga: GA[E],
    evaluate: Callable[[Sequence[Newborn]], Sequence[E]],
    *,
    batch: int = 1,
    on_candidate: Callable[[int, int, Genome, E], None] | None = None,
) -> EvolutionResult[E]:
    """Ask, evaluate, tell until ``ga`` is done. ``evaluate`` gets up to ``batch`` newborns at a
    time (e.g. one per worker) and returns their evaluations in order; the result is the same for
    any ``batch`` as long as each evaluation depends only on its newborn (one at a time, an early
    stop skips the rest of a generation). ``on_candidate(generation, index, genome, evaluated)``
    follows every evaluation the GA takes, in slot order."""
    while not ga.done:
        newborns = ga.ask(batch)
        for (generation, index, genome), evaluated in ga.tell(newborns, evaluate(newborns)):
            if on_candidate is not None:
                on_candidate(generation, index, genome, evaluated)
    return ga.result
