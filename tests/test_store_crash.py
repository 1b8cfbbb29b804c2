"""Crash safety: a writer killed with SIGKILL at any instant leaves the last committed state.

A child process loops forever over learn / snapshot / restore, printing one JSON line before each
operation ("begin") and one after it returns ("ack"). The parent kills it at a random (seeded)
instant, then checks that the library opens, is healthy, and holds either the last acknowledged
state or the state of the one operation that was in flight; and that a new writer can go on.

Invariant of every committed state: each learn adds exactly ``K`` modules and one task that uses
all of them, so ``#modules == K * #tasks`` and every module is used by exactly one task.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from library_store import Finding, Library, TaskRecord

K = 2  # modules per learn
ROUNDS = 20
SEED = 20240611

CHILD = f"""
import json, random, sys
import numpy as np
from library_store import Library, TaskArrays, TaskRecord

K = {K}
path, seed, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rnd, rng = random.Random(seed), np.random.default_rng(seed)
library = Library.open(path, lock_timeout=30)


def say(*parts):
    print(json.dumps(parts), flush=True)


say("ready", library.state)
i = 0
while True:
    i += 1
    roll = rnd.random()
    snapshots = [info.name for info in library.snapshots()] if 0.12 <= roll < 0.22 else []
    if roll < 0.12:
        name = f"{{tag}}-s{{i}}"
        say("begin", "snapshot", name)
        library.snapshot(name)
        say("ack", "snapshot", library.state, name)
    elif roll < 0.22 and snapshots:
        target = rnd.choice(snapshots)
        say("begin", "restore", target)
        backup = library.restore(target)
        say("ack", "restore", library.state, backup)
    else:
        name = f"{{tag}}-t{{i}}"
        say("begin", "learn", name)
        with library.transaction(f"learn {{name}}", kind="learn") as tx:
            ids = []
            for _ in range(K):
                weight = rng.standard_normal(rnd.randint(256, 1024)).astype(np.float32)  # 1-4 KB
                bias = rng.standard_normal(8).astype(np.float32)
                ids.append(tx.add_module("conv", {{"weight": weight, "bias": bias}}, created_by=name).id)
            layers = [[module_id] for module_id in ids]
            uses = [[{{"alpha": np.float32(i), "beta": np.float32(-i)}}] for _ in ids]
            tx.add_task(TaskRecord(name, "classification", name, layers), TaskArrays(uses=uses))
        say("ack", "learn", library.state, name)
