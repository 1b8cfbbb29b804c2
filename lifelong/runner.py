"""The driver: learn a list of parsed task specs in order, each with its family's plan.

A plan (:class:`Plan`) says how a family's tasks are learned — budget, target, options — and
builds the family's agent; ``plans`` is the one table from family to plan. Everything that can
be checked is checked before the first task trains: every name, every spec's data source and
its plan's checks, and that the library can be written (its folders are writable, no other
writer holds the lock). A failure then costs seconds, not a finished task.
"""

from __future__ import annotations

import importlib.util
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from agents import Agent, Progress, quiet
from agents.classification.budget import PRESETS, PruneSettings
from agents.task import TaskSpec
from agents.workers import EXECUTORS, Workers, close_shared, shared
from library_store import Library, TaskRecord
from lifelong.errors import Interrupted, LifelongError, TaskSpecError
from lifelong.learn import learn
from lifelong.prune import prune as prune_library
from lifelong.tasks import check_names


@dataclass(frozen=True)
class Run:
    """What every task of one ``learn`` call shares; ``workers`` play a generation's Atari
    episodes and train a generation's growth candidates (default: this process alone)."""

    seed: int
    device: torch.device
    data_dir: Path | None = None  # the image data cache (None: $LIFELONG_DATA, else ./data)
    progress: Progress = quiet
    workers: Workers = field(default_factory=lambda: Workers(0))


def worker_pool(
    workers: int | None = None, executor: str = "local", ray_address: str | None = None
) -> Workers:
    """This process's pool for ``learn --workers N --executor E --ray-address A`` (workers None:
    one per core, or per CPU of the Ray cluster; 0: this process), checked before any work."""
    if workers is not None and workers < 0:
        raise LifelongError("--workers must be 0 (this process does the work) or more")
    if executor not in EXECUTORS:
        raise LifelongError(f"unknown --executor {executor!r} (choose {', '.join(EXECUTORS)})")
    if executor == "ray" and importlib.util.find_spec("ray") is None:
        raise LifelongError("--executor ray needs Ray: pip install -e '.[ray]'")
    if ray_address is not None and executor != "ray":
        raise LifelongError("--ray-address is for --executor ray")
    return shared(workers, executor, ray_address)


def close_workers() -> None:
    """Stop the pools :func:`worker_pool` started (a command calls it before it ends)."""
    close_shared()


class Plan(Protocol):
    """How the tasks of one family are learned."""

    family: str

    def check(self, library: Library, spec: TaskSpec, run: Run, learned_before: Sequence[str]) -> None:
        """Raise a one-line error now if learning ``spec`` would fail for a reason known now;
        ``learned_before``: the tasks this call learns first."""

    def agent(self, library: Library, name: str, run: Run) -> Agent:
        """The agent that learns task ``name``."""


def learn_specs(
    library: Library,
    specs: Sequence[TaskSpec],
    *,
    plans: Mapping[str, Plan],
    names: Sequence[str] | None = None,
    seed: int = 0,
    device: torch.device,
    data_dir: Path | None = None,
    progress: Progress = quiet,
    require_target: bool = False,
    prune: PruneSettings | None = None,
    workers: Workers | None = None,
) -> list[TaskRecord]:
    """Check every task, then learn and commit each in turn; with ``prune`` (``learn --prune
    auto``), prune the library after each task (a commit of its own; ``progress`` hears
    ``pruned``); ``workers``: see :class:`Run`. Ctrl-C raises :class:`Interrupted`, whose
    message says what this call committed; the task in progress is never committed half-way."""
    names = check_names(library, list(specs), list(names) if names else None)
    run = Run(seed, device, data_dir, progress, workers or Workers(0))
    for index, spec in enumerate(specs):
        if spec.family not in plans:
            raise TaskSpecError(f"{spec.text!r}: no plan for {spec.family} tasks was given")
        plans[spec.family].check(library, spec, run, names[:index])
    library.check_writable()
    command = command_line()
    records = []
    try:
        for spec, name in zip(specs, names, strict=True):
            library.refresh()
            progress("task", name=name)
            agent = plans[spec.family].agent(library, name, run)
            records.append(
                learn(
                    library, agent, spec, name=name, seed=seed, command=command, require_target=require_target
                )
            )
            if prune is not None:
                budget = getattr(plans.get("classification"), "budget", PRESETS["quick"])
                result = prune_library(
                    library, prune, budget, data_dir=data_dir, device=device, progress=progress
                )
                progress("pruned", after=name, summary=result["summary"], committed=result["committed"])
    except KeyboardInterrupt:
        raise Interrupted(_interrupted(library, names)) from None
    return records


def command_line() -> str:
    """The command this process runs, as a user would type it (recorded with every result)."""
    return shlex.join(["lifelong", *sys.argv[1:]])


def _interrupted(library: Library, names: list[str]) -> str:
    """What an interrupted call leaves, read from the library itself (so it is true even when
    the interrupt landed right after a commit)."""
    library.refresh()
    stored = {task.name for task in library.tasks()}
    done = [name for name in names if name in stored]
    said = f"committed {', '.join(repr(n) for n in done)} in this call" if done else "nothing was committed"
    pending = next((name for name in names if name not in stored), None)
    unfinished = f"; {pending!r} was in progress and was not committed" if pending else ""
    return f"interrupted: {said}{unfinished}"
