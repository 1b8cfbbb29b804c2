"""``lifelong bench atari-transfer``: does reusing an earlier game's network help on a new one?

The protocol, per path of games (``Freeway>SpaceInvaders``; a longer path is a chain) and seed:

1. a fresh library learns the path's first game from scratch;
2. each later game (a *hop*) is learned four times on the same emulator-frame budget: ``scratch``
   (no sources), ``random_library`` (frozen random networks of the source's shapes: the paper's
   control), ``transfer`` (the previous game's ``transfer`` network, frozen; from the third game
   on, a network that used sources itself) and ``peer`` (an EvoTorch search algorithm evolving
   the scratch network: :mod:`lifelong.bench.atari_peer`);
3. every run's champion is re-evaluated on fresh episodes (the ``test_episodes`` seed stream,
   never played while learning; the same episodes for every condition of a seed): the committed
   network with ``lifelong eval``'s code at the end (the result), and the champion so far every
   ``curve_every`` generations and where the frames spent pass the paper's checkpoints.

**Diagnosis** (:mod:`agents.atari.units`): every agent run's committed network is also played on
the first :data:`DIAGNOSIS_EPISODES` of those fresh episodes, reading each recruited source's
hidden units and outputs (saturation, spread, sign flips) and the actions taken (entropy); the
champion's transfer-weight magnitudes are kept every generation, and the lesion's verdict on the
sources with the run.

Figures per hop and condition: the mean re-evaluated score with a 95% bootstrap confidence
interval over seeds, the same for the champion when the frames ran out (before the agent's
lesion), the paired difference from ``scratch`` (and, for ``transfer``, from ``random_library``:
what the learned sources add), the frames spent; GRUSM-ESP's
transfer effectiveness TE = (Σ mean re-evaluated champion at the checkpoints − the same for
scratch) / the score range, the checkpoints being generations 1, 10, 50, 100, 200 of the paper's
200 taken as the same shares of the frame budget, and the range the highest minus the lowest
re-evaluated score of any run of that game (the paper gives no per-game ranges).
"""

from __future__ import annotations

import importlib.util
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents import Progress, quiet
from agents.atari.agent import load_network
from agents.atari.budget import ATARI_PRESETS, AtariBudget
from agents.atari.games import Game
from agents.atari.grusm import split_transfer
from agents.atari.network import Network
from agents.atari.problem import stream_seed
from agents.atari.units import unit_statistics
from agents.atari.workers import evaluate_episodes
from agents.task import TaskSpec
from agents.workers import Workers, shared
from library_store import Library
from lifelong.atari import evaluate_atari
from lifelong.bench import BenchResult, Stage, mean_ci
from lifelong.errors import LifelongError
from lifelong.plans import AtariPlan
from lifelong.runner import learn_specs
from lifelong.tasks import parse_spec

PATHS = ("Freeway>SpaceInvaders>Seaquest", "Boxing>Seaquest")
"""The standard protocol's games: Freeway → Space Invaders, then a chain on to Seaquest (the paper's
largest gain), and Boxing → Seaquest."""
QUICK_PATHS = ("Freeway>SpaceInvaders",)
QUICK = ATARI_PRESETS["quick"].override(evaluations=12, max_frames=1500)
"""``--quick``'s budget: 10 generations' worth of frames (180,000 a run), every condition, the peer."""
MID = QUICK.override(generations=50, evaluations=24, stagnation=5)
"""``--budget mid``: ten times the quick frames a run (1.8 M: 50 generations × 24 networks × one
1,500-frame episode), for the standard paths one seed a command, merged with ``bench merge``."""
BENCH_BUDGETS = {"mid": MID}
"""Budgets of this benchmark beside the agent's presets (``--budget``)."""
ESP_CONDITIONS = {"scratch": "scratch", "random_library": "random", "transfer": "transfer"}
"""The agent's conditions (bench name → ``learn --condition``); the last two recruit the previous
game's ``transfer`` network, or random networks of its shapes."""
CONDITIONS = (*ESP_CONDITIONS, "peer")
PAPER_CHECKPOINTS = (1, 10, 50, 100, 200)
"""GRUSM-ESP's transfer effectiveness reads the learning curve at these generations of 200."""
DIAGNOSIS_EPISODES = 5
"""Fresh episodes each agent run's committed network is diagnosed on (:mod:`agents.atari.units`)."""
GENERATION_CAP = 10
"""A run stops at this many times the budget's generations even if its frames are not spent (games
whose episodes end very early); the generations used are recorded."""


