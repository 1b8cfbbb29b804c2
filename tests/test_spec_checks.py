"""Task specs, task names and task data are checked before any work, each failure one line.

Unit tests call ``parse_spec``, ``check_names``, ``check_source`` and ``load_task_data``
directly; the CLI tests run the real console script and check that a refused ``learn`` leaves the
library byte-for-byte as it was, also when the bad spec comes after a good one.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from cli_helpers import TINY, noisy_halves, run_cli
from test_classification_cli import assert_errors_change_nothing, write_png

import lifelong.data
from agents.atari.games import Game, resolve_game
from library_store import NAME_MAX, Library
from lifelong import task_data
from lifelong.errors import TaskDataError, TaskSpecError
from lifelong.task_data import check_source, load_task_data
from lifelong.tasks import check_names, parse_spec

REPO_ROOT = Path(__file__).resolve().parent.parent
RNG = np.random.default_rng(11)
X = RNG.integers(0, 256, (30, 28, 28), dtype=np.uint8)
Y = np.arange(30) % 2
UNIT = RNG.random((30, 28, 28)).astype(np.float32)  # floats in [0, 1)


def save_npz(path: Path, **arrays: np.ndarray) -> Path:
    """An npz of the given arrays, the others filled in with a valid uint8 data set."""
    np.savez(path, **{"x_train": X, "y_train": Y, "x_test": X, "y_test": Y, **arrays})
    return path


def refusal(error: pytest.ExceptionInfo[Exception], *needles: str) -> str:
    """The error's message, checked to be one line naming every needle."""
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message, message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


def with_nan(count: int) -> np.ndarray:
    x = UNIT.copy()
    x.reshape(-1)[:count] = np.nan
    return x


# ---------------------------------------------------------------------------- npz data
BAD_NPZ = {
    "nan in train": (dict(x_train=with_nan(3), x_test=UNIT), ("x_train holds 3 NaN/inf values",)),
    "inf in test": (
        dict(x_train=UNIT, x_test=np.where(UNIT > 0.5, np.inf, UNIT)),
        (f"x_test holds {int((UNIT > 0.5).sum())} NaN/inf values",),
    ),
    "empty train": (
        dict(x_train=np.zeros((0, 28, 28), np.float32), y_train=Y[:0]),
        ("x_train holds no examples",),
    ),
    "empty test": (dict(x_test=X[:0], y_test=Y[:0]), ("x_test holds no examples",)),
    "no pixels": (dict(x_train=np.zeros((30, 0, 28), np.uint8)), ("x_train images are 0x28 pixels",)),
    "0-d images": (dict(x_train=np.float32(3)), ("x_train has shape ()",)),
    "0-d labels": (dict(y_test=np.int64(1)), ("y_test has shape (); expected (30,) labels",)),
    "object images": (dict(x_train=np.array([None] * 30, dtype=object)), ("x_train cannot be read",)),
    "text images": (dict(x_test=np.array(["a"] * 30)), ("x_test holds text",)),
    "boolean images": (dict(x_train=X > 127), ("x_train holds booleans",)),
    "images above 255": (dict(x_train=X.astype(np.int32) + 1), ("x_train holds values from 1 to 256",)),
    "negative floats": (dict(x_train=UNIT - 0.5, x_test=UNIT), ("x_train holds values from -0.4",)),
    "float scales mixed": (dict(x_train=UNIT, x_test=UNIT * 255), ("x_train holds floats within [0, 1]",)),
    "float and integer": (
        dict(x_test=UNIT),
        ("x_test holds floats within [0, 1] but x_train holds integers",),
    ),
    "half labels": (
        dict(y_train=Y + 0.5),
        ("y_train holds 30 labels that are not whole numbers (e.g. 0.5)",),
    ),
    "NaN labels": (
        dict(y_test=np.where(Y == 0, np.nan, 1.0)),
        ("y_test holds 15 labels that are not whole",),
    ),
    "text labels": (dict(y_train=Y.astype(str)), ("y_train holds text; labels must be integers",)),
    "unknown test label": (dict(y_test=Y + 1), ("y_test has labels [2] never seen in y_train",)),
    "one class": (dict(y_train=Y * 0, y_test=Y * 0), ("needs at least 2 classes, found 1",)),
}


