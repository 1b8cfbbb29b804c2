"""Shared fixtures: a fresh library per test, tensor makers, a raw icechunk handle, child processes.

Fixtures here are generic on purpose (the store tests and the CLI tests both use them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import icechunk
import numpy as np
import pytest
import zarr

from library_store import Library

REPO_ROOT = Path(__file__).resolve().parent.parent

if "PYTEST_XDIST_WORKER" in os.environ:
    # Two test processes on two cores: one torch thread each, and one in every command they start
    # (torch's default, a thread per core in each, oversubscribes the cores: the suite took 9 min 38 s
    # instead of 7 min 43 s).
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The image data cache ($LIFELONG_DATA, else the repository's data/), MNIST fetched once."""
    from lifelong.data import fetch

    path = Path(os.environ.get("LIFELONG_DATA", REPO_ROOT / "data"))
    fetch("mnist", path)
    return path


@pytest.fixture
def library_path(tmp_path: Path) -> Path:
    """Where a test's library lives (not created)."""
    return tmp_path / "library"


@pytest.fixture
def library(library_path: Path) -> Library:
    """A fresh, empty library with a short lock timeout (tests never wait 30 s for a lock)."""
    return Library.create(library_path, lock_timeout=5.0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def random_tensors(rng: np.random.Generator, nbytes: int = 2048) -> dict[str, np.ndarray]:
    """A module's tensors: one float32 weight of ``nbytes`` bytes (big enough not to be inlined
    in an icechunk manifest) and a small bias."""
    weight = rng.standard_normal(max(1, nbytes // 4)).astype(np.float32)
    return {"weight": weight, "bias": rng.standard_normal(4).astype(np.float32)}


@pytest.fixture
def make_tensors(rng: np.random.Generator) -> Callable[..., dict[str, np.ndarray]]:
    """``make_tensors(nbytes=2048)`` → fresh random module tensors."""
    return lambda nbytes=2048: random_tensors(rng, nbytes)


@pytest.fixture
def raw_main_session() -> Callable[[Path], icechunk.Session]:
    """``raw_main_session(library_path)`` → a writable icechunk session on ``main``, bypassing the
    library (its lock, its journal, its checks), to tamper with a library like a foreign writer."""

    def open_session(path: Path) -> icechunk.Session:
        repo = icechunk.Repository.open(icechunk.local_filesystem_storage(str(Path(path) / "repo")))
        return repo.writable_session("main")

    return open_session


@pytest.fixture
def raw_root_group() -> Callable[[icechunk.Session], zarr.Group]:
    return lambda session: zarr.open_group(session.store, mode="r+")


@pytest.fixture
def python_script(tmp_path: Path) -> Callable[[str, str], list[str]]:
    """``python_script(name, source)`` writes ``source`` to a file under ``tmp_path`` and returns
    the command that runs it with this interpreter (the project's venv)."""

    def write(name: str, source: str) -> list[str]:
        script = tmp_path / f"{name}.py"
        script.write_text(textwrap.dedent(source))
        return [sys.executable, str(script)]

    return write


@pytest.fixture
def child_env() -> dict[str, str]:
    """Environment for child processes: the repository importable, output unbuffered."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("LIFELONG_LOCK_TIMEOUT", None)
    return env


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen]]:
    """Processes a test starts; any still running at the end are killed (by pid) and reaped."""
    processes: list[subprocess.Popen] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


@pytest.fixture
def mounts() -> Iterator[Callable[..., Path]]:
    """``mounts(dir, "tmpfs", size="64k")`` or ``mounts(dir, "ro")``: a real mount for the test
    (a full disk; a read-only file system, which stops even root), unmounted afterwards.
    Skips the test where mounting is not permitted (not root, or no mount privilege)."""
    mounted: list[Path] = []

    def run(*args: str) -> None:
        done = subprocess.run(["mount", *args], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount here: {done.stderr.strip()}")

    def mount(path: Path, kind: str, size: str = "64k") -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a file system needs root")
        path.mkdir(parents=True, exist_ok=True)
        if kind == "tmpfs":
            run("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
            mounted.append(path)
        else:  # the folder itself, bound over itself and made read-only
            run("--bind", str(path), str(path))
            mounted.append(path)
            run("-o", "remount,bind,ro", str(path))
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
