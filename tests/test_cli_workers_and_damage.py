"""Damage is flagged, worker processes end quietly: the CLI as a demanding user tries it (the
third round of reliability checks; the others are in test_cli_reliability.py, whose learned
library and checks this file shares). Every case runs the real console script."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from cli_helpers import LIFELONG, fingerprint
from test_cli_reliability import TASK, assert_refused, learned, library, npz, run

from library_store import Library, LibraryError

pytestmark = pytest.mark.slow  # learns a task end to end through the console script
__all__ = ["learned", "library", "npz"]  # fixtures shared with test_cli_reliability.py


# ---------------------------------------------------------------------------- damage is flagged
def damage_one_module_chunk(library: Path) -> str:
    """Flip a byte in the chunk file of one module's tensors (not of any task's own arrays);
    return that module's id."""
    for chunk in sorted((library / "repo" / "chunks").iterdir()):
        data = chunk.read_bytes()
        chunk.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
        opened = Library.open(library)
        broken = []
        for module in opened.modules():
            try:
                opened.module_tensors(module.id)
            except LibraryError:
                broken.append(module.id)
        tasks_intact = True
        for task in opened.tasks():
            try:
                opened.task_arrays(task.name)
            except LibraryError:
                tasks_intact = False
        if broken and tasks_intact:
            return broken[0]
        chunk.write_bytes(data)
    raise AssertionError("no chunk belongs to a module alone")


def test_a_damaged_module_is_flagged_by_the_listing_and_by_metrics(library: Path) -> None:
    module = damage_one_module_chunk(library)
    listed = run(library, "--json", "modules")
    assert listed.returncode == 0, listed.stderr
    rows = {row["id"]: row["intact"] for row in json.loads(listed.stdout)}
    assert rows[module] is False and sum(not ok for ok in rows.values()) == 1
    assert listed.stderr.strip().splitlines() == [
        f"warning: damaged modules: {module}; run `lifelong check`, then `lifelong restore <snapshot>`"
    ]
    human = run(library, "modules")
    assert human.returncode == 0 and "False" in human.stdout and module in human.stderr
    metrics = run(library, "--json", "metrics", "--no-eval")
    assert metrics.returncode == 0, metrics.stderr
    assert [row["intact"] for row in json.loads(metrics.stdout)["tasks"]] == [False]
    assert f"tasks using damaged modules: {TASK}" in metrics.stderr
    assert_refused(library, "metrics", needles=("is damaged",))  # re-evaluating it is an error


def test_a_damaged_history_or_state_is_one_line(library: Path) -> None:
    opened = Library.open(library)
    journal = [entry.id for entry in opened.log()]
    (library / "repo" / "snapshots" / journal[0]).write_bytes(b"")  # the newest history entry
    for args in (("log",), ("snapshot", "list"), ("info",)):
        assert_refused(library, *args, needles=("history is damaged", "lifelong check"))
    checked = run(library, "--json", "check")
    assert checked.returncode == 1 and "Traceback" not in checked.stderr
    assert any("history is damaged" in p["what"] for p in json.loads(checked.stdout)["problems"])


def test_a_damaged_state_names_no_internal_object(library: Path) -> None:
    state = Library.open(library).state
    snapshot = library / "repo" / "snapshots" / state
    snapshot.write_bytes(snapshot.read_bytes()[:40])
    for args in (("tasks",), ("modules",), ("eval", TASK)):
        line = assert_refused(library, *args, needles=("cannot be read",))
        assert "object at 0x" not in line, line


# ---------------------------------------------------------------------------- worker processes
def start_learning_on_workers(library: Path, npz: dict[str, Path]) -> subprocess.Popen[str]:
    """``lifelong learn`` growing a task on 2 worker processes for minutes, in a process group of
    its own (as a terminal's job); returns once both workers have started."""
    args = [
        LIFELONG, "learn", f"npz:{npz['noise']}", "--name", "grown", "--target", "0.99", "--so-steps", "5",
        "--eval-every", "5", "--population", "2", "--elite", "1", "--generations", "2",
        "--candidate-steps", "100000", "--workers", "2",
    ]  # fmt: skip
    env = {**os.environ, "LIFELONG_LIBRARY": str(library), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        # as from a terminal: pytest-xdist's workers ignore SIGINT, and a child would inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while len(children(process.pid)) < 3:  # the resource tracker and two workers
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.5)
    time.sleep(8)  # the workers import torch and take their candidates
    return process


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def test_ctrl_c_on_the_terminal_ends_the_workers_quietly(library: Path, npz: dict[str, Path]) -> None:
    before = fingerprint(library)
    process = start_learning_on_workers(library, npz)
    os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: every process of the group
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == (
        "error: interrupted: nothing was committed; 'grown' was in progress and was not committed"
    )
    assert fingerprint(library) == before


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie, ended but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_killed_run_leaves_no_worker_and_no_warning(library: Path, npz: dict[str, Path]) -> None:
    process = start_learning_on_workers(library, npz)
    workers = children(process.pid)
    process.kill()
    _, stderr = process.communicate(timeout=60)  # returns once every process holding stderr ended
    assert "leaked" not in stderr and "Traceback" not in stderr, stderr
    deadline = time.monotonic() + 10  # a process closes its files a moment before it has ended
    while [pid for pid in workers if alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if alive(pid)]
    assert Library.open(library).check() == []