@pytest.mark.parametrize("case", BAD_NPZ)
def test_bad_npz_is_one_line_from_check_source_and_from_loading(tmp_path: Path, case: str) -> None:
    arrays, needles = BAD_NPZ[case]
    spec = parse_spec(f"npz:{save_npz(tmp_path / 'bad.npz', **arrays)}")
    with pytest.raises(TaskDataError) as checked:
        check_source(spec, None)
    with pytest.raises(TaskDataError) as loaded:
        load_task_data(spec)
    assert refusal(checked, *needles) == refusal(loaded)


def test_files_that_are_not_npz_archives(tmp_path: Path) -> None:
    (tmp_path / "text.npz").write_text("not numpy")
    np.save(tmp_path / "single.npy", X)
    (tmp_path / "folder.npz").mkdir()
    save_npz(tmp_path / "whole.npz")
    (tmp_path / "cut.npz").write_bytes((tmp_path / "whole.npz").read_bytes()[:2000])
    np.savez(tmp_path / "partial.npz", x_train=X, y_train=Y)
    cases = {
        "text.npz": "is not an .npz archive",
        "cut.npz": "is not an .npz archive",
        "single.npy": "holds a single array",
        "folder.npz": "cannot read",
        "partial.npz": "lacks arrays x_test, y_test",
    }
    for name, needle in cases.items():
        with pytest.raises(TaskDataError) as error:
            check_source(parse_spec(f"npz:{tmp_path / name}"), None)
        refusal(error, str(tmp_path / name), needle)


def test_float_and_uint8_images_give_the_same_training_inputs(tmp_path: Path) -> None:
    """The pixel scale is one rule for the data set: floats in [0, 1] are the uint8 images / 255,
    floats on 0..255 are the uint8 images, whatever dtype holds them."""
    x_train, y_train = noisy_halves(RNG, 60, 28, 1)
    x_test, y_test = noisy_halves(RNG, 20, 28, 1)
    as_uint8 = dict(x_train=x_train[..., 0], x_test=x_test[..., 0], y_train=y_train, y_test=y_test)
    reference = load_task_data(parse_spec(f"npz:{save_npz(tmp_path / 'uint8.npz', **as_uint8)}"), seed=4)
    variants = {
        "unit32": lambda x: (x / 255).astype(np.float32),
        "unit64": lambda x: x / 255,
        "unit16": lambda x: (x / 255).astype(np.float16),
        "byte-floats": lambda x: x.astype(np.float32),
        "int64": lambda x: x.astype(np.int64),
    }
    for name, convert in variants.items():
        arrays = {**as_uint8, "x_train": convert(as_uint8["x_train"]), "x_test": convert(as_uint8["x_test"])}
        data = load_task_data(parse_spec(f"npz:{save_npz(tmp_path / f'{name}.npz', **arrays)}"), seed=4)
        for field in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
            assert torch.equal(getattr(data, field), getattr(reference, field)), (name, field)


def test_a_dark_float_split_still_counts_as_unit_scale(tmp_path: Path) -> None:
    """Before, the scale was chosen per split with ``max()``: a split whose floats all lay in
    [0, 1] beside one with a NaN gave a test set 255 times too bright and exit 0."""
    path = save_npz(tmp_path / "dim.npz", x_train=UNIT, x_test=UNIT * 0.1)
    data = load_task_data(parse_spec(f"npz:{path}"))
    assert int(data.test_x.max()) <= 26 and int(data.train_x.max()) >= 250


@pytest.mark.parametrize(
    ("labels", "names"),
    [
        (Y - 1, ["-1", "0"]),  # any integers
        (Y.astype(np.float64) * 7, ["0", "7"]),  # floats holding whole numbers
        (Y.astype(bool), ["0", "1"]),
    ],
)
def test_labels_of_any_whole_numbers_are_accepted(
    tmp_path: Path, labels: np.ndarray, names: list[str]
) -> None:
    spec = parse_spec(f"npz:{save_npz(tmp_path / 'labels.npz', y_train=labels, y_test=labels)}")
    check_source(spec, None)
    data = load_task_data(spec)
    assert data.class_names == names
    assert sorted(set(data.train_y.tolist()) | set(data.val_y.tolist())) == [0, 1]


