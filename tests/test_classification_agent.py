"""The classification agent's steps on constructed networks and small synthetic images: pruning,
growth that builds exactly its genome, and tasks that learn the same way wherever they come.

No MNIST here: every network and data set is made in the test, so each runs in seconds.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from test_classification import TINY

from agents import NewModule
from agents.classification import evolution, recall
from agents.classification.agent import (
    Attempt,
    ClassificationAgent,
    Problem,
    gene_space,
    removal_costs,
    task_streams,
)
from agents.classification.budget import PRESETS
from agents.classification.candidates import (
    Growth,
    TrainedGenome,
    candidate_generator,
    extended_layers,
    train_generation,
)
from agents.classification.genome import EXTRA_KINDS, GeneRanges, Genome
from agents.classification.modules import READOUT_FEATURES, Conv, Head, Member, freeze, max_pool_2x2
from agents.classification.network import MixedLayer, TaskNetwork
from agents.classification.prefix import prefix_network
from agents.classification.training import Curve, accuracy, predict_logits
from agents.errors import BudgetError
from agents.task import TaskData, TaskSpec
from agents.workers import Workers
from library_store import Library
from lifelong.learn import learn

CONV_OR_FIRE, CONV_ONLY, REDUCE_ONLY = EXTRA_KINDS


def task_data(x: torch.Tensor, y: torch.Tensor, class_names: list[str]) -> TaskData:
    """The same examples for every split (the tests here look at validation accuracy only)."""
    return TaskData(x, y, x, y, x, y, class_names)


def halves(spec: TaskSpec, shape: tuple[int, int, int], seed: int) -> TaskData:
    """``left``/``right`` half bright (spec ``a``) or ``top``/``bottom`` (spec ``b``), 10 % of the
    validation labels flipped so no network meets a target of 1.0 and every task grows."""
    generator = torch.Generator().manual_seed(seed)
    n, (channels, height, width) = 240, shape
    y = torch.randint(2, (n,), generator=generator)
    x = torch.randn(n, channels, height, width, generator=generator) * 20 + 40
    for i, label in enumerate(y.tolist()):
        if spec.text == "a":
            x[i, :, :, label * width // 2 : (label + 1) * width // 2] += 150
        else:
            x[i, :, label * height // 2 : (label + 1) * height // 2] += 150
    x = x.clamp(0, 255).to(torch.uint8)
    noisy = y.clone()
    noisy[:24] = 1 - noisy[:24]
    return TaskData(x, y, x, noisy, x, y, ["0", "1"])


def problem(library_layers: list[list[Member]], input_shape: tuple[int, int, int], data: TaskData) -> Problem:
    return Problem(data, library_layers, [], input_shape, 1.0, 1.0, *task_streams(0))


def agent(seed: int = 0) -> ClassificationAgent:
    return ClassificationAgent(TINY, target=1.0, seed=seed, load_data=halves)


# ---------------------------------------------------------------------------- prune
SIGNATURE = {"input": [2, 1, 1], "output": [2, 1, 1]}


def channel_copy(channel: int | None, library_id: str | None) -> Member:
    """A frozen conv module (2 → 2 channels, 1×1 images) that copies input ``channel`` to the same
    output channel and writes zero elsewhere; ``None``: writes zero everywhere."""
    module = Conv(2, 2)
    with torch.no_grad():
        module.conv.weight.zero_()
        if channel is not None:
            module.conv.weight[channel, channel, 1, 1] = 1.0
    return Member(freeze(module), "conv", {"in_channels": 2, "out_channels": 2}, SIGNATURE, library_id)


def bigger_channel_problem() -> Problem:
    """Which of two pixel values (channels 0 and 1 of a 1×1 image) is larger; ties left out."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (400, 2, 1, 1), generator=generator)
    x = x[(x[:, 0] - x[:, 1]).abs().flatten() >= 30].to(torch.uint8)
    y = (x[:, 0] > x[:, 1]).long().flatten()
    return problem([], (2, 1, 1), task_data(x, y, ["second", "first"]))


