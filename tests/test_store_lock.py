"""The writer lock, across real processes.

Process A opens a transaction, writes a module, tells the parent it holds the lock (a file), and
waits for the parent's "go" file before committing. Meanwhile other processes try to write (and
must give up with ``LibraryLocked``, or wait and then succeed) or read (and must see only the
committed state). Nothing here asserts how long anything took.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from library_store import Library, TaskRecord

ACTORS = """
import json, os, sys, time
from pathlib import Path

import numpy as np
from library_store import Library, LibraryLocked, TaskRecord

role, path = sys.argv[1], sys.argv[2]


def emit(**fields):
    print(json.dumps(fields), flush=True)


def wait_for(file):
    deadline = time.monotonic() + 60
    while not Path(file).exists():
        if time.monotonic() > deadline:
            sys.exit(f"{file} never appeared")
        time.sleep(0.01)


if role == "holder":  # holder PATH HOLDING_FILE GO_FILE
    library = Library.open(path, lock_timeout=30)
    with library.transaction("learn held", kind="learn") as tx:
        module = tx.add_module("conv", {"w": np.arange(1024, dtype=np.float32)}, created_by="held")
        tx.add_task(TaskRecord("held", "classification", "held", [[module.id]]))
        Path(sys.argv[3]).write_text(module.id)
        wait_for(sys.argv[4])
    emit(ok=True, state=library.state, module=module.id)

elif role == "writer":  # writer PATH TIMEOUT|env OPERATION STARTED_FILE
    timeout = None if sys.argv[3] == "env" else float(sys.argv[3])
    library = Library.open(path, lock_timeout=timeout)
    Path(sys.argv[5]).touch()
    try:
        if sys.argv[4] == "learn":
            with library.transaction("learn waiter", kind="learn") as tx:
                seen = sorted(m.id for m in library.modules())  # the state under the lock
                module = tx.add_module("conv", {"w": np.ones(512, np.float32)}, created_by="waiter")
                tx.add_task(TaskRecord("waiter", "classification", "waiter", [[module.id, *seen]]))
        elif sys.argv[4] == "snapshot":
            seen = []
            library.snapshot("from-writer")
        else:
            seen = []
            library.restore("base")
    except LibraryLocked as error:
        emit(ok=False, error=type(error).__name__, message=str(error))
        sys.exit(3)
    emit(ok=True, seen=seen, state=library.state)

elif role == "reader":  # reader PATH
    library = Library.open(path, lock_timeout=1)
    emit(
        state=library.state,
        modules=sorted(m.id for m in library.modules()),
        tasks=sorted(t.name for t in library.tasks()),
        problems=[str(p) for p in library.check()],
        log=[e.kind for e in library.log()],
    )