@dataclass(frozen=True)
class Protocol:
    """What every run of the benchmark shares."""

    budget: AtariBudget  # evaluations, trials, max_frames, hidden; ``frames`` is the budget per run
    episodes: int = 30  # fresh episodes a champion is re-evaluated on
    curve_every: int = 2  # re-evaluate the champion every this many generations (and at checkpoints)
    peer: str = "snes"  # the EvoTorch algorithm (lifelong.bench.atari_peer.PEER_ALGORITHMS)
    device: torch.device = torch.device("cpu")

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.curve_every < 1:
            raise LifelongError("--episodes and --curve-every must be at least 1")
        if importlib.util.find_spec("evotorch") is None:
            raise LifelongError("bench atari-transfer's peer needs EvoTorch: pip install -e '.[peer]'")
        from lifelong.bench.atari_peer import PEER_ALGORITHMS

        if self.peer not in PEER_ALGORITHMS:
            raise LifelongError(f"unknown --peer {self.peer!r} (choose {', '.join(PEER_ALGORITHMS)})")


def frame_budget(budget: AtariBudget) -> int:
    """Frames per run: the budget's ``frames``, else all its generations' episodes at the cap."""
    return budget.frames or budget.generations * budget.evaluations * budget.trials * budget.max_frames


def frame_marks(frames: int) -> list[int]:
    """The paper's checkpoint generations as the same shares of ``frames``."""
    return [max(1, round(frames * g / PAPER_CHECKPOINTS[-1])) for g in PAPER_CHECKPOINTS]


def parse_paths(text: str) -> list[list[str]]:
    """``Freeway>SpaceInvaders,Boxing>Seaquest`` → games per path (each one ALE knows)."""
    paths = [[game.strip() for game in path.split(">")] for path in text.split(",")]
    for path in paths:
        if len(path) < 2 or len({parse_spec(f"atari:{game}").game for game in path}) < len(path):
            raise LifelongError(
                f"--pairs: each path is two or more different games like Freeway>Pong, got {text!r}"
            )
    return paths


def transfer_magnitudes(network: Network) -> tuple[float, float]:
    """Mean ``|T_in|`` and mean ``|T_out|`` over a network's recruited sources' transfer genes."""
    parts = [
        split_transfer(g, network.n_in, s.n_hidden)
        for s, g in zip(network.sources, network.transfers, strict=True)
    ]
    return (
        float(np.mean([t_in.abs().mean() for t_in, _ in parts])),
        float(np.mean([t_out.abs().mean() for _, t_out in parts])),
    )


@dataclass
class Watch:
    """Re-evaluates a run's champion on fresh episodes while it learns: every ``every``-th
    generation and when the frames spent pass each of ``marks``. A champion that has not changed
    keeps its score."""

    score: Callable[[Network], float]
    marks: list[int]
    every: int
    curve: list[list[float]] = field(default_factory=list)  # [generation, frames, score]
    at_marks: list[float] = field(default_factory=list)
    transfer: list[list[float]] = field(default_factory=list)  # [generation, mean |T_in|, |T_out|]
    _last: tuple[Network, float] | None = None
    _seen: tuple[int, int, Network] | None = None

    def __call__(self, generation: int, frames: int, champion: Network) -> None:
        self._seen = (generation, frames, champion)
        if champion.sources:
            self.transfer.append([generation, *transfer_magnitudes(champion)])
        due = sum(1 for mark in self.marks[len(self.at_marks) :] if frames >= mark)
        if due or generation % self.every == 0:
            self._record(generation, frames, champion, due)

    def finish(self) -> None:
        """After the run: the last champion on the curve, and at any checkpoint it never reached."""
        assert self._seen is not None, "a run learns at least one generation"
        generation, frames, champion = self._seen
        if not self.curve or self.curve[-1][0] != generation or len(self.at_marks) < len(self.marks):
            self._record(generation, frames, champion, len(self.marks) - len(self.at_marks))

    def _record(self, generation: int, frames: int, champion: Network, due: int) -> None:
        if self._last is None or self._last[0] is not champion:
            self._last = (champion, self.score(champion))
        score = self._last[1]
        if not self.curve or self.curve[-1][0] != generation:
            self.curve.append([generation, frames, score])
        self.at_marks += [score] * due


