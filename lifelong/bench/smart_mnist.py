"""``lifelong bench smart-mnist``: SMART's headline protocol on real MNIST.

Per seed, a fresh library learns five binary tasks (growing as needed), then faces five unseen
digit pairs with **self-organization only**: frozen modules, fresh α/β and head, nothing grown,
nothing committed, so every unseen task meets the same five-task library. SMART reports 97%
test accuracy on such unseen tasks; the bar here is ≥ 99% at ≤ 30 s per unseen task.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from agents import Progress, quiet
from agents.classification.training import accuracy
from library_store import Library
from lifelong.bench import BenchResult, Stage
from lifelong.plans import ClassificationPlan
from lifelong.runner import Run, learn_specs
from lifelong.streams import parse_stream
from lifelong.tasks import parse_spec

PAIRS = parse_stream("pairs")  # SMART's seen and unseen pairs
SEEN = [spec.text for spec in PAIRS.specs[: PAIRS.judged_from]]
UNSEEN = [spec.text for spec in PAIRS.judged]


def run_seed(
    seed: int, plan: ClassificationPlan, device: torch.device, data_dir: Path | None, root: Path, stage: Stage
) -> dict:
    library = Library.create(root / f"seed-{seed}")
    start = time.perf_counter()
    specs = [parse_spec(text) for text in SEEN]
    plans = {plan.family: plan}
    seen = learn_specs(
        library, specs, plans=plans, seed=seed, device=device, data_dir=data_dir, progress=stage.progress
    )
    stage.advance(len(SEEN), f"seed {seed}: seen tasks learned")
    seen_seconds = time.perf_counter() - start
    agent = plan.agent(library, "unseen", Run(seed, device, data_dir))
    unseen = []
    for text in UNSEEN:
        start = time.perf_counter()
        problem = agent.prepare(library, parse_spec(text), text)
        attempt = agent.self_organize(problem)
        seconds = time.perf_counter() - start
        test_acc = accuracy(attempt.network, problem.data.test_x, problem.data.test_y, agent.device)
        unseen.append({"task": text, "test_acc": test_acc, "val_acc": attempt.val_acc, "seconds": seconds})
        stage.advance(1, f"seed {seed}: unseen {text}")
    return {
        "seen": [
            {"task": r.name, "phase": r.metrics["phase"], "test_acc": r.metrics["test_acc"]} for r in seen
        ],
        "seen_seconds": seen_seconds,
        "unseen": unseen,
        "library_modules": len(library.modules()),
    }


def bench_smart_mnist(
    seeds: list[int],
    plan: ClassificationPlan,
    device: torch.device,
    data_dir: Path | None,
    progress: Progress = quiet,
) -> BenchResult:
    stage = Stage(progress, "bench smart-mnist (tasks)", len(seeds) * (len(SEEN) + len(UNSEEN)))
    with tempfile.TemporaryDirectory(prefix="lifelong-smart-") as tmp:
        runs = {seed: run_seed(seed, plan, device, data_dir, Path(tmp), stage) for seed in seeds}
    unseen_acc = [u["test_acc"] for run in runs.values() for u in run["unseen"]]
    seed_means = [statistics.mean(u["test_acc"] for u in run["unseen"]) for run in runs.values()]
    unseen_seconds = [u["seconds"] for run in runs.values() for u in run["unseen"]]
    seen_acc = [s["test_acc"] for run in runs.values() for s in run["seen"]]
    lifelong = {
        "unseen_test_acc_mean": statistics.mean(unseen_acc),
        "unseen_test_acc_sd_over_seeds": statistics.stdev(seed_means) if len(seed_means) > 1 else 0.0,
        "unseen_test_acc_min": min(unseen_acc),
        "seconds_per_unseen_task": statistics.mean(unseen_seconds),
        "seconds_per_unseen_task_max": max(unseen_seconds),
        "seen_test_acc_mean": statistics.mean(seen_acc),
        "seconds_per_seen_task": statistics.mean(run["seen_seconds"] / len(SEEN) for run in runs.values()),
        "seen_tasks_grown": statistics.mean(
            sum(s["phase"] == "grow" for s in run["seen"]) for run in runs.values()
        ),
        "library_modules_after_seen": statistics.mean(run["library_modules"] for run in runs.values()),
    }
    per_task = {
        f"unseen_{u['task'].split(':')[1]}": {
            "test_acc_mean": statistics.mean(
                next(x["test_acc"] for x in run["unseen"] if x["task"] == u["task"]) for run in runs.values()
            )
        }
        for u in next(iter(runs.values()))["unseen"]
    }
    per_seed = {
        f"seed_{seed}": {
            "unseen_test_acc_mean": statistics.mean(u["test_acc"] for u in run["unseen"]),
            "seconds_per_unseen_task": statistics.mean(u["seconds"] for u in run["unseen"]),
            "seen_test_acc_mean": statistics.mean(s["test_acc"] for s in run["seen"]),
        }
        for seed, run in runs.items()
    }
    ratios = {"unseen_acc_vs_smart_97": lifelong["unseen_test_acc_mean"] / 0.97}
    return {"lifelong": lifelong, **per_task, **per_seed}, ratios
