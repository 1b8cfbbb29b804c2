"""The learn loop (`lifelong.learn.learn`) with a fake agent: which steps run, in which order,
and what reaches the library. Fast: no torch, no data."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agents import NewModule, Solution
from agents.task import TaskSpec
from library_store import Conflict, Library, TaskArrays
from lifelong.errors import TargetMissed
from lifelong.learn import BELOW_TARGET, LEARNED, learn

SPEC = TaskSpec("fake:task", "npz")


@dataclass
class FakeAgent:
    """Records the calls of the loop; ``solved`` says whether self-organization meets the target."""

    solved: bool
    fail_in: str = ""
    missed: str | None = None
    calls: list[str] = field(default_factory=list)
    family: str = "classification"

    def _step(self, name: str) -> str:
        self.calls.append(name)
        if name == self.fail_in:
            raise RuntimeError(f"{name} failed")
        return name

    def prepare(self, library: Library, spec: TaskSpec, name: str) -> str:
        return self._step("prepare")

    def self_organize(self, problem: Any) -> str:
        return self._step("self_organize")

    def good_enough(self, problem: Any, attempt: Any) -> bool:
        self._step("good_enough")
        return self.solved

    def grow(self, problem: Any, attempt: Any) -> str:
        return self._step("grow")

    def prune(self, problem: Any, attempt: Any) -> str:
        return self._step("prune")

    def solution(self, problem: Any, attempt: Any) -> Solution:
        self._step("solution")
        module = NewModule("conv", {"weight": np.ones(8, np.float32)}, {"layer": 0}, {})
        phase = "self_organize" if self.solved else "grow"
        return Solution([[module]], TaskArrays(), phase, {"val_acc": 0.5}, missed_target=self.missed)

    def committed(self, problem: Any) -> None:
        self._step("committed")


def run(library: Library, agent: FakeAgent, **options: Any):
    return learn(library, agent, SPEC, name="t", seed=3, command="lifelong learn fake:task", **options)


def test_a_task_solved_by_self_organization_skips_growth(library: Library) -> None:
    agent = FakeAgent(solved=True)
    record = run(library, agent)
    assert agent.calls == ["prepare", "self_organize", "good_enough", "prune", "solution", "committed"]
    assert record.metrics["phase"] == "self_organize" and record.status == LEARNED
    assert library.task("t").layers == record.layers and len(library.modules()) == 1
    assert set(record.timings) == {"prepare", "self_organize", "prune", "finalize", "total"}


def test_growth_runs_when_self_organization_falls_short(library: Library) -> None:
    agent = FakeAgent(solved=False)
    record = run(library, agent)
    steps = ["prepare", "self_organize", "good_enough", "grow", "prune", "solution", "committed"]
    assert agent.calls == steps
    assert record.metrics["phase"] == "grow" and "grow" in record.timings


@pytest.mark.parametrize("step", ["prepare", "self_organize", "grow", "prune", "solution"])
def test_a_failing_step_commits_nothing(library: Library, step: str) -> None:
    state, history = library.state, library.log()
    agent = FakeAgent(solved=False, fail_in=step)
    with pytest.raises(RuntimeError, match=f"{step} failed"):
        run(library, agent)
    library.refresh()
    assert (library.state, library.log(), library.tasks()) == (state, history, [])
    assert "committed" not in agent.calls


def test_a_missed_target_is_committed_below_target_or_refused(library: Library) -> None:
    state = library.state
    message = "'t' missed its target (val 0.5 < 0.9); nothing was committed"
    with pytest.raises(TargetMissed, match=re.escape(message)):
        run(library, FakeAgent(solved=False, missed="val 0.5 < 0.9"), require_target=True)
    library.refresh()
    assert library.state == state
    record = run(library, FakeAgent(solved=False, missed="val 0.5 < 0.9"))
    assert record.status == BELOW_TARGET == library.task("t").status


def test_a_name_another_writer_took_meanwhile_is_refused_by_the_commit(
    library: Library, library_path: Path
) -> None:
    """The driver checks names before any work (lifelong.tasks.check_names); a writer that takes
    the name while the task learns loses nothing: the commit refuses, in one line, and writes nothing."""
    run(Library.open(library_path), FakeAgent(solved=True))  # the other writer
    state, history = Library.open(library_path).state, Library.open(library_path).log()
    agent = FakeAgent(solved=True)
    with pytest.raises(Conflict, match=re.escape("task 't' already exists; choose another --name")):
        run(library, agent)
    library.refresh()
    assert (library.state, library.log()) == (state, history)
    assert "committed" not in agent.calls
