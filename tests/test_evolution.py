"""SMART's growth search: the genome's operators (agents.classification.genome), the fitness criteria
(agents.classification.fitness) and the GA's ask/tell search (agents.classification.evolution).

No torch here: candidates are "trained" by a cheap synthetic evaluate whose accuracy is a function
of the genome.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.classification.budget import PRESETS, Budget
from agents.classification.evolution import GA, Candidate, Newborn, one_at_a_time, rank, run
from agents.classification.fitness import CRITERIA, extrapolate, fitness, late_slope
from agents.classification.genome import (
    EXTRA_KINDS,
    GeneRanges,
    Genome,
    LayerGene,
    crossover,
    initial_genome,
    mutate,
    mutate_scalar,
    repair,
)
from agents.errors import BudgetError

# --- strategies -------------------------------------------------------------------------------------


@st.composite
def gene_ranges(draw: st.DrawFn, n_layers: int) -> GeneRanges:
    """Any gene space over ``n_layers`` library layers, with or without the library's shape bounds."""
    min_filters = draw(st.integers(1, 40))
    shaped = draw(st.booleans())
    return GeneRanges(
        max_extra_modules=draw(st.integers(0, 4)),
        max_new_layers=draw(st.integers(1, 5)),
        min_filters=min_filters,
        max_filters=draw(st.integers(min_filters, 64)),
        max_new_reductions=draw(st.none() | st.integers(0, 3)),
        extra_kinds=tuple(draw(st.sampled_from(EXTRA_KINDS)) for _ in range(n_layers)) if shaped else None,
        top_channels=draw(st.integers(1, 8)) if shaped else None,
        min_fire_channels=draw(st.integers(1, 12)),
    )


@st.composite
def genomes(draw: st.DrawFn, ranges: GeneRanges, n_layers: int) -> Genome:
    """Any legal genome for ``ranges`` over ``n_layers`` library layers."""
    counts = tuple(draw(st.integers(0, ranges.max_extra_modules)) for _ in range(n_layers))
    bits = tuple(draw(st.booleans()) and ranges.residual_beside(i) for i in range(n_layers))
    n_new = draw(st.integers(0 if sum(counts) else 1, ranges.max_new_layers))
    layers = []
    reductions_left = ranges.max_new_reductions if ranges.max_new_reductions is not None else n_new
    channels = ranges.top_channels
    for _ in range(n_new):
        reduce = draw(st.booleans()) and reductions_left > 0
        reductions_left -= reduce
        residual = draw(st.booleans()) and (reduce or ranges.fire_fits(channels))
        gene = LayerGene(reduce, residual, draw(st.integers(ranges.min_filters, ranges.max_filters)))
        channels = gene.filters if gene.kind == "conv" else channels
        layers.append(gene)
    genome = Genome(counts, bits, tuple(layers))
    genome.validate(ranges)
    return genome


@st.composite
def ranges_and_genome(draw: st.DrawFn) -> tuple[GeneRanges, Genome]:
    n_layers = draw(st.integers(0, 5))
    ranges = draw(gene_ranges(n_layers))
    return ranges, draw(genomes(ranges, n_layers))


def floor_blends(value: int, low: int, high: int) -> set[int]:
    """Every value SMART's rule int(0.8 v + 0.2 u) can give, computed exactly."""
    return {math.floor(Fraction(4, 5) * value + Fraction(1, 5) * u) for u in range(low, high + 1)}


def may_clear_layer_bits(ranges: GeneRanges) -> bool:
    """Whether repair may clear a new layer's bits: a reduction cap, or res_fire on too few channels."""
    return (
        ranges.max_new_reductions is not None
        or not ranges.fire_fits(ranges.top_channels)
        or not ranges.fire_fits(ranges.min_filters)
    )


def bits_of(genome: Genome) -> list[bool]:
    return [*genome.extra_residual, *(b for gene in genome.new_layers for b in (gene.reduce, gene.residual))]


# --- mutation ---------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    ranges_and_genome(),
    st.floats(0.0, 1.0),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["floor", "stochastic"]),
)
def test_mutation_stays_within_ranges_and_adds_a_module(case, rate, seed, rounding):
    ranges, genome = case
    rng = np.random.default_rng(seed)
    for _ in range(5):
        genome = mutate(genome, ranges, rate, rng, rounding=rounding)
        genome.validate(ranges)  # within every range, reductions capped, >= 1 new module
        assert genome.new_module_count >= 1


