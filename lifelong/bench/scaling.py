"""``lifelong bench scaling``: how a real ESP generation's episodes, and a real generation of
growth candidates, scale over local cores (and a local Ray instance, and the device).

Atari, in one run, in interleaved rounds (so load from other processes hits every condition alike):

- ``raw_ale_single``: one emulator playing as many episodes, one after another, with random
  actions and nothing else: the physical limit of one core (:func:`agents.atari.evaluate.raw_ale`
  with one emulator);
- ``raw_ale_lockstep``: the same episodes on as many emulators at once as the agent runs in one
  process (:data:`~agents.atari.evaluate.DEFAULT_EMULATORS`), random actions: one core's limit
  for the agent's lock-step loop (a fairer yardstick than one emulator, measured beside it);
- ``agent_one_worker``: the agent scoring one generation of its own networks
  (:func:`agents.atari.agent.new_esp`, the ``quick`` budget's population, one trial each) in
  this process, as ``learn --workers 0`` does;
- ``agent_all_workers``: the same generation played by :func:`agents.atari.workers.evaluate_split`
  with one worker per core, as ``learn`` does by default (its pool started and its emulators
  loaded by a warm-up generation before the rounds, as they are after a run's first generation).

- ``agent_ray``: the same with ``--executor ray`` on a local Ray instance of one CPU per core
  (when Ray is installed; started and warmed up like the local pool).

Every condition counts agent steps (4 frames) per wall second, episode starts included.

Growth, in interleaved rounds too: the first generation of growth candidates of a real image task
(the agent's stem and its mutants on an empty library, the ``quick`` budget's population and
candidate steps, real MNIST data) trained by :func:`agents.classification.candidates.train_generation`:

- ``growth_one_worker``: in this process, one candidate after another with every core's torch
  threads (``learn --workers 0``);
- ``growth_all_workers``: one worker per core, each candidate on one (``learn``'s default);
- ``growth_ray``: on the local Ray instance's actors (when Ray is installed).

Each reports candidates trained per wall second and the wall time of a generation. Goals on 2
cores: ``ratios.agent_all_workers_vs_raw_single`` ≥ 1.7 (the physical limit is 2.0), Ray within
10% of the local pool (``ratios.ray_vs_local``), the scores of every agent condition identical
(``ratios.same_scores`` = 1), and a growth generation over all workers in at most 0.6 × the
time of one (``ratios.growth_all_vs_one_wall``).
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from agents.atari.agent import new_esp
from agents.atari.budget import ATARI_PRESETS
from agents.atari.evaluate import EpisodeResults, raw_ale, warm_pool
from agents.atari.games import FRAMESKIP, Game
from agents.atari.substrate import substrate_for
from agents.atari.workers import evaluate_networks, evaluate_split
from agents.classification.agent import gene_space, stem
from agents.classification.budget import PRESETS
from agents.classification.candidates import Growth, train_generation
from agents.classification.evolution import Newborn
from agents.classification.genome import mutate
from agents.task import DEFAULT_INPUT_SHAPE
from agents.workers import Workers
from lifelong.bench import BenchResult
from lifelong.task_data import load_task_data
from lifelong.tasks import parse_spec


@dataclass(frozen=True)
class GrowthCase:
    """The growth half's task: an image task spec, its data cache, how many candidates and how
    many steps each trains (the ``quick`` budget's)."""

    spec: str = "mnist:0-4"
    data_dir: Path | None = None
    population: int = PRESETS["quick"].population
    candidate_steps: int = PRESETS["quick"].candidate_steps


def bench_scaling(
    game: Game,
    networks: int,
    max_frames: int,
    seed: int,
    *,
    rounds: int = 3,
    workers: int | None = None,
    device: torch.device = torch.device("cpu"),
    growth: GrowthCase | None = None,
) -> BenchResult:
    """See the module docstring; ``workers``: the all-workers conditions' count (one per core);
    ``growth``: the growth half's task (None: no growth half)."""
    if networks < 1 or rounds < 1:
        raise ValueError("networks and rounds must be at least 1")
    workers = workers or os.cpu_count() or 1
    budget = ATARI_PRESETS["quick"].override(evaluations=networks, trials=1, max_frames=max_frames)
    esp = new_esp(budget, substrate_for(game).n_inputs, seed)
    pools = {"all_workers": Workers(workers)}
    if importlib.util.find_spec("ray") is not None:
        import ray

        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        pools["ray"] = Workers(workers, executor="ray")
    agent_runs = {f"agent_{name}": name for name in pools}
    warm_pool(game, networks)
    runs: dict[str, list[EpisodeResults]] = {
        "raw_ale_single": [],
        "raw_ale_lockstep": [],
        "agent_one_worker": [],
        **{name: [] for name in agent_runs},
    }
    same = []
    generation_s: dict[str, list[float]] = {}
    try:
        _, warm_up = esp.ask(networks)
        for pool in pools.values():
            evaluate_split(pool, game, warm_up, 1, max_frames=max_frames, seed=seed, device=device)
        trainer = None if growth is None else _growth_trainer(growth, seed, device)
        if trainer is not None:
            for pool in pools.values():
                trainer(pool)  # start the processes, load the data, as after a run's first generation
            generation_s = {"growth_one_worker": [], **{f"growth_{name}": [] for name in pools}}
        for s in np.random.SeedSequence(seed).generate_state(rounds).tolist():
            _, generation = esp.ask(networks)
            runs["raw_ale_single"].append(raw_ale(game, networks, max_frames=max_frames, seed=s, emulators=1))
            runs["raw_ale_lockstep"].append(raw_ale(game, networks, max_frames=max_frames, seed=s))
            alone = evaluate_networks(game, generation, 1, max_frames=max_frames, seed=s, device=device)
            runs["agent_one_worker"].append(alone)
            for name, pool in pools.items():
                split = evaluate_split(
                    pool, game, generation, 1, max_frames=max_frames, seed=s, device=device
                )
                runs[f"agent_{name}"].append(split)
                same.append(bool(np.array_equal(alone.scores, split.scores)))
            if trainer is not None:
                generation_s["growth_one_worker"].append(trainer(Workers(0)))
                for name, pool in pools.items():
                    generation_s[f"growth_{name}"].append(trainer(pool))
    finally:
        for pool in pools.values():
            pool.close()
        if "ray" in pools:
            ray.shutdown()
    results: dict[str, dict[str, float]] = {name: _totals(rs) for name, rs in runs.items()}
    results["agent_all_workers"]["workers"] = workers
    raw = results["raw_ale_single"]["steps_per_s"]
    ratios = {
        "agent_all_workers_vs_raw_single": results["agent_all_workers"]["steps_per_s"] / raw,
        "agent_one_worker_vs_raw_single": results["agent_one_worker"]["steps_per_s"] / raw,
        "agent_all_workers_vs_raw_lockstep": results["agent_all_workers"]["steps_per_s"]
        / results["raw_ale_lockstep"]["steps_per_s"],
        "all_workers_vs_one_worker": results["agent_all_workers"]["steps_per_s"]
        / results["agent_one_worker"]["steps_per_s"],
        "same_scores": float(all(same)),
    }
    if "agent_ray" in results:
        ratios["ray_vs_local"] = (
            results["agent_ray"]["steps_per_s"] / results["agent_all_workers"]["steps_per_s"]
        )
    if growth is not None:
        for name, walls in generation_s.items():
            results[name] = {
                "generation_s": statistics.mean(walls),
                "candidates_per_s": growth.population * len(walls) / sum(walls),
                "rounds": len(walls),
            }
        one = results["growth_one_worker"]["generation_s"]
        ratios["growth_all_vs_one_wall"] = results["growth_all_workers"]["generation_s"] / one
        if "growth_ray" in results:
            ratios["growth_ray_vs_local"] = (
                results["growth_all_workers"]["generation_s"] / results["growth_ray"]["generation_s"]
            )
    return results, ratios


def _growth_trainer(case: GrowthCase, seed: int, device: torch.device) -> Callable[[Workers], float]:
    """A function that trains the growth half's generation on a pool and returns its wall time."""
    data = load_task_data(parse_spec(case.spec), data_dir=case.data_dir, seed=seed)
    budget = PRESETS["quick"].override(candidate_steps=case.candidate_steps)
    ranges = gene_space([], DEFAULT_INPUT_SHAPE)
    rng = np.random.default_rng(seed)
    first = stem(ranges, rng)
    genomes = [first] + [mutate(first, ranges, budget.mutation_rate, rng) for _ in range(case.population - 1)]
    newborns = [Newborn(0, index, genome) for index, genome in enumerate(genomes)]
    task = Growth([], data, DEFAULT_INPUT_SHAPE, ranges, budget, seed, device)

    def trainer(pool: Workers) -> float:
        started = time.perf_counter()
        train_generation(pool, task, newborns)
        return time.perf_counter() - started

    return trainer


def _totals(runs: list[EpisodeResults]) -> dict[str, float]:
    frames = sum(r.total_frames for r in runs)
    wall = sum(r.wall_s for r in runs)
    return {
        "steps_per_s": frames / FRAMESKIP / wall if wall > 0 else 0.0,
        "frames": frames,
        "wall_s": wall,
        "rounds": len(runs),
    }
