"""``lifelong bench store``: what the library costs as it grows.

For libraries of 10, 100 and 1000 modules (SMART-sized conv modules: a 16×16×3×3 kernel, bias
and four BatchNorm vectors), time: committing the modules in one transaction, taking a
snapshot, restoring one, and opening the library and listing it. Snapshot and restore move
pointers, so their cost should not grow with the library (``ratios.*_1000_vs_10`` ≈ 1).

And a library that learns tasks one commit each, as ``learn`` writes them (a record with its
curves and a recall score per earlier task, α/β per used module, a head, a probe; a new module
every third task), timed after 10 and 100 tasks: the per-task cost of opening it and listing its
tasks and modules (``ratios.open_list_100_vs_10_tasks``, goal ≤ 2) and of committing a task.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from agents import Progress, quiet
from library_store import Library, TaskArrays, TaskRecord
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


def median_s(action, repeats: int = REPEATS) -> float:
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

    snapshot_s = median_s(lambda i: library.snapshot(f"bench-{i}"))
    restore_s = median_s(lambda i: library.restore(first))

    open_list_s = median_s(lambda _: open_and_list(library.path))
    return {
        "modules": size,
        "commit_s": round(commit_s, 4),
        "commit_ms_per_module": round(1000 * commit_s / size, 3),
        "snapshot_ms": round(1000 * snapshot_s, 3),
        "restore_ms": round(1000 * restore_s, 3),
        "open_and_list_ms": round(1000 * open_list_s, 3),
        "size_on_disk_mb": round(library.size_on_disk() / 2**20, 3),
    }


def open_and_list(path: Path) -> None:
    """Open the library and list its modules and tasks, as every command does."""
    reopened = Library.open(path)
    reopened.modules()
    reopened.tasks()


def _task(rng: np.random.Generator, index: int, modules: list[str]) -> tuple[TaskRecord, TaskArrays]:
    """Task ``index`` as ``learn`` stores an image task: its record (curves, a recall score per
    earlier task) and its own arrays (α/β per module, a five-way head, a probe of 32 inputs)."""
    record = TaskRecord(
        f"task-{index:03d}",
        "classification",
        "bench:task",
        [modules],
        curves={phase: rng.random(40).round(4).tolist() for phase in ("self_organize", "grow", "settle")},
        details={"recall": {"scores": {f"task-{j:03d}": float(rng.random()) for j in range(index)}}},
    )
    arrays = TaskArrays(
        uses=[[{"alpha": np.ones(1, np.float32), "beta": np.zeros(1, np.float32)} for _ in modules]],
        head={"weight": rng.standard_normal((5, 16), dtype=np.float32), "bias": np.zeros(5, np.float32)},
        probe={
            "inputs": rng.standard_normal((32, 1, 28, 28), dtype=np.float32),
            "outputs": rng.standard_normal((32, 5), dtype=np.float32),
        },
    )
    return record, arrays


def measure_tasks(counts: list[int], root: Path, seed: int) -> dict[str, dict[str, float]]:
    """One library learning ``max(counts)`` tasks one commit each, timed after ``counts`` tasks."""
    rng = np.random.default_rng(seed)
    library = Library.create(root / "library-tasks")
    modules: list[str] = []
    results = {}
    for index in range(max(counts)):
        start = time.perf_counter()
        with library.transaction(f"learn task {index}", kind="learn") as tx:
            if index % 3 == 0:
                modules.append(tx.add_module("conv", _module_tensors(rng), created_by="bench").id)
            tx.add_task(*_task(rng, index, modules[-4:]))
        commit_s = time.perf_counter() - start
        if index + 1 in counts:
            results[f"tasks_{index + 1}"] = {
                "tasks": index + 1,
                "modules": len(modules),
                "commit_task_ms": round(1000 * commit_s, 3),
                "open_and_list_ms": round(1000 * median_s(lambda _: open_and_list(library.path)), 3),
            }
    return results


def bench_store(
    sizes: list[int], seed: int, progress: Progress = quiet, tasks: list[int] | None = None
) -> BenchResult:
    """``sizes``: libraries of that many modules; ``tasks``: the task counts at which a library
    learning tasks one by one is timed (default 10 and 100)."""
    tasks = tasks or [10, 100]
    results = {}
    stage = Stage(progress, "bench store (library sizes)", len(sizes) + 1)
    with tempfile.TemporaryDirectory(prefix="lifelong-bench-") as tmp:
        for size in sizes:
            results[f"library_{size}"] = measure(size, Path(tmp), seed)
            stage.advance(1, f"{size} modules")
        results.update(measure_tasks(tasks, Path(tmp), seed))
        stage.advance(1, f"{max(tasks)} tasks")
    small, large = results[f"library_{min(sizes)}"], results[f"library_{max(sizes)}"]
    tag = f"{max(sizes)}_vs_{min(sizes)}"
    few, many = results[f"tasks_{min(tasks)}"], results[f"tasks_{max(tasks)}"]
    ratios = {
        f"snapshot_{tag}": round(large["snapshot_ms"] / small["snapshot_ms"], 3),
        f"restore_{tag}": round(large["restore_ms"] / small["restore_ms"], 3),
        f"open_list_{max(tasks)}_vs_{min(tasks)}_tasks": round(
            many["open_and_list_ms"] / few["open_and_list_ms"], 3
        ),
    }
    return results, ratios