def test_scalar_rule_is_smart_blend_and_every_value_is_reachable():
    rng = np.random.default_rng(0)
    for low, high in [(0, 2), (0, 3), (8, 32), (1, 10)]:
        for value in range(low, high + 1):
            allowed = floor_blends(value, low, high)
            seen = {mutate_scalar(value, low, high, rng) for _ in range(400)}
            assert seen == allowed, (low, high, value)


def test_mutate_applies_the_scalar_rule_to_every_scalar_gene_at_rate_one():
    ranges = GeneRanges(max_extra_modules=2, max_new_layers=3, min_filters=8, max_filters=32)
    # Counts at their maxima cannot fall to zero in one step (int(0.8·2 + 0.2·0) = 1), so repair
    # never interferes and every gene must be an exact image of the rule.
    parent = Genome((2, 2, 2), (False, True, False), tuple(LayerGene(False, False, f) for f in (8, 20, 32)))
    rng = np.random.default_rng(1)
    seen_counts: set[int] = set()
    seen_layers: set[int] = set()
    seen_filters: dict[int, set[int]] = {0: set(), 1: set(), 2: set()}
    for _ in range(600):
        child = mutate(parent, ranges, 1.0, rng)
        for count in child.extra_modules:
            assert count in floor_blends(2, 0, 2)
            seen_counts.add(count)
        assert len(child.new_layers) in floor_blends(3, 0, 3)
        seen_layers.add(len(child.new_layers))
        for position, gene in enumerate(child.new_layers):  # survivors keep their (mutated) genes
            old = parent.new_layers[position].filters
            assert gene.filters in floor_blends(old, 8, 32)
            seen_filters[position].add(gene.filters)
        assert bits_of(child)[:3] == [not b for b in parent.extra_residual]  # rate 1: every bit flips
    assert seen_counts == floor_blends(2, 0, 2)
    assert seen_layers == floor_blends(3, 0, 3)
    for position in (0, 1):
        assert seen_filters[position] == floor_blends(parent.new_layers[position].filters, 8, 32)


def test_floor_rule_never_grows_small_counts_but_stochastic_rounding_does():
    rng = np.random.default_rng(2)
    assert {mutate_scalar(0, 0, 2, rng) for _ in range(200)} == {0}
    grown = {mutate_scalar(0, 0, 2, rng, rounding="stochastic") for _ in range(400)}
    assert grown == {0, 1}
    draws = [mutate_scalar(5, 0, 10, rng, rounding="stochastic") for _ in range(20000)]
    assert abs(np.mean(draws) - (0.8 * 5 + 0.2 * 5)) < 0.05  # unbiased blend


def test_bits_flip_at_roughly_the_rate():
    ranges = GeneRanges(max_extra_modules=2, max_new_layers=3)
    parent = Genome(
        (2, 2, 2, 2), (False, True, False, True), tuple(LayerGene(False, True, 16) for _ in range(3))
    )
    rng = np.random.default_rng(3)
    flips = total = 0
    for _ in range(1500):
        child = mutate(parent, ranges, 0.2, rng)
        before, after = bits_of(parent), bits_of(child)
        shared = min(len(before), len(after))  # layers dropped from the top have no bits to compare
        flips += sum(a != b for a, b in zip(before[:shared], after[:shared], strict=True))
        total += shared
    assert 0.17 < flips / total < 0.23
    assert mutate(parent, ranges, 0.0, rng) == parent


def test_same_seed_same_genomes():
    ranges = GeneRanges()

    def run(seed: int) -> list[Genome]:
        rng = np.random.default_rng(seed)
        genome = initial_genome(3, ranges, rng)
        out = [genome]
        for _ in range(20):
            genome = mutate(genome, ranges, 0.4, rng, rounding="stochastic")
            out.append(genome)
        out.append(crossover(out[-1], out[-5], rng, ranges=ranges))
        return out

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_repair_adds_exactly_one_module_to_an_empty_genome():
    rng = np.random.default_rng(4)
    nothing = Genome((0, 0), (True, False), ())
    for _ in range(50):
        fixed = repair(nothing, GeneRanges(), rng)
        assert fixed.new_module_count == 1
    only_extras = repair(nothing, GeneRanges(max_new_layers=0), rng)
    assert only_extras.new_layers == () and sum(only_extras.extra_modules) == 1
    empty_library = repair(Genome(), GeneRanges(), rng)
    assert [gene.kind for gene in empty_library.new_layers] == ["conv"]
    with pytest.raises(ValueError, match="room"):
        repair(nothing, GeneRanges(max_extra_modules=0, max_new_layers=0), rng)


