"""Playing a generation's episodes in worker processes: local ones, one per core by default
(``--workers``), or a Ray cluster's (``--executor ray``).

The emulator is the cost of Atari learning, and ale-py holds the GIL while it emulates, so only
processes step two emulators at once. :class:`EpisodeWorkers` splits the networks of a call into
contiguous parts, one per worker; each worker plays its part's episodes on emulators it keeps
for the whole run, and sends back only scores and frame counts. Episode ``e`` of the call draws
its sticky actions from ``(seed, e)`` whichever worker plays it, every episode starts from the
same emulator state and its policy outputs do not depend on its batch, so the scores are the
same with 1 worker or N, local or Ray (tests check both). With Ray the generation's networks go
into the object store once (``ray.put``); a part whose worker dies is played again (Ray retries
it), with the same result.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import multiprocessing
import os
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

import numpy as np
import torch

from agents import Report, start_worker
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


EXECUTORS = ("local", "ray")
RAY_RETRIES = 3  # times Ray plays a part again whose actor died


class EpisodeWorkers:
    """``workers`` processes playing episodes (0 or 1: this process plays them all): a local
    pool, or with ``executor="ray"`` tasks on the Ray cluster at ``address`` (None: the one
    ``RAY_ADDRESS`` names, else a local one Ray starts; ``workers`` None: one part per CPU of
    the cluster). The pool starts on first use and lives until :meth:`close` (or the process
    ends); its processes keep their emulators between calls, so a ROM loads once per process,
    not once per generation."""

    def __init__(
        self, workers: int | None, threads: int = 1, *, executor: str = "local", address: str | None = None
    ) -> None:
        if workers is not None and workers < 0:
            raise ValueError(f"workers must be at least 0, got {workers}")
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, not {executor!r}")
        if workers is None and executor == "local":
            workers = os.cpu_count() or 1
        self.workers, self.threads, self.executor, self.address = workers, threads, executor, address
        self._pool: Executor | None = None
        self._connected = False  # this object connected to Ray (and disconnects on close)
        self._actors: list[Any] = []

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
        parts = min(self._parts(), len(networks))
        if parts <= 1 or torch.device(device).type != "cpu":  # a GPU batches; processes would contend
            return evaluate_networks(
                game, networks, trials, max_frames=max_frames, seed=seed, device=device, substrate=substrate
            )
        bounds = list(
            itertools.pairwise(np.linspace(0, len(networks), parts + 1).round().astype(int).tolist())
        )
        started = time.perf_counter()
        if self.executor == "ray":
            ray = self._ray()
            shared = ray.put(networks)  # once per generation, however many parts
            players = self._players(len(bounds))
            refs = [
                player.play.remote(game, shared, a, b, trials, max_frames, seed, substrate)
                for player, (a, b) in zip(players, bounds, strict=True)
            ]
            results = ray.get(refs)
        else:
            futures = [
                self._executor().submit(
                    _play_part, game, networks.part(a, b), 0, b - a, trials, max_frames, seed, substrate, a
                )
                for a, b in bounds
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

    def _parts(self) -> int:
        if self.workers is None:  # Ray: one part per CPU of the cluster
            return int(self._ray().cluster_resources().get("CPU", 1))
        return self.workers

    def _players(self, count: int) -> list[Any]:
        """``count`` Ray actors that play parts, each keeping its emulators between generations
        (a task on a fresh worker would load its ROMs again); a killed one is restarted and its
        part played again."""
        while len(self._actors) < count:
            actor = self._ray().remote(num_cpus=1, max_restarts=-1, max_task_retries=RAY_RETRIES)(Player)
            self._actors.append(actor.remote())
        return self._actors[:count]

    def _ray(self) -> Any:
        """Ray, connected: to ``address``, else to ``RAY_ADDRESS``, else to a local instance it
        starts (or the one this process already started)."""
        import ray

        if not ray.is_initialized():
            ray.init(
                address=self.address, include_dashboard=False, log_to_driver=False, logging_level="ERROR"
            )
        return ray

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
        if self._actors:
            import ray

            for actor in self._actors:
                ray.kill(actor)
            self._actors = []
        if self._connected:
            import ray

            ray.shutdown()
            self._connected = False


def _play_part(
    game: str,
    networks: Networks,
    start: int,
    stop: int,
    trials: int,
    max_frames: int,
    seed: int,
    substrate: Substrate | None,
    offset: int = 0,
) -> EpisodeResults:
    """A worker's part of a call: networks ``start`` to ``stop - 1`` of ``networks`` (which start
    at network ``offset`` of the call), their episodes counted as in the whole call."""
    torch.set_num_threads(1)
    first = (offset + start) * trials
    part = networks.part(start, stop)
    return evaluate_networks(
        game, part, trials, max_frames=max_frames, seed=seed, first_episode=first, substrate=substrate
    )


class Player:
    """A Ray actor's body: plays parts of calls (:func:`_play_part`) in its own process."""

    def play(self, *part: Any) -> EpisodeResults:
        return _play_part(*part)


@functools.cache
def shared(workers: int | None, executor: str = "local", address: str | None = None) -> EpisodeWorkers:
    """This process's pool (the same one for every task of a run)."""
    return EpisodeWorkers(workers, executor=executor, address=address)


def _start(threads: int, parent: int) -> None:
    """A worker (:func:`agents.start_worker`) that lets its emulators go before it ends."""
    start_worker(threads, parent)
    atexit.register(drop_emulators)