def comparing_network(members: list[Member], alpha: list[float]) -> TaskNetwork:
    """One mixed layer over ``members``, and a readout that says "first" iff channel 0, divided
    by the α of the module that copies it, exceeds channel 1 divided by its α."""
    layer = MixedLayer(members, torch.tensor(alpha), torch.ones(len(members)))
    head = Head((2, 1, 1), 2)
    with torch.no_grad():
        for parameter in head.parameters():
            parameter.zero_()
        head.out.weight[1, :2] = torch.tensor([1 / alpha[0], -1 / alpha[1]])
        head.out.weight[0, :2] = -head.out.weight[1, :2]
    return freeze(TaskNetwork([layer], head))


def attempt(network: TaskNetwork) -> Attempt:
    return Attempt(network, 0.0, "self_organize")


def test_prune_drops_a_module_that_adds_nothing_and_keeps_those_that_matter() -> None:
    first, second, silent = channel_copy(0, "conv-a"), channel_copy(1, "conv-b"), channel_copy(None, None)
    task = bigger_channel_problem()
    # |α·β| orders them first (0.5), silent (1.0), second (2.0): the smallest is tried, and kept
    network = comparing_network([first, second, silent], [0.5, 2.0, 1.0])
    assert accuracy(network, task.data.val_x, task.data.val_y, torch.device("cpu")) == 1.0

    pruned = agent().prune(task, attempt(network))

    assert pruned.details == {"pruned_modules": 1, "val_acc_before_prune": 1.0}
    assert pruned.val_acc == 1.0
    (layer,) = pruned.network.layers
    assert layer.members == [first, second]
    assert agent().solution(task, pruned).layers == [["conv-a", "conv-b"]]  # library ids, no new module


def test_prune_keeps_every_module_whose_loss_costs_accuracy() -> None:
    first, second = channel_copy(0, "conv-a"), channel_copy(1, None)  # the second is the task's own
    task = bigger_channel_problem()
    network = comparing_network([first, second], [1.0, 1.0])
    (layer,) = network.layers
    for index in range(2):  # dropping either one leaves a network that always says the same class
        network.layers[0] = layer.without(index)
        assert accuracy(network, task.data.val_x, task.data.val_y, torch.device("cpu")) < 0.6
    network.layers[0] = layer

    pruned = agent().prune(task, attempt(network))

    assert pruned.details["pruned_modules"] == 0
    assert pruned.network.layers[0].members == [first, second]
    stored, grown = agent().solution(task, pruned).layers[0]
    assert stored == "conv-a"
    assert isinstance(grown, NewModule) and grown.kind == "conv" and grown.signature == SIGNATURE
    assert grown.config == {"in_channels": 2, "out_channels": 2, "layer": 0}


# ---------------------------------------------------------------------------- growth
def library(*kinds_and_filters: tuple[str, int], input_shape: tuple[int, int, int]) -> list[list[Member]]:
    """Frozen one-module layers of the given kinds, stacked on ``input_shape``."""
    generator, layers, shape = torch.Generator().manual_seed(0), [], input_shape
    for index, (kind, filters) in enumerate(kinds_and_filters):
        member = Member.new(kind, shape, filters, generator)
        freeze(member.module)
        layers.append([dataclasses.replace(member, library_id=f"{kind}-{index}")])
        shape = member.output_shape
    return layers


SMALL = library(("conv", 2), ("dim_reduce", 2), input_shape=(1, 6, 6))  # ends at 2×3×3
ROOMY = library(("conv", 8), ("conv", 8), input_shape=(1, 16, 16))  # ends at 8×16×16