@dataclass
class Bench:
    """One benchmark run: its protocol, the worker pool, and what it has measured so far."""

    protocol: Protocol
    pool: Workers
    root: Path
    stage: Stage
    progress: Progress
    reevaluation_frames: int = 0
    solo: dict[tuple[Game, int], dict[str, dict[str, Any]]] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return frame_budget(self.protocol.budget)

    def run_budget(self) -> AtariBudget:
        b = self.protocol.budget
        return b.override(frames=self.frames, generations=b.generations * GENERATION_CAP)

    def fresh_score(self, game: Game, seed: int) -> Callable[[Network], float]:
        """A champion's mean score on the seed's fresh episodes (:func:`evaluate_episodes`, as
        ``lifelong eval`` plays them)."""

        def score(network: Network) -> float:
            result = evaluate_episodes(
                self.pool,
                game,
                network,
                self.protocol.episodes,
                max_frames=self.protocol.budget.max_frames,
                seed=stream_seed(seed, "test_episodes"),
            )
            self.reevaluation_frames += result.total_frames
            return float(result.scores.mean())

        return score

    def learn(
        self, library: Library, spec: TaskSpec, seed: int, name: str, plan: AtariPlan
    ) -> dict[str, Any]:
        """Learn ``spec``'s game as task ``name``; its committed network and its curve re-evaluated."""
        game = spec.game
        watch = Watch(self.fresh_score(game, seed), frame_marks(self.frames), self.protocol.curve_every)
        library.refresh()
        (record,) = learn_specs(
            library,
            [spec],
            plans={"atari": replace(plan, on_generation=watch)},
            names=[name],
            seed=seed,
            device=self.protocol.device,
            progress=self.progress,
            workers=self.pool,
        )
        watch.finish()
        final = evaluate_atari(
            library,
            name,
            episodes=self.protocol.episodes,
            seed=stream_seed(seed, "test_episodes"),
            device=self.protocol.device,
            workers=self.pool,
        )
        self.reevaluation_frames += final["frames"]
        measured = self._measured(
            final["scores"], record.metrics["generations"], record.metrics["learning_frames"], watch
        )
        network, _ = load_network(library, name)
        units = unit_statistics(
            network,
            game,
            DIAGNOSIS_EPISODES,
            max_frames=self.protocol.budget.max_frames,
            seed=stream_seed(seed, "test_episodes"),
            device=self.protocol.device,
        )
        self.reevaluation_frames += units.pop("frames")
        lesion = {"sources_recruited": len(network.sources) + record.details.get("removed_sources", 0)}
        lesion["sources_removed"] = record.details.get("removed_sources", 0)
        return {**measured, "units": units, "transfer": watch.transfer, **lesion}

    def peer(self, game: Game, seed: int) -> dict[str, Any]:
        """The peer on ``game``: its champion re-evaluated like the agent's."""
        from lifelong.bench.atari_peer import evolve_peer

        score = self.fresh_score(game, seed)
        watch = Watch(score, frame_marks(self.frames), self.protocol.curve_every)
        run = evolve_peer(
            game,
            self.protocol.budget,
            frames=self.frames,
            seed=seed,
            workers=self.pool,
            device=self.protocol.device,
            algorithm=self.protocol.peer,
            on_generation=watch,
        )
        watch.finish()
        final = evaluate_episodes(
            self.pool,
            game,
            run.champion,
            self.protocol.episodes,
            max_frames=self.protocol.budget.max_frames,
            seed=stream_seed(seed, "test_episodes"),
        )
        self.reevaluation_frames += final.total_frames
        return self._measured(final.scores.tolist(), run.generations, run.frames, watch)

    @staticmethod
    def _measured(scores: list[float], generations: int, frames: int, watch: Watch) -> dict[str, Any]:
        return {
            "score": float(np.mean(scores)),
            "scores": [float(s) for s in scores],
            "generations": int(generations),
            "frames": int(frames),
            "curve": watch.curve,
            "at_checkpoints": watch.at_marks,
        }

    def path(self, games: list[str], seed: int) -> dict[str, dict[str, dict[str, Any]]]:
        """One seed of one path: every hop's conditions (hop key ``A>B``, ``A>B>C``, …)."""
        library = Library.create(self.root / f"{'-'.join(games)}-{seed}")
        budget = self.run_budget()
        specs = [parse_spec(f"atari:{game}") for game in games]
        self.learn(library, specs[0], seed, games[0], AtariPlan(budget, sources="none"))
        self.stage.advance(1, f"seed {seed}: {games[0]} learned")
        measured, previous = {}, games[0]
        for i, (game, spec) in enumerate(zip(games[1:], specs[1:], strict=True), start=2):
            hop: dict[str, dict[str, Any]] = {}
            key = (spec.game, seed)
            for condition, mode in ESP_CONDITIONS.items():
                if mode == "scratch" and key in self.solo:  # it does not depend on the path
                    hop[condition] = self.solo[key]["scratch"]
                    continue
                plan = AtariPlan(budget, condition=mode, sources="none" if mode == "scratch" else previous)
                hop[condition] = self.learn(library, spec, seed, f"{game}-{condition}", plan)
                self.stage.advance(1, f"seed {seed}: {game} {condition}")
            solo = self.solo.setdefault(key, {"scratch": hop["scratch"]})
            if "peer" not in solo:
                solo["peer"] = self.peer(spec.game, seed)
                self.stage.advance(1, f"seed {seed}: {game} peer ({self.protocol.peer})")
            hop["peer"] = solo["peer"]
            measured[">".join(games[:i])] = hop
            previous = f"{game}-transfer"
        return measured


