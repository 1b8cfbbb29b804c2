"""The GPU path, run where CUDA is present (skipped elsewhere): policies and observations on the
device, growth candidates trained concurrently on it, `learn --device cuda` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_atari_workers import BOXING, generation
from test_workers import BUDGET, grow

from agents.atari.network import BatchedPolicy
from agents.atari.workers import evaluate_networks
from agents.workers import Workers
from lifelong.device import resolve_device
from lifelong.errors import LifelongError

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_cuda_devices_resolve_and_a_missing_one_is_one_line() -> None:
    assert resolve_device("cuda:0") == torch.device("cuda", 0) == resolve_device("auto")
    with pytest.raises(LifelongError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_a_generation_plays_on_the_device_with_the_cpu_scores() -> None:
    networks = generation(BOXING, 6)
    policy = BatchedPolicy(networks, trials=2, device=torch.device("cuda"))
    assert all(t.device.type == "cuda" for t in vars(policy).values() if isinstance(t, torch.Tensor))
    on_gpu = evaluate_networks(BOXING, networks, 2, max_frames=600, seed=3, device=torch.device("cuda"))
    on_cpu = evaluate_networks(BOXING, networks, 2, max_frames=600, seed=3)
    assert on_gpu.total_frames > 0 and np.isfinite(on_gpu.scores).all()
    # float sums differ in the last bits between devices; an action rarely flips
    assert np.mean(on_gpu.scores == on_cpu.scores) >= 0.8


def test_growth_candidates_train_concurrently_on_the_device() -> None:
    cuda = "cuda"
    one, _ = grow(Workers(0), cuda)  # one candidate at a time on the device
    many, events = grow(Workers(4), cuda)  # four at once, a CUDA stream each
    candidates = BUDGET.population + (BUDGET.population - BUDGET.elite) * (BUDGET.generations - 1)
    assert many.details["evaluations"] == one.details["evaluations"] == candidates
    assert next(many.network.parameters()).device.type == "cuda"
    assert abs(many.val_acc - one.val_acc) <= 0.05  # kernels may differ in the last bits
    assert [e for e, _ in events].count("candidate") == candidates


@pytest.mark.slow
def test_learn_on_cuda_commits_a_task_that_evaluates_on_the_cpu(data_dir: Path, tmp_path: Path) -> None:
    from cli_helpers import TINY, run_cli

    library = tmp_path / "library"
    assert run_cli("init", library=library).returncode == 0
    learned = run_cli(
        "learn", "mnist:0v1@10pc", *TINY, "--device", "cuda:0", library=library, data_dir=data_dir
    )
    assert learned.returncode == 0, learned.stderr
    evaluated = run_cli("--json", "eval", "mnist:0v1@10pc", library=library, data_dir=data_dir)
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["probe_max_abs_diff"] < 1e-3 and report["test_acc"] > 0.9  # 0 vs 1: easy
