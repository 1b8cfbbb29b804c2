"""The peer of ``lifelong bench atari-transfer``: one of EvoTorch's search algorithms instead of ESP.

A user who does not want GRUSM-ESP would take an off-the-shelf evolutionary algorithm and evolve a
network with it. To compare against that fairly, the peer evolves *the same network* the agent
evolves from scratch — GRUSM-ESP's recurrent network (:mod:`agents.atari.network`) with
``budget.hidden`` own hidden neurons and no sources, on the same substrate inputs — scores it with the
agent's own fitness (:class:`agents.atari.problem.AtariFitness`: the mean raw score over
``budget.trials`` episodes, a fresh episode seed per evaluation call drawn from the task's
``training_episodes`` stream) and stops under the same budget of emulator frames. Only the search
differs: EvoTorch's SNES, CMA-ES or a genetic algorithm over the flat gene vector
``[neurons (H × neuron_genome_size(n_in)), out_bias (10)]``, instead of ESP's subpopulations.

Like a CleanRL script, the file holds the problem (decode genes → networks → play → scores), then
the loop (step the searcher until the frames are spent, record the curves).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

with warnings.catch_warnings():  # EvoTorch 0.6.1 decorates a helper with the deprecated torch.jit.script
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
    from evotorch import Problem, SolutionBatch
    from evotorch.algorithms import CMAES, SNES, GeneticAlgorithm
    from evotorch.algorithms.searchalgorithm import SearchAlgorithm
    from evotorch.operators import GaussianMutation

from agents.atari.budget import AtariBudget
from agents.atari.esp import SCORE_EPSILON
from agents.atari.games import N_OUTPUTS, Game
from agents.atari.grusm import DEFAULT_INIT_SCALE
from agents.atari.network import Network, Networks, neuron_genome_size
from agents.atari.problem import AtariFitness, stream_seed
from agents.atari.substrate import substrate_for
from agents.errors import LifelongError
from agents.workers import Workers

# EvoTorch configures its "evotorch" logger at import to print INFO lines to stdout (one per
# Problem created), which would mix into a benchmark's output (and its --json). Warnings still show.
logging.getLogger("evotorch").setLevel(logging.WARNING)

PEER_ALGORITHMS = ("snes", "cmaes", "ga")
"""The search algorithms a user may pick as the peer (:data:`ALGORITHM_CLASSES`: EvoTorch's)."""

ALGORITHM_CLASSES: dict[str, type[SearchAlgorithm]] = {
    "snes": SNES,
    "cmaes": CMAES,
    "ga": GeneticAlgorithm,
}

STDEV_INIT = 0.5
"""SNES's and CMA-ES's initial standard deviation per gene: about the spread of ESP's initial genes
(uniform in [-1, 1] has standard deviation 0.58), so the first generation samples networks as
varied as ESP's first, around a centre drawn like one of ESP's networks."""

GA_MUTATION_STDEV = 0.1
"""The GA's Gaussian mutation, added to every gene of a child: small next to the genes' initial
spread (0.58), so a child stays near its parent (the deep-GA way of perturbing every weight a
little; ESP instead adds Cauchy noise to one gene of some offspring)."""


@dataclass
class PeerRun:
    """What :func:`evolve_peer` found and spent."""

    champion: Network
    """The best network by training score so far: the first network whose score beats every earlier
    one (ESP's rule for its best network), as scored when it was evaluated."""
    champion_score: float
    """Its training score: the mean raw score over ``budget.trials`` episodes."""
    frames: int
    """Emulator frames spent evaluating networks, all generations."""
    generations: int
    """Search steps run (one EvoTorch ``step()`` each)."""
    curves: dict[str, list[float]] = field(default_factory=dict)
    """Per generation: ``best_so_far`` (the champion's score), ``mean_score`` (mean over the
    generation's evaluations), ``frames`` (cumulative, after the generation)."""


# --------------------------------------------------------------------------------------------------
# The problem: genes → networks → episodes on the emulator → mean score per network
# --------------------------------------------------------------------------------------------------


class AtariProblem(Problem):
    """Maximise a network's mean raw score on ``game``; a solution is the genes of one network
    (``budget.hidden`` own neurons, no sources) as a flat float32 vector on the CPU.

    Every :meth:`_evaluate_batch` is one evaluation call of :attr:`fitness`, the agent's
    :class:`agents.atari.problem.AtariFitness`: its episodes' seed is draw :attr:`calls` of the
    ``training_episodes`` stream. The problem also keeps the run's accounting: frames and calls
    spent (the fitness's), the champion so far, and the scores of the current generation."""

    def __init__(
        self, game: Game, budget: AtariBudget, *, seed: int, workers: Workers, device: torch.device
    ) -> None:
        """``seed``: the run's seed; EvoTorch's random numbers (initial solutions, samples,
        mutations) come from this problem's own generator, seeded with its ``evolution`` stream."""
        substrate = substrate_for(game)
        self.fitness = AtariFitness(
            game,
            substrate,
            trials=budget.trials,
            max_frames=budget.max_frames,
            seed=seed,
            workers=workers,
            device=device,
        )
        self.budget, self.n_in = budget, substrate.n_inputs
        self.genes_per_neuron = neuron_genome_size(self.n_in)
        self.champion: Network | None = None
        self.champion_score = -math.inf
        self.generation_scores: list[float] = []  # scores evaluated since the loop last cleared it
        super().__init__(
            "max",
            solution_length=budget.hidden * self.genes_per_neuron + N_OUTPUTS,
            # new solutions (the GA's population, SNES's and CMA-ES's centre) are drawn like ESP's
            # initial genes: uniform in [-1, 1]
            initial_bounds=(-DEFAULT_INIT_SCALE, DEFAULT_INIT_SCALE),
            dtype=torch.float32,
            device="cpu",
            # its own torch.Generator: no draw depends on torch's global RNG (which EvoTorch still
            # advances: evolve_peer puts it back)
            seed=stream_seed(seed, "evolution"),
            store_solution_stats=False,
        )

    @property
    def frames(self) -> int:
        """Emulator frames spent so far."""
        return self.fitness.frames

    @property
    def calls(self) -> int:
        """Evaluation calls made so far: the index of the next one's episode seed."""
        return self.fitness.calls

    def decode(self, values: Tensor) -> Networks:
        """``(N, solution_length)`` genes → N networks (copies: EvoTorch refills its buffers)."""
        values = torch.as_tensor(values).detach().to("cpu", torch.float32).clone()
        split = self.budget.hidden * self.genes_per_neuron
        neurons = values[:, :split].reshape(len(values), self.budget.hidden, self.genes_per_neuron)
        return Networks(self.n_in, neurons.contiguous(), values[:, split:].contiguous())

    def _evaluate_batch(self, batch: SolutionBatch) -> None:
        """Play every solution ``budget.trials`` times; its evaluation is the mean score."""
        networks = self.decode(batch.values)
        scores = self.fitness.scores(networks)
        batch.set_evals(torch.as_tensor(scores, dtype=torch.float32))
        self.generation_scores.extend(scores.tolist())
        top = int(np.argmax(scores))  # ESP's rule: the batch's first best, if it beats the champion
        if float(scores[top]) > self.champion_score + SCORE_EPSILON:
            self.champion, self.champion_score = networks[top], float(scores[top])


def make_searcher(algorithm: str, problem: AtariProblem, budget: AtariBudget) -> SearchAlgorithm:
    """EvoTorch's ``algorithm`` over ``problem``, ``budget.evaluations`` solutions per population.

    SNES and CMA-ES evaluate ``popsize`` solutions a step. The GA (elitist, EvoTorch's defaults)
    re-evaluates its parents on the step's fresh episodes along with as many mutated children, so a
    step plays ``2 × popsize`` networks: under the same frame budget it runs about half the steps."""
    popsize = budget.evaluations
    if algorithm == "ga":  # its initial population: uniform in [-1, 1], from the problem's generator
        mutation = GaussianMutation(problem, stdev=GA_MUTATION_STDEV)
        return GeneticAlgorithm(problem, operators=[mutation], popsize=popsize)
    # the centre: one solution drawn like ESP's genes, uniform in [-1, 1], by the problem's generator
    # (seeded by the evolution stream)
    centre = problem.generate_values(1)[0]
    with warnings.catch_warnings():  # CMA-ES's set-up code warns under this torch and numpy
        warnings.filterwarnings("ignore", message="To copy construct from a tensor", category=UserWarning)
        warnings.filterwarnings("ignore", message="__array_wrap__ must accept", category=DeprecationWarning)
        return ALGORITHM_CLASSES[algorithm](
            problem, popsize=popsize, stdev_init=STDEV_INIT, center_init=centre
        )


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------


def evolve_peer(
    game: Game,
    budget: AtariBudget,
    *,
    frames: int,
    seed: int,
    workers: Workers,
    device: torch.device,
    algorithm: str = "snes",
    on_generation: Callable[[int, int, Network], None] | None = None,
) -> PeerRun:
    """Evolve a network for ``game`` with EvoTorch's ``algorithm`` (one of
    :data:`PEER_ALGORITHMS`) until ``frames`` emulator frames are spent: the generation in which
    they are reached is the last (``budget.generations`` is not used; the frames are the budget).
    Networks: ``budget.hidden`` own neurons, no sources; each is scored by
    its mean raw score over ``budget.trials`` episodes of at most ``budget.max_frames`` frames,
    played by ``workers`` with the forward on ``device``. ``on_generation(generation, frames so
    far, champion)`` is called after each generation (1-based). The same ``seed`` gives the same
    run; torch's, numpy's and Python's global random generators are left alone.

    Raises :class:`agents.errors.LifelongError` for an unknown algorithm or ``frames < 1``."""
    if algorithm not in PEER_ALGORITHMS:
        raise LifelongError(f"unknown peer algorithm {algorithm!r} (choose {', '.join(PEER_ALGORITHMS)})")
    if frames < 1:
        raise LifelongError(f"the peer's frame budget must be at least 1, not {frames}")
    if algorithm == "cmaes" and budget.evaluations < 2:  # EvoTorch's CMA-ES recombines popsize // 2
        raise LifelongError(f"CMA-ES needs a population of at least 2, not {budget.evaluations}")
    problem = AtariProblem(game, budget, seed=seed, workers=workers, device=device)
    # EvoTorch draws from the problem's own generator, but every random tensor it makes also calls
    # torch.randint on torch's global generator (a vmap helper whose value is always False): the
    # search never depends on the global state, yet advances it. fork_rng puts it back.
    with torch.random.fork_rng(devices=[]):
        searcher = make_searcher(algorithm, problem, budget)
    curves: dict[str, list[float]] = {"best_so_far": [], "mean_score": [], "frames": []}
    generation = 0
    while problem.frames < frames:
        problem.generation_scores.clear()
        with torch.random.fork_rng(devices=[]):
            searcher.step()
        generation += 1
        assert problem.champion is not None  # a step evaluates at least one network
        curves["best_so_far"].append(problem.champion_score)
        curves["mean_score"].append(float(np.mean(problem.generation_scores)))
        curves["frames"].append(float(problem.frames))
        if on_generation is not None:
            on_generation(generation, problem.frames, problem.champion)
    assert problem.champion is not None
    return PeerRun(problem.champion, problem.champion_score, problem.frames, generation, curves)
