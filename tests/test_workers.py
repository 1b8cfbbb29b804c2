"""Worker pools: a generation's growth candidates train the same in this process or on worker
processes, and a pool whose worker dies runs the call again."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from test_classification import TINY
from test_classification_agent import ROOMY, halves, problem

from agents.classification.agent import ClassificationAgent
from agents.task import TaskSpec
from agents.workers import Workers

SHAPE = (1, 16, 16)
BUDGET = TINY.override(population=4, elite=2, generations=2, candidate_steps=40)


def grow(workers: Workers) -> tuple[Any, list[tuple[str, dict[str, Any]]]]:
    """Growth on a two-layer library, everything it reported (timings left out)."""
    events: list[tuple[str, dict[str, Any]]] = []

    def report(event: str, **fields: Any) -> None:
        events.append((event, {k: v for k, v in fields.items() if k != "seconds"}))

    agent = ClassificationAgent(BUDGET, target=1.0, seed=3, load_data=halves, report=report, workers=workers)
    task = problem(ROOMY, SHAPE, halves(TaskSpec("a", "npz"), SHAPE, 0))
    return agent.grow(task, None), events


def test_candidates_train_the_same_in_this_process_or_on_two_workers() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of two workers on two cores: equal threads, equal bits
    try:
        alone, alone_events = grow(Workers(0))
    finally:
        torch.set_num_threads(threads)
    pool = Workers(2)
    try:
        split, split_events = grow(pool)
    finally:
        pool.close()
    assert split.details == alone.details and split.details["evaluations"] == 6
    assert split.val_acc == alone.val_acc
    assert split_events == alone_events  # replayed in slot order: progress and example counts alike
    assert [e for e, _ in split_events].count("candidate") == 6
    mine, theirs = split.network.state_dict(), alone.network.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def die_once(marker: str, value: int) -> int:
    """A job whose first run kills its worker."""
    if not Path(marker).exists():
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return value * value


def test_a_call_whose_local_worker_died_runs_again(tmp_path: Path) -> None:
    pool = Workers(2)
    try:
        assert pool.map(die_once, str(tmp_path / "died"), [(k,) for k in range(5)]) == [0, 1, 4, 9, 16]
        assert pool.map(die_once, str(tmp_path / "died"), [(7,), (8,)]) == [49, 64]  # the new pool works
    finally:
        pool.close()
    assert (tmp_path / "died").exists()


def test_workers_below_zero_or_an_unknown_executor_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 0"):
        Workers(-1)
    with pytest.raises(ValueError, match="executor"):
        Workers(2, executor="slurm")