def test_check_source_refuses_more_examples_than_the_npz_has(tmp_path: Path) -> None:
    path = save_npz(tmp_path / "small.npz")  # 30 examples: 3 go to validation
    check_source(parse_spec(f"npz:{path}@27"), None)
    with pytest.raises(TaskDataError) as error:
        check_source(parse_spec(f"npz:{path}@28"), None)
    refusal(error, "asks for 28 examples, only 27 available")


# ---------------------------------------------------------------------------- image folders
def folder_of(root: Path, counts: dict[str, int]) -> Path:
    for name, count in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            write_png(root / name / f"{i}.png", RNG.integers(0, 256, (12, 12, 3), dtype=np.uint8))
    return root


def test_check_source_accepts_good_image_folders(tmp_path: Path) -> None:
    check_source(parse_spec(f"imagefolder:{folder_of(tmp_path / 'one', {'a': 5, 'b': 5})}@7"), None)
    split = tmp_path / "split"
    folder_of(split / "train", {"a": 3, "b": 3})
    folder_of(split / "test", {"a": 1, "b": 1})
    check_source(parse_spec(f"imagefolder:{split}"), None)


def test_check_source_refuses_bad_image_folders(tmp_path: Path) -> None:
    (tmp_path / "bare").mkdir()
    hollow = folder_of(tmp_path / "hollow", {"a": 0, "b": 0})
    (hollow / "a" / "notes.txt").write_text("not an image")
    broken = folder_of(tmp_path / "broken", {"a": 3, "b": 3})
    (broken / "b" / "9.png").write_text("not a png")
    split = tmp_path / "split"
    folder_of(split / "train", {"a": 3, "b": 3})
    folder_of(split / "test", {"a": 1, "c": 1})
    cases = {
        "imagefolder:{}/bare": ("class folder",),
        "imagefolder:{}/hollow": ("no valid file for the classes a, b",),
        "imagefolder:{}/broken": (f"{broken / 'b' / '9.png'} is not an image that can be read",),
        "imagefolder:{}/split": ("train/ and test/ have different class folders",),
        "imagefolder:{}/lonely": ("needs at least 2 classes, found 1",),
        "imagefolder:{}/scarce": ("1 training example(s) is too few",),
        "imagefolder:{}/few@9": ("asks for 9 examples, only 7 available",),
    }
    folder_of(tmp_path / "lonely", {"a": 5})
    folder_of(tmp_path / "scarce", {"a": 1, "b": 1})
    folder_of(tmp_path / "few", {"a": 5, "b": 5})  # 8 to learn from, 1 of them validation
    for text, needles in cases.items():
        with pytest.raises(TaskDataError) as error:
            check_source(parse_spec(text.format(tmp_path)), None)
        refusal(error, *needles)


# ---------------------------------------------------------------------------- MNIST, Atari
def test_check_source_on_mnist_counts_what_exists(data_dir: Path) -> None:
    check_source(parse_spec("mnist:3v8@10982"), data_dir)  # 11,982 threes and eights, 1,000 to validate
    with pytest.raises(TaskDataError) as error:
        check_source(parse_spec("mnist:3v8@10983"), data_dir)
    refusal(error, "'mnist:3v8@10983': asks for 10983 examples, only 10982 available")


def test_check_source_leaves_atari_to_parse_spec() -> None:
    spec = parse_spec("atari: Space Invaders ")
    assert spec.text == "atari: Space Invaders" and spec.game == resolve_game("SpaceInvaders")
    assert isinstance(spec.game, Game) and spec.game.rom == "space_invaders"  # what the library stores
    check_source(spec, None)


