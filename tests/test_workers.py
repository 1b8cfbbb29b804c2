"""Worker pools: a generation's growth candidates train the same in this process or on worker
processes, and a pool whose worker dies runs the call again."""

from __future__ import annotations

import copy
import os
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_classification import TINY
from test_classification_agent import ROOMY, halves, problem

from agents.classification.agent import ClassificationAgent, gene_space
from agents.classification.candidates import Growth, predicted_cost, train_apart, train_candidate
from agents.classification.genome import initial_genome
from agents.task import TaskSpec
from agents.workers import Workers, in_threads

SHAPE = (1, 16, 16)
BUDGET = TINY.override(population=4, elite=2, generations=2, candidate_steps=20)


def grow(workers: Workers, device: str = "cpu") -> tuple[Any, list[tuple[str, dict[str, Any]]]]:
    """Growth on (a copy of) a two-layer library on ``device``, everything it reported (timings
    left out)."""
    events: list[tuple[str, dict[str, Any]]] = []

    def progress(event: str, **fields: Any) -> None:
        events.append((event, {k: v for k, v in fields.items() if k != "seconds"}))

    agent = ClassificationAgent(
        BUDGET,
        target=1.0,
        seed=3,
        load_data=halves,
        progress=progress,
        workers=workers,
        device=torch.device(device),
    )
    library = copy.deepcopy(ROOMY)
    for layer in library:
        for member in layer:
            member.module.to(device)
    task = problem(library, SHAPE, halves(TaskSpec("a", "npz"), SHAPE, 0))
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


def stamped(_: None, job: int, seconds: float) -> tuple[int, float, float]:
    """A job that takes ``seconds``: its number, when it started and when it ended."""
    started = time.time()
    time.sleep(seconds)
    return job, started, time.time()


def costliest_first(pool: Workers) -> None:
    """Four jobs of unequal cost on two workers: they start costliest first (a free worker takes
    the costliest left) and come back in job order."""
    cost = [1.0, 2.0, 4.0, 3.0]
    pool.map(stamped, None, [(k, 0.0) for k in range(2)])  # the workers up and waiting
    done = pool.map(stamped, None, [(k, 0.3 * c) for k, c in enumerate(cost)], cost=cost)
    assert [job for job, _, _ in done] == [0, 1, 2, 3]
    starts = {job: started for job, started, _ in done}
    ends = {job: ended for job, _, ended in done}
    # the two costliest at once; the next (job 1) takes the first worker they free, and the cheapest
    # (job 0) the second: it waits for both (timed by the jobs themselves, so a slow machine that
    # delays a worker cannot reorder them)
    assert max(starts[2], starts[3]) < min(ends[2], ends[3])
    assert starts[1] >= min(ends[2], ends[3]) and starts[0] >= max(ends[2], ends[3])
    assert starts[1] <= starts[0]


def test_a_pool_starts_the_costliest_jobs_first() -> None:
    pool = Workers(2)
    try:
        costliest_first(pool)
    finally:
        pool.close()


def test_a_candidates_predicted_cost_is_its_trained_compute() -> None:
    """Growth schedules candidates by :func:`predicted_cost` before training them: it must be what
    the trained candidate costs (forward compute × candidate steps), and grow with the genome."""
    task = problem(ROOMY, SHAPE, halves(TaskSpec("a", "npz"), SHAPE, 0))
    growth = Growth(ROOMY, task.data, SHAPE, gene_space(ROOMY, SHAPE), BUDGET, 3, torch.device("cpu"))
    genome = initial_genome(len(ROOMY), growth.ranges, np.random.default_rng(0))
    small = replace(genome, extra_modules=(1,) + (0,) * (len(ROOMY) - 1))
    large = replace(genome, extra_modules=(growth.ranges.max_extra_modules,) * len(ROOMY))
    for genome in (small, large):
        trained = train_candidate(growth, genome, 0, 0)
        assert predicted_cost(growth, genome) == trained.flops * BUDGET.candidate_steps
    assert predicted_cost(growth, large) > predicted_cost(growth, small)


def where(_: None, extra: int) -> tuple[int, int, int]:
    """Which process ran the job, its torch threads, and ``extra`` back."""
    return os.getpid(), torch.get_num_threads(), extra


def test_a_submitted_job_runs_in_a_worker_with_its_share_of_the_threads() -> None:
    with Workers(1, threads=2) as pool:
        assert pool.threads == 2
        pid, threads, extra = pool.submit(where, None, 7).result()
        assert (pid != os.getpid(), threads, extra) == (True, 2, 7)
        assert pool.submit(where, None, 8).result()[0] == pid  # the same process, kept
    assert pool._pool is None  # the with block closed it
    assert Workers(2).threads == max(1, (os.cpu_count() or 1) // 2)


def test_workers_below_zero_or_an_unknown_executor_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 0"):
        Workers(-1)
    with pytest.raises(ValueError, match="executor"):
        Workers(2, executor="slurm")
    with pytest.raises(ValueError, match="threads"):
        Workers(2, threads=0)


@pytest.mark.slow
def test_learn_commits_the_same_task_with_or_without_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`learn`'s default trains growth candidates on one worker per core; at equal torch threads
    (one each) the library it commits is the one `--workers 0` commits."""
    from cli_helpers import TINY, halves_npz_arrays, run_cli

    from library_store import Library

    np.savez(tmp_path / "halves.npz", **halves_npz_arrays(np.random.default_rng(0)))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    committed = {}
    for workers in ("0", "2"):
        path = tmp_path / f"library-{workers}"
        Library.create(path)  # what `lifelong init` does
        learned = run_cli(
            "learn", f"npz:{tmp_path / 'halves.npz'}", "--name", "halves", *TINY,
            "--population", "3", "--target", "1.0", "--workers", workers, library=path,
        )  # fmt: skip
        assert learned.returncode == 0, learned.stderr
        library = Library.open(path)
        record = library.task("halves")
        modules = sorted(library.module(m).checksum for layer in record.layers for m in layer)
        committed[workers] = (record.metrics, record.details["evaluations"], modules)
    assert committed["2"] == committed["0"]


def test_candidates_trained_by_concurrent_threads_are_those_trained_one_by_one() -> None:
    """The GPU's way (threads of this process, a CUDA stream each), run on the CPU."""
    agent = ClassificationAgent(BUDGET, target=1.0, seed=3, load_data=halves)
    task = problem(ROOMY, SHAPE, halves(TaskSpec("a", "npz"), SHAPE, 0))
    growth = Growth(
        ROOMY, task.data, SHAPE, gene_space(ROOMY, SHAPE), BUDGET, agent.seed, torch.device("cpu")
    )
    genomes = [initial_genome(len(ROOMY), growth.ranges, np.random.default_rng(k)) for k in range(3)]
    jobs = [(genome, 0, index) for index, genome in enumerate(genomes)]
    together = in_threads(train_apart, growth, jobs, 3, growth.device)
    apart = [train_candidate(growth, *job) for job in jobs]
    assert [t.curve for t in together] == [a.curve for a in apart]
    for mine, theirs in zip(together, apart, strict=True):
        assert torch.equal(mine.network.head.out.weight, theirs.network.head.out.weight)
