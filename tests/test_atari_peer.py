"""The atari-transfer bench's peer: EvoTorch's SNES, CMA-ES and GA evolving GRUSM-ESP's network on
the real emulator, under a frame budget, reproducibly. Kept tiny: Boxing (its score moves within
200 frames), 4 networks of 2 hidden neurons a generation, one 200-frame episode each."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.atari.budget import AtariBudget
from agents.atari.games import N_OUTPUTS, resolve_game
from agents.atari.network import Network, Networks, neuron_genome_size
from agents.atari.problem import stream_seed
from agents.atari.substrate import substrate_for
from agents.atari.workers import evaluate_networks
from agents.errors import LifelongError
from agents.workers import Workers
from lifelong.bench.atari_peer import PEER_ALGORITHMS, AtariProblem, PeerRun, evolve_peer

GAME = resolve_game("Boxing")
BUDGET = AtariBudget(generations=3, evaluations=4, trials=1, max_frames=200, hidden=2)
FRAMES = 3 * 4 * 200
CPU = torch.device("cpu")


def run(algorithm: str, seed: int = 0, **options) -> PeerRun:
    return evolve_peer(
        GAME, BUDGET, frames=FRAMES, seed=seed, workers=Workers(0), device=CPU, algorithm=algorithm, **options
    )


def genes(network: Network) -> torch.Tensor:
    return torch.cat([network.neurons.ravel(), network.out_bias])


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", PEER_ALGORITHMS)
def test_each_algorithm_evolves_the_network_within_the_frame_budget(algorithm: str) -> None:
    calls: list[tuple[int, int, Network]] = []
    global_rng = torch.get_rng_state()
    result = run(algorithm, on_generation=lambda g, f, champion: calls.append((g, f, champion)))
    assert torch.equal(torch.get_rng_state(), global_rng)  # EvoTorch's draws left torch's alone

    # the budget: reached, overshot by at most the last generation's frames
    per_generation = np.diff([0.0, *result.curves["frames"]])
    assert result.frames >= FRAMES
    assert result.frames - per_generation[-1] < FRAMES
    assert result.curves["frames"][-1] == result.frames
    assert (per_generation > 0).all()
    # a GA step plays its parents again and as many children: twice the networks of an ES step
    networks = 2 * BUDGET.evaluations if algorithm == "ga" else BUDGET.evaluations
    assert (per_generation <= networks * BUDGET.trials * BUDGET.max_frames).all()

    assert result.generations >= 1
    for name in ("best_so_far", "mean_score", "frames"):
        assert len(result.curves[name]) == result.generations
    assert [g for g, _, _ in calls] == list(range(1, result.generations + 1))
    assert [float(f) for _, f, _ in calls] == result.curves["frames"]
    n_in = substrate_for(GAME).n_inputs
    for _, _, champion in calls:  # the network ESP evolves from scratch: own neurons, no sources
        assert champion.n_in == n_in and not champion.sources
        assert champion.neurons.shape == (BUDGET.hidden, neuron_genome_size(n_in))
        assert champion.out_bias.shape == (N_OUTPUTS,)
    assert calls[-1][2] is result.champion

    best = result.curves["best_so_far"]
    assert best == sorted(best)  # best so far never drops
    assert result.champion_score == max(best) == best[-1]
    assert result.champion_score >= max(result.curves["mean_score"])


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", PEER_ALGORITHMS)
def test_the_same_seed_gives_the_same_run_and_another_seed_another(algorithm: str) -> None:
    torch.manual_seed(1)
    first = run(algorithm, seed=3)
    torch.manual_seed(2)  # torch's global state plays no part
    again = run(algorithm, seed=3)
    other = run(algorithm, seed=4)
    assert torch.equal(genes(first.champion), genes(again.champion))
    assert first.curves == again.curves and first.champion_score == again.champion_score
    assert first.frames == again.frames and first.generations == again.generations
    assert not torch.equal(genes(first.champion), genes(other.champion))


@pytest.mark.slow
def test_a_batch_is_scored_like_the_agent_scores_a_generation() -> None:
    """Genes decode into the network layout, and a solution's evaluation is its mean score over
    the trials of the call's episodes, seeded by the training stream's next draw."""
    budget = BUDGET.override(trials=2)
    problem = AtariProblem(GAME, budget, seed=7, workers=Workers(0), device=CPU)
    n_in, g = problem.n_in, neuron_genome_size(problem.n_in)
    assert problem.solution_length == budget.hidden * g + N_OUTPUTS
    values = torch.rand(3, problem.solution_length, generator=torch.Generator().manual_seed(0)) * 2 - 1
    batch = problem.generate_batch(3)
    batch.set_values(values)
    for call in range(2):  # a fresh episode seed for each call
        problem.evaluate(batch)
        networks = Networks(
            n_in, values[:, : budget.hidden * g].reshape(3, budget.hidden, g), values[:, -10:]
        )
        seed = stream_seed(7, "training_episodes", call)
        played = evaluate_networks(GAME, networks, 2, max_frames=budget.max_frames, seed=seed)
        expected = played.scores.reshape(3, 2).mean(axis=1)
        assert np.array_equal(batch.evals[:, 0].numpy(), expected.astype(np.float32))
        assert problem.calls == call + 1
    assert problem.frames == 2 * played.total_frames


@pytest.mark.slow
def test_the_champion_replays_to_its_training_score() -> None:
    result = run("snes", seed=5)
    # the champion was network k of evaluation call i: played again as every k of every call, one
    # of those episodes is its training episode, which replays exactly
    replays = set()
    stacked = Networks.stack([result.champion] * BUDGET.evaluations)
    for call in range(result.generations):  # SNES: one call a generation
        seed = stream_seed(5, "training_episodes", call)
        played = evaluate_networks(GAME, stacked, BUDGET.trials, max_frames=BUDGET.max_frames, seed=seed)
        replays.update(played.scores.tolist())
    assert result.champion_score in replays


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"algorithm": "pso"}, "pso"),
        ({"frames": 0}, "frame"),
        ({"frames": -5}, "frame"),
        ({"algorithm": "cmaes", "budget": BUDGET.override(evaluations=1)}, "CMA-ES"),
    ],
)
def test_bad_requests_are_one_line_errors(options: dict, words: str) -> None:
    arguments = {"budget": BUDGET, "frames": FRAMES, "algorithm": "snes", **options}
    with pytest.raises(LifelongError, match=words) as error:
        evolve_peer(GAME, seed=0, workers=Workers(0), device=CPU, **arguments)
    assert "\n" not in str(error.value)
