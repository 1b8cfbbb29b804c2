"""The classification agent's promises, on small slices of real MNIST.

Zero forgetting (bit-identical logits), frozen library modules, per-task α/β, and growth only
when self-organization misses the target.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import write_mnist_slice

from agents.classification import training
from agents.classification.agent import load_task_network
from agents.classification.budget import PRESETS
from agents.classification.training import predict_logits
from library_store import Library, TaskRecord
from lifelong.plans import ClassificationPlan
from lifelong.runner import learn_specs
from lifelong.tasks import parse_spec

pytestmark = pytest.mark.slow  # learns on real MNIST end to end
TINY = PRESETS["quick"].override(
    so_steps=60,
    batch_size=32,
    eval_every=20,
    population=2,
    elite=1,
    generations=1,
    candidate_steps=40,
    final_steps=60,
    settle_steps=20,
    patience=2,
)


def learn(
    library: Library, specs: list[str], *, target: float, seed: int, data_dir: Path
) -> list[TaskRecord]:
    """Learn ``specs`` in order through the driver with the TINY budget."""
    plans = {"classification": ClassificationPlan(TINY, target)}
    parsed = [parse_spec(text) for text in specs]
    return learn_specs(library, parsed, plans=plans, seed=seed, device=torch.device("cpu"), data_dir=data_dir)


def probe_logits(library: Library, name: str) -> np.ndarray:
    network = load_task_network(library, name)
    inputs = torch.from_numpy(library.task_arrays(name).probe["inputs"])
    return predict_logits(network, inputs, torch.device("cpu")).numpy()


@pytest.fixture(scope="module")
def mnist(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A slice of real MNIST (see :func:`write_mnist_slice`): validation and test sets a tenth of
    full MNIST's, so evaluating them costs a tenth."""
    return write_mnist_slice(tmp_path_factory.mktemp("mnist"), data_dir)


@pytest.fixture(scope="module")
def three_tasks(tmp_path_factory: pytest.TempPathFactory, mnist: Path) -> tuple[Path, dict]:
    """A library that learned 1v3 (grown from nothing), then 1v2 and 3v4 on top of it."""
    path = tmp_path_factory.mktemp("three") / "library"
    library = Library.create(path)
    first = learn(library, ["mnist:1v3@400"], target=0.9, seed=1, data_dir=mnist)
    snapshot = {
        "after_first": probe_logits(library, "mnist:1v3@400"),
        "modules": {m.id: library.module_tensors(m.id) for m in library.modules()},
        "first": first[0],
    }
    library.snapshot("after-first")
    learn(library, ["mnist:1v2@400", "mnist:3v4@400"], target=0.9, seed=2, data_dir=mnist)
    return path, snapshot


def test_first_task_grows_from_one_conv_module(three_tasks: tuple[Path, dict]) -> None:
    _, snapshot = three_tasks
    first = snapshot["first"]
    assert first.metrics["phase"] == "grow"
    assert first.metrics["new_modules"] >= 1
    assert first.layers[0] and all(m.startswith("conv-") for m in first.layers[0])
    assert first.metrics["test_acc"] > 0.9  # 1 vs 3 is easy even on 400 examples


def test_zero_forgetting_after_more_tasks(three_tasks: tuple[Path, dict]) -> None:
    path, snapshot = three_tasks
    library = Library.open(path)
    after = probe_logits(library, "mnist:1v3@400")
    assert np.array_equal(after, snapshot["after_first"])  # bit-identical
    assert np.array_equal(after, library.task_arrays("mnist:1v3@400").probe["logits"])


