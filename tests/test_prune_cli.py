"""`lifelong prune` through the console script: the dry run changes nothing, bad settings are one
line, a task whose data are gone is never changed, a kill at any instant leaves the library as it
was or wholly pruned, and a second writer waits for the prune."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import LIFELONG, TINY, assert_one_line_error, fingerprint, halves_npz_arrays, run_cli
from filelock import FileLock, Timeout
from test_history import forge_prune
from test_prune import store_copy

from library_store import Library

pytestmark = pytest.mark.slow  # learns a task end to end through the console script


@pytest.fixture(scope="module")
def duplicated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Task ``a`` learned from an npz through the CLI, and task ``b``: a's assembly with an exact
    copy of a's first module (so a prune merges the two and re-fits the task it re-points)."""
    root = tmp_path_factory.mktemp("prune")
    np.savez(root / "halves.npz", **halves_npz_arrays(np.random.default_rng(5), test=60))
    library = root / "library"
    assert run_cli("init", library=library).returncode == 0
    result = run_cli("learn", f"npz:{root / 'halves.npz'}", "--name", "a", *TINY, library=library)
    assert result.returncode == 0, result.stderr
    opened = Library.open(library)
    store_copy(opened, "a", "b", opened.module_tensors(opened.task("a").layers[0][0]))
    return library


@pytest.fixture
def library(duplicated: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(duplicated, tmp_path / "library"))