def test_repair_caps_dimension_reductions_from_the_top():
    genome = Genome((), (), (LayerGene(True, False, 8), LayerGene(True, True, 8), LayerGene(True, False, 8)))
    fixed = repair(genome, GeneRanges(max_new_reductions=1), np.random.default_rng(0))
    assert [gene.kind for gene in fixed.new_layers] == ["dim_reduce", "res_fire", "conv"]


def test_initial_genome_on_an_empty_library_is_one_conv_layer():
    ranges = GeneRanges(min_filters=8, max_filters=32)
    for seed in range(30):
        genome = initial_genome(0, ranges, np.random.default_rng(seed))
        assert genome.extra_modules == () and len(genome.new_layers) == 1
        (gene,) = genome.new_layers
        assert gene.kind == "conv" and 8 <= gene.filters <= 32
        assert genome.describe() == f"+conv({gene.filters})"


def test_initial_genome_on_a_library_adds_one_module_somewhere():
    kinds = set()
    for seed in range(60):
        genome = initial_genome(3, GeneRanges(), np.random.default_rng(seed))
        genome.validate(GeneRanges())
        assert genome.new_module_count == 1
        kinds.add("layer" if genome.new_layers else f"L{genome.extra_modules.index(1)}")
        assert all(not gene.reduce for gene in genome.new_layers)
    assert kinds == {"layer", "L0", "L1", "L2"}


def test_genome_json_round_trip_and_description():
    genome = Genome((1, 0), (False, True), (LayerGene(True, False, 9), LayerGene(False, False, 16)))
    assert Genome.from_json(genome.to_json()) == genome
    assert genome.describe() == "+1 conv@L0, +dim_reduce, +conv(16)"
    assert genome.new_module_count == 3
    with pytest.raises(ValueError, match="not a genome"):
        Genome.from_dict({"extra_modules": []})


# --- crossover --------------------------------------------------------------------------------------


@st.composite
def parent_pairs(draw: st.DrawFn) -> tuple[GeneRanges, Genome, Genome]:
    n_layers = draw(st.integers(0, 5))
    ranges = draw(gene_ranges(n_layers))
    return ranges, draw(genomes(ranges, n_layers)), draw(genomes(ranges, n_layers))


@settings(max_examples=150, deadline=None)
@given(parent_pairs(), st.integers(0, 2**32 - 1))
def test_crossover_scalars_lie_between_parents(case, seed):
    ranges, a, b = case
    child = crossover(a, b, np.random.default_rng(seed), ranges=ranges)
    child.validate(ranges)  # within ranges and adds >= 1 module
    for i, count in enumerate(child.extra_modules):
        assert (
            min(a.extra_modules[i], b.extra_modules[i])
            <= count
            <= max(a.extra_modules[i], b.extra_modules[i])
        )
        assert child.extra_residual[i] in (a.extra_residual[i], b.extra_residual[i])
    assert (
        min(len(a.new_layers), len(b.new_layers))
        <= len(child.new_layers)
        <= max(len(a.new_layers), len(b.new_layers))
    )
    for j, gene in enumerate(child.new_layers):
        owners = [p.new_layers[j] for p in (a, b) if j < len(p.new_layers)]
        low, high = min(g.filters for g in owners), max(g.filters for g in owners)
        assert low <= gene.filters <= high
        if not may_clear_layer_bits(ranges):
            assert any((gene.reduce, gene.residual) == (g.reduce, g.residual) for g in owners)


def test_crossover_is_one_point_over_layer_bits():
    a = Genome((1, 1, 1, 1), (False, False, False, False), ())
    b = Genome((1, 1, 1, 1), (True, True, True, True), ())
    patterns = {crossover(a, b, np.random.default_rng(seed)).extra_residual for seed in range(200)}
    assert patterns == {(False,) * k + (True,) * (4 - k) for k in (1, 2, 3)}