def built(layers: list[list[Member]], n_library: int) -> tuple[list[list[str]], list[tuple[str, int]]]:
    """The new modules of each library layer (kinds), and the new layers (kind, output channels)."""
    beside = [[m.kind for m in layer if m.library_id is None] for layer in layers[:n_library]]
    return beside, [(layer[0].kind, layer[0].output_shape[0]) for layer in layers[n_library:]]


def meant(genome: Genome, ranges: GeneRanges, top_channels: int):
    """What ``genome.describe(ranges)`` says is built, in the form of :func:`built`."""
    beside = [
        [ranges.extra_kind(i, bit)] * count
        for i, (count, bit) in enumerate(zip(genome.extra_modules, genome.extra_residual, strict=True))
    ]
    on_top, channels = [], top_channels
    for gene in genome.new_layers:
        channels = gene.filters if gene.kind == "conv" else channels
        on_top.append((gene.kind, channels))
    return beside, on_top


def test_the_gene_space_follows_the_library_shapes() -> None:
    small = gene_space(SMALL, (1, 6, 6))
    assert small.extra_kinds == (CONV_ONLY, REDUCE_ONLY)  # 1 → 2 channels; a halving layer
    assert (small.max_new_reductions, small.top_channels) == (0, 2)  # 3×3: no halving; 2 channels
    roomy = gene_space(ROOMY, (1, 16, 16))
    assert roomy.extra_kinds == (CONV_ONLY, CONV_OR_FIRE)
    assert (roomy.max_new_reductions, roomy.top_channels) == (3, 8)  # 16 → 8 → 4 → 2
    empty = gene_space([], (1, 28, 28))
    assert (empty.extra_kinds, empty.max_new_reductions, empty.top_channels) == ((), 3, 1)


@pytest.mark.parametrize(("layers", "input_shape"), [(SMALL, (1, 6, 6)), (ROOMY, (1, 16, 16))])
def test_evolution_builds_exactly_its_genomes(layers: list[list[Member]], input_shape) -> None:
    task = problem(layers, input_shape, halves(TaskSpec("a", "npz"), input_shape, 0))
    ranges = gene_space(layers, input_shape)
    top_channels = layers[-1][0].output_shape[0]
    kinds: set[str] = set()

    def evaluate(genome: Genome) -> TrainedGenome:
        network = extended_layers(task.library_layers, input_shape, genome, ranges, task.generator)
        assert built(network, len(layers)) == meant(genome, ranges, top_channels), genome.describe(ranges)
        kinds.update(m.kind for layer in network for m in layer if m.library_id is None)
        curve = Curve([0, 10], [0.5, 0.5 + 0.01 * genome.new_module_count])
        return TrainedGenome(genome, None, curve, flops=0)

    search = PRESETS["standard"].override(mutation_rate=0.5, crossover=True)
    for seed in range(3):
        ga = evolution.GA(search, len(layers), np.random.default_rng(seed), ranges=ranges)
        evolution.run(ga, evolution.one_at_a_time(evaluate))
    if layers is SMALL:  # only what fits: dim_reduce beside the halving layer, convs, res_fire on a conv
        assert {"conv", "dim_reduce"} <= kinds
    else:
        assert kinds == {"conv", "res_fire", "dim_reduce"}


def test_grow_records_the_genome_it_built() -> None:
    task = problem(SMALL, (1, 6, 6), halves(TaskSpec("a", "npz"), (1, 6, 6), 0))
    grown = agent().grow(task, None)
    genome = Genome.from_json(grown.details["genome"])
    ranges = gene_space(SMALL, (1, 6, 6))
    layers = [layer.members for layer in grown.network.layers]
    assert built(layers, len(SMALL)) == meant(genome, ranges, 2)
    assert grown.details["genome_text"] == genome.describe(ranges)


