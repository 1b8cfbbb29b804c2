"""Playing a generation's episodes in worker processes: local ones, one per core by default
(``--workers``), or a Ray cluster's (``--executor ray``).

The emulator is the cost of Atari learning, and ale-py holds the GIL while it emulates, so only
processes step two emulators at once. :func:`evaluate_split` splits the networks of a call into
contiguous parts, one per worker (:class:`agents.workers.Workers`); each worker plays its part's
episodes on emulators it keeps for the whole run, and sends back only scores and frame counts.
Episode ``e`` of the call draws its sticky actions from ``(seed, e)`` whichever worker plays it,
every episode starts from the same emulator state and its policy outputs do not depend on its
batch, so the scores are the same with 1 worker or N, local or Ray (tests check both). With Ray
the generation's networks go into the object store once (``ray.put``); a part whose worker dies
is played again (Ray retries it), with the same result.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import torch

from agents import Progress
from agents.atari.evaluate import EpisodeResults, evaluate
from agents.atari.games import FRAMESKIP, Game
from agents.atari.network import BatchedPolicy, Network, Networks
from agents.atari.substrate import Substrate
from agents.workers import Workers


def evaluate_networks(
    game: Game,
    networks: Networks,
    trials: int,
    *,
    max_frames: int,
    seed: int,
    first_episode: int = 0,
    device: torch.device = torch.device("cpu"),
    substrate: Substrate | None = None,
    progress: Progress | None = None,
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
        progress=progress,
    )


def evaluate_split(
    workers: Workers,
    game: Game,
    networks: Networks,
    trials: int,
    *,
    max_frames: int,
    seed: int,
    device: torch.device = torch.device("cpu"),
    substrate: Substrate | None = None,
) -> EpisodeResults:
    """:func:`evaluate_networks`, the networks split into contiguous parts, one per worker; the
    same scores however many workers."""
    parts = min(workers.parts, len(networks))
    if parts <= 1 or device.type != "cpu":  # a GPU batches; processes would contend
        return evaluate_networks(
            game, networks, trials, max_frames=max_frames, seed=seed, device=device, substrate=substrate
        )
    started = time.perf_counter()
    bounds = _bounds(len(networks), parts)
    jobs = [(game, a, b, trials, a * trials, max_frames, seed, substrate) for a, b in bounds]
    return _joined(workers.map(_play_part, networks, jobs), time.perf_counter() - started)


def evaluate_episodes(
    workers: Workers,
    game: Game,
    network: Network,
    episodes: int,
    *,
    max_frames: int,
    seed: int,
    device: torch.device = torch.device("cpu"),
    substrate: Substrate | None = None,
    progress: Progress | None = None,
) -> EpisodeResults:
    """One network's ``episodes`` episodes, split into contiguous runs of episodes, one per
    worker: the same scores as :func:`evaluate_networks` of that network in one process (how
    ``lifelong eval`` and the benchmarks score a champion). ``progress`` hears of the episodes
    when this process plays them all."""
    parts = min(workers.parts, episodes)
    stacked = Networks.stack([network])
    if parts <= 1 or device.type != "cpu":
        return evaluate_networks(
            game,
            stacked,
            episodes,
            max_frames=max_frames,
            seed=seed,
            device=device,
            substrate=substrate,
            progress=progress,
        )
    started = time.perf_counter()
    # the one network's episodes in runs: network 0, ``b - a`` trials from episode ``a``
    jobs = [(game, 0, 1, b - a, a, max_frames, seed, substrate) for a, b in _bounds(episodes, parts)]
    return _joined(workers.map(_play_part, stacked, jobs), time.perf_counter() - started)


def _bounds(count: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ranges covering ``range(count)``, as even as can be."""
    return list(itertools.pairwise(np.linspace(0, count, parts + 1).round().astype(int).tolist()))


def _joined(results: list[EpisodeResults], wall: float) -> EpisodeResults:
    """The workers' results of one call, in episode order, as one."""
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


def _play_part(
    networks: Networks,
    game: Game,
    start: int,
    stop: int,
    trials: int,
    first_episode: int,
    max_frames: int,
    seed: int,
    substrate: Substrate | None,
) -> EpisodeResults:
    """A worker's part of a call: networks ``start`` to ``stop - 1``, ``trials`` episodes each,
    counted from ``first_episode`` as in the whole call."""
    torch.set_num_threads(1)
    return evaluate_networks(
        game,
        networks.part(start, stop),
        trials,
        max_frames=max_frames,
        seed=seed,
        first_episode=first_episode,
        substrate=substrate,
    )
