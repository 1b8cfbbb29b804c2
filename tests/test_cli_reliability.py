"""No silent wrong answers, every failure before the work: the CLI as a demanding user tries it.

Every case runs the real console script. An error is one line on stderr, exit code 2 (130 for
Ctrl-C), no traceback, and the library is byte-for-byte as it was. Commands that must fail
before any training run in human mode, where a task that starts prints ``learning NAME`` on
stderr: a single ``error:`` line is the proof that nothing was trained first.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import (
    LIFELONG,
    TINY,
    assert_one_line_error,
    fill,
    fingerprint,
    halves_npz_arrays,
    run_cli,
)
from filelock import FileLock
from PIL import Image

from library_store import Library
from lifelong.listings import to_json

TASK = "halves"
RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
STREAMS_RESULT = RESULTS / "current" / "seed0" / "streams-pairs-quick.json"  # a real result, one seed
pytestmark = pytest.mark.slow  # learns tasks end to end through the console script


def run(library: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, library=library, timeout=timeout)


def strict_json(text: str) -> object:
    """Parse JSON as RFC 8259 does: bare NaN / Infinity are errors."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``halves``: an easy two-class npz; ``noise``: random labels (no target is reachable)."""
    root = tmp_path_factory.mktemp("npz")
    rng = np.random.default_rng(3)
    arrays = halves_npz_arrays(rng)
    np.savez(root / "halves.npz", **arrays)
    noise = {key: rng.permutation(value) if key.startswith("y") else value for key, value in arrays.items()}
    np.savez(root / "noise.npz", **noise)
    return {"halves": root / "halves.npz", "noise": root / "noise.npz"}


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory, npz: dict[str, Path]) -> Path:
    library = tmp_path_factory.mktemp("learned") / "library"
    assert run(library, "init").returncode == 0
    result = run(library, "--json", "learn", f"npz:{npz['halves']}", "--name", TASK, *TINY)
    assert result.returncode == 0, result.stderr
    return library


@pytest.fixture
def library(learned: Path, tmp_path: Path) -> Path:
    """A private copy of the learned library, for one test."""
    return Path(shutil.copytree(learned, tmp_path / "library"))


def assert_refused(library: Path, *args: str, needles: tuple[str, ...] = (), env: dict | None = None) -> str:
    before = fingerprint(library)
    if env is None:
        result = run(library, *args)
    else:
        result = subprocess.run([LIFELONG, *args], capture_output=True, text=True, env=env, timeout=180)
    line = assert_one_line_error(result, *needles)
    assert fingerprint(library) == before, f"lifelong {' '.join(args)} changed the library"
    return line


# ---------------------------------------------------------------------------- strict JSON
def test_json_output_never_holds_nan_or_infinity() -> None:
    data = {"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": np.float32("nan"), "d": np.int64(3)}
    assert strict_json(to_json(data)) == {"a": None, "b": [None, None, 1.5], "c": None, "d": 3}


def test_every_json_command_prints_strict_json(library: Path) -> None:
    for args in (("info",), ("tasks",), ("modules",), ("modules", "--task", TASK), ("log",), ("eval", TASK)):
        result = run(library, "--json", *args)
        assert result.returncode == 0, result.stderr
        strict_json(result.stdout)


# ---------------------------------------------------------------------------- missed targets
def test_a_missed_target_is_said_recorded_and_refusable(library: Path, npz: dict[str, Path]) -> None:
    spec = f"npz:{npz['noise']}"
    kept = run(library, "--json", "learn", spec, "--name", "noisy", "--target", "0.99", *TINY)
    assert kept.returncode == 0, kept.stderr
    assert json.loads(kept.stdout)[0]["target_met"] is False
    assert kept.stderr.strip().splitlines() == [
        "warning: 'noisy' missed its target (status below-target); "
        "it was committed anyway (--require-target refuses such tasks)"
    ]
    record = Library.open(library).task("noisy")
    assert record.status == "below-target" and record.metrics["val_acc"] < 0.99

    args = ("--json", "learn", spec, "--name", "refused", "--target", "0.99", "--require-target", *TINY)
    assert_refused(library, *args, needles=("'refused' missed its target", "< 0.99", "nothing was committed"))


def test_a_met_target_says_so(learned: Path) -> None:
    record = Library.open(learned).task(TASK)
    assert record.status == "learned" and record.metrics["target_met"] is True


# ---------------------------------------------------------------------------- before the work
def test_a_bad_later_spec_fails_before_the_first_task_trains(library: Path, npz: dict[str, Path]) -> None:
    good = f"npz:{npz['halves']}"
    cases = [
        ((good, "atari:NoSuchGame"), ("NoSuchGame",)),
        ((good, "atari:Pong", "--sources", "nosuch"), ("--sources", "'nosuch'")),
        ((good, "mnist:"), ("mnist:",)),
        ((good, "--target", "1.5"), ("--target must lie in (0, 1]",)),
        ((good, "--population", "1"), ("--population must be at least 2",)),
        ((good, good, "--name", "x", "--name", "x"), ("the same task name",)),
    ]
    for args, needles in cases:
        line = assert_refused(library, "learn", *TINY, *args, needles=needles)
        assert "--elite" not in line