def test_asking_and_telling_by_hand_grows_what_the_agent_grows() -> None:
    """The GA driven by hand, a whole generation trained at a time, against the agent's growth
    (one candidate at a time): the same genomes from the same task seed, the same winner."""
    grower = agent()
    grower.budget = TINY.override(
        population=3, generations=2, candidate_steps=20, final_steps=20, settle_steps=0
    )
    data = halves(TaskSpec("a", "npz"), (1, 6, 6), 0)
    grown = grower.grow(problem(SMALL, (1, 6, 6), data), None)

    task = problem(SMALL, (1, 6, 6), data)
    ranges = gene_space(SMALL, (1, 6, 6))
    growth = Growth(SMALL, data, (1, 6, 6), ranges, grower.budget, 0, torch.device("cpu"))
    ga = evolution.GA(
        grower.budget,
        len(SMALL),
        task.rng,
        ranges=ranges,
        good_enough=lambda trained: trained.validation.best >= task.solved,
        cost=lambda trained: trained.flops,
    )
    while not ga.done:
        newborns = ga.ask()
        ga.tell(newborns, train_generation(Workers(0), growth, newborns))
    result = ga.result
    assert result.best.genome == Genome.from_json(grown.details["genome"])
    assert result.evaluations == grown.details["evaluations"] == 3 + 2
    best = [max(acc for record in generation for _, acc in record.curve) for generation in result.history]
    assert best == grown.curves["evolution_best_val_acc"]


# ---------------------------------------------------------------------------- seeds
def test_the_task_streams_are_the_seeds_alone() -> None:
    (g1, r1), (g2, r2), (g3, _) = task_streams(5), task_streams(5), task_streams(6)
    assert torch.equal(torch.rand(8, generator=g1), torch.rand(8, generator=g2))
    assert r1.integers(1 << 30, size=8).tolist() == r2.integers(1 << 30, size=8).tolist()
    assert not torch.equal(torch.rand(8, generator=task_streams(5)[0]), torch.rand(8, generator=g3))


def test_every_candidate_has_a_stream_of_its_own() -> None:
    def draw(generator: torch.Generator) -> list[float]:
        return torch.rand(4, generator=generator).tolist()

    assert draw(candidate_generator(5, 1, 3)) == draw(candidate_generator(5, 1, 3))
    others = [candidate_generator(6, 1, 3), candidate_generator(5, 0, 3), candidate_generator(5, 1, 2)]
    task_own = task_streams(5)[0]
    assert all(draw(g) != draw(candidate_generator(5, 1, 3)) for g in [*others, task_own])


def stored(library: Library, name: str) -> tuple:
    record, arrays = library.task(name), library.task_arrays(name)
    uses = [[(u["alpha"].tolist(), u["beta"].tolist()) for u in layer] for layer in arrays.uses]
    head = {k: v.tolist() for k, v in arrays.head.items()}
    return record.layers, record.metrics, record.details, uses, head, arrays.probe["logits"].tolist()


def test_a_task_learns_the_same_way_first_or_later(tmp_path: Path) -> None:
    """Task b learned second by the agent that learned a, or first by a fresh agent (with torch's
    global generator disturbed in between): the same stored task, bit for bit."""
    a, b = TaskSpec("a", "npz"), TaskSpec("b", "npz")
    together, apart = Library.create(tmp_path / "together"), Library.create(tmp_path / "apart")
    shared = agent(seed=3)
    for library, first, second in ((together, shared, shared), (apart, agent(seed=3), agent(seed=3))):
        learn(library, first, a, name="a", seed=3, command="test")
        torch.rand(100)
        learn(library, second, b, name="b", seed=3, command="test")
    b = together.task("b")
    assert b.metrics["phase"] == "grow" or "growth_rejected" in b.details  # evolution's stream was used
    for name in ("a", "b"):
        assert stored(together, name) == stored(apart, name)


