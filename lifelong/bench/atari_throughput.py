"""``lifelong bench atari-throughput``: the agent's evaluation of a generation against the emulator's speed.

Conditions, all on the same pooled emulators of one game, the same number of them, the same
episodes and frame cap, run in interleaved rounds (raw, agent, agent-random, raw, …) so that load
from other processes on this shared machine hits every condition alike:

- ``raw_ale``: the physical limit: emulators stepped in lock-step with uniform-random actions and
  nothing else (:func:`agents.atari.evaluate.raw_ale`).
- ``agent_loop``: what the agent runs to score one ESP generation: ``episodes`` networks assembled
  by :meth:`ESP.ask <agents.atari.esp.ESP.ask>` from the population a game without sources starts
  from (:func:`agents.atari.agent.new_esp`, the ``quick`` budget's hidden neurons and members), one
  trial each, played by :func:`agents.atari.workers.evaluate_networks` (their
  :class:`~agents.atari.network.BatchedPolicy`, ``evaluate()`` with the agent's settings: default
  emulators, torch's own thread count, which the agent leaves alone).
- ``agent_loop_random_policy``: ``evaluate`` with random outputs from one batched torch op.
- ``raw_ale_internal_frameskip`` (``extras``): fresh emulators using ALE's own ``frame_skip=4``
  and sticky actions (one ``act()`` per step): what ``evaluate`` gives up by doing frame skip and
  stickiness in Python (for per-episode seeds).
- ``gymnasium_env`` (``extras``): gymnasium ``ALE/<Game>-v5`` environments (RAM observations,
  their cheapest), random actions, the same loop: the alternative to driving ``ALEInterface``
  directly.

``steps_per_s`` leaves out the time spent starting episodes (``reset_game`` costs many steps'
worth, and a random policy dies sooner than a network in some games, so the loops reset at
different rates); ``steps_per_s_with_episode_starts`` includes it.
``agent_loop.policy_steps_per_s_batched_forward`` times the agent's ``BatchedPolicy`` alone for
``networks`` networks of that population at once (every episode running, sparse binary inputs
like a substrate's), with ``policy_steps_per_s_python_loop`` (one ``BatchedPolicy`` per network)
for comparison. The headline ratio ``ratios.agent_vs_raw_ale`` = agent-loop steps/s ÷ raw steps/s
over all rounds; the target is ≥ 0.9.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from agents.atari.agent import new_esp
from agents.atari.budget import ATARI_PRESETS
from agents.atari.evaluate import DEFAULT_EMULATORS, STICKY, EpisodeResults, evaluate, raw_ale, warm_pool
from agents.atari.games import FRAMESKIP, N_ACTIONS, N_OUTPUTS, Game, rom_path
from agents.atari.network import BatchedPolicy, Networks
from agents.atari.substrate import substrate_for
from agents.atari.workers import evaluate_networks
from lifelong.bench import BenchResult


class RandomPolicy:
    """Uniform outputs in [-1, 1) from one batched torch op (the trivial policy)."""

    def __init__(self, seed: int = 0) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, observations: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        return torch.rand(observations.shape[0], N_OUTPUTS, generator=self.generator) * 2 - 1


def _sparse_inputs(n: int, n_in: int, seed: int) -> torch.Tensor:
    """``(n, n_in)`` binary inputs, 5% ones: about as sparse as an object substrate."""
    return (torch.rand(n, n_in, generator=torch.Generator().manual_seed(seed)) < 0.05).float()


def batched_forward_rate(networks: Networks, steps: int = 300, seed: int = 0) -> float:
    """Policy-steps/s of the agent's :class:`BatchedPolicy` over all ``networks`` at once (one
    trial each, every episode running: one call steps every network)."""
    n = len(networks)
    policy = BatchedPolicy(networks, trials=1)
    policy.reset(n)
    x, slots = _sparse_inputs(n, networks.n_in, seed), torch.arange(n)
    start = time.perf_counter()
    for _ in range(steps):
        policy(x, slots)
    return n * steps / (time.perf_counter() - start)


def python_loop_rate(networks: Networks, steps: int = 30, seed: int = 0) -> float:
    """Policy-steps/s of the same forward with one :class:`BatchedPolicy` per network, called in a
    Python loop (the slow alternative)."""
    n = len(networks)
    policies = [BatchedPolicy(Networks.stack([networks[i]]), trials=1) for i in range(n)]
    for policy in policies:
        policy.reset(1)
    x, slot = _sparse_inputs(n, networks.n_in, seed), torch.zeros(1, dtype=torch.int64)
    start = time.perf_counter()
    for _ in range(steps):
        for i, policy in enumerate(policies):
            policy(x[i : i + 1], slot)
    return n * steps / (time.perf_counter() - start)


class _Lockstep:
    """A reference loop: ``envs`` stepped in lock-step with uniform-random actions, one call per
    agent step, the same episode structure (frame cap, resets, finished episodes drop out) as
    :func:`agents.atari.evaluate.raw_ale`. ``step(env, action) -> over``; ``reset(env)``."""

    def __init__(
        self, envs: list[Any], step: Callable[[Any, int], bool], reset: Callable[[Any], Any]
    ) -> None:
        self.envs, self.step, self.reset = envs, step, reset

    def run(self, episodes: int, max_frames: int, seed: int) -> tuple[int, float, float]:
        """(agent steps, seconds, seconds spent resetting) of ``episodes`` episodes."""
        max_steps = max_frames // FRAMESKIP
        actions = np.random.default_rng(seed).integers(N_ACTIONS, size=max_steps).tolist()
        running = {i: 0 for i in range(min(len(self.envs), episodes))}
        waiting = episodes - len(running)
        total = 0
        resets = 0.0
        start = time.perf_counter()
        for i in running:
            self.reset(self.envs[i])
        resets += time.perf_counter() - start
        while running:
            for i in list(running):
                over = self.step(self.envs[i], actions[running[i]])
                running[i] += 1
                if running[i] >= max_steps or over:
                    total += running[i]
                    if waiting:
                        waiting -= 1
                        started = time.perf_counter()
                        self.reset(self.envs[i])
                        resets += time.perf_counter() - started
                        running[i] = 0
                    else:
                        del running[i]
        return total, time.perf_counter() - start, resets


def internal_frameskip_loop(game: Game, n_envs: int, seed: int) -> _Lockstep:
    """Emulators using ALE's own frame skip 4 and sticky actions 0.25 (one ``act()`` per step):
    what doing both in Python, for per-episode seeds, gives up."""
    from ale_py import ALEInterface

    ales = []
    for i in range(n_envs):
        ale = ALEInterface()
        ale.setInt("random_seed", seed + i)
        ale.setFloat("repeat_action_probability", STICKY)
        ale.setInt("frame_skip", FRAMESKIP)
        ale.loadROM(str(rom_path(game)))
        ales.append(ale)

    def step(ale: Any, action: int) -> bool:
        ale.act(action)
        return ale.game_over()

    return _Lockstep(ales, step, lambda ale: ale.reset_game())


def gymnasium_loop(game: Game, n_envs: int, seed: int) -> _Lockstep:
    """gymnasium ``ALE/<Game>-v5`` environments (sticky 0.25, full action set, frame skip 4, RAM
    observations: their cheapest)."""
    import ale_py
    import gymnasium

    gymnasium.register_envs(ale_py)
    env_id = "ALE/" + "".join(part.capitalize() for part in game.rom.split("_")) + "-v5"
    envs = [
        gymnasium.make(env_id, obs_type="ram", repeat_action_probability=STICKY, full_action_space=True)
        for _ in range(n_envs)
    ]
    for i, env in enumerate(envs):
        env.reset(seed=seed + i)

    def step(env: Any, action: int) -> bool:
        _, _, terminated, truncated, _ = env.step(action)
        return bool(terminated or truncated)

    return _Lockstep(envs, step, lambda env: env.reset())


def _totals(runs: list[EpisodeResults]) -> dict[str, float]:
    frames = sum(r.total_frames for r in runs)
    wall = sum(r.wall_s for r in runs)
    starts = sum(r.seconds.get("episode_starts", 0.0) for r in runs)
    return {
        "steps_per_s": round(frames / FRAMESKIP / (wall - starts), 1),
        "steps_per_s_with_episode_starts": round(frames / FRAMESKIP / wall, 1),
        "frames": frames,
        "wall_s": round(wall, 3),
        "episode_starts_s": round(starts, 3),
        "episodes": sum(len(r.scores) for r in runs),
        "score_mean": round(float(np.mean(np.concatenate([r.scores for r in runs]))), 3),
    }


def bench_atari_throughput(
    game: Game,
    episodes: int,
    max_frames: int,
    seed: int,
    *,
    rounds: int = 3,
    networks: int = 100,
    extras: bool = True,
) -> BenchResult:
    """Raw ALE stepping vs the agent's evaluation of a generation on ``game`` (see the module
    docstring).

    ``episodes`` per condition and round (for the agent: networks, one trial each), at most
    :data:`DEFAULT_EMULATORS` at once; ``rounds`` interleaved repetitions, each with its own seed
    and its own networks; ``networks`` for the batched-forward timing; ``extras`` adds the
    internal-frameskip and gymnasium references (their emulators load before the rounds,
    outside the timing). Torch's thread count is left as the agent leaves it.
    """
    if episodes < 1 or max_frames < FRAMESKIP or rounds < 1 or networks < 1:
        raise ValueError("episodes, rounds and networks must be >= 1 and max_frames >= 4")
    n_envs = min(episodes, DEFAULT_EMULATORS)
    n_in = substrate_for(game).n_inputs
    budget = ATARI_PRESETS["quick"].override(evaluations=episodes, trials=1, max_frames=max_frames)
    esp = new_esp(budget, n_in, seed)
    cpu = torch.device("cpu")
    warm_pool(game, n_envs)
    references = (
        {
            "raw_ale_internal_frameskip": internal_frameskip_loop(game, n_envs, seed),
            "gymnasium_env": gymnasium_loop(game, n_envs, seed),
        }
        if extras
        else {}
    )
    runs: dict[str, list[EpisodeResults]] = {"raw_ale": [], "agent_loop": [], "agent_loop_random_policy": []}
    reference_runs: dict[str, list[tuple[int, float, float]]] = {name: [] for name in references}
    common = {"max_frames": max_frames, "emulators": n_envs}
    for s in np.random.SeedSequence(seed).generate_state(rounds).tolist():
        runs["raw_ale"].append(raw_ale(game, episodes, seed=s, **common))
        _, generation = esp.ask(budget.evaluations)
        runs["agent_loop"].append(
            evaluate_networks(game, generation, budget.trials, max_frames=max_frames, seed=s, device=cpu)
        )
        runs["agent_loop_random_policy"].append(evaluate(game, RandomPolicy(s), episodes, seed=s, **common))
        for name, loop in references.items():
            reference_runs[name].append(loop.run(episodes, max_frames, s))
    results: dict[str, dict[str, float]] = {name: _totals(rs) for name, rs in runs.items()}
    for name, triples in reference_runs.items():
        steps, wall, resets = (sum(t[i] for t in triples) for i in range(3))
        results[name] = {
            "steps_per_s": round(steps / (wall - resets), 1),
            "steps_per_s_with_episode_starts": round(steps / wall, 1),
            "frames": steps * FRAMESKIP,
            "wall_s": round(wall, 3),
            "episode_starts_s": round(resets, 3),
        }
    raw = results["raw_ale"]["steps_per_s"]
    results["raw_ale"]["emulators"] = n_envs
    agent = runs["agent_loop"]
    per_round = [
        a.stepping_steps_per_s / b.stepping_steps_per_s for a, b in zip(agent, runs["raw_ale"], strict=True)
    ]
    wall = sum(r.wall_s for r in agent)
    shares = {f"share_{k}": round(sum(r.seconds[k] for r in agent) / wall, 4) for k in agent[0].seconds}
    _, forward_networks = esp.ask(networks)
    results["agent_loop"].update(
        {
            "emulators": agent[0].emulators,
            "inputs": n_in,
            "hidden": budget.hidden,
            "members": budget.members,
            "torch_threads": torch.get_num_threads(),
            "ratio_min_over_rounds": round(min(per_round), 4),
            "ratio_max_over_rounds": round(max(per_round), 4),
            **shares,
            "policy_steps_per_s_batched_forward": round(batched_forward_rate(forward_networks, seed=seed), 1),
            "policy_steps_per_s_python_loop": round(python_loop_rate(forward_networks, seed=seed), 1),
            "batched_forward_networks": networks,
        }
    )
    ratios = {
        "agent_vs_raw_ale": round(results["agent_loop"]["steps_per_s"] / raw, 4),
        "agent_random_policy_vs_raw_ale": round(results["agent_loop_random_policy"]["steps_per_s"] / raw, 4),
    }
    if extras:
        internal = results["raw_ale_internal_frameskip"]["steps_per_s"]
        ratios["internal_frameskip_vs_raw_ale"] = round(internal / raw, 4)
        ratios["gymnasium_vs_raw_ale"] = round(results["gymnasium_env"]["steps_per_s"] / raw, 4)
    return results, ratios