"""


def learn_in_parent(library: Library, name: str, rng: np.random.Generator) -> None:
    with library.transaction(f"learn {name}", kind="learn") as tx:
        ids = [
            tx.add_module("dense", {"w": rng.standard_normal(512).astype(np.float32)}, created_by=name).id
            for _ in range(K)
        ]
        tx.add_task(TaskRecord(name, "classification", name, [ids]))


@dataclass
class Model:
    """What the parent knows: the last acknowledged state and the task set of every snapshot."""

    state: str
    tasks: frozenset[str]
    snapshot_tasks: dict[str, frozenset[str]] = field(default_factory=dict)


def parse(stdout: str) -> list[list]:
    return [json.loads(line) for line in stdout.splitlines(keepends=True) if line.endswith("\n")]


def replay(model: Model, lines: list[list]) -> tuple[list | None, dict[str, int]]:
    """Apply the acknowledged operations to ``model``; return the operation in flight (if any)."""
    assert lines and lines[0][0] == "ready", lines[:1]
    assert lines[0][1] == model.state, "the child opened a different state than the parent left"
    in_flight, counts = None, {"learn": 0, "snapshot": 0, "restore": 0}
    for line in lines[1:]:
        if line[0] == "begin":
            assert in_flight is None
            in_flight = line[1:]
            continue
        _, op, state, name = line
        assert in_flight is not None and in_flight[0] == op
        if op == "learn":
            assert in_flight[1] == name
            model.tasks = model.tasks | {name}
        elif op == "snapshot":
            assert state == model.state
            model.snapshot_tasks[name] = model.tasks
        else:  # restore; ``name`` is the automatic snapshot of the state before
            model.snapshot_tasks[name] = model.tasks
            model.tasks = model.snapshot_tasks[in_flight[1]]
        model.state = state
        counts[op] += 1
        in_flight = None
    return in_flight, counts


def verify_after_kill(library: Library, model: Model, in_flight: list | None) -> str:
    """Check the library against the model; bring the model up to date; say what was found."""
    problems = library.check()
    # The only problems a kill may leave: a change the history has not logged yet (the next
    # writer logs it), and only while a change was in flight.
    assert all(problem.where == "history" and "never logged" in problem.what for problem in problems), (
        problems
    )
    assert not problems or in_flight is not None, problems
    tasks = library.tasks()
    modules = {module.id for module in library.modules()}
    used = [module_id for task in tasks for module_id in task.module_ids]
    assert len(modules) == K * len(tasks)
    assert sorted(used) == sorted(modules), "every module is used by exactly one task"
    names = frozenset(task.name for task in tasks)
    snapshots = {info.name: info.state for info in library.snapshots()}

    # Tags the parent has never been told about can only come from the operation in flight
    # (a snapshot, or the automatic snapshot of a restore), so they name the last acked state.
    for name in set(snapshots) - set(model.snapshot_tasks):
        assert in_flight is not None and in_flight[0] in ("snapshot", "restore"), name
        assert snapshots[name] == model.state
        model.snapshot_tasks[name] = model.tasks
    assert set(model.snapshot_tasks) == set(snapshots)

    if library.state == model.state:
        assert names == model.tasks
        outcome = "last acknowledged state"
    else:
        assert in_flight is not None, "the state changed without any operation in flight"
        op, target = in_flight
        if op == "learn":
            assert names == model.tasks | {target}
        else:
            assert op == "restore", op
            assert library.state == snapshots[target]
            assert names == model.snapshot_tasks[target]
        outcome = f"in-flight {op} committed"
    model.state, model.tasks = library.state, names
    return outcome


def test_sigkill_at_random_instants_leaves_a_committed_state(
    library_path: Path, python_script, child_env, spawned
) -> None:
    rnd = random.Random(SEED)
    rng = np.random.default_rng(SEED)
    library = Library.create(library_path, lock_timeout=10)
    learn_in_parent(library, "seed-task", rng)
    library.snapshot("origin")
    model = Model(library.state, frozenset({"seed-task"}), {"origin": frozenset({"seed-task"})})
    command = python_script("crash_child", CHILD)
    outcomes: dict[str, int] = {}
    totals = {"learn": 0, "snapshot": 0, "restore": 0}
    rounds_with_work = 0

    for round_number in range(ROUNDS):
        child = subprocess.Popen(
            [*command, str(library_path), str(rnd.randrange(2**31)), f"r{round_number}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env,
        )
        spawned.append(child)
        seen = child.stdout.readline()
        assert seen.startswith('["ready"'), (seen, child.stderr.read() if child.poll() is not None else "")
        if rnd.random() < 0.7:  # most rounds: let the child commit at least once before the kill
            while not seen.splitlines()[-1].startswith('["ack"'):
                line = child.stdout.readline()
                assert line, f"the child ended on its own: {child.stderr.read()}"
                seen += line
            rounds_with_work += 1
        time.sleep(rnd.uniform(0.0, 0.35))
        assert child.poll() is None, f"child died on its own: {child.stderr.read()}"
        child.send_signal(signal.SIGKILL)
        # Read through the same buffered pipe objects as ``readline`` (``communicate`` reads the
        # raw descriptors and would lose lines already buffered).
        rest, errors = child.stdout.read(), child.stderr.read()
        assert child.wait(timeout=30) == -signal.SIGKILL, errors

        in_flight, counts = replay(model, parse(seen + rest))
        for op, n in counts.items():
            totals[op] += n
        reopened = Library.open(library_path, lock_timeout=10)
        outcome = verify_after_kill(reopened, model, in_flight)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        assert reopened.log(), "history is readable after the kill"

        # A writer can go on at once: the lock died with the child, and an unlogged commit gets
        # its history entry before the new one.
        before = reopened.state
        learn_in_parent(reopened, f"parent-{round_number}", rng)
        log = reopened.log()
        assert log[0].kind == "learn" and log[0].state == reopened.state
        assert log[1].state == before, "the killed writer's last commit is in the history"
        assert reopened.check() == [], "and so is every snapshot it took"
        model.state, model.tasks = reopened.state, model.tasks | {f"parent-{round_number}"}

    final = Library.open(library_path)
    assert final.check() == []
    assert {task.name for task in final.tasks()} == model.tasks
    assert sum(totals.values()) >= rounds_with_work > 0, (totals, outcomes)
    print("operations acknowledged:", totals, "kill outcomes:", outcomes)


# ----------------------------------------------------------------------------- injected crash points

CRASH_POINT = """
import os, signal, sys
import numpy as np
from library_store import Library, TaskRecord
from library_store import library as library_module

path, point = sys.argv[1], sys.argv[2]
operation, where = point.split("@")
library = Library.open(path, lock_timeout=10)


def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


class Repo:
    '''The library's icechunk repository, with one method replaced by a kill.'''

    def __init__(self, repo, method):
        self._repo, self._method = repo, method

    def __getattr__(self, name):
        return die if name == self._method else getattr(self._repo, name)


original_record = library_module.Library._record


def record_or_die(self, kind, *args, **kwargs):
    if kind == operation:
        die()
    return original_record(self, kind, *args, **kwargs)


if where == "journal":  # killed after changing main or the tags, before writing the history
    library_module.Library._record = record_or_die
elif where != "inside":  # killed instead of calling one repository method
    library._repo = Repo(library._repo, where)

