"""Exception type of the data-set layer."""

from __future__ import annotations

from lifelong.errors import LifelongError


class DataError(LifelongError):
    """A data set could not be fetched, converted or loaded.

    The message is a single line meant for a human (e.g. "torchvision: no network; npm: not found on PATH"),
    so callers can print it as is instead of a traceback.
    """