@pytest.mark.parametrize(
    ("shape", "classes"), [((32, 28, 28), 2), ((8, 28, 28), 2), ((64, 7, 7), 10), ((3, 2, 2), 2)]
)
def test_a_task_head_is_a_small_linear_readout(shape: tuple[int, int, int], classes: int) -> None:
    """At most READOUT_FEATURES pooled features reach one linear layer, so a binary task owns
    well under 2,000 numbers whatever the library's top layer: the library has to carry it."""
    head = Head(shape, classes)
    side = min(shape[1], math.isqrt(READOUT_FEATURES // shape[0]))
    assert head.config == {"hidden": 0, "pool": side}
    assert sum(p.numel() for p in head.parameters()) == (shape[0] * side * side + 1) * classes
    assert shape[0] * side * side <= max(READOUT_FEATURES, shape[0])
    assert head(torch.rand(3, *shape)).shape == (3, classes)


@pytest.mark.parametrize("shape", [(8, 4, 28, 28), (5, 3, 7, 7), (2, 2, 5, 8)])
def test_the_fast_max_pool_is_max_pool2d_exactly(shape: tuple[int, int, int, int]) -> None:
    # quantised ReLU outputs: many ties in a window, zeros and equal positive values alike
    x = torch.relu(torch.randn(shape, generator=torch.Generator().manual_seed(0))).mul(4).round()
    expected = torch.nn.functional.max_pool2d(x, 2)
    with torch.no_grad():
        assert torch.equal(max_pool_2x2(x), expected)
    grad = torch.randn(expected.shape, generator=torch.Generator().manual_seed(1))
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    torch.nn.functional.max_pool2d(a, 2).backward(grad)
    out = max_pool_2x2(b)
    out.backward(grad)
    assert torch.equal(out, expected) and torch.equal(a.grad, b.grad)


def test_a_network_counts_its_flops_without_touching_batchnorm() -> None:
    g = torch.Generator().manual_seed(0)
    conv = Member.new("conv", (1, 8, 8), 4, g)
    head = Head((4, 8, 8), 2)
    network = TaskNetwork([MixedLayer([conv], generator=g)], head).train()
    before = {k: v.clone() for k, v in network.state_dict().items()}
    flops = network.flops((1, 8, 8))
    assert flops == 2 * (9 * 1 * 4 * 8 * 8) + 2 * head.out.in_features * 2  # 3×3 conv; readout → 2 scores
    assert network.training and conv.module.training
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())


def test_a_crowded_layer_keeps_its_most_relevant_modules() -> None:
    """More than ``max_modules`` in a layer: a scout run weighs them, and self-organization (and
    growth) get only the top ones by |α·β|: here the one module that passes the input on."""
    identity = channel_copy(0, "identity")
    with torch.no_grad():
        identity.module.conv.weight[1, 1, 1, 1] = 1.0
    silent = [channel_copy(None, f"silent-{i}") for i in range(3)]
    for seed in range(3):
        task = bigger_channel_problem()
        task.library_layers = [[silent[0], identity, *silent[1:]]]
        picky = ClassificationAgent(
            TINY.override(so_steps=2000, max_modules=1), target=1.0, seed=seed, load_data=halves
        )
        task.generator.manual_seed(seed)
        attempt = picky.self_organize(task)
        assert attempt.details == {"chosen_modules": [["identity"]]}
        assert task.library_layers == [[identity]] and attempt.network.layers[0].members == [identity]
        assert attempt.val_acc > 0.9
    roomy = ClassificationAgent(TINY.override(max_modules=4), target=1.0, load_data=halves)
    task = bigger_channel_problem()
    task.library_layers = [[silent[0], identity, *silent[1:]]]
    assert roomy.self_organize(task).details == {}
    assert len(task.library_layers[0]) == 4


def test_removal_costs_are_those_of_the_reduced_networks_evaluated_whole() -> None:
    g = torch.Generator().manual_seed(0)
    shapes = [((1, 8, 8), 4, 3), ((4, 8, 8), 4, 1), ((4, 8, 8), 4, 2)]  # (input, filters, modules)
    layers = [MixedLayer([Member.new("conv", i, f, g) for _ in range(n)], generator=g) for i, f, n in shapes]
    network = TaskNetwork(layers, Head((4, 8, 8), 3))
    images = torch.randint(0, 256, (300, 1, 8, 8), generator=g, dtype=torch.uint8)  # three batches
    labels = torch.randint(3, (300,), generator=g)
    cpu = torch.device("cpu")
    costs = removal_costs(network, images, labels, [0, 2], cpu)
    assert sorted(costs) == [0, 2] and [len(costs[0]), len(costs[2])] == [3, 2]

    def whole(net: TaskNetwork) -> float:
        return float(torch.nn.functional.cross_entropy(predict_logits(net, images, cpu), labels))

    full = whole(network)
    for index, cost in costs.items():
        for i, value in enumerate(cost):
            smaller = [*layers[:index], layers[index].without(i), *layers[index + 1 :]]
            assert value == whole(TaskNetwork(smaller, network.head)) - full  # the same bits
    assert len(set(costs[0])) == 3  # every module of layer 0 matters a different amount


def test_new_modules_must_beat_self_organization_by_the_margin(tmp_path: Path) -> None:
    """Growth runs (self-organization misses the target), but a grown network that is not better
    on validation by ``growth_margin`` is thrown away: the library alone solves the task."""
    library = Library.create(tmp_path / "lib")
    learn(library, agent(), TaskSpec("a", "npz"), name="a", seed=0, command="test")
    modules = {m.id for m in library.modules()}
    never = ClassificationAgent(TINY.override(growth_margin=1.0), target=1.0, load_data=halves)
    record = learn(library, never, TaskSpec("b", "npz"), name="b", seed=0, command="test")
    assert record.metrics["phase"] == "self_organize" and record.metrics["new_modules"] == 0
    rejected = record.details["growth_rejected"]
    assert rejected["margin"] == 1.0 and 0 < rejected["val_acc"] <= 1 and rejected["genome_text"]
    assert {m.id for m in library.modules()} == modules
    always = ClassificationAgent(TINY.override(growth_margin=0.0), target=1.0, load_data=halves)
    grown = learn(library, always, TaskSpec("b", "npz"), name="c", seed=0, command="test")
    if "growth_rejected" in grown.details:  # margin 0: rejected only if worse than self-organization
        assert grown.details["growth_rejected"]["val_acc"] < grown.metrics["val_acc"]
    else:  # grown; its new modules stored unless pruning found them unneeded
        assert grown.metrics["phase"] == "grow"
        assert grown.metrics["new_modules"] > 0 or grown.details["pruned_modules"] > 0


def test_under_compete_growth_runs_whatever_the_target(tmp_path: Path) -> None:
    """A target the library meets stops the search at self-organization; under ``compete``
    growth runs all the same (validation stays under 1 − margin: a tenth of its labels are
    flipped) and the target only labels the outcome."""
    assert TINY.solved(0.97) == 0.97 and TINY.override(compete=True).solved(0.97) == 0.995
    assert TINY.override(compete=True, growth_margin=0.0).solved(0.97) == 1.0
    library = Library.create(tmp_path / "lib")
    competing = ClassificationAgent(TINY.override(compete=True), target=0.5, load_data=halves)
    first = competing.prepare(library, TaskSpec("a", "npz"), "a")
    assert first.solved == 0.5  # an empty library: nothing to compete with, the target decides
    learn(library, agent(), TaskSpec("a", "npz"), name="a", seed=0, command="test")
    assert competing.prepare(library, TaskSpec("b", "npz"), "b").solved == 0.995
    easy = ClassificationAgent(TINY, target=0.5, load_data=halves)
    stopped = learn(library, easy, TaskSpec("b", "npz"), name="b", seed=0, command="test")
    assert stopped.metrics["phase"] == "self_organize" and "growth_rejected" not in stopped.details
    record = learn(library, competing, TaskSpec("b", "npz"), name="c", seed=0, command="test")
    assert record.metrics["phase"] == "grow" or "growth_rejected" in record.details
    assert record.metrics["target_met"] is True and record.details["budget"]["compete"] is True


def test_without_growth_a_task_is_solved_from_the_library_alone(tmp_path: Path) -> None:
    library = Library.create(tmp_path / "lib")
    frugal = ClassificationAgent(TINY.override(grow=False), target=1.0, load_data=halves)
    first = learn(library, frugal, TaskSpec("a", "npz"), name="a", seed=0, command="test")
    assert first.metrics["phase"] == "grow"  # an empty library leaves no other way
    modules = {m.id for m in library.modules()}
    second = learn(library, frugal, TaskSpec("b", "npz"), name="b", seed=0, command="test")
    assert second.metrics["phase"] == "self_organize" and second.metrics["target_met"] is False
    assert {m.id for m in library.modules()} == modules


def test_a_head_stored_before_readouts_rebuilds() -> None:
    """Tasks stored with the earlier head (pool 7, hidden layer of 64) keep loading exactly."""
    old = Head((8, 28, 28), 2, hidden=64, pool=7)
    assert old.config == {"hidden": 64, "pool": 7}
    assert old.hidden is not None and old.hidden.in_features == 8 * 49
    again = Head((8, 28, 28), 2, **old.config)
    again.load_state_dict(old.state_dict())
    x = torch.rand(4, 8, 28, 28)
    assert torch.equal(again(x), old(x))


# ---------------------------------------------------------------------------- recall
def path(task: str, members: list[Member], alpha: float = 0.7) -> recall.Path:
    n = len(members)
    return recall.Path(task, [members], [torch.full((n,), alpha)], [torch.ones(n)])


def test_self_organization_starts_from_the_stored_path_that_suits_the_task() -> None:
    """Two stored paths: one passes the input on, one writes zeros. The first scores as well as
    the fresh mix of the library (ties go to a path: its α/β were learned) and becomes the
    start: its modules, its α/β."""
    identity = channel_copy(0, "identity")
    with torch.no_grad():
        identity.module.conv.weight[1, 1, 1, 1] = 1.0
    silent = channel_copy(None, "silent")
    task = bigger_channel_problem()
    task.library_layers = [[silent, identity]]
    task.paths = [path("zeros", [silent]), path("copies", [identity])]
    patient = ClassificationAgent(TINY.override(so_steps=2000), target=1.0, load_data=halves)
    attempt = patient.self_organize(task)
    chosen = attempt.details["recall"]
    assert chosen["task"] == "copies" and chosen["scores"]["copies"] >= chosen["mix_score"] > 0.9
    assert chosen["scores"]["zeros"] < 0.7  # constant features: the majority class at best
    assert attempt.network.layers[0].members == [identity]
    assert attempt.val_acc > 0.9
    task.paths = [path("zeros", [silent])]  # no path beats the fresh mix: the mix it is
    attempt = patient.self_organize(task)
    assert attempt.details["recall"]["task"] is None
    assert attempt.network.layers[0].members == [silent, identity]


def test_mntdp_s_nearest_neighbour_prior_ranks_the_paths_as_recall_s_score() -> None:
    """``recall_score="knn"``: the same choice by a k-nearest-neighbour vote on the same
    features (MNTDP's task-driven prior); any other score is refused by the budget."""
    identity = channel_copy(0, "identity")
    with torch.no_grad():
        identity.module.conv.weight[1, 1, 1, 1] = 1.0
    silent = channel_copy(None, "silent")
    task = bigger_channel_problem()
    paths = [path("zeros", [silent]), path("copies", [identity])]
    chosen = recall.recall(paths, [[silent, identity]], task.data, 2, torch.device("cpu"), "knn")
    assert chosen.path is not None and chosen.path.task == "copies"
    assert chosen.scores["copies"] > 0.9 and chosen.scores["zeros"] < 0.7
    with pytest.raises(BudgetError, match="recall-score"):
        TINY.override(recall_score="cosine")


def test_a_path_start_leaves_the_stored_path_as_it_was() -> None:
    identity = channel_copy(0, "identity")
    stored = path("copies", [identity], alpha=0.5)
    layers = stored.layers()
    with torch.no_grad():
        layers[0].alpha.add_(1.0)
    assert torch.equal(stored.alpha[0], torch.tensor([0.5])) and layers[0].alpha.requires_grad


def test_stored_tasks_are_recalled_unless_switched_off(tmp_path: Path) -> None:
    """The agent reads every stored task's path; ``recall=False`` reads none and records nothing."""
    library = Library.create(tmp_path / "lib")
    learn(library, agent(), TaskSpec("a", "npz"), name="a", seed=0, command="test")
    b = learn(library, agent(), TaskSpec("b", "npz"), name="b", seed=0, command="test")
    assert set(b.details["recall"]["scores"]) == {"a"}
    problem = agent().prepare(library, TaskSpec("a", "npz"), "c")
    assert [p.task for p in problem.paths] == ["a", "b"]
    stored = library.task("a").layers
    assert [[m.library_id for m in layer] for layer in problem.paths[0].members] == stored
    forgetful = ClassificationAgent(TINY.override(recall=False), target=1.0, load_data=halves)
    assert forgetful.prepare(library, TaskSpec("a", "npz"), "c").paths == []
    c = learn(library, forgetful, TaskSpec("a", "npz"), name="c", seed=0, command="test")
    assert "recall" not in c.details


# ---------------------------------------------------------------------------- prefix reuse
def test_prefix_network_reuses_the_path_below_and_is_fresh_above() -> None:
    identity = channel_copy(0, "identity")
    stored = recall.Path("copies", [[identity], [identity]], [torch.ones(1)] * 2, [torch.ones(1)] * 2)
    network = prefix_network(stored, 1, 2, torch.Generator().manual_seed(0))
    first, second = network.layers
    assert first.members == [identity] and not any(p.requires_grad for p in first.units.parameters())
    assert first.alpha.requires_grad  # the task's own scale on a reused module
    fresh = second.members[0]
    assert fresh.library_id is None and fresh.kind == identity.kind
    assert (fresh.input_shape, fresh.output_shape) == (identity.input_shape, identity.output_shape)
    assert all(p.requires_grad for p in second.units.parameters())


def test_growth_tries_the_prefixes_of_the_best_scored_path(tmp_path: Path) -> None:
    """With ``prefix_reuse`` growth trains a candidate per depth below the recalled path's own
    (recorded), and a chosen one's fresh modules join the library above the reused layers."""
    library = Library.create(tmp_path / "lib")
    reusing = ClassificationAgent(TINY.override(prefix_reuse=True), target=1.0, load_data=halves)
    learn(library, reusing, TaskSpec("a", "npz"), name="a", seed=0, command="test")
    depth = len(library.task("a").layers)
    record = learn(library, reusing, TaskSpec("b", "npz"), name="b", seed=0, command="test")
    prefix = (record.details.get("growth_rejected") or record.details)["prefix"]
    assert prefix["path"] == "a" and len(prefix["val_acc"]) == depth - 1
    if prefix["reused"] is not None and record.metrics["phase"] == "grow":
        stored = library.task("a").layers
        assert record.layers[: prefix["reused"]] == stored[: prefix["reused"]]
        assert all(
            set(mine) - set(stored[i]) for i, mine in enumerate(record.layers) if i >= prefix["reused"]
        )
    plain = learn(
        Library.create(tmp_path / "plain"), agent(), TaskSpec("a", "npz"), name="a", seed=0, command="t"
    )
    assert "prefix" not in plain.details
