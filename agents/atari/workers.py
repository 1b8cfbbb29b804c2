"""Playing a generation's episodes in worker processes, one per core by default (``--workers``).

The emulator is the cost of Atari learning, and ale-py holds the GIL while it emulates, so only
processes step two emulators at once. :class:`EpisodeWorkers` splits the networks of a call into
contiguous parts, one per worker; each worker plays its part's episodes on emulators it keeps
for the whole run, and sends back only scores and frame counts. Episode ``e`` of the call draws
its sticky actions from ``(seed, e)`` whichever worker plays it, and ALE is deterministic given
the actions, so the scores are the same with 1 worker or N (a test checks it).
"""

from __future__ import annotations

import atexit
import functools
import itertools
import multiprocessing
import os
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor

import numpy as np
import torch

from agents import Report
from agents.atari.evaluate import EpisodeResults, drop_emulators, evaluate
from agents.atari.games import FRAMESKIP
from agents.atari.network import BatchedPolicy, Networks
from agents.atari.substrate import Substrate


def evaluate_networks(
    game: str,
    networks: Networks,
    trials: int,
    *,
    max_frames: int,
    seed: int,
    first_episode: int = 0,
    device: torch.device | str = "cpu",
    substrate: Substrate | None = None,
    report: Report | None = None,
) -> EpisodeResults:
    """Play each of ``networks`` ``trials`` times, all episodes in lock-step through one
    :class:`BatchedPolicy` (episode ``n * trials + t`` is trial ``t`` of network ``n``, counted
    from ``first_episode``): how the agent scores a generation, a lesion and the network it
    commits."""
    return evaluate(
        game,
        BatchedPolicy(networks, trials=trials, device=device),
        len(networks) * trials,
        max_frames=max_frames,
        seed=seed,
        first_episode=first_episode,
        device=device,
        substrate=substrate,
        report=report,
    )


class EpisodeWorkers:
    """``workers`` processes playing episodes (0 or 1: this process plays them all). The pool
    starts on first use and lives until :meth:`close` (or the process ends); its processes keep
    their emulators between calls, so a ROM loads once per process, not once per generation."""

    def __init__(self, workers: int, threads: int = 1) -> None:
        if workers < 0:
            raise ValueError(f"workers must be at least 0, got {workers}")
        self.workers, self.threads = workers, threads
        self._pool: Executor | None = None

    def evaluate_networks(
        self,
        game: str,
        networks: Networks,
        trials: int,
        *,
        max_frames: int,
        seed: int,
        device: torch.device | str = "cpu",
        substrate: Substrate | None = None,
    ) -> EpisodeResults:
        """:func:`evaluate_networks`, the networks split among the workers; the same scores
        however many."""
        parts = min(self.workers, len(networks))
        if parts <= 1 or torch.device(device).type != "cpu":  # a GPU batches; processes would contend
            return evaluate_networks(
                game, networks, trials, max_frames=max_frames, seed=seed, device=device, substrate=substrate
            )
        bounds = np.linspace(0, len(networks), parts + 1).round().astype(int).tolist()
        started = time.perf_counter()
        futures = [
            self._executor().submit(
                evaluate_networks,
                game,
                networks.part(start, stop),
                trials,
                max_frames=max_frames,
                seed=seed,
                first_episode=start * trials,
                substrate=substrate,
            )
            for start, stop in itertools.pairwise(bounds)
        ]
        results = [future.result() for future in futures]
        wall = time.perf_counter() - started
        total = sum(r.total_frames for r in results)
        return EpisodeResults(
            game=results[0].game,
            scores=np.concatenate([r.scores for r in results]),
            frames=np.concatenate([r.frames for r in results]),
            total_frames=total,
            wall_s=wall,
            steps_per_s=total / FRAMESKIP / wall if wall > 0 else 0.0,
            emulators=sum(r.emulators for r in results),
            setup_s=max(r.setup_s for r in results),
            seconds={key: sum(r.seconds.get(key, 0.0) for r in results) for key in results[0].seconds},
        )

    def _executor(self) -> Executor:
        if self._pool is None:  # spawned: forking a process that holds torch threads can hang
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=context, initializer=_start, initargs=(self.threads, os.getpid())
            )
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


@functools.cache
def shared(workers: int) -> EpisodeWorkers:
    """This process's pool of ``workers`` (the same one for every task of a run)."""
    return EpisodeWorkers(workers)


WATCH_S = 1.0  # how often a worker checks that the process it works for still lives


def _start(threads: int, parent: int) -> None:
    """A worker: ``threads`` torch threads, and it ends when the process it works for does
    (killed or ended without closing the pool), instead of waiting for work for ever."""
    torch.set_num_threads(threads)
    atexit.register(drop_emulators)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCH_S)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