# --- fitness ----------------------------------------------------------------------------------------

STEPS = range(0, 2001, 100)
FLAT = [(s, 0.90) for s in STEPS]  # plateaued early, at 0.90
RISING = [(s, 0.95 - 0.6 * (s + 1) ** -0.25) for s in STEPS]  # still climbing, ends at 0.86


def test_criteria_rank_rising_vs_flat_as_they_should():
    def prefers(criterion: str, horizon: int | None = None) -> str:
        rising, flat = fitness(RISING, criterion, horizon), fitness(FLAT, criterion, horizon)
        return "rising" if rising > flat else "flat"

    assert prefers("slope") == "rising"
    assert prefers("max") == "flat"
    assert prefers("mean") == "flat"
    assert prefers("acc+slope") == "flat"  # accuracy decides first
    assert prefers("fit", horizon=100_000) == "rising"  # will pass 0.90 (true value there: 0.916)
    assert prefers("fit", horizon=2000) == "flat"  # at the end of the curve, no extrapolation


def test_slope_is_a_tie_breaker_for_acc_plus_slope():
    climbing = [(s, 0.70 + 0.2 * s / 2000) for s in STEPS[:-1]] + [(2000, 0.90)]
    plateau = [(s, 0.90) for s in STEPS]
    assert fitness(climbing)[0] == pytest.approx(fitness(plateau)[0])
    assert fitness(climbing) > fitness(plateau)


def test_max_prefers_the_higher_peak():
    spiky = [(0, 0.5), (1000, 0.97), (2000, 0.80)]
    steady = [(0, 0.5), (1000, 0.90), (2000, 0.91)]
    assert fitness(spiky, "max") > fitness(steady, "max")
    assert fitness(spiky, "mean") < fitness(steady, "mean")


def test_slope_is_per_thousand_steps_over_the_second_half():
    curve = [(s, 0.5 if s < 1000 else 0.5 + 0.1 * (s - 1000) / 1000) for s in STEPS]
    assert late_slope(curve) == pytest.approx(0.1)
    assert late_slope([(10, 0.7)]) == 0.0


def test_fit_extrapolates_a_saturating_curve_sensibly():
    def true(step: float) -> float:
        return 0.95 - 0.45 * (step + 1) ** -0.6

    curve = [(s, true(s)) for s in range(0, 3001, 150)]
    predicted = extrapolate(curve, 50_000)
    assert predicted == pytest.approx(true(50_000), abs=0.01)
    assert curve[-1][1] < predicted < 0.95
    noisy = [(s, min(1.0, acc + 0.01 * ((i % 3) - 1))) for i, (s, acc) in enumerate(curve)]
    assert 0.0 <= extrapolate(noisy, 10**9) <= 1.0
    runaway = [(s, 0.5 + s / 2000) for s in range(0, 1001, 100)]
    assert extrapolate(runaway, 10**6) == 1.0  # clipped


def test_unknown_criterion_and_missing_horizon_are_clear_errors():
    with pytest.raises(ValueError, match="unknown fitness criterion 'best'"):
        fitness(FLAT, "best")
    with pytest.raises(ValueError, match="horizon"):
        fitness(FLAT, "fit")
    with pytest.raises(ValueError, match="empty"):
        fitness([], "max")
    assert fitness([(0, float("nan"))], "max")[0] == -math.inf
    assert set(CRITERIA) == {"acc+slope", "max", "mean", "slope", "fit"}


# --- the GA's search ---------------------------------------------------------------------------------

SMART = PRESETS["standard"].override(rounding="floor", growth_margin=0.0)
"""SMART's search (population 6, 6 generations, mutation rate 0.2, 2 elites), with the paper's
truncating scalar rule and no parsimony tolerance."""


def budget(**fields: object) -> Budget:
    """:data:`SMART` with ``fields`` replaced."""
    return SMART.override(**fields)


@dataclass
class Run:
    """What a real evaluate would return: the curve plus the trained candidate (here: the genome)."""

    genome: Genome
    curve: list[tuple[int, float]]


