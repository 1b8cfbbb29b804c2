"""Each task family's options: one typed dataclass, its plan, holding the family's budget.

A plan says how a family's tasks are learned (budget, target, options) and builds the family's
agent; the driver (:mod:`lifelong.runner`) takes one plan per family. The fields made with
:func:`agents.knob`, here and in the budgets, are ``learn``'s flags (:mod:`lifelong.commands.knobs`).
This module stays light (no torch) so that the command line can read the fields as it starts;
the agents are imported when a plan builds one.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from agents import knob
from agents.atari.budget import ATARI_PRESETS, CONDITIONS, AtariBudget
from agents.classification.budget import DEFAULT_TARGET, PRESETS, Budget
from lifelong.errors import LifelongError

if TYPE_CHECKING:
    from agents.atari.agent import AtariAgent, Watcher
    from agents.classification.agent import ClassificationAgent
    from agents.task import TaskSpec
    from library_store import Library
    from lifelong.runner import Run


def budget_for(preset: str, **overrides: Any) -> Budget:
    """An image-task preset with the given (non-None) values replaced; the budget checks itself."""
    if preset not in PRESETS:
        raise LifelongError(f"unknown budget {preset!r} (choose {', '.join(PRESETS)})")
    base, population = PRESETS[preset], overrides.get("population")
    if overrides.get("elite") is None and population is not None and base.elite >= population > 1:
        overrides["elite"] = population - 1  # a preset's elite must not forbid a small --population
    return base.override(**overrides)


def atari_budget(preset: str, **overrides: Any) -> AtariBudget:
    """An Atari preset with the given (non-None) values replaced; the budget checks itself."""
    if preset not in ATARI_PRESETS:
        raise LifelongError(f"unknown budget {preset!r} (choose {', '.join(ATARI_PRESETS)})")
    return ATARI_PRESETS[preset].override(**overrides)


@dataclass(frozen=True)
class ClassificationPlan:
    """How image tasks are learned: SMART's budget and the validation accuracy that counts as
    solved."""

    budget: Budget
    target: float = DEFAULT_TARGET
    family: ClassVar[str] = "classification"

    def __post_init__(self) -> None:
        if not 0 < self.target <= 1:
            raise LifelongError(f"--target must lie in (0, 1] for image tasks, got {self.target:g}")

    def check(self, library: Library, spec: TaskSpec, run: Run, learned_before: Sequence[str]) -> None:
        """Before any work: the task's data can be had and suits the spec."""
        from lifelong.task_data import check_source

        check_source(spec, run.data_dir, run.seed)

    def agent(self, library: Library, name: str, run: Run) -> ClassificationAgent:
        from agents.classification.agent import ClassificationAgent
        from lifelong.task_data import load_task_data

        return ClassificationAgent(
            self.budget,
            target=self.target,
            seed=run.seed,
            device=run.device,
            load_data=functools.partial(load_task_data, data_dir=run.data_dir),
            progress=run.progress,
            workers=run.workers,
        )


@dataclass(frozen=True)
class AtariPlan:
    """How Atari games are learned: the GRUSM-ESP budget, a score that counts as solved (none:
    use the whole budget), which sources to recruit, the condition (transfer, or a control), and
    checkpointing."""

    budget: AtariBudget
    target: float | None = None
    sources: str = knob("auto, none, or task names/module ids.", "auto")
    condition: str = knob("transfer, scratch or random sources.", "transfer")
    checkpoint_every: int = knob("Save the evolution every N generations (0: never).", 0)
    resume: bool = knob("Continue from the task's last checkpoint.", False)
    on_generation: Watcher | None = None  # hears of each generation's champion (benchmarks)
    family: ClassVar[str] = "atari"

    def __post_init__(self) -> None:
        if self.target is not None and not math.isfinite(self.target):
            raise LifelongError(f"--target must be a finite score for Atari tasks, got {self.target:g}")
        if self.condition not in CONDITIONS:
            raise LifelongError(f"unknown --condition {self.condition!r} (choose {', '.join(CONDITIONS)})")
        if self.checkpoint_every < 0:
            raise LifelongError("--checkpoint-every must be 0 (never) or more")

    def check(self, library: Library, spec: TaskSpec, run: Run, learned_before: Sequence[str]) -> None:
        """Before any work: ``--sources`` names networks of other games (or tasks that this call
        learns first, ``learned_before``)."""
        from agents.atari.agent import choose_sources

        if self.sources in ("auto", "none"):
            return
        listed = [item for item in self.sources.split(",") if item not in learned_before]
        if listed:
            choose_sources(library, ",".join(listed), spec.game)

    def agent(self, library: Library, name: str, run: Run) -> AtariAgent:
        """An agent for task ``name``; its checkpoint lives in ``<library>/checkpoints/``."""
        from agents.atari.agent import AtariAgent
        from library_store import task_key

        return AtariAgent(
            self.budget,
            target=self.target,
            seed=run.seed,
            device=run.device,
            sources=self.sources,
            condition=self.condition,
            progress=run.progress,
            checkpoint=library.path / "checkpoints" / f"{task_key(name)}.pt",
            checkpoint_every=self.checkpoint_every,
            resume=self.resume,
            workers=run.workers,
            on_generation=self.on_generation,
        )
