"""The stream benchmark: its learners (random library, controls, PNN), its bookkeeping, and one
small run end to end on real MNIST."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from cli_helpers import TINY_BUDGET as TINY
from cli_helpers import write_mnist_slice

from agents.atari.budget import ATARI_PRESETS
from agents.classification.agent import load_task_network
from agents.classification.budget import PRESETS
from agents.classification.modules import Head, Member, to_tensors
from agents.classification.network import TaskNetwork
from agents.classification.recall import knn_accuracy
from agents.classification.training import accuracy, predict_logits
from agents.task import TaskData
from library_store import Library, TaskArrays, TaskRecord
from lifelong.bench import Stage
from lifelong.bench.controls import (
    Blueprint,
    Context,
    Independent,
    Progressive,
    SharedTrunk,
    fresh_head,
    randomise,
)
from lifelong.bench.mntdp import ModularNetworks
from lifelong.bench.pnn import ProgressiveNetwork
from lifelong.bench.streams import (
    AGENT_FAILED,
    Log,
    Recorder,
    _ratios,
    _results,
    aggregate,
    bench_streams,
    load_bench,
    merge_seeds,
    run_condition,
    seed_metrics,
    start_seed,
)
from lifelong.commands.knobs import parse_settings
from lifelong.errors import LifelongError
from lifelong.history import Contents
from lifelong.plans import ClassificationPlan
from lifelong.streams import parse_stream

BLUEPRINT = Blueprint(
    (
        (("conv", (1, 12, 12), 4),),
        (("dim_reduce", (4, 12, 12), 4),),
        (("conv", (4, 6, 6), 4), ("conv", (4, 6, 6), 4)),
    )
)
CPU = torch.device("cpu")
REPO_ROOT = Path(__file__).resolve().parent.parent
# `bench streams` results written before issue 27's names (forward_transfer, transfer_last_task,
# forgetting, lifelong_minus_independent_points)
OLD_NAMES = {"forward_transfer", "transfer_last_task", "forgetting"}
STREAM_RESULTS = sorted((REPO_ROOT / "benchmarks" / "results").glob("**/streams-*.json"))
OLD_RESULTS = [  # the files written before the metrics' renaming
    path for path in STREAM_RESULTS if set(json.loads(path.read_text())["results"]["lifelong"]) >= OLD_NAMES
]
NEW_RESULTS = [path for path in STREAM_RESULTS if path not in OLD_RESULTS]
# for tests of the bookkeeping, not of learning: a few steps of everything
FEW_STEPS = TINY.override(so_steps=5, final_steps=5, candidate_steps=5, settle_steps=0, eval_every=5)


def synthetic(seed: int, n: int = 96, classes: int = 2) -> TaskData:
    """Images whose class is which quarter is bright: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(classes, (n,), generator=g)
    x = torch.randint(0, 60, (n, 1, 12, 12), generator=g, dtype=torch.uint8)
    for i, label in enumerate(y.tolist()):
        x[i, 0, (label % 2) * 6 : (label % 2) * 6 + 6] += 150
    half = n // 2
    names = [str(k) for k in range(classes)]
    return TaskData(x[:half], y[:half], x[half:], y[half:], x[half:], y[half:], names)