def synthetic_accuracy(genome: Genome) -> float:
    """Best: a wide conv layer on top plus a res_fire module at library layer 1."""
    score = sum(gene.filters for gene in genome.new_layers if gene.kind == "conv") / 64
    score += 0.3 * sum(c for i, c in enumerate(genome.extra_modules) if i == 1 and genome.extra_residual[1])
    return 0.5 + 0.45 * min(score, 1.0)


class Counter:
    """An ``evaluate`` for :func:`run` that remembers every genome it was handed, and every batch."""

    def __init__(self) -> None:
        self.calls: list[Genome] = []
        self.batches: list[list[tuple[int, int]]] = []

    def __call__(self, newborns: Sequence[Newborn]) -> list[Run]:
        self.batches.append([(newborn.generation, newborn.index) for newborn in newborns])
        return [self.one(newborn.genome) for newborn in newborns]

    def one(self, genome: Genome) -> Run:
        self.calls.append(genome)
        acc = synthetic_accuracy(genome)
        return Run(genome, [(100, 0.5), (200, (0.5 + acc) / 2), (300, acc)])


def best_per_generation(result) -> list[tuple[float, ...]]:
    return [generation[0][1] for generation in result.history]


def test_ga_improves_and_never_loses_the_best():
    improved = 0
    for seed in range(10):
        result = run(GA(SMART, 3, np.random.default_rng(seed)), Counter())
        best = best_per_generation(result)
        assert all(later >= earlier for earlier, later in itertools.pairwise(best))  # elitism
        improved += best[-1] > best[0]
        assert result.best.fitness == best[-1]
        assert result.best.evaluated.genome == result.best.genome  # the winner's own trained object
    assert improved >= 8


@pytest.mark.parametrize("population, generations, elite", [(6, 6, 2), (4, 3, 1), (5, 1, 2), (3, 4, 2)])
def test_ga_evaluates_only_new_individuals(population, generations, elite):
    counter = Counter()
    progress: list[tuple[int, int]] = []
    result = run(
        GA(budget(population=population, generations=generations, elite=elite), 2, np.random.default_rng(0)),
        counter,
        on_candidate=lambda g, i, genome, evaluated: progress.append((g, i)),
    )
    expected = population + (population - elite) * (generations - 1)
    assert result.evaluations == len(counter.calls) == expected
    assert not result.stopped_early
    assert len(result.history) == generations
    assert all(len(generation) == population for generation in result.history)
    assert progress[:population] == [(0, i) for i in range(population)]
    assert progress[population:] == [(g, i) for g in range(1, generations) for i in range(elite, population)]
    assert len({genome.phenotype() for genome in counter.calls[:population]}) == population  # distinct


def test_ga_stops_early_when_good_enough():
    counter = Counter()
    ga = GA(SMART, 3, np.random.default_rng(5), good_enough=lambda run: run.curve[-1][1] >= 0.7)
    result = run(ga, counter)
    assert result.stopped_early
    assert result.evaluations == len(counter.calls) < 6 + 4 * 5
    assert result.best.evaluated.curve[-1][1] >= 0.7
    assert synthetic_accuracy(counter.calls[-1]) >= 0.7


@pytest.mark.parametrize("batch", [2, 3, 6])
def test_ga_gives_the_same_result_whatever_the_batch(batch):
    """Workers train a batch of newborns at once; a good-enough one stops the search where it
    would have stopped one at a time, and the rest of its batch is dropped."""
    runs = []
    for size in (1, batch):
        counter, seen = Counter(), []
        result = run(
            GA(SMART, 3, np.random.default_rng(5), good_enough=lambda run: run.curve[-1][1] >= 0.7),
            counter,
            batch=size,
            on_candidate=lambda g, i, genome, evaluated, seen=seen: seen.append((g, i)),
        )
        runs.append((result, counter, seen))
    (one, one_counter, one_seen), (many, many_counter, many_seen) = runs
    assert one.stopped_early and many.stopped_early
    assert many.best.genome == one.best.genome and many.history == one.history
    assert many.evaluations == one.evaluations and many_seen == one_seen
    assert all(len(b) == 1 for b in one_counter.batches)
    assert max(len(b) for b in many_counter.batches) == min(batch, 6)
    assert len(many_counter.calls) >= len(one_counter.calls)  # the stopping batch's later ones: dropped