"""


def wait_until(condition: Callable[[], bool], what: str, process: subprocess.Popen | None = None) -> None:
    """Poll ``condition`` (a safety limit of 60 s only guards against a hung test)."""
    deadline = time.monotonic() + 60
    while not condition():
        if process is not None and process.poll() is not None:
            pytest.fail(f"{what}: the process ended first: {process.communicate()}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def last_json(output: str) -> dict:
    lines = [line for line in output.splitlines() if line.startswith("{")]
    assert lines, output
    return json.loads(lines[-1])


@pytest.fixture
def base_library(library_path: Path) -> Library:
    """A library with one committed task ('base') and a snapshot of it ('base')."""
    library = Library.create(library_path, lock_timeout=5)
    with library.transaction("learn base", kind="learn") as tx:
        module = tx.add_module("conv", {"w": np.zeros(512, np.float32)}, created_by="base")
        tx.add_task(TaskRecord("base", "classification", "base", [[module.id]]))
    library.snapshot("base")
    return library


@pytest.fixture
def actors(python_script, child_env, spawned, tmp_path):
    command = python_script("lock_actors", ACTORS)

    class Actors:
        holding = tmp_path / "holding"
        go = tmp_path / "go"

        def start(self, *args: str, env: dict | None = None) -> subprocess.Popen:
            process = subprocess.Popen(
                [*command, *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env or child_env,
            )
            spawned.append(process)
            return process

        def run(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
            return subprocess.run(
                [*command, *args], capture_output=True, text=True, env=env or child_env, timeout=120
            )

        def hold(self, path: Path) -> tuple[subprocess.Popen, str]:
            """Start the holder; return it and the id of its uncommitted module once it has the lock."""
            holder = self.start("holder", str(path), str(self.holding), str(self.go))
            wait_until(self.holding.exists, "the holder to take the lock", holder)
            wait_until(lambda: self.holding.read_text() != "", "the holder's module id", holder)
            return holder, self.holding.read_text()

        def release(self, holder: subprocess.Popen) -> dict:
            self.go.touch()
            out, err = holder.communicate(timeout=60)
            assert holder.returncode == 0, err
            return last_json(out)

    return Actors()


def observable(library_path: Path) -> tuple:
    library = Library.open(library_path)
    return (
        library.state,
        [m.id for m in library.modules()],
        [t.name for t in library.tasks()],
        [(s.name, s.state) for s in library.snapshots()],
        [e.id for e in library.log()],
    )


@pytest.mark.parametrize("operation", ["learn", "snapshot", "restore"])
def test_second_writer_gives_up_with_library_locked(
    base_library: Library, library_path: Path, actors, tmp_path: Path, operation: str
) -> None:
    before = observable(library_path)
    holder, _ = actors.hold(library_path)

    writer = actors.run("writer", str(library_path), "1", operation, str(tmp_path / "started"))
    assert writer.returncode == 3, (writer.stdout, writer.stderr)
    result = last_json(writer.stdout)
    assert result["error"] == "LibraryLocked"
    message = result["message"]
    assert "locked by another writer" in message and str(library_path) in message
    assert "1 s" in message and "LIFELONG_LOCK_TIMEOUT" in message
    assert "\n" not in message
    assert observable(library_path) == before  # the writer that gave up changed nothing

    committed = actors.release(holder)
    after = Library.open(library_path)
    assert [t.name for t in after.tasks()] == ["base", "held"]
    assert after.state == committed["state"]
    assert after.check() == []


def test_lock_timeout_from_the_environment(
    base_library: Library, library_path: Path, actors, child_env, tmp_path: Path
) -> None:
    holder, _ = actors.hold(library_path)
    env = {**child_env, "LIFELONG_LOCK_TIMEOUT": "0.5"}
    writer = actors.run("writer", str(library_path), "env", "learn", str(tmp_path / "started"), env=env)
    assert writer.returncode == 3, (writer.stdout, writer.stderr)
    assert "0.5 s" in last_json(writer.stdout)["message"]
    actors.release(holder)


def test_second_writer_waits_for_the_lock_then_succeeds(
    base_library: Library, library_path: Path, actors, tmp_path: Path
) -> None:
    holder, held_module = actors.hold(library_path)
    started = tmp_path / "started"
    writer = actors.start("writer", str(library_path), "60", "learn", str(started))
    wait_until(started.exists, "the waiting writer to start", writer)
    time.sleep(0.3)  # give it every chance to (wrongly) get through while A holds the lock
    assert writer.poll() is None, "the second writer finished while the first held the lock"
    assert [t.name for t in Library.open(library_path).tasks()] == ["base"]

    held = actors.release(holder)
    out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, (out, err)
    waited = last_json(out)
    assert held_module in waited["seen"], "the waiting writer saw the first writer's commit"

    library = Library.open(library_path)
    assert [t.name for t in library.tasks()] == ["base", "held", "waiter"]
    assert held_module in library.task("waiter").module_ids
    log = library.log()
    assert [e.message for e in log[:2]] == ["learn waiter", "learn held"]
    assert log[1].state == held["state"] and log[0].state == waited["state"] == library.state
    assert library.check() == []


def test_readers_see_only_the_committed_state_during_a_transaction(
    base_library: Library, library_path: Path, actors
) -> None:
    before = observable(library_path)
    chunks_before = set((library_path / "repo" / "chunks").iterdir())
    holder, held_module = actors.hold(library_path)

    reader = actors.run("reader", str(library_path))
    assert reader.returncode == 0, reader.stderr
    seen = last_json(reader.stdout)
    assert seen["state"] == before[0]
    assert seen["tasks"] == ["base"]
    assert held_module not in seen["modules"] and seen["modules"] == before[1]
    assert seen["problems"] == []
    assert seen["log"] == ["snapshot", "learn", "init"]
    # in this process too, with a library object opened while the transaction is open
    during = Library.open(library_path)
    assert observable(library_path) == before
    # the uncommitted module's bytes may already be on disk; they are invisible all the same
    assert set((library_path / "repo" / "chunks").iterdir()) >= chunks_before

    actors.release(holder)
    assert during.tasks() == base_library.tasks()  # a reader keeps its state until refresh
    during.refresh()
    assert [t.name for t in during.tasks()] == ["base", "held"]
    after = last_json(actors.run("reader", str(library_path)).stdout)
    assert held_module in after["modules"] and after["tasks"] == ["base", "held"]


def test_a_killed_holder_does_not_leave_the_library_locked(
    base_library: Library, library_path: Path, actors, tmp_path: Path
) -> None:
    before = observable(library_path)
    holder, held_module = actors.hold(library_path)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)

    writer = actors.run("writer", str(library_path), "5", "learn", str(tmp_path / "started"))
    assert writer.returncode == 0, (writer.stdout, writer.stderr)
    library = Library.open(library_path)
    assert [t.name for t in library.tasks()] == ["base", "waiter"]
    assert held_module not in {m.id for m in library.modules()}
    assert [e.id for e in library.log()[1:]] == before[4]
    assert library.check() == []


def test_writer_in_the_same_process_is_not_blocked_by_a_reader(base_library: Library, library_path: Path):
    reader = Library.open(library_path)
    with base_library.transaction("learn more", kind="learn") as tx:
        assert [t.name for t in reader.tasks()] == ["base"]
        tx.add_task(TaskRecord("more", "classification", "more", []))
    assert [t.name for t in reader.tasks()] == ["base"]
    reader.refresh()
    assert [t.name for t in reader.tasks()] == ["base", "more"]
