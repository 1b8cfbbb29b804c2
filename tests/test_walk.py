"""The walk of one task spec through the driver layer, measured: `lifelong learn SPEC` run in this
process under ``sys.settrace`` (a global trace function only: it sees each Python call, no lines),
from the command line to the task's commit.

What counts as entering a file: a Python call whose callee is in a driver-layer file (cli.py or
lifelong/**, but not lifelong/errors.py, which only builds exceptions) and whose caller is in
another project file. The caller is the nearest frame below the callee in cli.py, lifelong/,
agents/ or library_store/; frames of other packages in between (typer dispatching the command,
functools, contextlib, the methods dataclasses write) are looked through. A call within one file
is no entry. Calls from agents/ back into the driver count (the image agent's ``load_data``);
with ``--json`` the progress callback is ``agents.quiet``, so progress events enter no driver file.

What counts as a step of the walk: an entry whose arguments hold the task — its spec text, its
parsed spec or its name, alone or in a list, tuple or dict (typer hands the command its specs as
a list) — and the test's own call of the command line (``cli._main``), where the walk starts.
Entries that do not carry the task (the command reading its options, building the budget, opening
the library, printing the result) are the command's plumbing, not the walk, and are not counted.
Counting stops when the task is committed.

The name check: the driver asks the library for its task names once (calls of ``Library.tasks``
from a driver-layer file) and applies the name rules once (``library_store.task_name_problem``
from a driver-layer file). The store applies the same rules again when it writes the record and
refuses a name taken meanwhile: that is the store's own guard for every writer, not the walk's.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import pytest
from cli_helpers import halves_npz_arrays

import cli
from library_store import Library, task_name_problem
from lifelong.learn import commit

ROOT = Path(__file__).resolve().parent.parent
DRIVER = (str(ROOT / "cli.py"), f"{ROOT / 'lifelong'}/")
PROJECT = (*DRIVER, f"{ROOT / 'agents'}/", f"{ROOT / 'library_store'}/")
UTILITIES = (str(ROOT / "lifelong" / "errors.py"),)
# The smallest budget `learn` takes: the test counts calls, it does not learn.
TINY = (
    "--so-steps", "1", "--population", "2", "--elite", "1", "--generations", "1", "--candidate-steps", "1",
    "--final-steps", "1", "--settle-steps", "0", "--eval-every", "1", "--batch-size", "8", "--workers", "0",
    "--device", "cpu",
)  # fmt: skip


class Walk:
    """A profile function recording the steps of the walk (see the module docstring)."""

    def __init__(self, spec: str, name: str) -> None:
        self.task = {spec, name}
        self.entries: Counter[str] = Counter()
        self.steps: list[str] = []
        self.library_tasks = self.name_rules = self.npz_reads = 0
        self.done = False

    def __call__(self, frame: FrameType, event: str, _: Any) -> None:
        code = frame.f_code
        if self.done or event != "call":
            return
        if code is commit.__code__:
            self.done = True  # the walk ends at the commit
        elif code is np.load.__code__:
            self.npz_reads += 1
        elif code is Library.tasks.__code__ or code is task_name_problem.__code__:
            if (self._caller(frame) or "").startswith(DRIVER):
                self.library_tasks += code is Library.tasks.__code__
                self.name_rules += code is task_name_problem.__code__
        elif code.co_filename.startswith(DRIVER) and not code.co_filename.startswith(UTILITIES):
            self._enter(frame)

    def _enter(self, frame: FrameType) -> None:
        """Count ``frame``'s call if it enters its file from another and carries the task."""
        code, caller = frame.f_code, self._caller(frame)
        if caller is None or caller == code.co_filename:
            return
        if caller == __file__ or self._carries_task(frame):
            self.entries[_short(code.co_filename)] += 1
            self.steps.append(f"{_short(caller)} -> {_short(code.co_filename)}:{code.co_name}")

    def _caller(self, frame: FrameType) -> str | None:
        """The file of the nearest project frame (or this test) below ``frame``."""
        below = frame.f_back
        while below is not None:
            file = below.f_code.co_filename
            if file.startswith(PROJECT) or file == __file__:
                return file
            below = below.f_back
        return None

    def _carries_task(self, frame: FrameType) -> bool:
        """Whether an argument of the call is the task, or a list, tuple or dict holding it."""
        code = frame.f_code
        count = code.co_argcount + code.co_kwonlyargcount
        count += bool(code.co_flags & 0x04) + bool(code.co_flags & 0x08)  # *args, **kwargs
        for value in (frame.f_locals.get(name) for name in code.co_varnames[:count]):
            if isinstance(value, dict):
                value = list(value.values())
            if any(map(self._is_task, value if isinstance(value, (list, tuple)) else [value])):
                return True
        return False

    def _is_task(self, value: Any) -> bool:
        """The spec text or the name, or a parsed spec (whose ``text`` is the spec text)."""
        text = value if isinstance(value, str) else getattr(value, "text", None)
        return isinstance(text, str) and text in self.task


def _short(file: str) -> str:
    return str(Path(file).relative_to(ROOT))


def test_one_image_task_enters_each_driver_file_at_most_twice(
    tmp_path: Path, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "halves.npz"
    np.savez(path, **halves_npz_arrays(rng, train=40, test=10))
    Library.create(tmp_path / "library")
    spec, name = f"npz:{path}", "halves"
    library = str(tmp_path / "library")
    monkeypatch.setattr(
        sys, "argv", ["lifelong", "--json", "--library", library, "learn", spec, "--name", name, *TINY]
    )
    walk = Walk(spec, name)
    sys.settrace(walk)
    try:
        with pytest.raises(SystemExit) as done:
            cli._main()
    finally:
        sys.settrace(None)
    assert done.value.code == 0
    assert walk.done
    report = "\n".join(walk.steps)
    assert {"cli.py", "lifelong/runner.py", "lifelong/learn.py", "lifelong/task_data.py"} <= set(walk.entries)
    assert max(walk.entries.values()) <= 2, report
    assert (walk.library_tasks, walk.name_rules) == (1, 1), report
    assert walk.npz_reads == 1, report
