"""The classification CLI through the real console script: learn, tasks, eval, predict, export,
and every way a user can get a learn wrong.

Each error must be one line on stderr, exit code 2, no traceback, and leave the library
byte-for-byte as it was. Budgets are tiny (a few dozen steps) so the whole file runs in about
a minute on two CPU cores; the positive tests use small synthetic data sets (npz and an
ImageFolder of PNGs) so they do not depend on how well MNIST can be learned in 40 steps.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import TINY, assert_one_line_error, fingerprint, noisy_halves, run_cli
from PIL import Image

from library_store import Library

REPO_ROOT = Path(__file__).resolve().parent.parent
NPZ_TASK, FOLDER_TASK = "synthetic-npz", "synthetic-folder"
# the folder task's approach flags, the opposite of the presets'
NOT_DEFAULT = ("--recall-score", "ridge", "--no-prefix-reuse")
pytestmark = pytest.mark.slow  # learns tasks end to end through the console script


# ---------------------------------------------------------------------------- helpers
def run(library: Path, data_dir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, library=library, data_dir=data_dir, timeout=timeout)


def run_many(
    library: Path, data_dir: Path, commands: list[tuple[str, ...]]
) -> list[subprocess.CompletedProcess[str]]:
    """Run commands two at a time: most of a short run is importing torch, and CI has two cores."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda args: run(library, data_dir, *args), commands))


