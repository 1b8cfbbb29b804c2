"""The Atari problem: what a network's fitness on a game is, and what scoring it has cost.

A network's fitness is its mean raw score over ``trials`` episodes of at most ``max_frames``
emulator frames; every evaluation call plays its episodes from the next draw of the run's
``training_episodes`` stream, and the emulator frames it plays are the learning budget's currency.
The GRUSM-ESP agent (:mod:`agents.atari.agent`) and the EvoTorch peer of ``lifelong bench
atari-transfer`` (:mod:`lifelong.bench.atari_peer`) both score networks through one
:class:`AtariFitness`, so the comparison differs only in the search: the same seed and draw give the
same scores and the same frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from agents.atari.games import Game
from agents.atari.network import Networks
from agents.atari.substrate import Substrate
from agents.atari.workers import evaluate_split
from agents.workers import Workers

SEED_STREAMS = ("evolution", "random_controls", "training_episodes", "eval_episodes", "test_episodes")
"""A task's independent random streams, each derived from its seed by :func:`stream_seed`: the
search's generator, the random-control sources, the episodes that score networks while learning
(one seed per evaluation call), the committed network's evaluation (that seed is stored with the
task, so ``lifelong eval`` replays it), and fresh episodes never played while learning (what a
benchmark re-evaluates champions on)."""


def stream_seed(seed: int, stream: str, index: int = 0) -> int:
    """The 32-bit seed of draw ``index`` of ``stream`` (one of :data:`SEED_STREAMS`) of a task
    learned with ``seed``: ``SeedSequence([seed, stream, index])`` hashes all three, so streams and
    draws never share seeds the way offsets added to ``seed`` can."""
    entropy = [seed, SEED_STREAMS.index(stream), index]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


@dataclass
class AtariFitness:
    """Scores batches of networks on ``game`` for a run learned with ``seed``, and keeps its
    accounting: emulator ``frames`` played and evaluation ``calls`` made (the index of the next
    call's draw of the ``training_episodes`` stream). ``workers`` play the episodes, the forward
    runs on ``device``."""

    game: Game
    substrate: Substrate
    trials: int
    max_frames: int
    seed: int
    workers: Workers
    device: torch.device
    frames: int = 0
    calls: int = 0

    def draw(self) -> int:
        """The next draw of the training episodes, taken: the calls advance by one."""
        self.calls += 1
        return self.calls - 1

    def scores(self, networks: Networks, *, trials: int = 0, draw: int | None = None) -> np.ndarray:
        """Each network's mean raw score over ``trials`` episodes (0: :attr:`trials`; a lesion
        judges by its own), played from draw ``draw`` of the training episodes (None: the next,
        :meth:`draw`; ESP's screen plays a source and its twin on one draw). The frames count."""
        trials = trials or self.trials
        seed = stream_seed(self.seed, "training_episodes", self.draw() if draw is None else draw)
        result = evaluate_split(
            self.workers,
            self.game,
            networks,
            trials,
            max_frames=self.max_frames,
            seed=seed,
            device=self.device,
            substrate=self.substrate,
        )
        self.frames += int(result.total_frames)
        return result.scores.reshape(len(networks), trials).mean(axis=1)