# ---------------------------------------------------------------------------- sources read once
def spy(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[tuple[object, ...]]:
    """The calls of ``owner.name`` from now on (the real function still answers them)."""
    calls: list[tuple[object, ...]] = []
    real = getattr(owner, name)

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def test_an_npz_is_decoded_once_however_often_it_is_checked_and_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_npz(tmp_path / "once.npz")
    spec = parse_spec(f"npz:{path}")
    reads = spy(monkeypatch, np, "load")
    check_source(spec, None)
    first, again = load_task_data(spec, seed=4), load_task_data(spec, seed=4)
    assert len(reads) == 1
    tensors = [field.name for field in dataclasses.fields(first) if field.name != "class_names"]
    assert all(torch.equal(getattr(first, name), getattr(again, name)) for name in tensors)
    assert first.class_names == again.class_names
    first.test_x += 1  # what a caller does with its data stays its own
    assert torch.equal(load_task_data(spec, seed=4).test_x, again.test_x)
    save_npz(path, x_train=X[:20], y_train=Y[:20])  # a changed file is read again
    check_source(spec, None)
    assert len(reads) == 2


def test_a_data_set_is_read_once_for_all_its_tasks(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = load_task_data(parse_spec("mnist:3v8@40~invert"), data_dir=data_dir, seed=1)
    raw = tmp_path / "MNIST" / "raw"  # the same files in a folder of their own: not read yet
    raw.mkdir(parents=True)
    for file in (data_dir / "MNIST" / "raw").iterdir():
        (raw / file.name).symlink_to(file)
    reads = spy(monkeypatch, lifelong.data, "load")
    for text in ("mnist:3v8@40~invert", "mnist:0-4", "mnist:1v7@5pc"):
        check_source(parse_spec(text), tmp_path)
    data = load_task_data(parse_spec("mnist:3v8@40~invert"), data_dir=tmp_path, seed=1)
    assert len(reads) == 2  # the train and the test split, once
    assert all(torch.equal(getattr(data, f), getattr(reference, f)) for f in ("train_x", "val_x", "test_y"))


def test_the_sources_kept_read_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(task_data, "SOURCE_CACHE_BYTES", 0)  # past the bound: only the last one stays
    a, b = (parse_spec(f"npz:{save_npz(tmp_path / f'{name}.npz')}") for name in "ab")
    reads = spy(monkeypatch, np, "load")
    for spec in (a, a, b, b, a):
        check_source(spec, None)
    assert len(reads) == 3


# ---------------------------------------------------------------------------- specs
@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("mnist:", ("bad spec 'mnist:': no classes after ':'", "mnist alone means all ten")),
        ("fashion:", ("bad spec 'fashion:': no classes after ':'", "fashion:3v8")),
        ("mnist:@50", ("no classes after ':'",)),
        ("mnist:3v8@", ("'@' must be a positive number",)),
        ("mnist@²", ("'@²' must be a positive number",)),
        ("  ", ("empty task spec",)),
        ("atari:Pongg", ("unknown Atari game 'Pongg'", "close names: pong")),
        ("atari:Pong@50", ("Atari tasks have none",)),
    ],
)
def test_bad_specs_are_refused_at_parse_time(text: str, needles: tuple[str, ...]) -> None:
    with pytest.raises(TaskSpecError) as error:
        parse_spec(text)
    refusal(error, *needles)


def test_specs_are_stripped_and_mnist_alone_is_all_ten() -> None:
    assert parse_spec(" mnist ").classes == tuple(range(10))
    spec = parse_spec("\tmnist:1v3@200 \n")
    assert (spec.text, spec.classes, spec.train_size) == ("mnist:1v3@200", (1, 3), 200)


# ---------------------------------------------------------------------------- names
def library_with(*names: str) -> SimpleNamespace:
    """Just what ``check_names`` asks of a library: its tasks' names."""
    return SimpleNamespace(tasks=lambda: [SimpleNamespace(name=name) for name in names])