def prune(library: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("--json", "prune", "--device", "cpu", "--refit-steps", "30", *args, library=library)


def start_prune(library: Path, refit_steps: int) -> subprocess.Popen[str]:
    """`lifelong --json prune` in a child process, running on while the test acts."""
    return subprocess.Popen(
        [LIFELONG, "--json", "prune", "--device", "cpu", "--refit-steps", str(refit_steps)],
        env={**os.environ, "LIFELONG_LIBRARY": str(library)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_dry_run_says_what_would_change_and_changes_nothing(library: Path) -> None:
    before = fingerprint(library)
    result = prune(library, "--dry-run")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["dry_run"] and not plan["committed"]
    (merge,) = plan["merges"]
    assert merge["similarity"] == 1.0
    assert len(plan["removed_modules"]) == 1 and plan["parameters_removed"] > 0
    (change,) = plan["changes"]
    assert change["accepted"] and set(change["before"]) == set(change["after"]) == {"val_acc", "test_acc"}
    assert fingerprint(library) == before


def test_prune_commits_once_and_restore_undoes_it(library: Path) -> None:
    assert run_cli("snapshot", "create", "before-prune", library=library).returncode == 0
    copy_before = Library.open(library).task("b").layers[0][0]
    result = prune(library)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["committed"]
    opened = Library.open(library)
    assert opened.log()[0].kind == "prune" and "1 modules removed" in opened.log()[0].message
    assert opened.task("a").layers[0][0] == opened.task("b").layers[0][0]
    (changed,) = [t for t in opened.tasks() if t.details.get("prunes")]
    assert changed.details["prunes"][0]["accepted"]
    evaluated = json.loads(run_cli("--json", "eval", changed.name, library=library).stdout)
    assert evaluated["probe_logits_identical"] and evaluated["test_acc_matches"], "its new record holds"
    assert run_cli("check", library=library).returncode == 0
    history = json.loads(run_cli("--json", "metrics", "--no-eval", library=library).stdout)
    row = next(r for r in history["tasks"] if r["name"] == changed.name)
    record = changed.details["prunes"][0]
    assert row["test_acc_stored"] == record["before"]["test_acc"], "counted at its accuracy when learned"
    assert row["test_acc_now"] == changed.metrics["test_acc"] == record["after"]["test_acc"]
    again = json.loads(prune(library).stdout)
    assert not again["committed"] and again["merges"] == [], "a pruned library has nothing left to prune"
    assert run_cli("restore", "before-prune", library=library).returncode == 0
    restored = Library.open(library)
    assert (
        restored.task("b").layers[0][0] == copy_before
        and len(restored.modules()) == len(opened.modules()) + 1
    )
    assert restored.check() == []


def test_metrics_count_what_a_prune_cost_the_last_task(library: Path) -> None:
    """Issue 26: a prune's loss on the LAST task in commit order (b) is forgetting too. The
    prune's record is forged (a real merge of an exact copy costs nothing) as `prune` writes it."""
    dropped = forge_prune(Library.open(library), "b", 0.5)
    result = run_cli("--json", "metrics", "--no-eval", library=library)
    assert result.returncode == 0, result.stderr
    history = json.loads(result.stdout)
    assert [row["name"] for row in history["tasks"]] == ["a", "b"]
    assert history["tasks"][-1]["test_acc_stored"] == dropped > 0.5
    assert history["matrix"][-1][-1] == history["tasks"][-1]["test_acc_now"] == 0.5
    assert history["summary"]["forgetting_chaudhry"] > 0 and history["summary"]["backward_transfer"] < 0
    assert history["summary"]["forgetting_chaudhry"] == pytest.approx((dropped - 0.5) / 2)


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [
        ("--similarity", "1.5", "--similarity"),
        ("--tolerance", "-1", "--tolerance"),
        ("--share", "1", "--share"),
    ],
)
def test_bad_settings_are_one_line_and_change_nothing(
    library: Path, option: str, value: str, needle: str
) -> None:
    before = fingerprint(library)
    assert_one_line_error(prune(library, option, value), needle)
    assert fingerprint(library) == before


def test_a_task_whose_data_are_gone_is_never_changed(library: Path, tmp_path: Path) -> None:
    spec = Library.open(library).task("b").spec
    moved = tmp_path / "elsewhere.npz"
    Path(spec.removeprefix("npz:")).rename(moved)
    try:
        result = prune(library)
    finally:
        moved.rename(spec.removeprefix("npz:"))
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["changes"] == [] and plan["removed_modules"] == [] and not plan["committed"]
    (why,) = plan["unchanged"].values()  # the task the merge would re-point
    assert "cannot be reloaded" in why and "elsewhere" not in why


def test_a_kill_during_a_prune_leaves_the_library_as_it_was_or_wholly_pruned(
    library: Path, tmp_path: Path
) -> None:
    rng = random.Random(7)
    outcomes = []
    for round_number in range(4):
        copy = Path(shutil.copytree(library, tmp_path / f"round{round_number}"))
        before = Library.open(copy).state
        child = start_prune(copy, refit_steps=200)
        time.sleep(rng.uniform(0.5, 6.0))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        opened = Library.open(copy, lock_timeout=10)
        assert opened.check() == [], f"round {round_number}"
        if opened.state == before:
            outcomes.append("before")
        else:
            assert opened.log()[0].kind in ("prune", "recovered")
            assert opened.task("a").layers[0][0] == opened.task("b").layers[0][0]
            outcomes.append("pruned")
    assert "before" in outcomes, outcomes  # at least one kill landed in the middle


def test_a_second_writer_waits_for_the_prune(library: Path) -> None:
    child = start_prune(library, refit_steps=300)
    lock, deadline = FileLock(library / "writer.lock", timeout=0), time.monotonic() + 60
    while True:  # until the prune holds the writer lock
        try:
            lock.acquire()
        except Timeout:
            break
        lock.release()
        assert time.monotonic() < deadline and child.poll() is None, "the prune never held the lock"
        time.sleep(0.05)
    refused = run_cli("--lock-timeout", "0", "snapshot", "create", "impatient", library=library)
    assert refused.returncode == 2 and "locked by another writer" in refused.stderr
    waited = run_cli("--lock-timeout", "120", "snapshot", "create", "after-prune", library=library)
    assert waited.returncode == 0, waited.stderr
    assert child.wait() == 0 and json.loads(child.stdout.read())["committed"]
    opened = Library.open(library)  # the second writer went in only after the prune's commit
    assert opened.snapshots() and opened.log()[0].kind == "snapshot" and opened.log()[1].kind == "prune"


def test_learn_with_prune_auto_prunes_after_each_task(library: Path) -> None:
    spec = Library.open(library).task("a").spec
    result = run_cli("--json", "learn", spec, "--name", "c", "--prune", "auto", *TINY, library=library)
    assert result.returncode == 0, result.stderr
    opened = Library.open(library)
    kinds = [entry.kind for entry in opened.log()[:2]]
    assert kinds == ["prune", "learn"] and "learn c" in opened.log()[1].message
    assert opened.task("a").layers[0][0] == opened.task("b").layers[0][0]
    assert_one_line_error(run_cli("learn", spec, "--prune", "sometimes", library=library), "--prune")
