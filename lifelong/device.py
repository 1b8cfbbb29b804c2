"""Where tensors live: CUDA when present (``auto``), else the CPU."""

from __future__ import annotations

import torch

from lifelong.errors import LifelongError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    if name not in DEVICES:
        raise LifelongError(f"unknown device {name!r} (choose {', '.join(DEVICES)})")
    if name == "cuda" and not torch.cuda.is_available():
        raise LifelongError("--device cuda asked for, but no CUDA device is available here")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
