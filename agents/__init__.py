"""Task families (classification, atari) behind one small protocol, so that the learn loop in
:mod:`lifelong.learn` reads the same for both: ``self_organize → grow → prune → commit``.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any, Protocol, TypeVar

import numpy as np

from library_store import Library, ModuleRecord, TaskArrays

BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")  # statistics, not parameters
Progress = Callable[..., None]  # progress events: progress("phase", name=..., total=...), ...


def quiet(*_: Any, **__: Any) -> None:
    """A :data:`Progress` that says nothing."""


EXIT_INTERRUPTED = 130  # the shell's code for a process ended by Ctrl-C (128 + SIGINT)
WATCH_S = 1.0  # how often a worker process checks that the process it works for still lives


def spawn_context() -> multiprocessing.context.SpawnContext:
    """How worker processes start: spawned (forking a process that holds torch threads can
    hang). Should this process be killed, the resource tracker that multiprocessing starts beside
    it frees the pools' semaphores: it is told to do so without a warning on the user's terminal
    (it takes the interpreter's -W options, so the option is added before it starts)."""
    quiet_tracker = "ignore:resource_tracker:UserWarning"
    if quiet_tracker not in sys.warnoptions:
        sys.warnoptions.append(quiet_tracker)
    return multiprocessing.get_context("spawn")


def start_worker(threads: int, parent: int) -> None:
    """Set up a worker process (a pool's initializer): ``threads`` torch threads, and it ends
    when process ``parent`` does (killed, or ended without closing the pool), instead of waiting
    for work for ever. Ctrl-C reaches every process of the terminal's group: a worker then ends
    at once and quietly, and the process it works for says what happened (the handler comes
    before torch's import, which takes seconds on a busy machine)."""
    signal.signal(signal.SIGINT, lambda *_: os._exit(EXIT_INTERRUPTED))
    import torch

    torch.set_num_threads(threads)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCH_S)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def module_parameters(module: ModuleRecord) -> int:
    """Numbers a module learned: its stored tensors except BatchNorm's running statistics."""
    return sum(
        int(np.prod(meta["shape"], dtype=np.int64))
        for name, meta in module.tensors.items()
        if not name.endswith(BN_BUFFERS)
    )


BudgetT = TypeVar("BudgetT")
KNOB = "knob"  # a dataclass field's metadata key: the help of the flag that sets it


def knob(help: str, default: Any = MISSING) -> Any:
    """A dataclass field that users set from the command line: ``so_steps`` is ``--so-steps``
    (a bool ``--grow/--no-grow``), its help ``help``. The command line derives its flags from
    these fields, so a knob is written once: its name, type, default and help."""
    return field(default=default, metadata={KNOB: help})


def override(budget: BudgetT, **values: Any) -> BudgetT:
    """A copy of a (frozen dataclass) budget with the given non-None fields replaced."""
    unknown = set(values) - {f.name for f in fields(budget)}
    if unknown:
        raise ValueError(f"unknown budget fields {sorted(unknown)}")
    return replace(budget, **{k: v for k, v in values.items() if v is not None})


def at_least(budget: Any, flags: bool = True, **leasts: int) -> None:
    """Raise :class:`BudgetError` unless each named field of ``budget`` is at least its bound,
    e.g. ``at_least(b, trials=1, settle_steps=0)``; ``flags``: name the fields as the command-line
    flags that set them (``--trials``)."""
    from agents.errors import BudgetError

    for name, bound in leasts.items():
        if getattr(budget, name) < bound:
            shown = f"--{name.replace('_', '-')}" if flags else f"budget field {name}"
            raise BudgetError(f"{shown} must be at least {bound}")


@dataclass
class NewModule:
    """A module grown for a task, to be frozen and stored when the task commits."""

    kind: str
    tensors: dict[str, np.ndarray]
    config: dict[str, Any]
    signature: dict[str, Any]


@dataclass
class Solution:
    """What an agent hands to the commit: the assembly (library ids or new modules per layer),
    the task's own arrays, and what to record about how it was found."""

    layers: list[list[str | NewModule]]
    arrays: TaskArrays
    phase: str  # "self_organize" or "grow": which step solved the task
    metrics: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, list[float]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    missed_target: str | None = None  # how the task fell short of its target, None if it did not


class Agent(Protocol):
    """One task family. ``Problem`` and ``Attempt`` are the family's own types."""

    family: str

    def prepare(self, library: Library, spec: Any, name: str) -> Any:
        """Load the task's data and a frozen view of the library."""

    def self_organize(self, problem: Any) -> Any:
        """Solve the task with frozen library modules only (learn how to combine them)."""

    def good_enough(self, problem: Any, attempt: Any) -> bool:
        """Whether an attempt meets the task's target (on validation data)."""

    def grow(self, problem: Any, attempt: Any) -> Any:
        """Evolve new trainable modules on top of the library."""

    def prune(self, problem: Any, attempt: Any) -> Any:
        """Drop what the task does not need, without losing validation accuracy."""

    def solution(self, problem: Any, attempt: Any) -> Solution:
        """Freeze the attempt into something the library can store."""

    def committed(self, problem: Any) -> None:
        """The task is stored: drop what was kept only to resume it (e.g. a checkpoint)."""