def test_a_held_lock_fails_before_training(library: Path, npz: dict[str, Path]) -> None:
    with FileLock(library / "writer.lock"):
        start = time.monotonic()
        assert_refused(
            library, "--lock-timeout", "1", "learn", f"npz:{npz['halves']}", *TINY, needles=("locked",)
        )
    assert time.monotonic() - start < 60


def test_a_read_only_library_fails_before_training(library: Path, npz: dict[str, Path], mounts) -> None:
    mounts(library, "ro")
    assert_refused(library, "learn", f"npz:{npz['halves']}", *TINY, needles=("not writable",))
    assert_refused(library, "snapshot", "create", "s1", needles=("not writable",))
    assert run(library, "--json", "tasks").returncode == 0  # reading still works


# ---------------------------------------------------------------------------- one line, no traceback
def test_bad_numbers_are_one_line(library: Path, npz: dict[str, Path]) -> None:
    spec = f"npz:{npz['halves']}"
    assert_refused(library, "learn", spec, "--seed", "99999999999999999999", *TINY, needles=("--seed",))
    assert_refused(library, "eval", TASK, "--seed", "-1", needles=("--seed",))
    assert_refused(library, "play", TASK, "--video", "x.gif", "--max-frames", "0", needles=("--max-frames",))
    assert_refused(library, "--lock-timeout", "nan", "snapshot", "create", "s", needles=("--lock-timeout",))
    assert_refused(library, "--lock-timeout", "-1", "snapshot", "create", "s", needles=("--lock-timeout",))
    env = {**os.environ, "LIFELONG_LIBRARY": str(library), "LIFELONG_LOCK_TIMEOUT": "abc"}
    line = assert_refused(library, "snapshot", "create", "s", needles=("LIFELONG_LOCK_TIMEOUT",), env=env)
    assert "cannot be read" not in line
    assert_refused(library, "snapshot", "create", "before-restore-1", needles=("reserved",))


def test_export_to_a_path_that_cannot_be_written(library: Path, tmp_path: Path, mounts) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    line = assert_refused(library, "export", TASK, str(folder), needles=(str(folder), "is a folder"))
    assert "File exists" not in line
    assert_refused(library, "export", TASK, str(a_file / "net.pt2"), needles=(str(a_file), "is a file"))
    read_only = mounts(tmp_path / "read-only", "ro")
    assert_refused(library, "export", TASK, str(read_only / "net.pt2"), needles=("not writable",))
    assert not list(read_only.iterdir())
    assert_refused(library, "export", TASK, "/proc/net.pt2", needles=("/proc/net.pt2",))
    full = mounts(tmp_path / "full", "tmpfs", size="16k")  # the exported program is larger
    assert_refused(library, "export", TASK, str(full / "net.pt2"), needles=(str(full / "net.pt2"),))
    assert not list(full.iterdir()), "a failed export left a partial file"


