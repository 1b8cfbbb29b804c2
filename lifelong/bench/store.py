"""``lifelong bench store``: what the library costs as it grows.

For libraries of 10, 100 and 1000 modules (SMART-sized conv modules: a 16×16×3×3 kernel, bias
and four BatchNorm vectors), time: committing the modules in one transaction, taking a
snapshot, restoring one, and opening the library and listing it. Snapshot and restore move
pointers, so their cost should not grow with the library (``ratios.*_1000_vs_10`` ≈ 1).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from agents import Report, quiet
from library_store import Library, TaskRecord
from lifelong.bench import BenchResult, Stage

REPEATS = 7


def _module_tensors(rng: np.random.Generator, channels: int = 16) -> dict[str, np.ndarray]:
    def vector() -> np.ndarray:
        return rng.standard_normal(channels, dtype=np.float32)

    return {
        "conv.weight": rng.standard_normal((channels, channels, 3, 3), dtype=np.float32),
        "conv.bias": vector(),
        "bn.weight": vector(),
        "bn.bias": vector(),
        "bn.running_mean": vector(),
        "bn.running_var": np.abs(vector()),
    }


def _median_s(action, repeats: int = REPEATS) -> float:
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        action(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(size: int, root: Path, seed: int) -> dict[str, float]:
    """Time the library operations on a library of ``size`` modules."""
    rng = np.random.default_rng(seed)
    library = Library.create(root / f"library-{size}")
    start = time.perf_counter()
    with library.transaction(f"add {size} modules", kind="bench") as tx:
        ids = [tx.add_module("conv", _module_tensors(rng), created_by="bench").id for _ in range(size)]
        tx.add_task(TaskRecord("bench:task", "classification", "bench", [ids[: max(1, size // 10)]]))
    commit_s = time.perf_counter() - start
    first = library.snapshot("first").name

    snapshot_s = _median_s(lambda i: library.snapshot(f"bench-{i}"))
    restore_s = _median_s(lambda i: library.restore(first))

    def open_and_list(_: int) -> None:
        reopened = Library.open(library.path)
        reopened.modules()
        reopened.tasks()

    open_list_s = _median_s(open_and_list)
    return {
        "modules": size,
        "commit_s": round(commit_s, 4),
        "commit_ms_per_module": round(1000 * commit_s / size, 3),
        "snapshot_ms": round(1000 * snapshot_s, 3),
        "restore_ms": round(1000 * restore_s, 3),
        "open_and_list_ms": round(1000 * open_list_s, 3),
        "size_on_disk_mb": round(library.size_on_disk() / 2**20, 3),
    }


def bench_store(sizes: list[int], seed: int, report: Report = quiet) -> BenchResult:
    results = {}
    stage = Stage(report, "bench store (library sizes)", len(sizes))
    with tempfile.TemporaryDirectory(prefix="lifelong-bench-") as tmp:
        for size in sizes:
            results[f"library_{size}"] = measure(size, Path(tmp), seed)
            stage.advance(1, f"{size} modules")
    small, large = results[f"library_{min(sizes)}"], results[f"library_{max(sizes)}"]
    tag = f"{max(sizes)}_vs_{min(sizes)}"
    ratios = {
        f"snapshot_{tag}": round(large["snapshot_ms"] / small["snapshot_ms"], 3),
        f"restore_{tag}": round(large["restore_ms"] / small["restore_ms"], 3),
    }
    return results, ratios