def write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image, mode="RGB").save(path)


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 28×28 grayscale npz (labels 3 and 7, 200 train / 50 test) and an ImageFolder of 40×40 RGB
    PNGs (classes ``left`` and ``right``), plus a spare PNG of each class for ``predict``."""
    root = tmp_path_factory.mktemp("synthetic")
    rng = np.random.default_rng(7)
    arrays = {}
    for split, n in (("train", 200), ("test", 50)):
        x, y = noisy_halves(rng, n, 28, 1)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x[..., 0], np.where(y == 0, 3, 7).astype(np.int32)
    np.savez(root / "halves.npz", **arrays)

    folder = root / "folder"
    images, labels = noisy_halves(rng, 20, 40, 3)  # 16 to learn from, so 1 validation (= probe) example
    images[..., 1:] //= 2  # a red tint, so grayscale conversion has something to do
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        write_png(folder / ("left", "right")[label] / f"{i:03d}.png", image)
    spare, spare_labels = noisy_halves(rng, 2, 40, 3)
    for image, label in zip(spare, spare_labels, strict=True):
        write_png(root / f"spare-{('left', 'right')[label]}.png", image)
    return {"npz": root / "halves.npz", "folder": folder, "root": root}


@pytest.fixture(scope="module")
def learned(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path, synthetic: dict[str, Path]
) -> dict[str, object]:
    """A library that learned the npz task (grown from nothing), then the ImageFolder task on top."""
    library = tmp_path_factory.mktemp("learned") / "library"
    assert run(library, data_dir, "init").returncode == 0
    npz = run(library, data_dir, "--json", "learn", f"npz:{synthetic['npz']}", "--name", NPZ_TASK, *TINY)
    folder = run(
        library,
        data_dir,
        "--json",
        "learn",
        f"imagefolder:{synthetic['folder']}",
        "--name",
        FOLDER_TASK,
        *TINY,
        *NOT_DEFAULT,
    )
    return {"library": library, "npz": npz, "folder": folder}


@pytest.fixture(scope="module")
def reads(
    learned: dict[str, object],
    data_dir: Path,
    synthetic: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, object]:
    """The read-only commands on the learned library, run two at a time, and its fingerprint
    before and after them (they must not change it)."""
    library, exported = learned["library"], tmp_path_factory.mktemp("exported")
    spares = [str(path) for path in sorted(synthetic["root"].glob("spare-*.png"))]
    commands = {
        "tasks": ("tasks",),
        "predict": ("predict", FOLDER_TASK, *spares),
        **{f"eval {task}": ("eval", task) for task in (NPZ_TASK, FOLDER_TASK)},
        **{
            f"export {task}": ("export", task, str(exported / f"{task}.pt2"))
            for task in (NPZ_TASK, FOLDER_TASK)
        },
    }
    before = fingerprint(library)
    results = run_many(library, data_dir, [("--json", *args) for args in commands.values()])
    return {
        **dict(zip(commands, results, strict=True)),
        "spares": spares,
        "before": before,
        "after": fingerprint(library),
    }


@pytest.fixture
def library(learned: dict[str, object], tmp_path: Path) -> Path:
    """A private copy of the learned library, for one test."""
    copy = tmp_path / "library"
    shutil.copytree(learned["library"], copy)
    return copy


# ---------------------------------------------------------------------------- learning
def test_learn_npz_then_tasks_lists_it(learned: dict[str, object], reads: dict[str, object]) -> None:
    result = learned["npz"]
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["task"] for row in rows] == [NPZ_TASK]
    assert rows[0]["phase"] == "grow" and rows[0]["new_modules"] >= 1  # an empty library must grow
    assert 0 <= rows[0]["test_acc"] <= 1

    assert reads["tasks"].returncode == 0, reads["tasks"].stderr
    listed = {task["name"]: task for task in json.loads(reads["tasks"].stdout)}
    assert listed[NPZ_TASK]["family"] == "classification"
    assert listed[NPZ_TASK]["spec"].startswith("npz:")
    record = Library.open(learned["library"]).task(NPZ_TASK)
    assert record.details["class_names"] == ["3", "7"]  # the npz's own labels, in order
    assert record.details["input_shape"] == [1, 28, 28]
    assert record.metrics["test_examples"] == 50
    assert record.metrics["train_examples"] + 20 == 200  # 10 % of the training pool is validation


def test_learn_imagefolder_resizes_and_predicts(learned: dict[str, object], reads: dict[str, object]) -> None:
    result = learned["folder"]
    assert result.returncode == 0, result.stderr
    assert [row["task"] for row in json.loads(result.stdout)] == [FOLDER_TASK]
    listed = {task["name"]: task for task in json.loads(reads["tasks"].stdout)}
    assert listed[FOLDER_TASK]["family"] == "classification"
    library = Library.open(learned["library"])
    record = library.task(FOLDER_TASK)
    assert record.details["class_names"] == ["left", "right"]
    assert record.details["input_shape"] == [1, 28, 28]  # 40×40 RGB → the library's 1×28×28
    assert record.metrics["test_examples"] == 4  # one folder: split 80/20
    assert len(library.task_arrays(FOLDER_TASK).probe["labels"]) == 1
    budget = record.details["budget"]  # the approach flags reach the agent and are recorded
    assert budget["recall_score"] == NOT_DEFAULT[1]
    assert budget["prefix_reuse"] is (NOT_DEFAULT[2] == "--prefix-reuse")

    predicted = reads["predict"]
    assert predicted.returncode == 0, predicted.stderr
    rows = json.loads(predicted.stdout)
    assert [row["file"] for row in rows] == reads["spares"]
    for row in rows:
        assert row["class"] in ("left", "right")
        assert row["class"] == ("left", "right")[row["label"]]
        assert 0.5 <= row["probability"] <= 1


def test_reading_commands_change_nothing(reads: dict[str, object]) -> None:
    assert reads["after"] == reads["before"]


@pytest.mark.parametrize("task", [NPZ_TASK, FOLDER_TASK])
def test_eval_right_after_learning_reproduces_the_commit(reads: dict[str, object], task: str) -> None:
    result = reads[f"eval {task}"]
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["probe_logits_identical"] is True
    assert report["probe_max_abs_diff"] == 0.0
    assert report["test_acc_matches"] is True
    assert report["test_acc"] == report["stored_test_acc"]


@pytest.mark.parametrize(("task", "classes"), [(NPZ_TASK, ["3", "7"]), (FOLDER_TASK, ["left", "right"])])
def test_export_reproduces_the_probe_logits(
    learned: dict[str, object], reads: dict[str, object], task: str, classes: list[str]
) -> None:
    """The folder task's probe holds a single example: the export must still take any batch size."""
    result = reads[f"export {task}"]
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    out = Path(info["file"])
    assert info["classes"] == classes and out.name == f"{task}.pt2" and out.is_file()

    probe = Library.open(learned["library"]).task_arrays(task).probe
    inputs = torch.from_numpy(probe["inputs"]).float() / 255
    network = torch.export.load(str(out)).module()
    with torch.no_grad():
        np.testing.assert_allclose(network(inputs).numpy(), probe["logits"], rtol=0, atol=1e-6)
        # other batch sizes (a batch is not split the same way) agree to float rounding
        np.testing.assert_allclose(network(inputs[:1]).numpy(), probe["logits"][:1], rtol=1e-5, atol=1e-5)
        tripled = network(inputs.repeat(3, 1, 1, 1)).numpy()
        np.testing.assert_allclose(tripled, np.tile(probe["logits"], (3, 1)), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- errors
# Each error case is its own CLI run; a test runs its cases two at a time (most of a failing run
# is importing torch), then checks each one and that the library is byte-for-byte unchanged.
Case = tuple[tuple[str, ...], tuple[str, ...]]  # (CLI arguments after --json, needles of the message)


def assert_errors_change_nothing(library: Path, data_dir: Path, cases: list[Case]) -> None:
    before = fingerprint(library)
    results = run_many(library, data_dir, [("--json", *args) for args, _ in cases])
    for (args, needles), result in zip(cases, results, strict=True):
        try:
            assert_one_line_error(result, *needles)
        except AssertionError as failure:
            raise AssertionError(f"lifelong {' '.join(args)}: {failure}") from None
    assert fingerprint(library) == before


def test_bad_specs(library: Path, data_dir: Path) -> None:
    specs = [
        ("foo:1v2", "unknown dataset 'foo'"),
        ("mnist:3v11", "class 11 does not exist"),
        ("mnist:3v3", "class 3 is listed twice"),
        ("mnist:1v2@0", "'@0' must be a positive number"),
        ("imagefolder:/nope", "/nope does not exist"),
    ]
    assert_errors_change_nothing(
        library, data_dir, [(("learn", spec, *TINY), (spec, needle)) for spec, needle in specs]
    )


def test_empty_image_folders(library: Path, data_dir: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()  # no class folders at all
    hollow = tmp_path / "hollow"
    for name in ("a", "b"):
        (hollow / name).mkdir(parents=True)  # class folders, but no images in them
    (hollow / "a" / "notes.txt").write_text("not an image")
    scarce = tmp_path / "scarce"  # one image per class: one is test, one validation, none to learn from
    for name in ("a", "b"):
        write_png(scarce / name / "0.png", np.zeros((40, 40, 3), np.uint8))
    assert_errors_change_nothing(
        library,
        data_dir,
        [
            (("learn", f"imagefolder:{bare}", *TINY), (str(bare), "class folder")),
            (("learn", f"imagefolder:{hollow}", *TINY), (str(hollow), "no valid file")),
            (("learn", f"imagefolder:{scarce}", *TINY), ("too few",)),
        ],
    )


def test_malformed_npz(library: Path, data_dir: Path, tmp_path: Path) -> None:
    x, y = np.zeros((30, 28, 28), np.uint8), np.arange(30) % 2
    variants = {
        "flat": (
            dict(x_train=np.zeros((30, 5), np.uint8), y_train=y, x_test=x, y_test=y),
            "x_train has shape",
        ),
        "short-y": (dict(x_train=x, y_train=y[:20], x_test=x, y_test=y), "y_train has shape (20,)"),
        "missing": (dict(x_train=x, y_train=y), "lacks arrays x_test, y_test"),
    }
    cases: list[Case] = []
    for name, (arrays, needle) in variants.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
        cases.append((("learn", f"npz:{tmp_path / f'{name}.npz'}", *TINY), (needle,)))
    assert_errors_change_nothing(library, data_dir, cases)


def test_bad_learn_options(library: Path, data_dir: Path) -> None:
    options = [
        (("--population", "2", "--elite", "2"), ("--elite (2) must be smaller than --population (2)",)),
        (("--settle-steps", "-1"), ("--settle-steps must be at least 0",)),
        (("--fitness", "bogus"), ("unknown --fitness 'bogus'", "acc+slope")),
        (("--recall-score", "cosine"), ("--recall-score must be ridge or knn, not 'cosine'",)),
    ]
    if not torch.cuda.is_available():
        options.append((("--device", "cuda"), ("no CUDA device",)))
    cases = [(("learn", "mnist:1v2@300", *TINY, *extra), needles) for extra, needles in options]
    assert_errors_change_nothing(library, data_dir, cases)


def test_learning_a_task_name_twice(library: Path, data_dir: Path, synthetic: dict[str, Path]) -> None:
    again = ("learn", f"npz:{synthetic['npz']}", "--name", NPZ_TASK, *TINY)
    assert_errors_change_nothing(library, data_dir, [(again, (f"task {NPZ_TASK!r} already exists",))])


def test_unknown_task_and_unreadable_images(library: Path, data_dir: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("this is not an image\n")
    assert_errors_change_nothing(
        library,
        data_dir,
        [
            (("eval", "nope"), ("no task 'nope'", NPZ_TASK)),
            (("predict", FOLDER_TASK, str(text)), (str(text), "not an image")),
        ],
    )


def test_diverged_training_is_a_clear_error(library: Path, data_dir: Path) -> None:
    """Human mode, progress bars on stderr: still exactly one ``error:`` line, last, and no commit."""
    before = fingerprint(library)
    result = run(library, data_dir, "learn", "mnist:1v2@300", *TINY, "--lr", "1e12")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "training diverged" in errors[0], result.stderr
    assert result.stderr.strip().splitlines()[-1] == errors[0]
    assert fingerprint(library) == before