# ---------------------------------------------------------------------------- damage, full disk
def test_damaged_weights_are_refused_not_served(library: Path, tmp_path: Path) -> None:
    image = tmp_path / "digit.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(image)
    for chunk in (library / "repo" / "chunks").iterdir():  # two bytes flipped in every tensor chunk
        data = bytearray(chunk.read_bytes())
        data[len(data) // 2] ^= 0xFF
        data[-1] ^= 0xFF
        chunk.write_bytes(bytes(data))
    out = tmp_path / "net.pt2"
    for args in (("eval", TASK), ("predict", TASK, str(image)), ("export", TASK, str(out))):
        assert_refused(library, *args, needles=("is damaged", "lifelong check", "lifelong restore"))
    assert not out.exists()
    assert run(library, "check").returncode == 1


def test_a_full_disk_is_one_line_and_changes_nothing(
    learned: Path, npz: dict[str, Path], tmp_path: Path, mounts
) -> None:
    disk = mounts(tmp_path / "disk", "tmpfs", size="8m")
    library = Path(shutil.copytree(learned, disk / "library"))
    assert run(library, "snapshot", "create", "start").returncode == 0
    fill(disk, leave=64 * 1024)  # room to check and train, not to store a new head
    before = fingerprint(library)
    learned_again = run(library, "--json", "learn", f"npz:{npz['halves']}", "--name", "again", *TINY)
    assert_one_line_error(learned_again, "no space left on device", "learn again", "nothing was committed")
    assert fingerprint(library) == before
    fill(disk)
    assert_refused(library, "snapshot", "create", "later", needles=("no space left on device",))
    assert_refused(library, "restore", "start", needles=("no space left on device",))
    (disk / "filler").unlink()
    assert run(library, "check").returncode == 0
    assert run(library, "snapshot", "create", "later").returncode == 0


# ---------------------------------------------------------------------------- Ctrl-C
def interrupt_when(library: Path, args: list[str], marker: str) -> subprocess.CompletedProcess[str]:
    """Run ``lifelong ARGS`` in human mode; send a real SIGINT once ``marker`` appears on stderr."""
    env = {**os.environ, "LIFELONG_LIBRARY": str(library), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [LIFELONG, *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        # as in a terminal: a test run started in the background inherits SIGINT ignored, and
        # Python then never turns it into KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen = []
    deadline = time.monotonic() + 240
    assert process.stderr is not None
    for line in process.stderr:
        seen.append(line)
        if marker in line:  # the task has started; it takes seconds, the signal lands in it
            process.send_signal(signal.SIGINT)
            break
        assert time.monotonic() < deadline, "".join(seen)
    stdout, rest = process.communicate(timeout=120)
    return subprocess.CompletedProcess(args, process.returncode, stdout, "".join(seen) + rest)


def test_ctrl_c_says_what_was_committed(library: Path, npz: dict[str, Path]) -> None:
    easy, hard = f"npz:{npz['halves']}", f"npz:{npz['noise']}"
    # The noise task cannot reach the target: it grows, and with these steps it runs for minutes,
    # so the interrupt surely lands inside it.
    slow = ("--target", "0.99", "--so-steps", "100000", "--final-steps", "100000", "--eval-every", "1000")
    args = ["learn", *TINY, *slow, easy, hard, "--name", "first", "--name", "second"]
    result = interrupt_when(library, args, "learning second")
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: interrupted: committed 'first' in this call; 'second' was in progress and was not committed"
    )
    library_now = Library.open(library)
    assert {task.name for task in library_now.tasks()} == {TASK, "first"}
    assert library_now.check() == []

    before = fingerprint(library)
    result = interrupt_when(library, ["learn", *TINY, *slow, hard, "--name", "third"], "learning third")
    assert result.returncode == 130, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: interrupted: nothing was committed; 'third' was in progress and was not committed"
    )
    assert fingerprint(library) == before


# ---------------------------------------------------------------------------- every option, every task
def test_every_option_is_checked_whatever_the_tasks_family(library: Path, npz: dict[str, Path]) -> None:
    spec = f"npz:{npz['halves']}"
    cases = [
        ((spec, "--frames", "-1"), ("--frames",)),
        ((spec, "--frames", "0"), ("--frames",)),  # 0 is not "no limit": leave --frames out for that
        ((spec, "--frames", "5000"), ("--frames", "Atari tasks only")),
        ((spec, "--trials", "2", "--resume"), ("--trials, --resume", "Atari tasks only")),
        ((spec, "--lr", "inf"), ("--lr must be a positive finite number",)),
        ((spec, "--lr", "nan"), ("--lr",)),
        (("atari:Pong", "--so-steps", "5"), ("--so-steps", "image tasks only")),
        (("atari:Pong", "--target", "inf"), ("--target must be a finite score",)),
    ]
    for args, needles in cases:
        start = time.monotonic()
        assert_refused(library, "learn", *args, needles=needles)
        assert time.monotonic() - start < 30, args


def test_bench_seeds_are_checked_before_any_work(library: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    for bench in (("streams", "few-shot", "--quick"), ("smart-mnist", "--quick")):
        for seeds, needle in (
            ("-1", "--seeds must lie in 0..4294967295"),
            ("99999999999999999999", "--seeds must lie in 0..4294967295"),
            ("1,1", "--seeds must be distinct"),
            ("1,x", "comma-separated whole numbers"),
        ):
            start = time.monotonic()
            args = ("bench", *bench, "--seeds", seeds, "--results-dir", str(results))
            assert_refused(library, *args, needles=(needle,))
            assert time.monotonic() - start < 30, args
    assert not results.exists()


def test_a_file_where_a_folder_is_expected_is_said_before_any_work(library: Path, tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    seed7 = json.loads(STREAMS_RESULT.read_text())  # the same run, as if of seed 7: two to merge
    seed7["seeds"] = [7]
    for condition in seed7["runs"]["conditions"].values():
        condition["7"] = condition.pop("0")
    (tmp_path / "seed7").mkdir()
    (tmp_path / "seed7" / STREAMS_RESULT.name).write_text(json.dumps(seed7))
    merge = ("bench", "merge", str(STREAMS_RESULT), str(tmp_path / "seed7" / STREAMS_RESULT.name))
    for args in (
        ("report", "--no-eval", "--out", str(a_file)),
        ("bench", "streams", "few-shot", "--quick", "--results-dir", str(a_file)),
        (*merge, "--results-dir", str(a_file)),
    ):
        line = assert_refused(library, *args, needles=(str(a_file),))
        assert "File exists" not in line and "Not a directory" not in line, line
    line = assert_refused(library, "report", "--no-eval", "--out", str(a_file), needles=("it is a file",))
    assert a_file.read_text() == "x"


def test_demo_on_a_library_it_cannot_open_says_why(
    library: Path, raw_main_session, raw_root_group, tmp_path: Path
) -> None:
    session = raw_main_session(library)
    raw_root_group(session).attrs["schema_version"] = 99  # as a newer lifelong would write it
    session.commit("schema 99")
    line = assert_refused(library, "demo", "--out", str(tmp_path / "report"), needles=("schema 99",))
    assert "already exists" not in line
    assert not (tmp_path / "report").exists()
