"""Running the real `lifelong` console script and judging what it left behind (shared by CLI tests)."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from lifelong.plans import budget_for

LIFELONG = str(Path(sys.executable).parent / "lifelong")
# A classification budget of a few dozen steps: learning runs in seconds, to test the CLI, not
# accuracy; in the command's own process (starting worker processes would cost more than they
# save at this size; tests/test_workers.py runs `learn` on workers).
TINY = (
    "--so-steps", "40", "--candidate-steps", "30", "--population", "2", "--generations", "1",
    "--final-steps", "40", "--settle-steps", "10", "--eval-every", "10", "--batch-size", "32",
    "--workers", "0",
)  # fmt: skip
# The same for code that takes a Budget (streams, the demo).
TINY_BUDGET = budget_for(
    "quick", so_steps=20, final_steps=30, candidate_steps=10, population=2, generations=1, settle_steps=5,
    eval_every=10, batch_size=32, elite=1,
)  # fmt: skip


def run_cli(
    *args: str, library: Path, data_dir: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``lifelong ARGS`` with the library (and data dir) given by environment, as a user would."""
    env = {**os.environ, "LIFELONG_LIBRARY": str(library)}
    if data_dir is not None:
        env["LIFELONG_DATA"] = str(data_dir)
    env.pop("LIFELONG_LOCK_TIMEOUT", None)
    return subprocess.run([LIFELONG, *args], capture_output=True, text=True, env=env, timeout=timeout)


def fingerprint(path: Path) -> dict[str, str]:
    """Every file under ``path`` with a hash of its bytes."""
    return {
        str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(path.rglob("*"))
        if f.is_file()
    }


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit code 2, stderr exactly one line ``error: …`` naming every needle; returns that line."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def noisy_halves(rng: np.random.Generator, n: int, size: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images (N, H, W, C) in two easy classes: left half bright (0) or right half bright (1)."""
    labels = rng.integers(0, 2, n)
    images = rng.normal(40, 20, (n, size, size, channels))
    half = size // 2
    for i, label in enumerate(labels):
        columns = slice(0, half) if label == 0 else slice(half, size)
        images[i, :, columns] += 170
    return np.clip(images, 0, 255).astype(np.uint8), labels


def halves_npz_arrays(rng: np.random.Generator, train: int = 200, test: int = 50) -> dict[str, np.ndarray]:
    """An easy two-class npz data set (:func:`noisy_halves`, 28×28 grey): what ``np.savez`` takes."""
    arrays = {}
    for split, n in (("train", train), ("test", test)):
        x, y = noisy_halves(rng, n, 28, 1)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x[..., 0], y
    return arrays


def fill(disk: Path, leave: int = 0) -> None:
    """Take the free space of the file system at ``disk``, all but about ``leave`` bytes."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.write(fd, bytes(max(0, shutil.disk_usage(disk).free - leave)))
        while not leave:
            os.write(fd, bytes(4096))
    except OSError as error:
        assert error.errno == errno.ENOSPC
    finally:
        os.close(fd)


def write_mnist_slice(root: Path, data_dir: Path, train: int = 6000, test: int = 1000) -> Path:
    """``root`` made a data folder (for ``--data-dir``) holding real MNIST's first ``train``
    training and ``test`` test images, read by the same ``mnist:`` specs: a pair's validation and
    test sets are a tenth of full MNIST's, and evaluating them is most of a tiny budget's time."""
    from lifelong.data import load, raw_dir
    from lifelong.data.idx import write_idx

    raw = raw_dir("mnist", root)
    for split, is_train, size in (("train", True, train), ("t10k", False, test)):
        images, labels = load("mnist", data_dir, train=is_train)
        write_idx(raw / f"{split}-images-idx3-ubyte", images[:size].numpy())
        write_idx(raw / f"{split}-labels-idx1-ubyte", labels[:size].numpy().astype(np.uint8))
    return root