@pytest.fixture(scope="module")
def mnist_slice(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    return write_mnist_slice(tmp_path_factory.mktemp("mnist-slice"), data_dir)


def context(tmp_path: Path) -> Context:
    return Context(ClassificationPlan(TINY, 0.9), 0, CPU, None, tmp_path)


def test_recorder_counts_examples_across_phases() -> None:
    events = []
    recorder = Recorder(lambda event, **fields: events.append(event), batch_size=10, target=0.8)
    recorder("phase", name="a", total=100)
    recorder("eval", step=50, val_acc=0.5)
    recorder("eval", step=80, val_acc=0.7)
    recorder("phase_done", name="a", seconds=1.0, val_acc=0.7)
    recorder("phase", name="b", total=100)
    recorder("eval", step=20, val_acc=0.85)
    recorder("eval", step=40, val_acc=0.9)
    assert recorder.examples == [500, 800, 1000, 1200]
    assert recorder.examples_to_target == 1000  # 80 steps of phase a, then 20 of phase b
    assert events == ["phase", "eval", "eval", "phase_done", "phase", "eval", "eval"]


def test_aggregate_means_and_sds_over_seeds() -> None:
    result = aggregate([{"acc": 0.9, "gone": None}, {"acc": 0.8, "gone": 3.0}])
    assert result["acc"] == pytest.approx(0.85)
    assert result["acc_sd"] == pytest.approx(0.0707, abs=1e-4)
    assert result["gone"] is None and result["gone_sd"] is None
    assert aggregate([{"acc": 0.5}])["acc_sd"] == 0.0
    # a figure one seed lacks (GEM's forward transfer of a seed run before it was recorded)
    mixed = aggregate([{"acc": 0.9}, {"acc": 0.8, "forward_transfer_gem": 0.01}])
    assert mixed["forward_transfer_gem"] is None and mixed["forward_transfer_gem_sd"] is None


def test_the_shared_trunk_measures_each_task_before_learning_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GEM's R[j-1][j] is the accuracy of the network task j's training starts from (the trunk
    as task j-1 left it, under the head learn() draws), b_j the same head on the trunk as drawn."""
    first, second = synthetic(0), synthetic(1)
    few = Context(ClassificationPlan(FEW_STEPS, 0.9), 0, CPU, None, tmp_path)
    learner = SharedTrunk(few, BLUEPRINT, train_trunk_after_first=True)
    assert learner.before_learning(0, first) == (None, None)  # no earlier model
    learner.learn(0, None, first, lambda *a, **k: None)
    trunk = learner.trunk
    before, at_init = learner.before_learning(1, second)
    head = fresh_head(trunk, second.n_classes, learner.context.generator(1))
    assert before == accuracy(TaskNetwork(trunk, head), second.test_x, second.test_y, CPU)
    drawn = BLUEPRINT.trunk(learner.context.generator(0))  # the trunk as task 0 drew it
    assert at_init == accuracy(TaskNetwork(drawn, head), second.test_x, second.test_y, CPU)
    # with training a no-op, the network task 1 learns is the one measured before it
    monkeypatch.setattr(Context, "fit", lambda *args, **kwargs: None)
    untrained = SharedTrunk(few, BLUEPRINT, train_trunk_after_first=True)
    untrained.learn(0, None, first, lambda *a, **k: None)
    measured = untrained.before_learning(1, second)
    untrained.learn(1, None, second, lambda *a, **k: None)
    assert measured == (untrained.accuracy(1, second),) * 2  # an untrained trunk is the trunk at init


@pytest.mark.parametrize("name", ["finetune", "frozen_first"])
def test_measuring_before_learning_changes_no_other_figure(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GEM's pair is recorded for the shared-trunk controls only, and the rest of their logs are
    the same bits as without it."""
    stream, data = parse_stream("mnist:0v1 mnist:2v3 mnist:4v5"), [synthetic(0), synthetic(1), synthetic(2)]
    plan = ClassificationPlan(FEW_STEPS, 0.9)
    with_gem = run_condition(name, stream, Context(plan, 0, CPU, None, tmp_path), BLUEPRINT, data=data)
    assert with_gem.before_learning[0] is None and with_gem.at_init[0] is None
    assert all(isinstance(v, float) for v in with_gem.before_learning[1:] + with_gem.at_init[1:])
    monkeypatch.setattr(SharedTrunk, "before_learning", lambda *args: None)
    without = run_condition(name, stream, Context(plan, 0, CPU, None, tmp_path), BLUEPRINT, data=data)
    assert without.before_learning == without.at_init == []
    keep = {"before_learning": [], "at_init": [], "seconds": []}
    assert {**vars(with_gem), **keep} == {**vars(without), **keep}
    figures = seed_metrics(with_gem, None, 1)
    assert figures["forward_transfer_gem"] == pytest.approx(
        sum(with_gem.before_learning[j] - with_gem.at_init[j] for j in (1, 2)) / 2  # type: ignore[operator]
    )
    assert "forward_transfer_gem" not in seed_metrics(without, None, 1)  # absent, not 0
    for other in (Independent, Progressive):  # no network of a task before learning it
        assert other(context(tmp_path), BLUEPRINT).before_learning(1, data[1]) is None


def assert_same_figures(got: dict[str, Any], expected: dict[str, Any]) -> None:
    """The same figures, to the last bits a different order of float sums can change; None as None."""
    assert list(got) == list(expected)
    for key, value in expected.items():
        assert (got[key] is None) == (value is None), key
        assert value is None or got[key] == pytest.approx(value, rel=1e-12, abs=1e-14), key


def test_the_stored_stream_results_are_mostly_old_ones_and_the_new_ones_load_as_written() -> None:
    assert len(OLD_RESULTS) >= 30  # the renaming test below has files to read
    for path in NEW_RESULTS:
        raw = json.loads(path.read_text())
        assert not OLD_NAMES & set(raw["results"]["lifelong"]), path
        assert load_bench(path)["results"] == raw["results"], path


@pytest.mark.parametrize(
    "path", OLD_RESULTS, ids=lambda path: path.relative_to(REPO_ROOT / "benchmarks").as_posix()
)
def test_an_old_result_loads_under_the_current_names_with_the_same_figures(path: Path) -> None:
    """Every `bench streams` file in benchmarks/results loads with today's names; recomputed from
    its runs by today's code, every figure equals the one it stored under its old name."""
    raw = json.loads(path.read_text())
    assert set(raw["results"]["lifelong"]) >= OLD_NAMES  # written under the old names
    loaded = load_bench(path)
    for condition, old in raw["results"].items():
        new = loaded["results"][condition]
        assert not OLD_NAMES & {key.removesuffix("_sd") for key in new}
        for before, after in [
            ("forward_transfer", "transfer_vs_independent"),
            ("transfer_last_task", "transfer_vs_independent_last_task"),
            ("forgetting", "forgetting_chaudhry"),
        ]:
            assert (new[after], new[f"{after}_sd"]) == (old[before], old[f"{before}_sd"])
    assert "lifelong_minus_independent_points" not in loaded["ratios"]
    assert raw["ratios"]["lifelong_minus_independent_points"] == pytest.approx(
        100 * loaded["results"]["lifelong"]["transfer_vs_independent"]
    )  # the duplicate dropped: the same figure in points
    runs = loaded["runs"]
    logs = {
        name: {seed: Log(**run) for seed, run in by_seed.items()}
        for name, by_seed in runs["conditions"].items()
    }
    recomputed = _results(logs, runs["stream"]["judged_from"])
    for condition, figures in loaded["results"].items():
        again = recomputed[condition]
        assert set(again) == {*figures, "forgetting_avalanche", "forgetting_avalanche_sd"}
        assert_same_figures({key: again[key] for key in figures}, figures)
        assert again["forgetting_avalanche"] == pytest.approx(-again["backward_transfer"], abs=1e-15)
    assert _ratios(recomputed) == pytest.approx(loaded["ratios"], rel=1e-12)


def test_old_results_run_apart_merge_under_the_current_names(tmp_path: Path) -> None:
    """`bench merge` of two files written before issue 27 (one old three-seed result cut in two):
    the old result's figures, under today's names."""
    path = REPO_ROOT / "benchmarks" / "results" / "current" / "streams-split-fashion-quick.json"
    whole = load_bench(path)
    files = []
    for seeds in (["2"], ["0", "1"]):
        part = json.loads(path.read_text())
        part["seeds"] = [int(seed) for seed in seeds]
        conditions = part["runs"]["conditions"]
        part["runs"]["conditions"] = {name: {s: by[s] for s in seeds} for name, by in conditions.items()}
        files.append(tmp_path / f"seeds-{'-'.join(seeds)}.json")
        files[-1].write_text(json.dumps(part))
    (results, ratios, _), sources = merge_seeds([(file, load_bench(file)) for file in files])
    assert [source["seeds"] for source in sources] == [[2], [0, 1]]
    for condition, figures in whole["results"].items():
        assert_same_figures({key: results[condition][key] for key in figures}, figures)
        assert "forgetting_avalanche" in results[condition] and not OLD_NAMES & set(results[condition])
    assert ratios == pytest.approx(whole["ratios"], rel=1e-12)
    assert "lifelong_minus_independent_points" not in ratios
    done = _merge(files, tmp_path / "merged")  # the same through the console script
    assert done.returncode == 0, done.stderr
    written = json.loads((tmp_path / "merged" / files[0].name).read_text())
    assert written["results"]["lifelong"]["transfer_vs_independent"] == pytest.approx(
        whole["results"]["lifelong"]["transfer_vs_independent"], rel=1e-12
    )
    assert not OLD_NAMES & set(written["results"]["lifelong"]) and written["ratios"].keys() == ratios.keys()


def test_pnn_keeps_earlier_columns_and_grows_adapters(tmp_path: Path) -> None:
    pnn = Progressive(context(tmp_path), BLUEPRINT)
    first, second = synthetic(0), synthetic(1)
    pnn.learn(0, None, first, lambda *a, **k: None)
    before = predict_logits(pnn.network.view(0), first.test_x, CPU)
    columns_before = pnn.parameters()[1]
    pnn.learn(1, None, second, lambda *a, **k: None)
    assert torch.equal(predict_logits(pnn.network.view(0), first.test_x, CPU), before)
    column = pnn.network.columns[1]
    assert len(pnn.network.columns[0].adapters) == 0
    assert len(column.adapters) == 3  # into layers 1 and 2 and into the head
    adapters = sum(p.numel() for p in column.adapters.parameters())
    assert pnn.parameters()[1] == 2 * columns_before + adapters
    assert pnn.accuracy(1, second) > 0.8


def test_pnn_adapter_reads_every_earlier_column_side_by_side() -> None:
    network = ProgressiveNetwork()
    g = torch.Generator().manual_seed(0)
    for classes in (2, 2, 3):
        network.add_column(BLUEPRINT.trunk, classes, g)
    # V of the third column's adapter into layer 1 reads both earlier columns' 4-channel maps
    assert [a.project.in_channels for a in network.columns[2].adapters] == [8, 8, 8]
    x = torch.rand(4, 1, 12, 12)
    out = network(x, 2)
    for earlier in (0, 1):  # changing either earlier column changes the newest column's output
        layer = network.columns[earlier].layers[1]
        with torch.no_grad():
            layer.alpha.mul_(2)
        assert not torch.equal(network(x, 2), out)
        with torch.no_grad():
            layer.alpha.div_(2)
    assert torch.equal(network(x, 2), out)


def test_pnn_forward_uses_earlier_columns() -> None:
    network = ProgressiveNetwork()
    g = torch.Generator().manual_seed(0)
    network.add_column(BLUEPRINT.trunk, 2, g)
    network.add_column(BLUEPRINT.trunk, 3, g)
    x = torch.rand(4, 1, 12, 12)
    out = network(x, 1)
    assert out.shape == (4, 3)
    with torch.no_grad():
        network.columns[0].layers[0].alpha.mul_(2)  # changing column 0 changes column 1's output
    assert not torch.equal(network(x, 1), out)


def test_budget_settings_are_read_as_their_fields_types() -> None:
    settings = ["growth_margin=0.02", "recall=false", "max-modules=6", "recall_score=knn", "compete=TRUE"]
    assert parse_settings(settings, PRESETS["quick"]) == {
        "growth_margin": 0.02, "recall": False, "max_modules": 6, "recall_score": "knn", "compete": True,
    }  # fmt: skip
    assert parse_settings([], PRESETS["quick"]) == {}
    atari = parse_settings(["transfer_init=inherit", "lesion-trials=5"], ATARI_PRESETS["quick"])
    assert atari == {"transfer_init": "inherit", "lesion_trials": 5}


def test_knn_votes_among_the_nearest_training_points() -> None:
    train = torch.tensor([[0.0], [1.0], [2.0], [10.0], [11.0]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    val = torch.tensor([[0.4], [10.4], [1.6]])
    # k = 1: 0, 1 and 1 (1.6 is nearest 2.0); k = 3: 0 (0, 1, 2 → two 0s), 1, 0
    assert knn_accuracy(train, labels, val, torch.tensor([0, 1, 1]), k=1) == 1.0
    assert knn_accuracy(train, labels, val, torch.tensor([0, 1, 1]), k=3) == pytest.approx(2 / 3)
    assert knn_accuracy(train[:2], labels[:2], val, torch.tensor([0, 0, 0]), k=5) == 1.0  # k ≤ points


def test_mntdp_prior_ranks_an_informative_path_above_a_silent_one(tmp_path: Path) -> None:
    learner = ModularNetworks(context(tmp_path), BLUEPRINT)
    g = torch.Generator().manual_seed(0)
    informative, silent = BLUEPRINT.network(2, g), BLUEPRINT.network(2, g)
    with torch.no_grad():
        silent.layers[-1].alpha.zero_()  # every image gives the same features
    learner.networks = [silent, informative]
    prior = learner.prior(synthetic(3, n=200))
    assert prior[1] > 0.9 and prior[0] <= 0.6


def test_mntdp_reuses_the_chosen_path_grows_above_it_and_forgets_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    learner = ModularNetworks(context(tmp_path), BLUEPRINT)
    quiet = lambda *a, **k: None  # noqa: E731
    tasks = [synthetic(seed) for seed in range(3)]
    learner.learn(0, None, tasks[0], quiet)
    first = learner.how(0)
    assert first["source"] is None and first["reused_layers"] == 0 and len(first["candidates_val_acc"]) == 1
    assert learner.library_modules() == len(BLUEPRINT.layers)  # a whole fresh path
    learner.learn(1, None, tasks[1], quiet)
    before = [predict_logits(n, t.test_x, CPU) for n, t in zip(learner.networks, tasks, strict=False)]
    monkeypatch.setattr(learner, "prior", lambda data: {0: 0.2, 1: 0.9})  # task 1's path ranks first
    learner.learn(2, None, tasks[2], quiet)
    how = learner.how(2)
    assert how["source"] == "task-01" and how["prior"] == {"task-00": 0.2, "task-01": 0.9}
    scores = how["candidates_val_acc"]
    assert len(scores) == len(BLUEPRINT.layers) + 1 and how["reused_layers"] == scores.index(max(scores))
    k, network = how["reused_layers"], learner.networks[2]
    assert all(network.layers[i] is learner.networks[1].layers[i] for i in range(k))  # shared, not copied
    assert all(layer not in learner.networks[1].layers for layer in network.layers[k:])  # fresh above
    for old, logits in enumerate(before):  # frozen: learning task 2 changed no earlier task
        assert torch.equal(predict_logits(learner.networks[old], tasks[old].test_x, CPU), logits)
    shared, owned = learner.parameters()
    modules = {id(layer): layer for n in learner.networks for layer in n.layers}
    assert shared == sum(p.numel() for layer in modules.values() for p in layer.parameters())
    assert learner.library_modules() == len(modules)
    assert owned == sum(p.numel() for n in learner.networks for p in n.head.parameters())
    assert learner.accuracy(2, tasks[2]) > 0.8


def test_frozen_first_keeps_task_zero_and_finetune_forgets(tmp_path: Path) -> None:
    first, second = synthetic(0), synthetic(1)
    results = {}
    for trains in (False, True):
        learner = SharedTrunk(context(tmp_path), BLUEPRINT, train_trunk_after_first=trains)
        learner.learn(0, None, first, lambda *a, **k: None)
        before = predict_logits(learner.networks[0], first.test_x, CPU)
        learner.learn(1, None, second, lambda *a, **k: None)
        results[learner.name] = torch.equal(predict_logits(learner.networks[0], first.test_x, CPU), before)
    assert results == {"frozen_first": True, "finetune": False}


def test_random_library_has_the_learned_shapes_and_calibrated_batchnorm(tmp_path: Path) -> None:
    learned = Library.create(tmp_path / "learned")
    g = torch.Generator().manual_seed(3)
    with learned.transaction("modules") as tx:
        for layer, (kind, shape, out) in enumerate([("conv", (1, 12, 12), 4), ("conv", (4, 12, 12), 4)]):
            member = Member.new(kind, shape, out, g)
            tensors = to_tensors(member.module)
            tx.add_module(
                kind,
                tensors,
                created_by="t",
                config={**member.config, "layer": layer},
                signature=member.signature,
            )
    data = synthetic(5)
    random = Library.create(tmp_path / "random")
    randomise(learned, random, data, torch.Generator().manual_seed(9), CPU)
    pairs = list(zip(learned.modules(), random.modules(), strict=True))
    assert len(pairs) == 2
    for old, new in sorted(pairs, key=lambda p: p[0].config["layer"]):
        assert (new.kind, new.config, new.signature) == (old.kind, old.config, old.signature)
        a, b = learned.module_tensors(old.id), random.module_tensors(new.id)
        assert not torch.equal(torch.from_numpy(a["conv.weight"]), torch.from_numpy(b["conv.weight"]))
    first = next(m for m in random.modules() if m.config["layer"] == 0)
    tensors = random.module_tensors(first.id)
    conv = torch.nn.functional.conv2d(
        data.train_x.float() / 255, torch.from_numpy(tensors["conv.weight"]), padding=1
    )
    expected = conv.mean(dim=(0, 2, 3))
    assert torch.allclose(torch.from_numpy(tensors["bn.running_mean"]), expected, atol=1e-4)
    # given some of the modules (the library as an earlier task met it), only those are copied
    bottom = [m for m in learned.modules() if m.config["layer"] == 0]
    partial = Library.create(tmp_path / "partial")
    randomise(learned, partial, data, torch.Generator().manual_seed(9), CPU, Contents(bottom, []))
    assert [(m.kind, m.config) for m in partial.modules()] == [(m.kind, m.config) for m in bottom]


def test_the_random_library_keeps_the_learned_tasks_paths(tmp_path: Path) -> None:
    """A stored task's path (modules and α/β) is structure, not knowledge: the random library
    holds it too, re-pointed to the fresh modules, with a probe its own network reproduces."""
    learned = Library.create(tmp_path / "learned")
    g = torch.Generator().manual_seed(3)
    members = [Member.new("conv", (1, 12, 12), 4, g), Member.new("conv", (4, 12, 12), 4, g)]
    with learned.transaction("a task") as tx:
        ids = [
            tx.add_module(
                m.kind,
                to_tensors(m.module),
                created_by="t",
                config={**m.config, "layer": i},
                signature=m.signature,
            ).id
            for i, m in enumerate(members)
        ]
        head = Head((4, 12, 12), 2)
        uses = [[{"alpha": np.float32([0.5]), "beta": np.float32([2.0])}] for _ in ids]
        probe = {"inputs": synthetic(1).val_x[:4].numpy(), "labels": np.int64([0, 1, 0, 1])}
        probe["logits"] = np.zeros((4, 2), np.float32)
        details = {"head": {"input_shape": [4, 12, 12], "n_classes": 2, **head.config}}
        arrays = TaskArrays(uses=uses, head={k: v.numpy() for k, v in head.state_dict().items()}, probe=probe)
        tx.add_task(TaskRecord("t0", "classification", "npz:x", [[i] for i in ids], details=details), arrays)
    random = Library.create(tmp_path / "random")
    randomise(learned, random, synthetic(5), torch.Generator().manual_seed(9), CPU)
    task = random.task("t0")
    assert [random.module(i).config["layer"] for layer in task.layers for i in layer] == [0, 1]
    assert not set(task.module_ids) & set(ids)
    copied = random.task_arrays("t0")
    assert [[use["alpha"].tolist() for use in layer] for layer in copied.uses] == [[[0.5]], [[0.5]]]
    network = load_task_network(random, "t0")
    logits = predict_logits(network, torch.from_numpy(copied.probe["inputs"]), CPU).numpy()
    assert np.array_equal(logits, copied.probe["logits"]) and np.abs(logits).sum() > 0


@pytest.mark.slow
def test_bench_streams_end_to_end_on_mnist(tmp_path: Path, mnist_slice: Path) -> None:
    stream = parse_stream("mnist:0v1@20pc | mnist:2v3@10pc mnist:4v5@10pc")
    results, ratios, runs = bench_streams(
        stream, [0], ClassificationPlan(TINY, 0.9), device=CPU, data_dir=mnist_slice, workers=2, threads=1
    )
    assert (runs["workers"], runs["threads"]) == (2, 1)
    # the controls in two other processes, or all in this one: the same numbers, seconds aside
    _, _, alone = bench_streams(
        stream, [0], ClassificationPlan(TINY, 0.9), device=CPU, data_dir=mnist_slice, workers=0, threads=1
    )
    for name, by_seed in runs["conditions"].items():
        here, there = alone["conditions"][name]["0"], by_seed["0"]
        assert {**here, "seconds": None} == {**there, "seconds": None}, name
    assert set(results) == {
        "lifelong",
        "random_library",
        "independent",
        "finetune",
        "frozen_first",
        "pnn",
        "mntdp",
    }
    for name, figures in results.items():
        assert 0.4 < figures["judged_test_acc"] <= 1, name
        matrix = runs["conditions"][name]["0"]["matrix"]
        assert [[v is None for v in row] for row in matrix] == [
            [False, True, True],
            [False, False, True],
            [False] * 3,
        ]
        assert len(runs["conditions"][name]["0"]["initial"]) == 3
    assert results["lifelong"]["backward_transfer"] == 0.0  # zero forgetting, measured after every task
    assert results["lifelong"]["forgetting_chaudhry"] == results["lifelong"]["forgetting_avalanche"] == 0.0
    assert results["lifelong"]["library_modules"] >= 1
    assert results["independent"]["transfer_vs_independent"] == 0.0
    assert results["pnn"]["params_total"] > results["independent"]["params_total"]  # adapters
    for name, figures in results.items():  # GEM's forward transfer: the shared trunk's only
        gem = runs["conditions"][name]["0"]["before_learning"]
        if name in ("finetune", "frozen_first"):
            assert gem[0] is None and len(gem) == 3 and figures["forward_transfer_gem"] is not None
        else:
            assert gem == [] and "forward_transfer_gem" not in figures, name
    assert set(ratios) == {"lifelong_minus_random_library_points", "params_pnn_over_lifelong"}
    lifelong = runs["conditions"]["lifelong"]["0"]
    assert lifelong["params_total"] == sorted(lifelong["params_total"])
    for name in ("lifelong", "random_library"):  # how the agent's procedure solved each task
        how = runs["conditions"][name]["0"]["how"]
        assert how[0] == {"phase": "grow", "new_modules": how[0]["new_modules"], "recalled": None}
        assert how[0]["new_modules"] > 0 and len(how) == 3
        assert how[2]["recalled"] in (None, "task-00", "task-01")  # recall saw the two stored tasks
    assert runs["conditions"]["independent"]["0"]["how"] == []
    mntdp = runs["conditions"]["mntdp"]["0"]["how"]  # MNTDP's path choice, per task
    assert mntdp[0] == {
        "source": None,
        "prior": {},
        "reused_layers": 0,
        "candidates_val_acc": mntdp[0]["candidates_val_acc"],
    }
    assert set(mntdp[2]["prior"]) == {"task-00", "task-01"} and mntdp[2]["source"] in mntdp[2]["prior"]
    assert runs["stream"]["judged_from"] == 1
    with pytest.raises(LifelongError, match="unknown condition"):
        bench_streams(
            stream, [0], ClassificationPlan(TINY, 0.9), conditions=("nope",), device=CPU, data_dir=mnist_slice
        )


class Deferred(Future):  # type: ignore[type-arg]
    """A job that runs only when its result is asked for."""

    def __init__(self, job: Callable[[], Any]) -> None:
        super().__init__()
        self.job = job

    def result(self, timeout: float | None = None) -> Any:
        return self.job()


class Recording(Executor):
    """A pool that notes when each control's job is handed over and when its result is taken."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, str]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:  # type: ignore[type-arg]
        name, seed = args[0], args[2].seed
        self.events.append(("submit", seed, name))

        def job() -> Any:
            self.events.append(("result", seed, name))
            return fn(*args, **kwargs)

        return Deferred(job)


def test_seeds_overlap_and_pnn_is_handed_over_first(tmp_path: Path, mnist_slice: Path) -> None:
    """Every seed's controls are handed to the workers before any result is waited for (the next
    seed's agent learns meanwhile), PNN, the costliest, first, then the random library (which
    follows the agent one task behind)."""
    stream = parse_stream("mnist:0v1@10pc mnist:2v3@10pc")
    pool = Recording()
    plan = ClassificationPlan(FEW_STEPS, 0.9)
    stage = Stage(lambda *a, **k: None, "test", 0)
    conditions = ("lifelong", "random_library", "independent", "finetune", "frozen_first", "pnn", "mntdp")
    started = [
        start_seed(
            stream, Context(plan, seed, CPU, mnist_slice, tmp_path / str(seed)), conditions, stage, pool
        )
        for seed in (0, 1)
    ]
    controls = ["pnn", "mntdp", "random_library", "independent", "finetune", "frozen_first"]
    assert pool.events == [("submit", seed, name) for seed in (0, 1) for name in controls]
    logs = [run.finish(stage) for run in started]
    assert [list(by_name) for by_name in logs] == [list(conditions)] * 2
    for by_name in logs:
        assert all(len(log.test_acc) == 2 and len(log.initial) == 2 for log in by_name.values())


def test_the_random_library_gives_up_when_the_agent_stops(tmp_path: Path) -> None:
    """In a worker, the random library waits for the agent's commit of each task; if the agent
    stopped, it ends with a one-line error instead of waiting for ever."""
    learned = Library.create(tmp_path / "lifelong")
    (tmp_path / AGENT_FAILED).touch()
    started = time.monotonic()
    with pytest.raises(LifelongError, match="the agent stopped before task-00"):
        run_condition(
            "random_library",
            parse_stream("mnist:0v1 mnist:2v3"),
            context(tmp_path),
            BLUEPRINT,
            data=[synthetic(0), synthetic(1)],
        )
    assert time.monotonic() - started < 30
    assert not learned.tasks()


@pytest.mark.parametrize(
    "args, message",
    [
        (["split-mnist", "--tasks", "mnist:0v1 mnist:2v3"], "not both"),
        (["--tasks", "mnist:0v1 mnist:2v3", "--conditions", "lifelong,bogus"], "unknown condition"),
        (["mnist:0v1 | mnist:0v1"], "comes twice"),
        (["--tasks", "mnist:0v1 atari:pong"], "not an image task"),
        (["split-mnist", "--set", "margin=0.1"], "KEY one of"),
        (["split-mnist", "--set", "growth_margin=lots"], "growth_margin takes a float"),
        (["split-mnist", "--set", "recall=maybe"], "recall takes a bool"),
        (["split-mnist", "--set", "recall_score=cosine"], "--recall-score must be ridge or knn"),
    ],
)
def test_bench_streams_cli_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    command = [
        str(Path(sys.executable).with_name("lifelong")),
        "bench",
        "streams",
        *args,
        "--results-dir",
        str(tmp_path),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert not list(tmp_path.glob("*.json"))


@pytest.mark.slow
def test_result_file_is_strict_json(tmp_path: Path, mnist_slice: Path) -> None:
    command = [
        str(Path(sys.executable).with_name("lifelong")),
        "--json",
        "bench",
        "streams",
        "--tasks",
        "mnist:0v1@10pc mnist:2v3@10pc",
        "--conditions",
        "lifelong,independent",
        "--quick",
        "--target",
        "0.6",
        "--data-dir",
        str(mnist_slice),
        "--results-dir",
        str(tmp_path),
        "--device",
        "cpu",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    saved = json.loads((tmp_path / "streams-custom-quick.json").read_text(), parse_constant=pytest.fail)
    assert saved["protocol"] == "streams" and saved["command"].startswith("lifelong")
    assert set(saved["results"]) == {"lifelong", "independent"}
    assert "transfer_vs_independent" in saved["results"]["lifelong"] and saved["ratios"] == {}


def _workers_of(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` and that run a multiprocessing spawn."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z" and b"spawn_main" in command:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_workers_end_when_the_benchmark_is_killed(data_dir: Path) -> None:
    tests = Path(__file__).parent
    script = f"""
import sys
import time
sys.path.insert(0, {str(tests)!r})
from pathlib import Path
from cli_helpers import TINY_BUDGET
import torch
from lifelong.bench.streams import bench_streams
from lifelong.plans import ClassificationPlan
from lifelong.streams import parse_stream
stream = parse_stream("mnist:0v1@20pc | mnist:2v3@10pc mnist:4v5@10pc mnist:6v7@10pc mnist:8v9@10pc")
plan = ClassificationPlan(TINY_BUDGET, 0.9)
cpu, data = torch.device("cpu"), Path({str(data_dir)!r})
bench_streams(stream, [0, 1, 2], plan, device=cpu, data_dir=data, workers=2, threads=1)
"""
    main = subprocess.Popen([sys.executable, "-c", script], cwd=tests.parent)
    deadline = time.monotonic() + 180
    while not (workers := _workers_of(main.pid)) and main.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert workers, "the benchmark started no worker process"
    main.kill()
    main.wait()
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers)


def _bench_file(out: Path, stream: str, seeds: list[int], data_dir: Path) -> Path:
    """A ``bench streams`` result file for ``seeds`` (agent and independent network), as the CLI
    writes it."""
    from lifelong import bench

    def body(progress: Callable[..., None]) -> Any:
        plan = ClassificationPlan(FEW_STEPS, 0.9)
        conditions = ("lifelong", "independent")
        return bench_streams(
            parse_stream(stream),
            seeds,
            plan,
            conditions=conditions,
            device=CPU,
            data_dir=data_dir,
            threads=1,
        )

    return bench.run("streams", body, seeds=seeds, device="cpu", out_dir=out, file_name="streams.json")[1]


def _merge(files: list[Path], out: Path) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("lifelong")), "bench", "merge", *map(str, files)]
    return subprocess.run([*command, "--results-dir", str(out)], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_results_run_apart_merge_into_the_result_of_one_run(tmp_path: Path, mnist_slice: Path) -> None:
    """Seeds 0 and 1 run apart, then merged, give the figures of one run with both seeds (seconds
    aside), and the merged file names where each seed came from."""
    stream = "mnist:0v1@10pc mnist:2v3@10pc"
    together = json.loads(_bench_file(tmp_path / "both", stream, [0, 1], mnist_slice).read_text())
    apart = [_bench_file(tmp_path / f"seed{seed}", stream, [seed], mnist_slice) for seed in (1, 0)]
    done = _merge(apart, tmp_path / "merged")
    assert done.returncode == 0, done.stderr
    merged = json.loads((tmp_path / "merged" / "streams.json").read_text())
    assert merged["seeds"] == [0, 1] and merged["command"].startswith("lifelong bench merge")
    assert [source["seeds"] for source in merged["sources"]] == [[1], [0]]
    for name, figures in together["results"].items():
        timeless = {key for key in figures if not key.startswith("seconds_per_task")}
        assert {key: merged["results"][name][key] for key in timeless} == {
            key: figures[key] for key in timeless
        }
        assert figures["judged_test_acc_sd"] > 0, name  # two seeds that differ: a mean of both
        assert list(merged["runs"]["conditions"][name]) == ["0", "1"]
    assert merged["ratios"] == together["ratios"] == {}  # no random library, no PNN
    assert merged["results"]["lifelong"]["transfer_vs_independent"] == pytest.approx(
        together["results"]["lifelong"]["transfer_vs_independent"]
    )
    # the same seed twice, other streams, fewer than two files, or the output over an input:
    # one line, exit 2, nothing written
    other = tmp_path / "other.json"
    edited = json.loads(apart[1].read_text())
    edited["runs"]["stream"]["tasks"][1] = "mnist:4v5@10pc"
    other.write_text(json.dumps({**edited, "seeds": [2]}))
    for files, message in [
        ([apart[0], apart[0]], "seed 1 is in both"),
        ([apart[0], other], "differ in stream"),
        ([apart[0]], "two or more"),
        ([tmp_path / "nowhere.json", apart[0]], "cannot read bench file"),
    ]:
        failed = _merge(files, tmp_path / "refused")
        assert failed.returncode == 2 and message in failed.stderr, failed.stderr
        assert len(failed.stderr.strip().splitlines()) == 1 and not (tmp_path / "refused").exists()
    failed = _merge(apart, apart[0].parent)
    assert failed.returncode == 2 and "is one of the files merged" in failed.stderr
    assert json.loads(apart[0].read_text())["seeds"] == [1]
