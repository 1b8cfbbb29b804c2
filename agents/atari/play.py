"""Record one episode of a policy as RGB frames (for ``lifelong play --video``)."""

from __future__ import annotations

import numpy as np
import torch

from agents.atari.evaluate import STICKY, Policy, seed_sticky_actions
from agents.atari.games import (
    FRAMESKIP,
    SCREEN_HEIGHT,
    SCREEN_WIDTH,
    actions_from_outputs,
    new_emulator,
    resolve_game,
    substrate_for,
)


def record_episode(
    game: str, policy: Policy, *, seed: int, max_frames: int, sticky: float = STICKY
) -> tuple[list[np.ndarray], float]:
    """Play one episode under the evaluation conventions; return its RGB frames and raw score."""
    rom = resolve_game(game)
    substrate = substrate_for(rom)
    ale = new_emulator(rom, sticky)
    ale.reset_game()
    if sticky > 0:
        seed_sticky_actions(ale, [seed, 0])
    if hasattr(policy, "reset"):
        policy.reset(1)
    slot = torch.zeros(1, dtype=torch.int64)
    screen = np.empty((1, SCREEN_HEIGHT, SCREEN_WIDTH), np.uint8)
    frames, score = [ale.getScreenRGB()], 0.0
    for _ in range(max_frames // FRAMESKIP):
        ale.getScreen(screen[0])
        with torch.no_grad():
            action = int(actions_from_outputs(policy(torch.from_numpy(substrate(screen)), slot))[0])
        score += ale.act(action)
        frames.append(ale.getScreenRGB())
        if ale.game_over():
            break
    return frames, score