def test_ga_is_deterministic_and_supports_crossover_and_every_criterion():
    ranges = GeneRanges(max_new_reductions=1)
    for criterion in CRITERIA:
        search = budget(fitness=criterion, final_steps=10_000, crossover=True, rounding="stochastic")
        runs = [run(GA(search, 2, np.random.default_rng(9), ranges=ranges), Counter()) for _ in range(2)]
        assert runs[0].history == runs[1].history
        for generation in runs[0].history:
            for genome, _, _ in generation:
                Genome.from_dict(genome).validate(ranges)


def test_ga_asks_only_individuals_not_evaluated_yet():
    ga, evaluate = GA(budget(population=4, generations=3, elite=1), 2, np.random.default_rng(0)), Counter()
    first = ga.ask()
    assert [(newborn.generation, newborn.index) for newborn in first] == [(0, 0), (0, 1), (0, 2), (0, 3)]
    assert ga.ask(2) == first[:2] and ga.ask() == first  # asking again before telling: the same ones
    with pytest.raises(ValueError, match="ask gave"):
        ga.tell(first[1:2], Counter()(first[1:2]))  # not the first one waiting
    with pytest.raises(ValueError, match="evaluations"):
        ga.tell(first[:2], Counter()(first[:1]))
    with pytest.raises(RuntimeError, match="not done"):
        _ = ga.result
    runs = evaluate(first[:2])
    assert ga.tell(first[:2], runs) == list(zip(first[:2], runs, strict=True))
    assert ga.ask() == first[2:]  # the rest of generation 0
    ga.tell(first[2:], evaluate(first[2:]))
    asked = []
    while not ga.done:
        newborns = ga.ask()
        asked += [(newborn.generation, newborn.index) for newborn in newborns]
        ga.tell(newborns, evaluate(newborns))
    assert asked == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]  # slot 0, the elite: never again
    assert ga.ask() == [] and ga.result.evaluations == len(evaluate.calls) == 4 + 3 + 3
    history = ga.result.history
    assert all(history[g][0] in history[g + 1] for g in range(2))  # the elite is kept, ranked again


def test_ga_told_a_good_enough_individual_stops_and_asks_no_more():
    ga = GA(SMART, 3, np.random.default_rng(1), good_enough=lambda run: run.curve[-1][1] >= 0.8)
    newborns = ga.ask(3)
    accuracies = (0.5, 0.9, 0.95)
    runs = [Run(newborn.genome, [(100, acc)]) for newborn, acc in zip(newborns, accuracies, strict=True)]
    assert ga.tell(newborns, runs) == list(zip(newborns[:2], runs[:2], strict=True))  # the third: dropped
    assert ga.done and ga.ask() == [] and ga.ask(1) == []
    result = ga.result
    assert result.stopped_early and result.evaluations == 2
    assert result.best.evaluated is runs[1]  # the first good enough in slot order, not the best told
    assert [record.curve for record in result.history[0]] == [[(100, 0.9)], [(100, 0.5)]]
    with pytest.raises(ValueError, match="ask gave"):
        ga.tell(newborns[2:], runs[2:])


def test_rank_prefers_the_cheaper_of_near_equals_only():
    def member(acc: float, flops: int, slope: float = 0.0) -> Candidate:
        return Candidate(Genome((), (), ()), flops, (acc, slope), 0)

    members = [member(0.95, 900), member(0.948, 100), member(0.90, 10), member(0.95, 900, slope=0.1)]
    by_fitness = rank(members, None, 0.01)
    assert [(m.fitness, m.evaluated) for m in by_fitness] == [
        ((0.95, 0.1), 900), ((0.95, 0.0), 900), ((0.948, 0.0), 100), ((0.90, 0.0), 10)
    ]  # fmt: skip
    cheap_first = rank(members, lambda flops: flops, 0.01)
    assert [m.evaluated for m in cheap_first] == [100, 900, 900, 10]  # 0.90 is too far below to win
    assert [m.fitness[1] for m in cheap_first[1:3]] == [0.1, 0.0]  # equal cost: fitness order stays
    assert [m.evaluated for m in rank(members, lambda flops: flops, 0.0)] == [900, 900, 100, 10]