def bench_atari_transfer(
    paths: list[list[str]], seeds: list[int], protocol: Protocol, progress: Progress = quiet
) -> BenchResult:
    """Every path and seed (see the module docstring): results per ``condition:hop``, TE ratios,
    and every run's scores, frames and curves under ``runs``."""
    hops = sum(len(path) - 1 for path in paths)
    targets = len({parse_spec(f"atari:{game}").game for path in paths for game in path[1:]})
    per_seed = len(paths) + 2 * hops + 2 * targets  # sources; random and transfer per hop; scratch, peer
    stage = Stage(progress, "bench atari-transfer (games learned)", len(seeds) * per_seed)
    with tempfile.TemporaryDirectory(prefix="lifelong-atari-") as tmp:
        bench = Bench(protocol, shared(None), Path(tmp), stage, progress)
        by_seed = {
            seed: {hop: runs for path in paths for hop, runs in bench.path(path, seed).items()}
            for seed in seeds
        }
    hop_names = list(by_seed[seeds[0]])
    runs = {hop: {c: {str(s): by_seed[s][hop][c] for s in seeds} for c in CONDITIONS} for hop in hop_names}
    results, ratios = summarize(runs)
    info = {
        "hops": runs,
        "paths": [">".join(path) for path in paths],
        "budget": protocol.budget.__dict__,
        "frames_per_run": frame_budget(protocol.budget),
        "checkpoint_frames": frame_marks(frame_budget(protocol.budget)),
        "episodes": protocol.episodes,
        "curve_every": protocol.curve_every,
        "peer": protocol.peer,
        "reevaluation_frames": bench.reevaluation_frames,
    }
    return results, ratios, info


def summarize(
    runs: dict[str, dict[str, dict[str, dict[str, Any]]]],
) -> tuple[dict[str, Any], dict[str, float]]:
    """Results per ``condition:hop`` and TE ratios from every run's re-evaluated scores (``runs``:
    hop → condition → seed → run)."""
    results, ratios = {}, {}
    for hop, conditions in runs.items():
        scores_of = {c: [run["score"] for run in by.values()] for c, by in conditions.items()}
        every = [
            v
            for c in conditions.values()
            for run in c.values()
            for v in [run["score"], *run["at_checkpoints"]]
        ]
        score_range = (max(every) - min(every)) or 1.0
        summed_scratch = _summed(conditions["scratch"])
        for condition, by in conditions.items():
            scores = scores_of[condition]
            row = {
                **_with_ci("score", scores),
                "score_sd": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                # the champion when the frames ran out, before the agent's lesion pruned it
                **_with_ci("champion", [run["at_checkpoints"][-1] for run in by.values()]),
                **_with_ci("vs_scratch", _paired(scores, scores_of["scratch"])),
                "frames_mean": statistics.mean(run["frames"] for run in by.values()),
                "generations_mean": statistics.mean(run["generations"] for run in by.values()),
            }
            if condition == "transfer":  # what the learned sources add over random ones of their shapes
                row.update(_with_ci("vs_random_library", _paired(scores, scores_of["random_library"])))
            row.update(diagnosis(list(by.values())))
            results[f"{condition}:{hop}"] = row
            if condition != "scratch":
                ratios[f"te_{condition}:{hop}"] = (_summed(by) - summed_scratch) / score_range
    return results, ratios