if operation == "learn":
    with library.transaction("learn doomed", kind="learn") as tx:
        module = tx.add_module("conv", {"w": np.arange(600, dtype=np.float32)}, created_by="doomed")
        tx.add_task(TaskRecord("doomed", "classification", "doomed", [[module.id]]))
        if where == "inside":
            die()
elif operation == "snapshot":
    library.snapshot("doomed-snapshot")
else:
    library.restore("first")
print("not killed", flush=True)
"""

LATE = "(logged after an interruption)"
WHY = "(a change was interrupted, or made behind the library's back; the next change logs it)"
UNLOGGED_STATE = Finding("history", f"the current state was never logged {WHY}")


def unlogged(snapshot: str) -> Finding:
    return Finding("history", f"snapshot {snapshot!r} was never logged {WHY}")


@dataclass
class Outcome:
    """What a kill at one point leaves, and what the next writer logs for it."""

    tasks: set[str]
    committed: bool  # the in-flight change moved main
    snapshots: set[str]
    problems: list[Finding]  # check() right after the kill: where history and repository disagree
    logged: list[tuple[str, str, dict[str, str]]]  # the next writer's entries: kind, message, details


# "operation@where": killed inside the transaction's block, instead of calling a repository
# method, or just before writing the history entry (after main or the tags moved).
CRASH_POINTS = {
    "learn@inside": Outcome({"a", "b"}, False, {"first"}, [], []),
    "learn@journal": Outcome(
        {"a", "b", "doomed"},
        True,
        {"first"},
        [UNLOGGED_STATE],
        [("recovered", "learn doomed (committed; logged after an interruption)", {})],
    ),
    "snapshot@create_tag": Outcome({"a", "b"}, False, {"first"}, [], []),
    "snapshot@journal": Outcome(
        {"a", "b"},
        False,
        {"first", "doomed-snapshot"},
        [unlogged("doomed-snapshot")],
        [("snapshot", f"snapshot 'doomed-snapshot' created {LATE}", {"snapshot": "doomed-snapshot"})],
    ),
    "restore@create_tag": Outcome({"a", "b"}, False, {"first"}, [], []),
    "restore@reset_branch": Outcome(  # the backup is all it did: kept, and said so
        {"a", "b"},
        False,
        {"first", "before-restore-1"},
        [unlogged("before-restore-1")],
        [
            (
                "snapshot",
                "snapshot 'before-restore-1' taken by a restore that was interrupted before changing "
                f"anything {LATE}",
                {"snapshot": "before-restore-1"},
            )
        ],
    ),
    "restore@journal": Outcome(  # main moved: a restore entry (it used to say "recovered: learn b")
        {"a"},
        True,
        {"first", "before-restore-1"},
        [unlogged("before-restore-1"), UNLOGGED_STATE],
        [
            (
                "restore",
                f"restored snapshot 'first'; the state before is snapshot 'before-restore-1' {LATE}",
                {"snapshot": "first", "backup": "before-restore-1"},
            )
        ],
    ),
}


@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_kill_at_a_chosen_point(library_path: Path, python_script, child_env, point: str) -> None:
    rng = np.random.default_rng(0)
    library = Library.create(library_path, lock_timeout=10)
    learn_in_parent(library, "a", rng)
    library.snapshot("first")
    learn_in_parent(library, "b", rng)
    before_state, before_log = library.state, library.log()

    child = subprocess.run(
        [*python_script("crash_point", CRASH_POINT), str(library_path), point],
        capture_output=True,
        text=True,
        env=child_env,
        timeout=60,
    )
    assert child.returncode == -signal.SIGKILL, (child.stdout, child.stderr)

    expected = CRASH_POINTS[point]
    reopened = Library.open(library_path, lock_timeout=5)
    assert reopened.check() == expected.problems
    assert {task.name for task in reopened.tasks()} == expected.tasks
    assert (reopened.state != before_state) == expected.committed
    assert {info.name for info in reopened.snapshots()} == expected.snapshots
    assert {info.state for info in reopened.snapshots() if info.automatic} <= {before_state}
    assert reopened.log() == before_log  # the child died before writing any history
    assert len(reopened.module_tensors(reopened.tasks()[0].module_ids[0])) == 1

    after_kill = reopened.state
    learn_in_parent(reopened, "after", rng)  # the next writer first logs what the killed one did
    log = reopened.log()
    assert log[0].message == "learn after" and log[0].state == reopened.state
    logged = log[1 : 1 + len(expected.logged)]
    assert [(entry.kind, entry.message, entry.details) for entry in logged] == expected.logged
    assert all(entry.state == after_kill for entry in logged)
    assert log[1 + len(expected.logged) :] == before_log
    assert reopened.check() == [], "history, snapshots and state agree again"
    assert all(info.message for info in reopened.snapshots()), "every snapshot says where it came from"
    if point == "restore@reset_branch":  # the next restore does not reuse the kept backup's name
        assert reopened.restore("first") == "before-restore-2"
