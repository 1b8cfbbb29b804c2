"""Task specs and their data.

A spec names a task and its data in one string::

    mnist:3v8        binary: digit 3 → class 0, digit 8 → class 1
    mnist:0-4        classes 0..4          mnist:0,2,5   those three classes
    mnist            all ten classes       fashion:…     the same for Fashion-MNIST
    imagefolder:PATH your own images (torchvision ImageFolder: one sub-folder per class)
    npz:PATH         arrays x_train, y_train, x_test, y_test
    atari:Pong       an Atari game (the Atari agent)
    …@200            suffix: use 200 training examples

Data live in memory as uint8 tensors ``(N, C, H, W)``. A validation split is carved from the
training pool (disjoint from the examples trained on); test data is only ever used to report.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lifelong.errors import TaskDataError, TaskSpecError

DATASETS = {"mnist": "mnist", "fashion": "fashion-mnist"}
SOURCES = (*DATASETS, "imagefolder", "npz", "atari")
DEFAULT_INPUT_SHAPE = (1, 28, 28)
VALIDATION_FRACTION, VALIDATION_MAX = 0.1, 1000


@dataclass(frozen=True)
class TaskSpec:
    """A parsed spec string. ``classes`` are the source labels, in new-label order."""

    text: str
    source: str
    classes: tuple[int, ...] | None = None
    path: Path | None = None
    game: str | None = None
    train_size: int | None = None

    @property
    def family(self) -> str:
        return "atari" if self.source == "atari" else "classification"


def parse_spec(text: str) -> TaskSpec:
    """Parse a spec string; raise :class:`TaskSpecError` with a one-line reason if it is wrong."""
    body, _, size_text = text.strip().partition("@")
    train_size = None
    if size_text:
        if not size_text.isdigit() or int(size_text) < 1:
            raise TaskSpecError(f"bad spec {text!r}: '@{size_text}' must be a positive number of examples")
        train_size = int(size_text)
    source, _, argument = body.partition(":")
    source = source.lower()
    if source not in SOURCES:
        raise TaskSpecError(f"unknown dataset {source!r} in {text!r} (known: {', '.join(SOURCES)})")
    if source in DATASETS:
        return TaskSpec(text, source, classes=_parse_classes(argument, text), train_size=train_size)
    if not argument:
        raise TaskSpecError(f"bad spec {text!r}: {source} needs a {'game' if source == 'atari' else 'path'}")
    if source == "atari":
        return TaskSpec(text, source, game=argument, train_size=train_size)
    path = Path(argument).expanduser()
    if not path.exists():
        raise TaskSpecError(f"bad spec {text!r}: {path} does not exist")
    return TaskSpec(text, source, path=path, train_size=train_size)


def check_names(library, specs: list[TaskSpec], names: list[str] | None) -> list[str]:
    """The task names for ``specs`` (default: the spec strings), checked before any work starts:
    one per spec, no two alike, none already in ``library``."""
    names = names or [spec.text for spec in specs]
    if len(names) != len(specs):
        raise TaskSpecError(f"{len(names)} --name values for {len(specs)} specs")
    if len(set(names)) != len(names):
        raise TaskSpecError("the same task name is given twice")
    existing = {task.name for task in library.tasks()}
    clash = [n for n in names if n in existing]
    if clash:
        raise TaskSpecError(f"task {clash[0]!r} already exists; choose another --name")
    return names


def _parse_classes(argument: str, text: str) -> tuple[int, ...]:
    if not argument:
        return tuple(range(10))
    if re.fullmatch(r"\d+v\d+", argument):
        parts = argument.split("v")
    elif re.fullmatch(r"\d+-\d+", argument):
        low, high = (int(p) for p in argument.split("-"))
        if low >= high:
            raise TaskSpecError(f"bad spec {text!r}: range {argument} must go up (e.g. 0-4)")
        parts = [str(c) for c in range(low, high + 1)]
    elif re.fullmatch(r"\d+(,\d+)+", argument):
        parts = argument.split(",")
    else:
        raise TaskSpecError(f"bad spec {text!r}: classes must look like 3v8, 0-4 or 0,2,5")
    classes = tuple(int(p) for p in parts)
    for c in classes:
        if c > 9:
            raise TaskSpecError(f"bad spec {text!r}: class {c} does not exist (classes are 0-9)")
    duplicates = sorted({c for c in classes if classes.count(c) > 1})
    if duplicates:
        raise TaskSpecError(f"bad spec {text!r}: class {duplicates[0]} is listed twice")
    return classes


@dataclass
class TaskData:
    """A task's examples, as uint8 image tensors ``(N, C, H, W)`` and int64 labels."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    class_names: list[str]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])


