"""A generation's episodes score the same whoever plays them: any pooled emulator, whatever it
played before, in this process or split among worker processes."""

from __future__ import annotations

import numpy as np
import pytest

from agents.atari.agent import new_esp
from agents.atari.budget import ATARI_PRESETS
from agents.atari.games import Game, resolve_game
from agents.atari.network import Networks
from agents.atari.substrate import substrate_for
from agents.atari.workers import evaluate_episodes, evaluate_networks, evaluate_split
from agents.workers import Workers

# Boxing's scores move within a few hundred frames; Freeway's soft reset kept what an emulator
# had played before (its scores changed with the emulator until episodes restored a start state)
BOXING, FREEWAY = resolve_game("Boxing"), resolve_game("Freeway")
CASES = [(BOXING, 2, 600), (FREEWAY, 3, 1000)]


def generation(game: Game, size: int) -> Networks:
    esp = new_esp(ATARI_PRESETS["quick"], substrate_for(game).n_inputs, seed=0)
    return esp.ask(size)[1]


@pytest.mark.parametrize(("game", "trials", "frames"), CASES)
def test_episodes_score_the_same_on_any_emulator_whatever_it_played_before(
    game: Game, trials: int, frames: int
) -> None:
    networks = generation(game, 8)
    runs = [evaluate_networks(game, networks, trials, max_frames=frames, seed=5) for _ in range(3)]
    assert len(set(runs[0].scores.tolist())) > 1, "the episodes differ, so a mix-up would show"
    for run in runs[1:]:  # the pool hands each call its emulators in another order, each with a past
        assert np.array_equal(run.scores, runs[0].scores)


@pytest.mark.parametrize(("game", "trials", "frames", "workers"), [(*CASES[0], 3), (*CASES[1], 2)])
def test_scores_are_the_same_with_one_worker_or_several(
    game: Game, trials: int, frames: int, workers: int
) -> None:
    networks = generation(game, 7)
    common = {"max_frames": frames, "seed": 11}
    alone = evaluate_networks(game, networks, trials, **common)
    pool = Workers(workers)
    try:
        split = evaluate_split(pool, game, networks, trials, **common)
        again = evaluate_split(pool, game, networks, trials, **common)  # the same processes, reused
    finally:
        pool.close()
    for result in (split, again):
        assert np.array_equal(result.scores, alone.scores)
        assert np.array_equal(result.frames, alone.frames) and result.total_frames == alone.total_frames
    assert split.emulators == len(networks) * trials  # every part ran its episodes at once


def test_one_networks_episodes_split_over_workers_score_as_in_one_process() -> None:
    """How `lifelong eval` and the benchmarks re-evaluate a champion: its episodes in runs, one a
    worker, each episode keeping its number (its sticky-action seed)."""
    network = generation(BOXING, 1)[0]
    alone = evaluate_networks(BOXING, Networks.stack([network]), 7, max_frames=400, seed=3)
    assert len(set(alone.scores.tolist())) > 1, "the episodes differ, so a mix-up would show"
    pool = Workers(3)
    try:
        split = evaluate_episodes(pool, BOXING, network, 7, max_frames=400, seed=3)
    finally:
        pool.close()
    assert np.array_equal(split.scores, alone.scores) and np.array_equal(split.frames, alone.frames)
