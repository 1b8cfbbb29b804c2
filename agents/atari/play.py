"""Record one episode of a policy as RGB frames (for ``lifelong play --video``).

The episode follows :func:`agents.atari.evaluate.evaluate`'s conventions exactly (4 frames per
step, per-frame sticky actions drawn from ``default_rng([seed, 0])``), so the recorded episode is
episode 0 of an evaluation with the same seed.
"""

from __future__ import annotations

import numpy as np
import torch

from agents.atari.evaluate import STICKY, Policy, sticky_delays
from agents.atari.games import (
    FRAMESKIP,
    SCREEN_HEIGHT,
    SCREEN_WIDTH,
    Game,
    actions_from_outputs,
    new_emulator,
)
from agents.atari.substrate import substrate_for


def record_episode(
    game: Game, policy: Policy, *, seed: int, max_frames: int, sticky: float = STICKY
) -> tuple[list[np.ndarray], float]:
    """Play one episode; return its RGB frames (one per agent step) and its raw score."""
    substrate = substrate_for(game)
    ale = new_emulator(game)
    ale.reset_game()
    delays = sticky_delays(np.random.default_rng([seed, 0]), max_frames // FRAMESKIP, sticky)
    if hasattr(policy, "reset"):
        policy.reset(1)
    slot = torch.zeros(1, dtype=torch.int64)
    screen = np.empty((1, SCREEN_HEIGHT, SCREEN_WIDTH), np.uint8)
    frames, score, previous = [ale.getScreenRGB()], 0.0, 0
    for delay in delays:
        ale.getScreen(screen[0])
        with torch.no_grad():
            action = int(actions_from_outputs(policy(torch.from_numpy(substrate(screen)), slot))[0])
        for frame in range(FRAMESKIP):
            score += ale.act(previous if frame < delay else action)
        if delay < FRAMESKIP:
            previous = action
        frames.append(ale.getScreenRGB())
        if ale.game_over():
            break
    return frames, score
