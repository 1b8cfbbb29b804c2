"""``lifelong bench scaling``: how a real ESP generation's episodes scale over local cores.

In one run, in interleaved rounds (so load from other processes hits every condition alike):

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

Every condition counts agent steps (4 frames) per wall second, episode starts included. Goals on
2 cores: ``ratios.agent_all_workers_vs_raw_single`` ≥ 1.7 (the physical limit is 2.0), Ray
within 10% of the local pool (``ratios.ray_vs_local``), and the scores of every agent condition
identical (``ratios.same_scores`` = 1).
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from agents.atari.agent import new_esp
from agents.atari.budget import ATARI_PRESETS
from agents.atari.evaluate import EpisodeResults, raw_ale, warm_pool
from agents.atari.games import FRAMESKIP, resolve_game
from agents.atari.substrate import substrate_for
from agents.atari.workers import evaluate_networks, evaluate_split
from agents.workers import Workers
from lifelong.bench import BenchResult


def bench_scaling(
    game: str, networks: int, max_frames: int, seed: int, *, rounds: int = 3, workers: int | None = None
) -> BenchResult:
    """See the module docstring; ``workers``: the all-workers condition's count (one per core)."""
    if networks < 1 or rounds < 1:
        raise ValueError("networks and rounds must be at least 1")
    rom = resolve_game(game)
    workers = workers or os.cpu_count() or 1
    budget = ATARI_PRESETS["quick"].override(evaluations=networks, trials=1, max_frames=max_frames)
    esp = new_esp(budget, substrate_for(rom).n_inputs, seed)
    pools = {"agent_all_workers": Workers(workers)}
    if importlib.util.find_spec("ray") is not None:
        import ray

        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        pools["agent_ray"] = Workers(workers, executor="ray")
    warm_pool(rom, networks)
    runs: dict[str, list[EpisodeResults]] = {
        "raw_ale_single": [],
        "raw_ale_lockstep": [],
        "agent_one_worker": [],
        **{name: [] for name in pools},
    }
    same = []
    try:
        _, warm_up = esp.ask(networks)
        for pool in pools.values():
            evaluate_split(pool, rom, warm_up, 1, max_frames=max_frames, seed=seed)
        for s in np.random.SeedSequence(seed).generate_state(rounds).tolist():
            _, generation = esp.ask(networks)
            runs["raw_ale_single"].append(raw_ale(rom, networks, max_frames=max_frames, seed=s, emulators=1))
            runs["raw_ale_lockstep"].append(raw_ale(rom, networks, max_frames=max_frames, seed=s))
            alone = evaluate_networks(rom, generation, 1, max_frames=max_frames, seed=s)
            runs["agent_one_worker"].append(alone)
            for name, pool in pools.items():
                split = evaluate_split(pool, rom, generation, 1, max_frames=max_frames, seed=s)
                runs[name].append(split)
                same.append(bool(np.array_equal(alone.scores, split.scores)))
    finally:
        for pool in pools.values():
            pool.close()
        if "agent_ray" in pools:
            ray.shutdown()
    results = {name: _totals(rs) for name, rs in runs.items()}
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
        **(
            {
                "ray_vs_local": results["agent_ray"]["steps_per_s"]
                / results["agent_all_workers"]["steps_per_s"]
            }
            if "agent_ray" in results
            else {}
        ),
    }
    return results, ratios


def _totals(runs: list[EpisodeResults]) -> dict[str, float]:
    frames = sum(r.total_frames for r in runs)
    wall = sum(r.wall_s for r in runs)
    return {
        "steps_per_s": frames / FRAMESKIP / wall if wall > 0 else 0.0,
        "frames": frames,
        "wall_s": wall,
        "rounds": len(runs),
    }
