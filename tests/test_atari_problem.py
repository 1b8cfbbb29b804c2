"""The one Atari fitness: each evaluation call plays the next draw of the training episodes (an
explicit draw replays one without taking another), its frames are the episodes' frames, and the
agent and the EvoTorch peer score the same networks alike. Tiny: Boxing, 3 networks, 200 frames."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from test_atari_workers import BOXING, generation

import agents.atari.problem as atari_problem
from agents.atari.agent import AtariAgent, Problem
from agents.atari.budget import AtariBudget
from agents.atari.evaluate import EpisodeResults
from agents.atari.network import Networks
from agents.atari.problem import AtariFitness, stream_seed
from agents.atari.substrate import substrate_for
from agents.atari.workers import evaluate_networks, evaluate_split
from agents.workers import Workers
from lifelong.bench.atari_peer import AtariProblem

GAME = BOXING
BUDGET = AtariBudget(generations=1, evaluations=3, trials=1, max_frames=200, hidden=2)
CPU = torch.device("cpu")


@dataclass
class Played:
    """A call of the real :func:`evaluate_split`, as the fitness made it."""

    trials: int
    seed: int
    result: EpisodeResults


def fitness(seed: int) -> AtariFitness:
    return AtariFitness(
        GAME,
        substrate_for(GAME),
        trials=BUDGET.trials,
        max_frames=BUDGET.max_frames,
        seed=seed,
        workers=Workers(0),
        device=CPU,
    )


def test_each_call_takes_the_next_draw_and_counts_its_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    played: list[Played] = []

    def logged(workers: Workers, game: str, networks: Networks, trials: int, **options) -> EpisodeResults:
        result = evaluate_split(workers, game, networks, trials, **options)
        played.append(Played(trials, options["seed"], result))
        return result

    monkeypatch.setattr(atari_problem, "evaluate_split", logged)
    networks = generation(GAME, 3)
    scorer = fitness(seed=4)
    first = scorer.scores(networks)
    second = scorer.scores(networks, trials=2)  # a lesion's own trials
    assert scorer.calls == 2
    replay = scorer.scores(networks, draw=0)  # the screen's way: a draw already taken
    assert scorer.calls == 2 and scorer.draw() == 2 and scorer.calls == 3

    draws = [stream_seed(4, "training_episodes", i) for i in range(2)]
    assert [(p.trials, p.seed) for p in played] == [(1, draws[0]), (2, draws[1]), (1, draws[0])]
    assert draws[0] != draws[1]
    assert scorer.frames == sum(int(p.result.frames.sum()) for p in played) > 0
    assert np.array_equal(first, played[0].result.scores)
    assert np.array_equal(second, played[1].result.scores.reshape(3, 2).mean(axis=1))
    assert np.array_equal(replay, first)
    alone = evaluate_networks(GAME, networks, 1, max_frames=BUDGET.max_frames, seed=draws[0])
    assert np.array_equal(first, alone.scores)


def test_the_agent_and_the_peer_score_the_same_networks_alike() -> None:
    """After one evaluation call each (the agent's first generation, a peer batch), both take
    draw 1 for the next call and give the same networks the same scores and frames."""
    agent = AtariAgent(BUDGET, seed=6, workers=Workers(0))
    attempt = agent.grow(Problem("atari:Boxing", "atari:Boxing", GAME, substrate_for(GAME), [], None), None)
    peer = AtariProblem(GAME, BUDGET, seed=6, workers=Workers(0), device=CPU)
    batch = peer.generate_batch(3)
    peer.evaluate(batch)
    assert attempt.fitness.calls == peer.calls == 1

    networks = peer.decode(batch.values)
    agent_frames, peer_frames = attempt.frames, peer.frames
    scores = attempt.fitness.scores(networks)
    peer.evaluate(batch)
    assert np.array_equal(batch.evals[:, 0].numpy(), scores.astype(np.float32))
    assert attempt.frames - agent_frames == peer.frames - peer_frames > 0
    assert attempt.fitness.calls == peer.calls == 2
    again = evaluate_networks(
        GAME, networks, 1, max_frames=BUDGET.max_frames, seed=stream_seed(6, "training_episodes", 1)
    )
    assert np.array_equal(scores, again.scores)
