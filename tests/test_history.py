"""`lifelong metrics`: a library's own history (commit order, parameters, accuracy matrix), on a
small library learned from real MNIST."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from agents import module_parameters
from agents.classification.agent import load_task_network
from agents.classification.budget import PRESETS
from library_store import HistoryEntry, Library
from lifelong import classification
from lifelong.history import commit_order, learning_curve, library_history
from lifelong.plans import ClassificationPlan
from lifelong.runner import learn_specs
from lifelong.tasks import parse_spec

pytestmark = pytest.mark.slow  # learns on real MNIST end to end
REPO_ROOT = Path(__file__).resolve().parent.parent
TINY = PRESETS["quick"].override(
    so_steps=40,
    batch_size=32,
    eval_every=10,
    population=2,
    elite=1,
    generations=1,
    candidate_steps=20,
    final_steps=40,
    settle_steps=10,
    patience=2,
)
# Learned in this order on purpose: name order differs from commit order.
TASKS = ("mnist:2v3@200", "mnist:0v1@200")


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A library that learned TASKS in order, each in its own call (as a user would)."""
    return build_library(tmp_path_factory.mktemp("history") / "library", data_dir)


def build_library(path: Path, data_dir: Path) -> Path:
    """Learn TASKS in order into a new library at ``path`` (seconds, with the TINY budget)."""
    library = Library.create(path)
    plans = {"classification": ClassificationPlan(TINY, 0.9)}
    for spec in TASKS:
        learn_specs(
            library, [parse_spec(spec)], plans=plans, seed=0, device=torch.device("cpu"), data_dir=data_dir
        )
    return path


@pytest.fixture(scope="module")
def history(learned: Path, data_dir: Path) -> dict:
    return library_history(Library.open(learned), data_dir=data_dir)


def test_tasks_come_in_commit_order_with_a_lower_triangular_matrix_then_now(history: dict) -> None:
    """A row after each task (T rows, lower triangular), then the "now" row: (T+1) × T."""
    assert [row["name"] for row in history["tasks"]] == list(TASKS)
    matrix = history["matrix"]
    assert len(matrix) == 3 and all(len(row) == 2 for row in matrix)
    assert matrix[0][1] is None
    assert all(value is not None for i, row in enumerate(matrix) for value in row[: i + 1])
    for j, row in enumerate(history["tasks"]):
        assert [r[j] for r in matrix[j:-1]] == [row["test_acc_stored"]] * (2 - j)  # when learned
        assert matrix[-1][j] == row["test_acc_now"]


def test_an_untouched_library_has_zero_backward_transfer(history: dict) -> None:
    for row in history["tasks"]:
        assert row["test_acc_now"] == row["test_acc_stored"]  # re-evaluated, bit-identical
        assert row["evaluated"] is True
    assert history["summary"]["backward_transfer"] == 0
    assert history["summary"]["forgetting_chaudhry"] == history["summary"]["forgetting_avalanche"] == 0
    assert "forward_transfer_gem" not in history["summary"]  # no accuracy before learning a task
    assert history["summary"]["average_final_accuracy"] == pytest.approx(
        sum(row["test_acc_now"] for row in history["tasks"]) / 2
    )


def test_own_parameters_are_the_rebuilt_networks_alpha_beta_and_head(learned: Path, history: dict) -> None:
    library = Library.open(learned)
    for row in history["tasks"]:
        network = load_task_network(library, row["name"])
        expected = sum(p.numel() for p in network.scale_parameters())
        expected += sum(p.numel() for p in network.head.parameters())
        assert row["own_parameters"] == expected
        assert row["modules_used"] == sum(len(layer.members) for layer in network.layers)


def test_library_size_grows_with_the_modules_each_task_created(learned: Path, history: dict) -> None:
    library = Library.open(learned)
    first, second = history["tasks"]
    assert first["new_modules"] >= 1  # the first task grows from nothing
    assert second["library_parameters"] >= first["library_parameters"] > 0
    assert second["library_modules"] == first["library_modules"] + second["new_modules"]
    assert second["library_modules"] == len(library.modules())
    # every module: weights counted, BatchNorm's running statistics not
    total = 0
    for module in library.modules():
        tensors = library.module_tensors(module.id)
        buffers = sum(v.size for k, v in tensors.items() if k.split(".")[-1].startswith(("running", "num_")))
        assert module_parameters(module) == sum(v.size for v in tensors.values()) - buffers > 0
        total += module_parameters(module)
    assert second["library_parameters"] == total


def test_examples_to_target_is_where_the_curve_first_reaches_the_target(learned: Path, history: dict) -> None:
    library = Library.open(learned)
    for row in history["tasks"]:
        record = library.task(row["name"])
        examples, accuracies = learning_curve(record)
        assert examples == sorted(examples) and len(examples) == len(accuracies) > 0
        reached = [n for n, a in zip(examples, accuracies, strict=True) if a >= record.details["target"]]
        assert row["examples_to_target"] == (reached[0] if reached else None)
        if reached:
            assert row["examples_to_target"] % min(TINY.batch_size, record.metrics["train_examples"]) == 0
        assert row["seconds"] == record.timings["total"] > 0


