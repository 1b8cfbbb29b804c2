"""A task's data: read from the source its spec names, checked, split and transformed.

What an npz may hold:

* ``x_*``: ``(N, H, W)`` or ``(N, C, H, W)`` with C 1 or 3, N ≥ 1, H, W ≥ 1; integers or floats.
* One scale for the whole data set, decided from both splits together: if every ``x`` array holds
  floats and every value lies in [0, 1], pixels are ``round(255 · x)``; otherwise pixels are read
  as 0..255 (floats rounded to the nearest integer). NaN/±inf, values outside the scale, and a
  float split within [0, 1] beside a split on 0..255 are refused, never clipped or guessed.
* ``y_*``: one label per image; integers (booleans count as 0/1) or floats that are whole
  numbers. Any values: the sorted labels of ``y_train`` become classes 0..k-1; ``y_test`` may
  only use labels ``y_train`` has.

What an image folder may hold: one sub-folder per class (links to folders are not followed below
the class folders; at most ``MAX_ENTRIES`` files and folders), its images read by
:mod:`lifelong.images` (every Pillow mode on its own scale, or refused), turned RGB, resized to the
library's input size, then grey where the library is (``predict`` reads its files the same way).

Data live in memory as uint8 tensors ``(N, C, H, W)``. A validation split is carved from the
training pool (disjoint from the examples trained on); test data is only ever used to report.
:func:`check_source` checks a spec's data cheaply, so a list of tasks fails before any trains.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from agents.task import DEFAULT_INPUT_SHAPE, TaskData, TaskSpec
from library_store import first_line
from lifelong.errors import TaskDataError, TaskSpecError
from lifelong.tasks import DATASETS

VALIDATION_FRACTION, VALIDATION_MAX = 0.1, 1000
MAX_ENTRIES = 100_000  # the most files and folders an image folder's listing looks at
SPLITS = ("train", "test")
# what a numpy dtype kind holds, for messages about arrays that are not numbers
KINDS = {"b": "booleans", "c": "complex numbers", "U": "text", "S": "bytes", "V": "records", "M": "dates"}

SOURCE_CACHE_BYTES = 256 * 2**20  # the most tensor bytes of sources kept read (see _cached)

Split = tuple[torch.Tensor, torch.Tensor]
Source = tuple[Split, Split, list[str]]  # train, test, class names
Sample = tuple[str, int]  # an image file and its class index

_SOURCES: OrderedDict[tuple[tuple[str, int, int, int], ...], Source] = OrderedDict()  # see _cached


def check_source(spec: TaskSpec, data_dir: Path | None = None, seed: int = 0) -> None:
    """Check, without training, that a classification task's data can be had and suits the spec:
    the data set is cached or fetched, the npz passes every check of loading, the image folder
    lists readable images of at least 2 classes, and there are enough examples for ``@N``.
    Raises :class:`TaskDataError` (or the data layer's ``DataError``) with a one-line reason.
    An Atari spec needs nothing here: its game is resolved by :func:`lifelong.tasks.parse_spec`."""
    if spec.family != "classification":
        return
    if spec.source == "imagefolder":
        from lifelong.images import check_image

        train, test, names = _image_split(spec.path, seed)
        for file, _ in (*train, *test):
            check_image(file)  # reads the header only
        labels = torch.tensor([label for _, label in train], dtype=torch.int64)
    else:
        source = _builtin(spec, data_dir) if spec.source in DATASETS else _npz_source(spec.path)
        (_, labels), _, names = source
    _split(spec, names, labels, seed)


def load_task_data(
    spec: TaskSpec,
    input_shape: tuple[int, int, int] = DEFAULT_INPUT_SHAPE,
    seed: int = 0,
    *,
    data_dir: Path | None = None,
) -> TaskData:
    """The task's train / validation / test tensors, resized to the library's input shape; with
    ``data_dir`` bound, an agent's ``load_data`` (:data:`agents.task.DataLoader`)."""
    if spec.source in DATASETS:
        (train_x, train_y), (test_x, test_y), names = _builtin(spec, data_dir)
    elif spec.source == "npz":
        (train_x, train_y), (test_x, test_y), names = _npz_source(spec.path)
    elif spec.source == "imagefolder":
        (train_x, train_y), (test_x, test_y), names = _imagefolder(spec.path, seed, input_shape[1:])
    else:
        raise TaskSpecError(f"{spec.text!r} is not an image classification task")
    train_x, test_x = _fit(train_x, input_shape, spec.text), _fit(test_x, input_shape, spec.text)
    val, train = _split(spec, names, train_y, seed)
    for transform in spec.transforms:
        train_x, test_x = transform_images(transform, train_x), transform_images(transform, test_x)
        train_y, test_y, names = transform_labels(transform, train_y, test_y, names)
    return TaskData(train_x[train], train_y[train], train_x[val], train_y[val], test_x, test_y, names)


def _split(
    spec: TaskSpec, names: list[str], labels: torch.Tensor, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the validation and the training examples: a seeded validation split off the
    training pool, then the spec's ``@N`` (the first N) or ``@Npc`` (the first N of each class).
    Raises :class:`TaskDataError` if the pool cannot give what the spec asks."""
    if len(names) < 2:
        raise TaskDataError(
            f"{spec.text!r}: a classification task needs at least 2 classes, found {len(names)}"
        )
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_val = _validation_size(len(order))
    val, train = order[:n_val], order[n_val:]
    if len(train) == 0:
        raise TaskDataError(
            f"{spec.text!r}: {len(order)} training example(s) is too few (one goes to validation)"
        )
    if spec.train_size is None:
        return val, train
    if not spec.per_class:
        if spec.train_size > len(train):
            raise TaskDataError(
                f"{spec.text!r}: asks for {spec.train_size} examples, only {len(train)} available"
            )
        return val, train[: spec.train_size]
    keep = torch.zeros(len(train), dtype=torch.bool)
    for label, name in enumerate(names):
        mine = (labels[train] == label).nonzero().flatten()
        if len(mine) < spec.train_size:
            raise TaskDataError(
                f"{spec.text!r}: asks for {spec.train_size} examples per class; class {name!r} has "
                f"{len(mine)}"
            )
        keep[mine[: spec.train_size]] = True
    return val, train[keep]


def transform_images(transform: str, x: torch.Tensor) -> torch.Tensor:
    """uint8 images ``(N, C, H, W)`` under one spec transform (labels transforms leave them)."""
    name, _, value = transform.partition("=")
    if name == "invert":
        return 255 - x
    if name == "rot90":
        return torch.rot90(x, 1, dims=(2, 3)).contiguous()
    if name == "permute":  # one fixed permutation of the pixel positions, the same for every image
        order = torch.from_numpy(np.random.default_rng(int(value)).permutation(x.shape[2] * x.shape[3]))
        return x.flatten(2)[:, :, order].reshape(x.shape)
    return x


def transform_labels(
    transform: str, train_y: torch.Tensor, test_y: torch.Tensor, names: list[str]
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``labels=SEED``: class ``c`` becomes class ``perm[c]`` (a fixed permutation), names follow."""
    name, _, value = transform.partition("=")
    if name != "labels":
        return train_y, test_y, names
    perm = torch.from_numpy(np.random.default_rng(int(value)).permutation(len(names)))
    renamed = [""] * len(names)
    for old, new in enumerate(perm.tolist()):
        renamed[new] = names[old]
    return perm[train_y], perm[test_y], renamed


def _validation_size(pool: int) -> int:
    return max(1, min(VALIDATION_MAX, int(VALIDATION_FRACTION * pool)))


def _select(x: torch.Tensor, y: torch.Tensor, classes: tuple[int, ...]) -> Split:
    """Keep the examples of ``classes`` and relabel them 0..k-1 in spec order."""
    relabel = torch.full((int(y.max()) + 1,), -1, dtype=torch.int64)
    relabel[list(classes)] = torch.arange(len(classes))
    keep = relabel[y] >= 0
    return x[keep].unsqueeze(1), relabel[y[keep]]


def _builtin(spec: TaskSpec, data_dir: Path | None) -> Source:
    """The spec's classes of MNIST or Fashion-MNIST (copies: the data set stays as the cache keeps it)."""
    from lifelong.data import FASHION_CLASSES, fetch, load

    name = DATASETS[spec.source]
    labels = FASHION_CLASSES if spec.source == "fashion" else [str(d) for d in range(10)]

    def read() -> Source:
        return load(name, data_dir, train=True), load(name, data_dir, train=False), labels

    train, test, _ = _cached(sorted(fetch(name, data_dir).iterdir()), read)
    return _select(*train, spec.classes), _select(*test, spec.classes), [labels[c] for c in spec.classes]


def _cached(files: list[Path], read: Callable[[], Source]) -> Source:
    """What ``read()`` gave when it last read these ``files`` (the same paths, sizes, modification
    times and inodes), else ``read()``: checking a source and then loading it decodes it once. The
    cache keeps the sources read last, at most ``SOURCE_CACHE_BYTES`` of tensors (and always the
    last one), so a long stream of tasks holds a data set or two, not every source it met. Callers
    must not change what they get (they copy before handing it on)."""
    try:
        stats = [(str(file.absolute()), file.stat()) for file in files]
    except OSError:
        return read()  # reading says in one line what is wrong
    key = tuple((file, stat.st_size, stat.st_mtime_ns, stat.st_ino) for file, stat in stats)
    if key in _SOURCES:
        _SOURCES.move_to_end(key)
        return _SOURCES[key]
    _SOURCES[key] = source = read()
    while len(_SOURCES) > 1 and sum(map(_nbytes, _SOURCES.values())) > SOURCE_CACHE_BYTES:
        _SOURCES.popitem(last=False)
    return source


def _nbytes(source: Source) -> int:
    return sum(tensor.nbytes for split in source[:2] for tensor in split)


# ---------------------------------------------------------------------------- npz
def _npz_source(path: Path) -> Source:
    """The npz's splits (:func:`_npz`), decoded once (:func:`_cached`); copies, so nobody changes
    what the cache keeps."""
    train, test, names = _cached([path], lambda: _npz(path))
    return (train[0].clone(), train[1].clone()), (test[0].clone(), test[1].clone()), list(names)


def _npz(path: Path) -> Source:
    """The npz's two splits as uint8 images and labels 0..k-1, and the class names (see the
    module docstring for what is accepted)."""
    arrays = _read_npz(path)
    images = {f"x_{s}": _npz_images(path, f"x_{s}", arrays[f"x_{s}"]) for s in SPLITS}
    labels = [_npz_labels(path, f"y_{s}", arrays[f"y_{s}"], len(images[f"x_{s}"])) for s in SPLITS]
    images = _to_uint8(path, images)
    classes = np.unique(labels[0])
    unknown = np.setdiff1d(labels[1], classes)
    if len(unknown):
        raise TaskDataError(f"{path}: y_test has labels {unknown.tolist()} never seen in y_train")
    train, test = (
        (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.searchsorted(classes, y)))
        for x, y in zip(images.values(), labels, strict=True)
    )
    return train, test, [str(c) for c in classes.tolist()]


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The four arrays of an npz archive, read without unpickling anything."""
    try:
        archive = np.load(path)
    except OSError as error:
        raise TaskDataError(f"cannot read {path}: {error.strerror or 'not a readable file'}") from None
    except Exception:  # numpy raises many kinds on a file that is not an archive
        raise TaskDataError(f"{path} is not an .npz archive (write one with numpy.savez)") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise TaskDataError(
            f"{path} holds a single array; save x_train, y_train, x_test, y_test with numpy.savez"
        )
    with archive:
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in archive]
        if missing:
            raise TaskDataError(
                f"{path} lacks arrays {', '.join(missing)} (needs x_train, y_train, x_test, y_test)"
            )
        arrays = {}
        for key in ("x_train", "y_train", "x_test", "y_test"):
            try:
                arrays[key] = archive[key]
            except Exception:  # damaged, or it holds pickled Python objects (never unpickled)
                raise TaskDataError(
                    f"{path}: {key} cannot be read as an array of numbers (damaged, or Python objects)"
                ) from None
    return arrays


def _npz_images(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    """``x`` as ``(N, C, H, W)``, checked: numbers, a usable shape, at least one image, all finite."""
    if x.dtype.kind not in "iuf":
        raise TaskDataError(
            f"{path}: {key} holds {KINDS.get(x.dtype.kind, 'values that are not numbers')};"
            " images must be uint8 0-255 or floats in [0, 1]"
        )
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise TaskDataError(
            f"{path}: {key} has shape {x.shape}; expected (N, H, W) or (N, C, H, W), C 1 or 3"
        )
    if len(x) == 0:
        raise TaskDataError(f"{path}: {key} holds no examples")
    if 0 in x.shape[2:]:
        height, width = x.shape[2:]
        raise TaskDataError(f"{path}: {key} images are {height}x{width} pixels; they need at least 1x1")
    if x.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(x)))
        if bad:
            raise TaskDataError(f"{path}: {key} holds {bad} NaN/inf values; clean the images first")
    return x


def _npz_labels(path: Path, key: str, y: np.ndarray, n: int) -> np.ndarray:
    """``y`` as int64, checked: one label per image, each a whole number."""
    if y.ndim != 1 or len(y) != n:
        raise TaskDataError(f"{path}: {key} has shape {y.shape}; expected ({n},) labels")
    if y.dtype.kind == "f":
        whole = np.isfinite(y) & (y == np.trunc(y)) & (np.abs(y) <= 2**53)
        if not whole.all():
            example = y[~whole][0]
            raise TaskDataError(
                f"{path}: {key} holds {np.count_nonzero(~whole)} labels that are not whole numbers"
                f" (e.g. {example:g}); labels must be integers"
            )
    elif y.dtype.kind not in "iub":
        raise TaskDataError(
            f"{path}: {key} holds {KINDS.get(y.dtype.kind, 'values that are not numbers')};"
            " labels must be integers"
        )
    return y.astype(np.int64)


def _to_uint8(path: Path, images: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every split on one scale, decided once for the data set (see the module docstring)."""
    if all(x.dtype == np.uint8 for x in images.values()):
        return images
    ranges = {key: (x.min(), x.max()) for key, x in images.items()}
    if all(x.dtype.kind == "f" and ranges[key][0] >= 0 and ranges[key][1] <= 1 for key, x in images.items()):
        return {key: np.rint(x.astype(np.float32) * 255).astype(np.uint8) for key, x in images.items()}
    for key, (low, high) in ranges.items():
        if low < 0 or high > 255:
            raise TaskDataError(
                f"{path}: {key} holds values from {low:g} to {high:g};"
                " images must be uint8 0-255 or floats in [0, 1]"
            )
    for key, x in images.items():
        if x.dtype.kind == "f" and ranges[key][1] <= 1:  # while the other split is on 0..255
            other = next(k for k in images if k != key)
            scale = "values above 1" if images[other].dtype.kind == "f" else "integers (read as 0-255)"
            raise TaskDataError(
                f"{path}: {key} holds floats within [0, 1] but {other} holds {scale};"
                " save both splits on one scale"
            )
    return {key: (np.rint(x) if x.dtype.kind == "f" else x).astype(np.uint8) for key, x in images.items()}


# ---------------------------------------------------------------------------- image folders
def _imagefolder(path: Path, seed: int, size: tuple[int, int]) -> Source:
    """An ImageFolder's images, decoded, turned RGB and resized to ``size``."""
    train, test, names = _image_split(path, seed)
    return _decode(train, size), _decode(test, size), names


def _image_split(path: Path, seed: int) -> tuple[list[Sample], list[Sample], list[str]]:
    """The train and test images of an ImageFolder, listed (not decoded): its ``train/`` and
    ``test/`` sub-folders, or one folder split 80/20 by seed."""
    if (path / "train").is_dir() and (path / "test").is_dir():
        train, names = _list_images(path / "train")
        test, test_names = _list_images(path / "test")
        if test_names != names:
            raise TaskDataError(f"{path}: train/ and test/ have different class folders")
        return train, test, names
    samples, names = _list_images(path)
    order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(seed)).tolist()
    n_test = max(1, len(samples) // 5)
    return [samples[i] for i in order[n_test:]], [samples[i] for i in order[:n_test]], names


def _list_images(folder: Path) -> tuple[list[Sample], list[str]]:
    """The image files of an ImageFolder and its class names; every class folder holds one at least.

    In torchvision's ``make_dataset`` order, so seeded splits stay as they were: the class folders
    (the immediate sub-folders, sorted), in each the ``sorted(os.walk(...))`` folders and their
    sorted file names, kept if they end in one of ``IMG_EXTENSIONS`` (any case). Unlike torchvision,
    links to folders are not entered (a link loop, or ``imagefolder:/`` through ``/proc``, cannot
    make it walk forever; links to files count), and at most ``MAX_ENTRIES`` files and folders are
    looked at."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    seen = 0

    def visit(count: int) -> None:
        nonlocal seen
        seen += count
        if seen > MAX_ENTRIES:
            raise TaskDataError(
                f"{folder} holds more than {MAX_ENTRIES:,} files and folders; an image folder holds one"
                " sub-folder of images per class"
            )

    names = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                visit(1)
                if entry.is_dir():
                    names.append(entry.name)
    except OSError as error:
        raise TaskDataError(f"{folder}: {error.strerror or first_line(error)}") from None
    names.sort()
    if not names:
        raise TaskDataError(f"{folder} holds no class folder (an image folder has one sub-folder per class)")
    samples: list[Sample] = []
    empty = []
    for index, name in enumerate(names):
        walk = []
        for root, folders, files in os.walk(os.path.join(folder, name)):  # not into links to folders
            visit(len(folders) + len(files))
            walk.append((root, folders, files))
        found = [
            (os.path.join(root, file), index)
            for root, _, files in sorted(walk)
            for file in sorted(files)
            if file.lower().endswith(IMG_EXTENSIONS)
        ]
        if not found:
            empty.append(name)
        samples += found
    if empty:
        raise TaskDataError(
            f"{folder}: found no valid file for the classes {', '.join(empty)}"
            f" (image files end in {', '.join(IMG_EXTENSIONS)})"
        )
    return samples, names


def _decode(samples: list[Sample], size: tuple[int, int]) -> Split:
    """The images read (:func:`lifelong.images.read_image`), turned RGB (grey repeated) and resized."""
    from torchvision.transforms.functional import resize

    from lifelong.images import read_image

    images = []
    for file, _ in samples:
        image = read_image(file)
        if image.shape[0] == 1:  # as Pillow's convert("RGB") of a grey image, in pil_to_tensor's layout
            image = image.permute(1, 2, 0).repeat(1, 1, 3).permute(2, 0, 1)
        images.append(resize(image, list(size), antialias=True))
    return torch.stack(images), torch.tensor([label for _, label in samples], dtype=torch.int64)


def read_images(files: list[Path], shape: tuple[int, int, int], what: str) -> torch.Tensor:
    """Image files as a network of input ``shape`` sees them: read, turned RGB and resized as an
    ``imagefolder:`` task's images are, then fitted to ``shape`` (:func:`_fit`), so a file scores
    as its twin in a training folder would."""
    images, _ = _decode([(str(file), 0) for file in files], shape[1:])
    return _fit(images, shape, what)


def _fit(x: torch.Tensor, shape: tuple[int, int, int], what: str) -> torch.Tensor:
    """Convert images to the library's input shape (channels by grayscale/repeat, then resize)."""
    from torchvision.transforms.functional import resize, rgb_to_grayscale

    channels, height, width = shape
    if x.shape[1] != channels:
        if channels == 1 and x.shape[1] == 3:
            x = rgb_to_grayscale(x)
        elif channels == 3 and x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        else:
            raise TaskDataError(f"{what!r}: cannot turn {x.shape[1]}-channel images into {channels}")
    if tuple(x.shape[2:]) != (height, width):
        x = resize(x, [height, width], antialias=True)
    return x.contiguous()
