"""Where tensors live: ``auto`` (the first CUDA device when there is one, else the CPU), ``cpu``,
``cuda`` or ``cuda:N``. A name is resolved once, by the CLI's ``--device`` parser
(:func:`lifelong.commands.options.parse_device`); everything below it takes a ``torch.device``."""

from __future__ import annotations

import re

import torch

from lifelong.errors import LifelongError

DEVICES = ("auto", "cpu", "cuda", "cuda:N")
_CUDA = re.compile(r"cuda(?::(\d+))?")


def resolve_device(name: str = "auto") -> torch.device:
    """The device ``name`` means here; a one-line error for a name it cannot mean."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    match = _CUDA.fullmatch(name)
    if match is None:
        raise LifelongError(f"unknown device {name!r} (choose {', '.join(DEVICES)})")
    if not torch.cuda.is_available():
        raise LifelongError(f"--device {name} asked for, but no CUDA device is available here")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise LifelongError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device("cuda", index)