def test_names_are_stripped_and_compared_stripped() -> None:
    specs = [parse_spec("mnist:1v3 "), parse_spec("mnist:2v4")]
    assert check_names(library_with(), specs, None) == ["mnist:1v3", "mnist:2v4"]
    assert check_names(library_with(), specs, [" a ", "b\t"]) == ["a", "b"]
    refused = [
        (library_with("mnist:1v3"), None, "task 'mnist:1v3' already exists"),
        (library_with("legacy "), ["legacy", "b"], "task 'legacy' already exists"),
        (library_with(), ["same", " same "], "the same task name is given twice: 'same'"),
    ]
    for library, names, needle in refused:
        with pytest.raises(TaskSpecError) as error:
            check_names(library, specs, names)
        refusal(error, needle)


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("", "--name cannot be empty"),
        ("   ", "--name cannot be empty"),
        ("two\nlines", r"task name 'two\nlines' holds a control character"),
        ("tab\there", "holds a control character"),
        ("nul\x00", "holds a control character"),
        ("line\u2028separator", "holds a control character"),
        ("x" * (NAME_MAX + 1), f"is {NAME_MAX + 1} characters long, at most {NAME_MAX}"),
    ],
)
def test_unusable_names_are_refused(name: str, needle: str) -> None:
    with pytest.raises(TaskSpecError) as error:
        check_names(library_with(), [parse_spec("mnist:1v2")], [name])
    refusal(error, needle)


def test_a_long_name_within_the_limit_is_fine() -> None:
    assert check_names(library_with(), [parse_spec("mnist:1v2")], ["x" * NAME_MAX]) == ["x" * NAME_MAX]


# ---------------------------------------------------------------------------- through the CLI
@pytest.fixture(scope="module")
def halves(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An easy two-class npz, 28×28 uint8, 200 train / 50 test."""
    arrays = {}
    for split, n in (("train", 200), ("test", 50)):
        x, y = noisy_halves(np.random.default_rng(5), n, 28, 1)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x[..., 0], y
    return save_npz(tmp_path_factory.mktemp("halves") / "halves.npz", **arrays)


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory, halves: Path, data_dir: Path) -> Path:
    """A library that learned the halves npz under its spec (the default name), with padded text."""
    library = tmp_path_factory.mktemp("learned") / "library"
    assert run_cli("init", library=library).returncode == 0
    result = run_cli("--json", "learn", f" npz:{halves}\t", *TINY, library=library, data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    assert [row["task"] for row in json.loads(result.stdout)] == [f"npz:{halves}"]
    return library


@pytest.mark.slow
def test_the_stored_name_and_spec_are_stripped(learned: Path, halves: Path) -> None:
    record = Library.open(learned).task(f"npz:{halves}")
    assert record.spec == f"npz:{halves}"


@pytest.mark.slow
def test_bad_data_names_and_specs_through_the_cli(
    learned: Path, halves: Path, data_dir: Path, tmp_path: Path
) -> None:
    """Each refused before anything trains, also when it follows a good spec."""
    nan = save_npz(tmp_path / "nan.npz", x_train=with_nan(3), x_test=UNIT)
    empty = save_npz(tmp_path / "empty.npz", x_train=np.zeros((0, 28, 28), np.float32), y_train=Y[:0])
    mixed = save_npz(tmp_path / "mixed.npz", x_train=UNIT, x_test=UNIT * 255)
    broken = folder_of(tmp_path / "broken", {"a": 3, "b": 3})
    (broken / "a" / "0.png").write_text("not a png")
    good = f"npz:{halves}"
    cases = [
        ((f"npz:{nan}",), ("x_train holds 3 NaN/inf values",)),
        ((good, "--name", "first", f"npz:{empty}", "--name", "second"), ("x_train holds no examples",)),
        ((good, "--name", "first", f"npz:{mixed}", "--name", "second"), ("save both splits on one scale",)),
        ((good, "--name", "first", f"imagefolder:{broken}", "--name", "second"), ("0.png is not an image",)),
        ((good, "--name", "first", "mnist:", "--name", "second"), ("no classes after ':'",)),
        ((good, "--name", "first", "mnist:3v8~invrt", "--name", "second"), ("unknown transform '~invrt'",)),
        ((good, "--name", "first", "mnist:3v8@9000pc", "--name", "second"), ("examples per class",)),
        ((f"{good} ",), (f"task '{good}' already exists",)),
        ((good, "--name", ""), ("--name cannot be empty",)),
        ((good, "--name", "two\nlines"), ("holds a control character",)),
        ((good, "--name", "x" * (NAME_MAX + 1)), (f"at most {NAME_MAX}",)),
    ]
    assert_errors_change_nothing(
        learned, data_dir, [(("learn", *args, *TINY), needles) for args, needles in cases]
    )
