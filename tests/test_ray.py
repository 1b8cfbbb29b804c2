"""The Ray executor on a local Ray instance: the same scores as one process, also when a worker
is killed in the middle of a generation (Ray plays its part again); growth candidates trained
on Ray actors as in one process."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_atari_workers import BOXING, generation
from test_workers import costliest_first

from agents.atari.workers import evaluate_networks, evaluate_split
from agents.workers import Workers

ray = pytest.importorskip("ray")

GAME = BOXING


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def play_part_pids() -> list[int]:
    """Ray actor processes that run jobs (their command line names the actor)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"Runner" in command:
                pids.append(int(entry.name))
    return pids


def test_ray_scores_as_one_process_does(local_ray) -> None:
    networks = generation(GAME, 6)
    alone = evaluate_networks(GAME, networks, 2, max_frames=600, seed=3)
    pool = Workers(None, executor="ray")  # one part per CPU of the cluster
    try:
        split = evaluate_split(pool, GAME, networks, 2, max_frames=600, seed=3)
        assert pool.parts == 2
    finally:
        pool.close()
    assert np.array_equal(split.scores, alone.scores) and np.array_equal(split.frames, alone.frames)


def test_ray_actors_take_the_costliest_job_left(local_ray) -> None:
    import test_workers

    ray.cloudpickle.register_pickle_by_value(test_workers)  # Ray's workers cannot import tests/
    try:
        costliest_first(Workers(2, executor="ray"))
    finally:
        ray.cloudpickle.unregister_pickle_by_value(test_workers)


def test_a_job_submitted_to_ray_runs_in_another_process(local_ray) -> None:
    import test_workers

    ray.cloudpickle.register_pickle_by_value(test_workers)
    try:
        pid, threads, extra = Workers(2, executor="ray").submit(test_workers.where, None, 3).result()
    finally:
        ray.cloudpickle.unregister_pickle_by_value(test_workers)
    assert (pid != os.getpid(), threads, extra) == (True, 1, 3)


def test_a_killed_worker_is_replayed_and_the_result_is_the_same(local_ray) -> None:
    networks = generation(GAME, 6)
    alone = evaluate_networks(GAME, networks, 1, max_frames=3000, seed=4)
    killed: list[int] = []

    def kill_one() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            pids = play_part_pids()
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one)
    killer.start()
    split = evaluate_split(Workers(2, executor="ray"), GAME, networks, 1, max_frames=3000, seed=4)
    killer.join()
    assert killed, "no worker was playing a part: the test did not kill one"
    assert np.array_equal(split.scores, alone.scores) and np.array_equal(split.frames, alone.frames)


def test_learn_with_the_ray_executor_is_checked_before_any_work(tmp_path: Path) -> None:
    from cli_helpers import assert_one_line_error, run_cli

    library = tmp_path / "library"
    assert run_cli("init", library=library).returncode == 0
    assert_one_line_error(
        run_cli("learn", "atari:Pong", "--executor", "slurm", library=library), "--executor"
    )
    assert_one_line_error(
        run_cli("learn", "atari:Pong", "--ray-address", "127.0.0.1:6379", library=library), "--ray-address"
    )


def test_a_game_learned_with_ray_is_the_game_learned_in_one_process(local_ray, tmp_path: Path) -> None:
    from test_atari_agent import TINY, learn_game

    from library_store import Library
    from lifelong.runner import worker_pool

    records = {}
    for executor, workers in (("local", 0), ("ray", None)):
        library = Library.create(tmp_path / executor)
        record = learn_game(library, "Boxing", TINY, workers=worker_pool(workers, executor))
        records[executor] = (library.module(record.layers[0][0]).checksum, record.metrics)
        assert library.check() == []
    assert records["ray"] == records["local"]


def test_growth_candidates_train_on_ray_as_in_one_process(local_ray) -> None:
    import torch
    from test_workers import grow

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a Ray actor: one CPU, one thread
    try:
        alone, alone_events = grow(Workers(0))
    finally:
        torch.set_num_threads(threads)
    on_ray, ray_events = grow(Workers(2, executor="ray"))
    assert on_ray.details == alone.details and ray_events == alone_events
    assert torch.equal(on_ray.network.head.out.weight, alone.network.head.out.weight)