def test_a_lower_accuracy_now_shows_up_as_negative_backward_transfer(
    learned: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As if the first task's stored accuracy were forged (or the task damaged): its measured
    accuracy is lower than the stored one (the last task's is intact: the mean over both tasks)."""
    real = classification.evaluate_task

    def worse(library: Library, name: str, **kwargs: object) -> dict:
        result = real(library, name, **kwargs)
        return {**result, "test_acc": result["test_acc"] - 0.2} if name == TASKS[0] else result

    monkeypatch.setattr(classification, "evaluate_task", worse)
    history = library_history(Library.open(learned), data_dir=data_dir)
    assert history["summary"]["backward_transfer"] == pytest.approx(-0.2 / 2)
    assert history["summary"]["forgetting_chaudhry"] == pytest.approx(0.2 / 2)
    assert history["matrix"][0][0] - history["matrix"][-1][0] == pytest.approx(0.2)


def test_without_evaluation_the_stored_accuracies_stand(
    learned: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> dict:
        raise AssertionError("evaluate=False must not evaluate")

    monkeypatch.setattr(classification, "evaluate_task", refuse)
    history = library_history(Library.open(learned), evaluate=False)
    assert history["matrix"][-1] == [row["test_acc_stored"] for row in history["tasks"]]
    assert history["summary"]["backward_transfer"] == 0


def forge_prune(library: Library, name: str, test_acc: float) -> float:
    """Task ``name`` recorded as `lifelong prune` records a re-fitted task (see
    agents.classification.pruning.apply_prune): its stored accuracies now ``test_acc``, the
    change with the accuracies before it in ``details["prunes"]``. Returns the accuracy before."""
    record = library.task(name)
    before = {"val_acc": record.metrics["val_acc"], "test_acc": record.metrics["test_acc"]}
    after = {"val_acc": test_acc, "test_acc": test_acc}
    change = {"task": name, "dropped": {}, "merged": {}, "before": before, "after": after, "accepted": True}
    pruned = replace(
        record,
        metrics={**record.metrics, **after},
        details={**record.details, "prunes": [*record.details.get("prunes", []), change]},
    )
    with library.transaction("prune (forged in a test)", kind="prune") as tx:
        tx.replace_task(pruned, library.task_arrays(name))
    return before["test_acc"]


def test_a_prune_that_cost_the_last_task_shows_as_forgetting(learned: Path, tmp_path: Path) -> None:
    """Issue 26: a prune dropped the last task's stored accuracy; its row "after" keeps the
    accuracy it had when learned, "now" the stored one, so the loss counts."""
    library = Library.open(shutil.copytree(learned, tmp_path / "library"))
    learned_acc = forge_prune(library, TASKS[-1], 0.5)
    assert learned_acc > 0.5
    history = library_history(library, evaluate=False)
    last = history["tasks"][-1]
    assert (last["test_acc_stored"], last["test_acc_now"]) == (learned_acc, 0.5)
    assert history["matrix"][1][1] == learned_acc and history["matrix"][-1][1] == 0.5
    summary = history["summary"]
    assert summary["backward_transfer"] < 0 < summary["forgetting_chaudhry"]
    assert summary["backward_transfer"] == pytest.approx((0.5 - learned_acc) / 2)  # mean over both tasks
    assert summary["forgetting_chaudhry"] == pytest.approx((learned_acc - 0.5) / 2)
    assert summary["forgetting_avalanche"] == pytest.approx((learned_acc - 0.5) / 2)  # no rise between


def entry(kind: str, message: str, state: str) -> HistoryEntry:
    return HistoryEntry(id=state, time="", kind=kind, message=message, state=state)


def test_commit_order_follows_restores() -> None:
    """learn a, b; restore to the state after a; learn c; restore back to a, b (newest first)."""
    log = [
        entry("restore", "restored snapshot 'before-restore-1'", "s2"),
        entry("learn", "learn c (grow)", "s3"),
        entry("restore", "restored snapshot 'one'", "s1"),
        entry("snapshot", "snapshot 'one' created", "s1"),
        entry("learn", "learn b (self_organize)", "s2"),
        entry("learn", "learn a (b) (grow)", "s1"),
        entry("init", "library created", "s0"),
    ]
    assert commit_order(log, "s2", ["b", "a (b)"]) == ["a (b)", "b"]
    assert commit_order(log, "s3", ["c", "a (b)"]) == ["a (b)", "c"]
    assert commit_order(log, "s2", ["b", "a (b)", "zz"]) == ["a (b)", "b", "zz"]  # untold: last


def test_a_grown_task_counts_its_candidates_examples(learned: Path) -> None:
    library = Library.open(learned)
    grown = [r for r in library.tasks() if r.metrics["phase"] == "grow"]
    assert grown  # the first task meets an empty library
    for record in grown:
        examples, _ = learning_curve(record)
        batch = min(TINY.batch_size, record.metrics["train_examples"])
        first_grow = len(record.curves.get("self_organize_step", []))
        candidates = record.details["evaluations"] * TINY.candidate_steps * batch
        assert examples[first_grow] >= candidates > 0