def diagnosis(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Means over a condition's seeds (and recruited sources) of what :mod:`agents.atari.units`
    read on fresh episodes, the last transfer magnitudes, and how often the lesion removed a source;
    empty for runs without a diagnosis (the peer, files written before it)."""
    if not all("units" in run for run in runs):
        return {}
    row = {"action_entropy": statistics.mean(run["units"]["action_entropy"] for run in runs)}
    sources = [source for run in runs for source in run["units"]["sources"]]
    if sources:
        for part in ("hidden", "outputs"):
            for key in ("saturated", "sd", "flips"):
                row[f"{part}_{key}"] = statistics.mean(source[part][key] for source in sources)
        row["t_in_abs"] = statistics.mean(source["t_in_abs"] for source in sources)
        row["t_out_abs"] = statistics.mean(source["t_out_abs"] for source in sources)
    recruited = sum(run["sources_recruited"] for run in runs)
    if recruited:
        row["sources_removed_share"] = sum(run["sources_removed"] for run in runs) / recruited
    return row


def _paired(scores: list[float], others: list[float]) -> list[float]:
    """Seed by seed, ``scores`` minus ``others``."""
    return [a - b for a, b in zip(scores, others, strict=True)]


def _with_ci(key: str, values: list[float]) -> dict[str, float]:
    """``key_mean``, ``key_ci_low``, ``key_ci_high`` of ``values`` (:func:`mean_ci`)."""
    mean, low, high = mean_ci(values)
    return {f"{key}_mean": mean, f"{key}_ci_low": low, f"{key}_ci_high": high}


def _summed(runs: dict[str, dict[str, Any]]) -> float:
    """Σ over the checkpoints of the mean (over seeds) re-evaluated champion."""
    marks = np.array([run["at_checkpoints"] for run in runs.values()], dtype=float)
    return float(marks.mean(axis=0).sum())


SAME_IN_A_MERGE = (
    "paths",
    "budget",
    "frames_per_run",
    "checkpoint_frames",
    "episodes",
    "curve_every",
    "peer",
)
"""What results over different seeds must share to be one result (and the device, recorded
outside ``runs``)."""


def merge_seeds(benches: list[tuple[Path, dict[str, Any]]]) -> tuple[BenchResult, list[dict[str, Any]]]:
    """One result from ``bench atari-transfer`` results over disjoint seeds of the same paths,
    budget and protocol: every run's figures as one run with all the seeds gives them (each run
    draws its randomness from its seed), and where each seed came from."""
    if len(benches) < 2:
        raise LifelongError("give two or more `lifelong bench atari-transfer` results to merge")
    (first_path, first), owner = benches[0], {}
    for path, bench in benches:
        for key in SAME_IN_A_MERGE:
            if bench["runs"].get(key) != first["runs"].get(key):
                raise LifelongError(f"{path} and {first_path} differ in {key}: they are not one experiment")
        if bench.get("device") != first.get("device"):
            raise LifelongError(f"{path} ran on {bench.get('device')}, {first_path} on {first.get('device')}")
        if list(bench["runs"]["hops"]) != list(first["runs"]["hops"]):
            raise LifelongError(f"{path} and {first_path} ran different hops")
        for seed in bench["seeds"]:
            if str(seed) in owner:
                raise LifelongError(f"seed {seed} is in both {owner[str(seed)][0]} and {path}")
            owner[str(seed)] = (path, bench)
    seeds = sorted(owner, key=int)
    hops = {
        hop: {c: {seed: owner[seed][1]["runs"]["hops"][hop][c][seed] for seed in seeds} for c in CONDITIONS}
        for hop in first["runs"]["hops"]
    }
    results, ratios = summarize(hops)
    frames = sum(bench["runs"]["reevaluation_frames"] for _, bench in benches)
    info = {**first["runs"], "hops": hops, "reevaluation_frames": frames}
    sources = [
        {"file": str(path), **{key: bench.get(key) for key in ("command", "seeds", "versions", "wall_s")}}
        for path, bench in benches
    ]
    return (results, ratios, info), sources


def check_atari_transfer(data: dict[str, Any]) -> None:
    """Raise if ``data`` is not a well-formed atari-transfer result."""
    hops, marks = data["runs"]["hops"], data["runs"]["checkpoint_frames"]
    if not hops:
        raise ValueError("needs at least one hop")
    for hop, conditions in hops.items():
        if list(conditions) != list(CONDITIONS):
            raise ValueError(f"{hop}: needs the conditions {', '.join(CONDITIONS)}")
        seeds = set(conditions["scratch"])
        for condition, runs in conditions.items():
            if not runs or set(runs) != seeds:
                raise ValueError(f"{hop} {condition}: ran other seeds than the rest")
            for seed, run in runs.items():
                if len(run["at_checkpoints"]) != len(marks) or not run["curve"]:
                    raise ValueError(f"{hop} {condition} seed {seed}: not one score per checkpoint")
                if not isinstance(run["score"], int | float) or len(run["curve"][0]) != 3:
                    raise ValueError(f"{hop} {condition} seed {seed}: malformed score or curve")
