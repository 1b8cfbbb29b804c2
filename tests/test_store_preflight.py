"""Failing before the work: a lock timeout that cannot be used, a library that cannot be written, a
writer lock held by another process. Each is refused at once, in one line that blames the right
thing, and leaves the library as it was.

Read-only libraries are real read-only mounts (root ignores permission bits); the ``mounts``
fixture skips these tests where mounting is not permitted.
"""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest
from cli_helpers import fingerprint

from library_store import InvalidSetting, Library, LibraryLocked, NotWritable, StorageError

HOLD_LOCK = """
import sys, time
from filelock import FileLock

with FileLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


# ----------------------------------------------------------------------------- lock timeout
@pytest.mark.parametrize(
    "value, shown", [(math.nan, "nan"), (math.inf, "inf"), (-1.0, "-1.0"), (-0.5, "-0.5")]
)
def test_a_bad_lock_timeout_argument_is_refused(library: Library, library_path: Path, value, shown) -> None:
    with pytest.raises(InvalidSetting) as caught:
        Library.open(library_path, lock_timeout=value)
    assert str(caught.value) == f"--lock-timeout must be a number of seconds ≥ 0, got {shown}"


@pytest.mark.parametrize("text", ["abc", "nan", "-2", "inf", "1e999"])
def test_a_bad_lock_timeout_in_the_environment_is_refused(
    library: Library, library_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv("LIFELONG_LOCK_TIMEOUT", text)
    expected = f"LIFELONG_LOCK_TIMEOUT must be a number of seconds ≥ 0, got '{text}'"
    with pytest.raises(InvalidSetting) as caught:
        Library.open(library_path)
    assert str(caught.value) == expected, "blames the variable, not the library"
    with pytest.raises(InvalidSetting) as caught:
        Library.create(tmp_path / "new")
    assert str(caught.value) == expected
    assert not (tmp_path / "new").exists(), "refused before anything was made"
    assert Library.open(library_path, lock_timeout=2).lock_timeout == 2, "a value passed in wins"


@pytest.mark.parametrize("text, seconds", [("0", 0.0), (" 2.5 ", 2.5), ("", 30.0)])
def test_good_lock_timeouts_from_the_environment(
    library: Library, library_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, seconds: float
) -> None:
    monkeypatch.setenv("LIFELONG_LOCK_TIMEOUT", text)
    assert Library.open(library_path).lock_timeout == seconds


# ----------------------------------------------------------------------------- check_writable
def test_check_writable_passes_and_changes_nothing(library: Library, library_path: Path) -> None:
    library.snapshot("s")
    before = fingerprint(library_path)
    library.check_writable()
    assert fingerprint(library_path) == before
    assert sorted(p.name for p in library_path.rglob(".write-probe-*")) == []
    Library.open(library_path, lock_timeout=0).snapshot("t")  # the probe let the lock go


@pytest.mark.parametrize("read_only", [".", "repo"])
def test_a_read_only_library_is_not_writable(
    library: Library, library_path: Path, mounts, read_only: str
) -> None:
    library.snapshot("s")
    before = fingerprint(library_path)
    mounts(library_path / read_only, "ro")
    reopened = Library.open(library_path, lock_timeout=1)
    with pytest.raises(NotWritable) as caught:
        reopened.check_writable()
    assert str(caught.value) == f"library at {library_path} is not writable (Read-only file system)"
    assert [info.name for info in reopened.snapshots()] == ["s"], "reading still works"
    # a writer that skipped the check: the lock file (read-only) or the first write (repo/) fails
    with pytest.raises(NotWritable if read_only == "." else StorageError) as caught:
        reopened.snapshot("t")
    assert "\n" not in str(caught.value)
    assert fingerprint(library_path) == before


def test_a_lock_held_by_another_process_fails_the_check(
    library: Library, library_path: Path, python_script, child_env, spawned
) -> None:
    holder = subprocess.Popen(
        [*python_script("hold_lock", HOLD_LOCK), str(library_path / "writer.lock")],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env,
    )
    spawned.append(holder)
    assert holder.stdout.readline() == "held\n"
    before = fingerprint(library_path)
    waiting = Library.open(library_path, lock_timeout=0.5)
    with pytest.raises(LibraryLocked) as caught:
        waiting.check_writable()
    message = str(caught.value)
    assert "locked by another writer" in message and "0.5 s" in message and "\n" not in message
    assert fingerprint(library_path) == before

    holder.kill()
    holder.wait(timeout=30)
    waiting.check_writable()