def test_logits_do_not_depend_on_the_evaluation_batch(
    three_tasks: tuple[Path, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Evaluation runs in batches of EVAL_BATCH images; a grown network's logits are the same
    bits whatever that size (so changing it for speed changes no result)."""
    library = Library.open(three_tasks[0])
    network = load_task_network(library, "mnist:1v3@400")
    images = torch.randint(
        0, 256, (300, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    logits = predict_logits(network, images, torch.device("cpu"))
    monkeypatch.setattr(training, "EVAL_BATCH", 7)
    assert torch.equal(predict_logits(network, images, torch.device("cpu")), logits)


def test_library_modules_stay_frozen(three_tasks: tuple[Path, dict]) -> None:
    path, snapshot = three_tasks
    library = Library.open(path)
    for module_id, tensors in snapshot["modules"].items():
        now = library.module_tensors(module_id)
        assert now.keys() == tensors.keys()
        assert all(np.array_equal(now[k], tensors[k]) for k in tensors)
        assert library.module(module_id).frozen
    assert library.check() == []


def test_alpha_beta_are_stored_per_task(three_tasks: tuple[Path, dict]) -> None:
    library = Library.open(three_tasks[0])
    shared = set(library.task("mnist:1v3@400").module_ids) & set(library.task("mnist:1v2@400").module_ids)
    assert shared, "the second task reuses the first task's modules"
    module_id = sorted(shared)[0]

    def alpha(task: str) -> float:
        record = library.task(task)
        for layer, ids in enumerate(record.layers):
            if module_id in ids:
                return float(library.task_arrays(task).uses[layer][ids.index(module_id)]["alpha"])
        raise AssertionError

    assert alpha("mnist:1v3@400") != alpha("mnist:1v2@400")


def test_zero_forgetting_across_restore_and_new_process(three_tasks: tuple[Path, dict], mnist: Path) -> None:
    path, snapshot = three_tasks
    library = Library.open(path)
    backup = library.restore("after-first")
    assert [t.name for t in library.tasks()] == ["mnist:1v3@400"]
    assert np.array_equal(probe_logits(library, "mnist:1v3@400"), snapshot["after_first"])
    library.restore(backup)
    assert len(library.tasks()) == 3
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "lifelong"),
            "--library",
            str(path),
            "--json",
            "eval",
            "mnist:1v3@400",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "LIFELONG_DATA": str(mnist)},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["probe_logits_identical"] is True
    assert report["test_acc_matches"] is True


@pytest.fixture(scope="module")
def zero_one(tmp_path_factory: pytest.TempPathFactory, mnist: Path) -> Path:
    """A library that learned mnist:0v1@300 (target 0.9, seed 0), where the next two tests start
    (each on its own copy)."""
    path = tmp_path_factory.mktemp("zero-one") / "library"
    learn(Library.create(path), ["mnist:0v1@300"], target=0.9, seed=0, data_dir=mnist)
    return path


def copy_of(library: Path, tmp_path: Path) -> Library:
    return Library.open(shutil.copytree(library, tmp_path / "library"))


def test_self_organization_adds_no_modules_when_it_suffices(
    tmp_path: Path, zero_one: Path, mnist: Path
) -> None:
    library = copy_of(zero_one, tmp_path)
    before = {m.id for m in library.modules()}
    record = learn(library, ["mnist:1v7@300"], target=0.6, seed=0, data_dir=mnist)[0]
    library.refresh()
    assert record.metrics["phase"] == "self_organize"
    assert record.metrics["new_modules"] == 0
    assert {m.id for m in library.modules()} == before


def test_growth_adds_modules_when_self_organization_falls_short(
    tmp_path: Path, zero_one: Path, mnist: Path
) -> None:
    library = copy_of(zero_one, tmp_path)
    before = {m.id for m in library.modules()}
    # an unreachable target: self-organization cannot meet it, so the agent must grow
    record = learn(library, ["mnist:4v9@300"], target=1.0, seed=0, data_dir=mnist)[0]
    library.refresh()
    after = {m.id for m in library.modules()}
    assert record.metrics["phase"] == "grow"
    assert record.metrics["new_modules"] == len(after - before) >= 1
    assert all(library.module(m).created_by == "mnist:4v9@300" for m in after - before)
    assert record.curves["self_organize_val_acc"]  # it did try self-organization first
