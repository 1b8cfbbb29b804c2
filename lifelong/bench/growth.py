"""``lifelong bench growth``: the library's size over a stream, with and without pruning.

Per seed, two fresh libraries learn the same stream of MNIST and Fashion-MNIST tasks, one task a
``learn`` call as a user would: ``no_prune`` as is, ``prune_auto`` with ``learn --prune auto``
(the library pruned after each task). After each task: library modules and parameters, the
mean compute of the stored tasks' networks (multiply-accumulates for one image), and the
library's own per-task cost: the seconds to open it and list its tasks and modules, which should
not grow much with the tasks learned (``library_cost_growth``: at the last task over at task 10,
streams of ≥ 20 tasks). At the end every task is re-evaluated on its test data. Goal: at least
30% fewer library parameters (``ratios.param_reduction``) at no more than 0.5 points of average
accuracy lost (``ratios.acc_loss_points``). The two conditions of a seed run side by side in
worker processes.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch

from agents import Progress, module_parameters, quiet
from agents.classification.agent import load_task_network
from agents.classification.budget import Budget, PruneSettings
from agents.workers import Workers
from library_store import Library
from lifelong.bench import BenchResult, Stage
from lifelong.bench.store import median_s, open_and_list
from lifelong.bench.streams import aggregate, torch_threads
from lifelong.classification import evaluate_task
from lifelong.plans import ClassificationPlan
from lifelong.runner import learn_specs
from lifelong.tasks import parse_spec

CONDITIONS = ("no_prune", "prune_auto")
STREAM = (
    "mnist:0-4 fashion:0-4 mnist:5v6 fashion:5v6 mnist:7v9@100pc fashion:7v9@100pc "
    "mnist:3v8 fashion:2v4@100pc mnist:1v7@100pc fashion:1v8 mnist:2v5@100pc fashion:3v9"
)
QUICK_STREAM = (
    "mnist:0-4@500pc fashion:0-4@500pc mnist:5v6@100pc fashion:5v6@100pc mnist:7v9@50pc "
    "fashion:7v9@50pc mnist:3v8@100pc fashion:2v4@100pc mnist:1v7@50pc fashion:1v8@50pc"
)


def run_condition(
    condition: str,
    seed: int,
    stream: list[str],
    plan: ClassificationPlan,
    settings: PruneSettings,
    data_dir: Path | None,
    root: Path,
) -> dict[str, Any]:
    """One library learning ``stream`` task by task (pruned after each under ``prune_auto``)."""
    library = Library.create(root / f"{condition}-seed{seed}")
    prune = settings if condition == "prune_auto" else None
    after: list[dict[str, Any]] = []
    for text in stream:
        start = time.perf_counter()
        learn_specs(
            library,
            [parse_spec(text)],
            plans={plan.family: plan},
            seed=seed,
            device=torch.device("cpu"),
            data_dir=data_dir,
            prune=prune,
        )
        seconds = time.perf_counter() - start
        library.refresh()
        modules = library.modules()
        tasks = library.tasks()
        open_list_s = median_s(lambda _: open_and_list(library.path), OPEN_REPEATS)
        macs = [load_task_network(library, t.name).flops(tuple(t.details["input_shape"])) / 2 for t in tasks]
        after.append(
            {
                "task": text,
                "seconds": round(seconds, 3),
                "library_modules": len(modules),
                "library_params": sum(module_parameters(m) for m in modules),
                "macs_per_task": statistics.mean(macs),
                "prunes": sum(entry.kind == "prune" for entry in library.log()),
                "open_list_s": round(open_list_s, 5),
            }
        )
    test_acc = {
        t.name: evaluate_task(library, t.name, data_dir=data_dir)["test_acc"] for t in library.tasks()
    }
    changed = [t.name for t in library.tasks() if t.details.get("prunes")]
    return {"after": after, "test_acc": [test_acc[text] for text in stream], "changed_tasks": changed}


OPEN_REPEATS = 3  # the median of this many timings of the library's per-task cost
COST_WINDOW = 5  # the library's cost at task k: the median over tasks k-4 … k
COST_FROM = 10  # ``library_cost_growth`` compares the last task with this one (1-based)


def library_cost_growth(after: list[dict[str, Any]]) -> float | None:
    """The library's per-task cost (open and list) at the last task over its cost at task 10;
    None for streams under 2 × 10 tasks."""
    if len(after) < 2 * COST_FROM:
        return None
    costs = [a["open_list_s"] for a in after]
    at = lambda k: statistics.median(costs[k - COST_WINDOW : k])  # noqa: E731
    return at(len(costs)) / at(COST_FROM)


def seed_figures(run: dict[str, Any]) -> dict[str, float | None]:
    last = run["after"][-1]
    return {
        "final_avg_test_acc": statistics.mean(run["test_acc"]),
        "library_params": last["library_params"],
        "library_modules": last["library_modules"],
        "macs_per_task": last["macs_per_task"],
        "seconds_per_task": statistics.mean(a["seconds"] for a in run["after"]),
        "tasks_changed_by_pruning": len(run["changed_tasks"]),
        "library_open_list_s": last["open_list_s"],
        "library_cost_growth": library_cost_growth(run["after"]),
    }


def bench_growth(
    seeds: list[int],
    budget: Budget,
    settings: PruneSettings,
    data_dir: Path | None,
    *,
    quick: bool = False,
    workers: int | None = None,
    progress: Progress = quiet,
    stream: list[str] | None = None,
) -> BenchResult:
    """``stream``: the task specs learned in order (default: :data:`STREAM`, or
    :data:`QUICK_STREAM` under ``quick``); ``workers``: processes learning the libraries (None:
    one per core; 0: all in this process)."""
    stream = stream or (QUICK_STREAM if quick else STREAM).split()
    plan = ClassificationPlan(budget)
    stage = Stage(progress, "bench growth (libraries)", len(seeds) * len(CONDITIONS))
    pool = Workers(workers)  # each process its share of the cores
    runs: dict[str, dict[str, Any]] = {c: {} for c in CONDITIONS}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lifelong-growth-")))
        stack.enter_context(torch_threads(pool.threads))
        stack.enter_context(pool)
        jobs = [(c, seed) for seed in seeds for c in CONDITIONS]
        if pool.workers:
            futures = {
                job: pool.submit(run_condition, *job, stream, plan, settings, data_dir, tmp) for job in jobs
            }
            for (condition, seed), future in futures.items():
                runs[condition][str(seed)] = future.result()
                stage.advance(1, f"seed {seed}: {condition}")
        else:
            for condition, seed in jobs:
                runs[condition][str(seed)] = run_condition(
                    condition, seed, stream, plan, settings, data_dir, tmp
                )
                stage.advance(1, f"seed {seed}: {condition}")
    results = {c: aggregate([seed_figures(run) for run in runs[c].values()]) for c in CONDITIONS}
    reductions = [
        1
        - runs["prune_auto"][s]["after"][-1]["library_params"]
        / runs["no_prune"][s]["after"][-1]["library_params"]
        for s in runs["no_prune"]
    ]
    losses = [
        100
        * (
            statistics.mean(runs["no_prune"][s]["test_acc"])
            - statistics.mean(runs["prune_auto"][s]["test_acc"])
        )
        for s in runs["no_prune"]
    ]
    ratios = {
        "param_reduction": statistics.mean(reductions),
        "param_reduction_sd": statistics.stdev(reductions) if len(reductions) > 1 else 0.0,
        "acc_loss_points": statistics.mean(losses),
        "acc_loss_points_sd": statistics.stdev(losses) if len(losses) > 1 else 0.0,
    }
    runs_out = {"stream": stream, "budget": budget.__dict__, "prune": settings.__dict__, "conditions": runs}
    return results, ratios, runs_out


def check_growth(data: dict[str, Any]) -> None:
    """Raise if ``data`` is not a well-formed growth result."""
    stream, conditions = data["runs"]["stream"], data["runs"]["conditions"]
    if not stream or set(conditions) != set(CONDITIONS):
        raise ValueError(f"needs tasks and the conditions {', '.join(CONDITIONS)}")
    seeds = set(conditions[CONDITIONS[0]])
    for condition, runs in conditions.items():
        if not runs or set(runs) != seeds:
            raise ValueError(f"condition {condition!r} ran other seeds than the rest")
        for seed, run in runs.items():
            if len(run["after"]) != len(stream) or len(run["test_acc"]) != len(stream):
                raise ValueError(f"{condition} seed {seed}: not one record per task")
            for after in run["after"]:
                for key in ("library_params", "library_modules", "macs_per_task"):
                    if not isinstance(after[key], int | float):
                        raise ValueError(f"{condition} seed {seed}: {key} is not a number")
