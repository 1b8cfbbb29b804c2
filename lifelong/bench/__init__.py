"""Benchmarks: protocols whose results are JSON files, never timed unit tests.

Every result holds ``protocol``, ``command``, ``seeds``, ``versions``, ``device``, ``wall_s``,
``results`` (condition → metric → number) and ``ratios``; a protocol may add ``runs`` (its raw
per-seed records), and a merged result ``sources`` (each merged file's command, seeds, versions
and wall time).
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from agents import Progress, quiet
from library_store import first_line
from lifelong.errors import LifelongError
from lifelong.files import check_output_file, write_file
from lifelong.listings import to_json
from lifelong.runner import command_line

# (results, ratios) or (results, ratios, runs)
BenchResult = (
    tuple[dict[str, dict[str, Any]], dict[str, float]]
    | tuple[dict[str, dict[str, Any]], dict[str, float], dict[str, Any]]
)


BOOTSTRAP_RESAMPLES = 10_000


def mean_ci(values: list[float], confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """The mean of ``values`` and its percentile bootstrap confidence interval (the mean of
    :data:`BOOTSTRAP_RESAMPLES` resamples with replacement; a fixed ``seed``, so a result file
    always gives the same interval). One value: no spread, the interval is the value itself."""
    data = np.asarray(values, dtype=float)
    means = data[np.random.default_rng(seed).integers(0, len(data), (BOOTSTRAP_RESAMPLES, len(data)))].mean(1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(data.mean()), float(low), float(high)


class Stage:
    """A benchmark's outer progress bar: ``advance(n, status)`` after each unit of work."""

    def __init__(self, progress: Progress, name: str, total: int) -> None:
        self.progress, self.done = progress, 0
        progress("stage", name=name, total=total)

    def advance(self, units: int, status: str) -> None:
        self.done += units
        self.progress("stage_step", step=self.done, status=status)


def versions() -> dict[str, str]:
    """Python's and the packages' versions, and the project's git commit when it runs from a
    checkout (``+dirty`` when tracked files differ from it): what a result was measured with."""
    found = {"python": platform.python_version()}
    for package in ("lifelong", "torch", "zarr", "icechunk", "ale-py", "gymnasium"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    commit = _git_commit()
    if commit is not None:
        found["commit"] = commit
    return found


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def run(
    protocol: str,
    body: Callable[[Progress], BenchResult],
    *,
    seeds: list[int],
    device: str,
    out_dir: Path,
    progress: Progress = quiet,
    file_name: str | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], Path]:
    """Run one benchmark protocol (``body(progress)``, which reports its progress) and write its
    JSON result, with ``extra``'s entries, under ``out_dir`` as ``file_name`` (default
    ``<protocol>.json``). Versions and commit are read before the run: the code it started with,
    whatever changes meanwhile."""
    path = out_dir / (file_name or f"{protocol}.json")
    check_output_file(path)  # before the work, not after it
    measured_with = versions()
    start = time.perf_counter()
    results, ratios, *runs = body(progress)
    result = {
        "protocol": protocol,
        "command": command_line(),
        "seeds": seeds,
        "versions": measured_with,
        "device": device,
        "wall_s": round(time.perf_counter() - start, 3),
        "results": results,
        "ratios": ratios,
        **(extra or {}),
        **({"runs": runs[0]} if runs else {}),
    }
    write_file(path, lambda temporary: temporary.write_text(to_json(result) + "\n"))
    return result, path


def read_result(path: str | Path, protocols: dict[str, Callable[[dict[str, Any]], None]]) -> dict[str, Any]:
    """A benchmark result file of one of ``protocols`` (name → its checker, which raises
    KeyError, TypeError, ValueError or IndexError on a malformed result); a one-line error if it
    is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise LifelongError(f"cannot read bench file {path}: {error.strerror or first_line(error)}") from None
    except (UnicodeDecodeError, ValueError) as error:
        raise LifelongError(f"bench file {path} is not JSON ({first_line(error)})") from None
    protocol = data.get("protocol") if isinstance(data, dict) else None
    if protocol not in protocols:
        *others, last = [f"`lifelong bench {name}`" for name in protocols]
        names = f"{', '.join(others)} or {last}" if others else last
        raise LifelongError(f"bench file {path} is not a {names} result (protocol {protocol!r})")
    try:
        protocols[protocol](data)
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise LifelongError(f"bench file {path} is malformed: {first_line(error)}") from None
    return data
