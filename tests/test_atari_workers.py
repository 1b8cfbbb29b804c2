"""A generation's episodes played by worker processes score exactly as in one process."""

from __future__ import annotations

import numpy as np
import pytest

from agents.atari.agent import new_esp
from agents.atari.budget import ATARI_PRESETS
from agents.atari.substrate import substrate_for
from agents.atari.workers import EpisodeWorkers, evaluate_networks

GAME = "Boxing"  # scores move within a few hundred frames, so networks and trials differ


@pytest.fixture(scope="module")
def generation():
    esp = new_esp(ATARI_PRESETS["quick"], substrate_for(GAME).n_inputs, seed=3)
    return esp.ask(5)[1]


@pytest.mark.parametrize("workers", [2, 3])
def test_scores_are_the_same_with_one_worker_or_several(generation, workers: int) -> None:
    common = {"max_frames": 600, "seed": 11}
    alone = evaluate_networks(GAME, generation, 2, **common)
    assert len(set(alone.scores.tolist())) > 2, "the episodes differ, so a mix-up would show"
    pool = EpisodeWorkers(workers)
    try:
        split = pool.evaluate_networks(GAME, generation, 2, **common)
        again = pool.evaluate_networks(GAME, generation, 2, **common)  # the same processes, reused
    finally:
        pool.close()
    for result in (split, again):
        assert np.array_equal(result.scores, alone.scores)
        assert np.array_equal(result.frames, alone.frames) and result.total_frames == alone.total_frames
    assert split.emulators == len(generation) * 2  # every part ran its episodes at once


def test_a_worker_count_below_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 0"):
        EpisodeWorkers(-1)