def load_task_data(
    spec: TaskSpec,
    *,
    data_dir: Path | None = None,
    input_shape: tuple[int, int, int] = DEFAULT_INPUT_SHAPE,
    seed: int = 0,
) -> TaskData:
    """The task's train / validation / test tensors, resized to the library's input shape."""
    if spec.source in DATASETS:
        (train_x, train_y), (test_x, test_y), names = _builtin(spec, data_dir)
    elif spec.source == "npz":
        (train_x, train_y), (test_x, test_y), names = _npz(spec.path)
    elif spec.source == "imagefolder":
        (train_x, train_y), (test_x, test_y), names = _imagefolder(spec.path, seed, input_shape[1:])
    else:
        raise TaskSpecError(f"{spec.text!r} is not an image classification task")
    train_x, test_x = _fit(train_x, input_shape, spec), _fit(test_x, input_shape, spec)
    if len(names) < 2:
        raise TaskDataError(
            f"{spec.text!r}: a classification task needs at least 2 classes, found {len(names)}"
        )

    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train_y), generator=generator)
    n_val = max(1, min(VALIDATION_MAX, int(VALIDATION_FRACTION * len(order))))
    val, train = order[:n_val], order[n_val:]
    if len(train) == 0:
        raise TaskDataError(
            f"{spec.text!r}: {len(order)} training example(s) is too few (one goes to validation)"
        )
    if spec.train_size is not None:
        if spec.train_size > len(train):
            raise TaskDataError(
                f"{spec.text!r}: asks for {spec.train_size} examples, only {len(train)} available"
            )
        train = train[: spec.train_size]
    return TaskData(train_x[train], train_y[train], train_x[val], train_y[val], test_x, test_y, names)


def _select(x: torch.Tensor, y: torch.Tensor, classes: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the examples of ``classes`` and relabel them 0..k-1 in spec order."""
    relabel = torch.full((int(y.max()) + 1,), -1, dtype=torch.int64)
    relabel[list(classes)] = torch.arange(len(classes))
    keep = relabel[y] >= 0
    return x[keep].unsqueeze(1), relabel[y[keep]]


def _builtin(spec: TaskSpec, data_dir: Path | None):
    from lifelong.data import FASHION_CLASSES, load

    name = DATASETS[spec.source]
    train = _select(*load(name, data_dir, train=True), spec.classes)
    test = _select(*load(name, data_dir, train=False), spec.classes)
    labels = FASHION_CLASSES if spec.source == "fashion" else [str(d) for d in range(10)]
    return train, test, [labels[c] for c in spec.classes]


def _npz(path: Path):
    try:
        arrays = np.load(path)
    except Exception as error:
        raise TaskDataError(f"cannot read {path} as .npz: {error}") from None
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise TaskDataError(
            f"{path} lacks arrays {', '.join(missing)} (needs x_train, y_train, x_test, y_test)"
        )
    splits = []
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise TaskDataError(
                f"{path}: x_{split} has shape {x.shape}; expected (N, H, W) or (N, C, H, W), C 1 or 3"
            )
        if y.ndim != 1 or len(y) != len(x):
            raise TaskDataError(f"{path}: y_{split} has shape {y.shape}; expected ({len(x)},) labels")
        if not np.issubdtype(y.dtype, np.integer):
            raise TaskDataError(f"{path}: y_{split} must hold integer labels, not {y.dtype}")
        if x.dtype != np.uint8:
            x = np.clip(np.nan_to_num(x.astype(np.float32)) * (255 if x.max() <= 1 else 1), 0, 255).astype(
                np.uint8
            )
        splits.append((torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64))))
    classes = sorted(set(splits[0][1].tolist()))
    relabel = {c: i for i, c in enumerate(classes)}
    unknown = set(splits[1][1].tolist()) - set(classes)
    if unknown:
        raise TaskDataError(f"{path}: y_test has labels {sorted(unknown)} never seen in y_train")
    splits = [(x, torch.tensor([relabel[c] for c in y.tolist()], dtype=torch.int64)) for x, y in splits]
    return splits[0], splits[1], [str(c) for c in classes]


def _imagefolder(path: Path, seed: int, size: tuple[int, int]):
    """ImageFolder with ``train/`` and ``test/`` sub-folders, or one folder split 80/20 by seed."""
    from torchvision.datasets import ImageFolder
    from torchvision.transforms.functional import pil_to_tensor, resize

    def read(folder: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        try:
            dataset = ImageFolder(str(folder), transform=lambda image: pil_to_tensor(image.convert("RGB")))
        except (FileNotFoundError, OSError) as error:
            raise TaskDataError(f"{folder}: {str(error).splitlines()[0]}") from None
        if len(dataset) == 0:
            raise TaskDataError(f"{folder} holds no images")
        images = [resize(dataset[i][0], list(size), antialias=True) for i in range(len(dataset))]
        return torch.stack(images), torch.tensor(dataset.targets, dtype=torch.int64), dataset.classes

    if (path / "train").is_dir() and (path / "test").is_dir():
        train_x, train_y, names = read(path / "train")
        test_x, test_y, test_names = read(path / "test")
        if test_names != names:
            raise TaskDataError(f"{path}: train/ and test/ have different class folders")
        return (train_x, train_y), (test_x, test_y), names
    x, y, names = read(path)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = max(1, len(y) // 5)
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train]), (x[test], y[test]), names


def _fit(x: torch.Tensor, shape: tuple[int, int, int], spec: TaskSpec) -> torch.Tensor:
    """Convert images to the library's input shape (channels by grayscale/repeat, then resize)."""
    from torchvision.transforms.functional import resize, rgb_to_grayscale

    channels, height, width = shape
    if x.shape[1] != channels:
        if channels == 1 and x.shape[1] == 3:
            x = rgb_to_grayscale(x)
        elif channels == 3 and x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        else:
            raise TaskDataError(f"{spec.text!r}: cannot turn {x.shape[1]}-channel images into {channels}")
    if tuple(x.shape[2:]) != (height, width):
        x = resize(x, [height, width], antialias=True)
    return x.contiguous()
