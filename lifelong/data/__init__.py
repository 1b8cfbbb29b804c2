"""Data-set layer: MNIST and Fashion-MNIST as in-memory uint8 tensors, fetched offline-friendly.

Public API::

    fetch(name, data_dir=None) -> Path          # cache the IDX files, return their directory
    load(name, data_dir=None, train=True) -> (images uint8 (N, 28, 28), labels int64 (N,))
    default_data_dir(data_dir=None) -> Path     # argument, else $LIFELONG_DATA, else ./data
    is_cached(name, data_dir=None) -> bool
    source_info(name, data_dir=None) -> dict | None
    DataError                                   # one-line reason when no source works

``name`` is "mnist" or "fashion-mnist". See :mod:`lifelong.data.datasets` for sources and guarantees and
:mod:`lifelong.data.fashion_json` for the Fashion-MNIST split.
"""

from lifelong.data.datasets import (
    DATA_DIR_ENV,
    DATASETS,
    default_data_dir,
    fetch,
    is_cached,
    load,
    raw_dir,
    source_info,
)
from lifelong.data.errors import DataError
from lifelong.data.fashion_json import FASHION_CLASSES

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "FASHION_CLASSES",
    "DataError",
    "default_data_dir",
    "fetch",
    "is_cached",
    "load",
    "raw_dir",
    "source_info",
]