def test_ga_with_a_cost_keeps_the_cheapest_of_near_equals():
    def size(genome: Genome) -> int:  # a stand-in for compute: filters of new layers and modules
        return sum(gene.filters for gene in genome.new_layers) + 16 * sum(genome.extra_modules)

    def evaluate(genome: Genome) -> Run:  # every filter buys a little accuracy
        return Run(genome, [(100, 0.9 + 0.0001 * size(genome))])

    evaluate = one_at_a_time(evaluate)

    def cost(run: Run) -> int:
        return size(run.genome)

    plain = run(GA(SMART, 3, np.random.default_rng(4)), evaluate)
    frugal = run(GA(budget(growth_margin=0.05), 3, np.random.default_rng(4), cost=cost), evaluate)
    seen = [Genome.from_dict(g) for generation in frugal.history for g, _, _ in generation]
    assert size(frugal.best.genome) == min(map(size, seen)) < size(plain.best.genome)
    tight = run(GA(SMART, 3, np.random.default_rng(4), cost=cost), evaluate)
    assert tight.best.fitness == plain.best.fitness  # without tolerance the cost only breaks exact ties


def test_ga_rejects_bad_settings():
    with pytest.raises(BudgetError, match="unknown --fitness"):
        budget(fitness="median")
    with pytest.raises(BudgetError, match="elite"):
        budget(population=2, elite=3)
    with pytest.raises(BudgetError, match="elite"):  # no room for a child
        budget(population=3, elite=3)
    with pytest.raises(ValueError, match="library layers"):
        GA(
            SMART,
            1,
            np.random.default_rng(0),
            initial=initial_genome(0, GeneRanges(), np.random.default_rng(0)),
        )
    with pytest.raises(ValueError, match="library layers"):
        GA(SMART, 1, np.random.default_rng(0), ranges=GeneRanges(extra_kinds=()))


# --- a gene space bounded by the library's shapes ---------------------------------------------------

CONV_OR_FIRE, CONV_ONLY, REDUCE_ONLY = EXTRA_KINDS
# A library of a conv layer that changes channels, then a dimension reduction down to 2×3×3: no
# res_fire beside either layer, no room to halve again, too few channels for res_fire on top.
SMALL_LIBRARY = GeneRanges(
    max_new_reductions=0, extra_kinds=(CONV_ONLY, REDUCE_ONLY), top_channels=2, min_fire_channels=4
)


def test_repair_clears_kinds_the_library_cannot_build():
    ranges = replace(SMALL_LIBRARY, extra_kinds=(CONV_OR_FIRE, REDUCE_ONLY))
    wish = Genome((1, 1), (True, True), (LayerGene(False, True, 8), LayerGene(True, False, 8)))
    with pytest.raises(ValueError, match="res_fire"):
        wish.validate(ranges)
    fixed = repair(wish, ranges, np.random.default_rng(0))
    fixed.validate(ranges)
    assert fixed.describe(ranges) == "+1 res_fire@L0, +1 dim_reduce@L1, +conv(8), +conv(8)"
    above_a_conv = Genome((0, 0), (False, False), (LayerGene(False, False, 8), LayerGene(False, True, 8)))
    assert repair(above_a_conv, ranges, np.random.default_rng(0)) == above_a_conv  # 8 channels: fits


@pytest.mark.parametrize("seed", range(4))
def test_evolution_offers_only_what_the_library_can_build(seed):
    def search(ranges: GeneRanges) -> list[Genome]:
        counter = Counter()
        search = budget(generations=8, mutation_rate=0.5, crossover=True, rounding="stochastic")
        run(GA(search, 2, np.random.default_rng(seed), ranges=ranges), counter)
        return counter.calls

    bounded = search(SMALL_LIBRARY)
    for genome in bounded:
        genome.validate(SMALL_LIBRARY)
        assert not any(genome.extra_residual)
        assert all(gene.kind != "dim_reduce" for gene in genome.new_layers)
        channels = 2
        for gene in genome.new_layers:
            assert gene.kind != "res_fire" or channels >= 4
            channels = gene.filters if gene.kind == "conv" else channels
    described = " ".join(genome.describe(SMALL_LIBRARY) for genome in bounded)
    assert "res_fire@" not in described and "conv@L1" not in described
    free = search(GeneRanges())  # the same search, unbounded, does use what the library forbids
    assert any(any(g.extra_residual) or any(gene.reduce for gene in g.new_layers) for g in free)
