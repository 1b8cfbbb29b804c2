"""The GRUSM-ESP Atari agent: reuse frozen networks of earlier games, grow neurons, lesion.

``AtariAgent`` implements :class:`agents.Agent`:

- **self-organize**: recruit the library's networks of earlier games as frozen *sources* (inputs
  clamped to 0; a network that used sources brings them along) and evolve only transfer genomes
  (target inputs → source hidden, source outputs → target outputs) and output biases, one ESP
  subpopulation per source;
- **grow**: if that stays below ``--target`` (or its share of the generations runs out), go on
  with adaptation enabled: bursts, then lesion or add a recruit (a new hidden neuron); a game
  with no sources starts here, from ``hidden`` neurons;
- **prune**: lesion the best network, dropping neurons and sources it does not need;
- the best network is committed as a frozen ``esp_network`` module; the task records which
  sources it uses with which transfer weights.

Each task's random numbers come from its own streams (:data:`agents.atari.problem.SEED_STREAMS`),
all derived from the seed with numpy's ``SeedSequence``. What a task has spent and found so far
lives in its :class:`Attempt`, never on the agent; its networks are scored by the attempt's
:class:`agents.atari.problem.AtariFitness`, which keeps the frames and evaluation calls spent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents import NewModule, Progress, Solution, quiet
from agents.atari.budget import CONDITIONS, AtariBudget
from agents.atari.esp import ESP, ESPConfig
from agents.atari.evaluate import evaluate
from agents.atari.games import FRAMESKIP, N_OUTPUTS, Game, resolve_game
from agents.atari.grusm import Source, inherited_transfer, random_source
from agents.atari.network import BatchedPolicy, Network, Networks
from agents.atari.problem import AtariFitness, stream_seed
from agents.atari.substrate import Substrate, game_table, substrate_for
from agents.atari.workers import evaluate_networks
from agents.errors import LifelongError
from agents.workers import Workers
from library_store import Library, TaskArrays

MODULE_KIND = "esp_network"
Watcher = Callable[[int, int, Network], None]
"""``watcher(generation, frames, champion)``: called after each generation (1-based) with the
emulator frames spent so far and the best network so far."""
CHECKPOINT_FORMAT = 2
"""Version of the checkpoint contents (2: evaluation counter and seed streams)."""


@dataclass
class Attempt:
    """An ESP run so far: its state, the fitness that scores its networks (and counts the
    emulation and evaluation calls spent), its learning curves and details."""

    esp: ESP
    phase: str
    fitness: AtariFitness
    curves: dict[str, list[float]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        """Emulator frames spent learning so far (generations, screen and lesions)."""
        return self.fitness.frames


@dataclass(frozen=True, eq=False)
class Problem:
    """A game to learn (its task name and spec), its input substrate, the frozen sources it may
    recruit, and, with ``--resume``, the checkpointed attempt to go on from."""

    name: str
    spec: str
    game: Game
    substrate: Substrate
    sources: list[Source]  # Source.name = library module id, or "" for a random control
    target: float | None
    resumed: Attempt | None = None


def new_esp(
    budget: AtariBudget, n_inputs: int, seed: int, sources: Sequence[Source] = (), classes: Sequence[str] = ()
) -> ESP:
    """The ESP a game starts from: over ``sources`` alone (self-organization: transfer genomes and
    output biases), their transfer genomes started as ``budget.transfer_init`` says (``inherit``
    reads each source's wiring onto the target's input ``classes``), or, without sources, over
    ``budget.hidden`` own neurons."""
    esp = ESP(
        n_inputs,
        hidden=0 if sources else budget.hidden,
        sources=sources,
        config=ESPConfig(members=budget.members, stagnation=budget.stagnation),
        generator=stream_seed(seed, "evolution"),
    )
    for i, source in enumerate(sources):
        inherit = budget.transfer_init in ("inherit", "inherit-in")
        esp.start_transfer(i, budget.transfer_init, inherited_transfer(source, classes) if inherit else None)
    return esp


def source_from_module(library: Library, module_id: str) -> Source:
    """The frozen source a module is: a game's network that used sources is rebuilt whole from its
    task, its sources with it (recursively); any other module holds the whole source."""
    owners = (t.name for t in library.tasks() if t.family == "atari" and t.layers[0][0] == module_id)
    owner = next(owners, None)
    config = library.module(module_id).config
    # a random control's record names the game it was a control in, not inputs of its own
    classes = () if config.get("random_control") else game_table(stored_game(config["game"])).class_names
    if owner is not None:
        network, _ = load_network(library, owner)
        if network.sources:
            return network.as_source(module_id, classes)
    return replace(Source.from_arrays(library.module_tensors(module_id), name=module_id), classes=classes)


def stored_game(rom: str) -> Game:
    """The game of a task or module read back from the library (its ROM id), resolved as a name
    is: its ROM must be there."""
    return resolve_game(rom)


def library_sources(library: Library, exclude_game: Game) -> dict[str, str]:
    """The networks of the library's Atari tasks of other games (with or without sources of their
    own): module id → the game's stored ROM id."""
    return {
        t.layers[0][0]: t.details["game"]
        for t in library.tasks()
        if t.family == "atari" and t.details["game"] != exclude_game.rom
    }


def choose_sources(library: Library, sources: str, game: Game) -> list[str]:
    """Module ids of the source networks ``--sources`` names: ``auto`` (every network of another
    game), ``none``, or a comma-separated list of Atari task names or module ids."""
    available = library_sources(library, exclude_game=game)
    if sources == "none":
        return []
    if sources == "auto":
        return sorted(available)
    chosen = []
    by_task = {t.name: t.layers[0][0] for t in library.tasks() if t.family == "atari"}
    for item in sources.split(","):
        module_id = by_task.get(item, item)
        if module_id not in available:
            known = ", ".join(sorted(by_task)) or "none"
            raise LifelongError(
                f"--sources: {item!r} is not a network of another game (Atari tasks: {known})"
            )
        chosen.append(module_id)
    return chosen


def load_network(library: Library, name: str) -> tuple[Network, Game]:
    """A stored Atari task's network (with its sources) and its game."""
    record, arrays = library.task(name), library.task_arrays(name)
    own_id, *source_ids = record.layers[0]
    sources = [source_from_module(library, module_id) for module_id in source_ids]
    tensors = dict(library.module_tensors(own_id))
    for i, use in enumerate(arrays.uses[0][1:]):
        tensors[f"transfer_in_{i}"] = use["transfer_in"]
        tensors[f"transfer_out_{i}"] = use["transfer_out"]
    return Network.from_arrays(tensors, sources), stored_game(record.details["game"])


def replay_probe(network: Network, observations: np.ndarray, device: torch.device) -> np.ndarray:
    """Outputs of ``network`` on one episode's stored observations, from a fresh recurrent state."""
    policy = BatchedPolicy(Networks.stack([network]), trials=1, device=device)
    policy.reset(1)
    slot = torch.zeros(1, dtype=torch.int64, device=device)
    outputs = [policy(torch.from_numpy(row[None]).to(device), slot).cpu().numpy()[0] for row in observations]
    return np.stack(outputs) if outputs else np.zeros((0, N_OUTPUTS), np.float32)


class _Recorder:
    """Wraps a policy and keeps episode 0's first observations and outputs (the probe set)."""

    def __init__(self, policy: BatchedPolicy, limit: int) -> None:
        self.policy, self.limit = policy, limit
        self.observations: list[np.ndarray] = []
        self.outputs: list[np.ndarray] = []

    def reset(self, n_episodes: int) -> None:
        self.policy.reset(n_episodes)

    def __call__(self, observations: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        outputs = self.policy(observations, slots)
        if len(self.observations) < self.limit and int(slots[0]) == 0:
            self.observations.append(observations[0].cpu().numpy().copy())
            self.outputs.append(outputs[0].cpu().numpy().copy())
        return outputs


class AtariAgent:
    """GRUSM-ESP over the real ALE."""

    family = "atari"

    def __init__(
        self,
        budget: AtariBudget,
        *,
        target: float | None = None,
        seed: int = 0,
        device: torch.device | None = None,
        sources: str = "auto",
        condition: str = "transfer",
        progress: Progress = quiet,
        checkpoint: Path | None = None,
        checkpoint_every: int = 0,
        resume: bool = False,
        workers: Workers | None = None,
        on_generation: Watcher | None = None,
    ) -> None:
        """``checkpoint``: file to save the evolution state to every ``checkpoint_every``
        generations (0: never) and, with ``resume``, to continue from; ``workers``: the processes
        that play a generation's episodes (None: this process plays them); ``on_generation``:
        called after each generation with the champion so far (what a benchmark re-evaluates)."""
        if condition not in CONDITIONS:
            raise LifelongError(f"unknown --condition {condition!r} (choose {', '.join(CONDITIONS)})")
        self.budget, self.target, self.seed = budget, target, seed
        self.device = device or torch.device("cpu")
        self.sources, self.condition, self.progress = sources, condition, progress
        self.checkpoint, self.checkpoint_every, self.resume = checkpoint, checkpoint_every, resume
        self.workers = workers or Workers(0)
        self.on_generation = on_generation

    # -------------------------------------------------------------- protocol
    def prepare(self, library: Library, spec: Any, name: str) -> Problem:
        game = spec.game
        chosen = [] if self.condition == "scratch" else choose_sources(library, self.sources, game)
        sources = [source_from_module(library, module_id) for module_id in chosen]
        if self.condition == "random":
            rng = np.random.default_rng(stream_seed(self.seed, "random_controls"))
            sources = [random_source(s, rng, name="") for s in sources]
        problem = Problem(name, spec.text, game, substrate_for(game), sources, self.target)
        return replace(problem, resumed=self._load_checkpoint(problem)) if self.resume else problem

    def good_enough(self, problem: Problem, attempt: Attempt | None) -> bool:
        return attempt is not None and problem.target is not None and attempt.esp.best_score >= problem.target

    def self_organize(self, problem: Problem) -> Attempt | None:
        """Transfer-only evolution over the frozen sources (no own neurons, no adaptation) for
        ``self_organize_share`` of the generations, or until the target is reached."""
        attempt = problem.resumed
        if attempt is not None and attempt.phase == "grow":
            return attempt  # self-organization had finished before the interruption
        if attempt is None:
            if not problem.sources:
                return None
            fitness = self._fitness(problem)
            attempt = Attempt(None, "self_organize", fitness)  # type: ignore[arg-type]  # its ESP follows
            sources = self._screen(problem, attempt) if self.budget.screen else problem.sources
            if not sources:  # no source beat its twin: learn from scratch, the screen's frames spent
                attempt.esp, attempt.phase = (
                    new_esp(self.budget, problem.substrate.n_inputs, self.seed),
                    "grow",
                )
                attempt.details["self_organize_generations"] = 0
                return attempt
            classes = game_table(problem.game).class_names
            attempt.esp = new_esp(self.budget, problem.substrate.n_inputs, self.seed, sources, classes)
        share = max(1, round(self.budget.generations * self.budget.self_organize_share))
        frames = round(self.budget.frames * self.budget.self_organize_share)
        self._generations(problem, attempt, share - attempt.esp.generation, adapt=False, frames=frames)
        attempt.details["self_organize_generations"] = attempt.esp.generation
        return attempt

    def _screen(self, problem: Problem, attempt: Attempt) -> list[Source]:
        """``--set screen=true``: one probe generation per source over it alone and one over a
        random twin of its shapes, from the same ESP seed (so the same transfer weights) on the
        same episodes; the sources whose networks score higher on average than their twin's are
        recruited. The frames count as learning frames; the verdicts go in the task's details."""
        rng = np.random.default_rng(stream_seed(self.seed, "random_controls", 1))
        classes = game_table(problem.game).class_names
        kept, verdicts = [], []
        for source in problem.sources:
            draw, means = attempt.fitness.draw(), []  # one draw of episodes for the source and its twin
            for candidate in (source, random_source(source, rng, name="")):
                esp = new_esp(self.budget, problem.substrate.n_inputs, self.seed, [candidate], classes)
                _, networks = esp.ask(self.budget.evaluations)
                means.append(float(np.mean(attempt.fitness.scores(networks, draw=draw))))
            verdicts.append(
                {"source": source.name, "score": means[0], "twin": means[1], "kept": means[0] > means[1]}
            )
            if means[0] > means[1]:
                kept.append(source)
        attempt.details["screen"] = verdicts
        return kept

    def grow(self, problem: Problem, attempt: Attempt | None) -> Attempt:
        """Go on with adaptation (bursts add recruits: new neurons); from scratch if no sources."""
        if attempt is None:
            esp = new_esp(self.budget, problem.substrate.n_inputs, self.seed)
            attempt = Attempt(esp, "grow", self._fitness(problem), details={"self_organize_generations": 0})
        attempt.phase = "grow"
        remaining = self.budget.generations - attempt.esp.generation
        self._generations(problem, attempt, max(1, remaining), adapt=True, frames=self.budget.frames)
        return attempt

    def prune(self, problem: Problem, attempt: Attempt) -> Attempt:
        """Lesion: remove the best network's neurons and sources that do not help."""
        lesion = attempt.esp.lesion(score_batch=lambda nets: self._lesion_scores(attempt, nets))
        attempt.details.update(
            lesion_baseline=lesion.baseline,
            removed_neurons=len(lesion.removed_neurons),
            removed_sources=len(lesion.removed_sources),
        )
        return attempt

    def solution(self, problem: Problem, attempt: Attempt) -> Solution:
        best = attempt.esp.best
        arrays = best.to_arrays()
        own = {k: v for k, v in arrays.items() if not k.startswith("transfer_")}
        n_in = problem.substrate.n_inputs
        eval_seed = stream_seed(self.seed, "eval_episodes")
        result = evaluate_networks(
            problem.game,
            Networks.stack([best]),
            self.budget.eval_episodes,
            max_frames=self.budget.max_frames,
            seed=eval_seed,
            device=self.device,
            substrate=problem.substrate,
        )
        # The probe: one episode's first observations and outputs, recorded with the same
        # one-network, one-episode forward that `lifelong eval` replays them through.
        recorder = _Recorder(
            BatchedPolicy(Networks.stack([best]), trials=1, device=self.device), self.budget.probe_steps
        )
        probe_run = evaluate(
            problem.game,
            recorder,
            1,
            max_frames=min(self.budget.max_frames, FRAMESKIP * self.budget.probe_steps),
            seed=eval_seed,
            device=self.device,
            substrate=problem.substrate,
        )
        scores = result.scores
        entries: list[str | NewModule] = [
            NewModule(
                MODULE_KIND,
                own,
                self._module_config(problem, best, float(scores.mean())),
                {"input": [n_in], "output": [N_OUTPUTS]},
            )
        ]
        uses: list[dict[str, np.ndarray]] = [{}]
        for i, source in enumerate(best.sources):
            if source.name:
                entries.append(source.name)
            else:  # a random control network is part of this task only: store it with it
                entries.append(
                    NewModule(
                        MODULE_KIND,
                        source.to_arrays(),
                        {"game": problem.game.rom, "random_control": True},
                        {"input": [source.n_in], "output": [N_OUTPUTS]},
                    )
                )
            uses.append(
                {"transfer_in": arrays[f"transfer_in_{i}"], "transfer_out": arrays[f"transfer_out_{i}"]}
            )
        probe = {
            "observations": np.asarray(recorder.observations, np.float32).reshape(-1, n_in),
            "outputs": np.asarray(recorder.outputs, np.float32).reshape(-1, N_OUTPUTS),
        }
        metrics = {
            "best_training_score": attempt.esp.best_score,
            "eval_score_mean": float(scores.mean()),
            "eval_score_sd": float(scores.std(ddof=1)) if len(scores) > 1 else 0.0,
            "eval_episodes": len(scores),
            "hidden_neurons": best.n_hidden,
            "sources_used": len(best.sources),
            "new_modules": sum(isinstance(e, NewModule) for e in entries),
            "modules_used": len(entries),
            "generations": attempt.esp.generation,
            "learning_frames": attempt.frames,  # generations and lesion
            "frames": attempt.frames + result.total_frames + probe_run.total_frames,  # and the evaluation
        }
        details = {
            **attempt.details,
            "game": problem.game.rom,
            "classes": list(game_table(problem.game).class_names),
            "n_inputs": n_in,
            "condition": self.condition,
            "target": problem.target,
            "budget": self.budget.__dict__,
            "eval_seed": eval_seed,
            "device": str(self.device),
        }
        best_score, target = attempt.esp.best_score, problem.target
        met = None if target is None else best_score >= target
        return Solution(
            [entries],
            TaskArrays(uses=[uses], probe=probe),
            attempt.phase,
            {**metrics, "target_met": met},
            attempt.curves,
            details,
            missed_target=None if met is not False else f"best training score {best_score:g} < {target:g}",
        )

    def committed(self, problem: Problem) -> None:
        """The game is stored: its checkpoint has nothing left to resume."""
        if self.checkpoint is not None:
            self.checkpoint.unlink(missing_ok=True)

    # -------------------------------------------------------------- helpers
    def _save_checkpoint(self, problem: Problem, attempt: Attempt) -> None:
        """Write the evolution state atomically (temporary file, then rename)."""
        state = {
            "format": CHECKPOINT_FORMAT,
            "name": problem.name,
            "spec": problem.spec,
            "seed": self.seed,
            "condition": self.condition,
            "budget": self.budget.__dict__,
            "phase": attempt.phase,
            "esp": attempt.esp.state_dict(),
            "curves": attempt.curves,
            "details": attempt.details,
            "frames": attempt.fitness.frames,
            "evaluations": attempt.fitness.calls,
        }
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        partial = self.checkpoint.with_suffix(".partial")
        torch.save(state, partial)
        partial.replace(self.checkpoint)

    def _load_checkpoint(self, problem: Problem) -> Attempt:
        if self.checkpoint is None or not self.checkpoint.exists():
            raise LifelongError(f"--resume: no checkpoint of {problem.name!r} to resume from")
        state = torch.load(self.checkpoint, weights_only=False)
        mine = {
            "format": CHECKPOINT_FORMAT,
            "spec": problem.spec,
            "seed": self.seed,
            "condition": self.condition,
            "budget": self.budget.__dict__,
        }
        for key, value in mine.items():
            if state.get(key) != value:
                raise LifelongError(f"--resume: the checkpoint was made with another {key} ({state[key]!r})")
        by_name = {source.name: source for source in problem.sources}
        try:
            sources = [by_name[name] for name in state["esp"]["sources"]]
            esp = ESP.from_state_dict(state["esp"], sources)
        except (KeyError, ValueError) as error:
            raise LifelongError(f"--resume: the checkpoint does not fit this library ({error})") from None
        fitness = self._fitness(problem, frames=state["frames"], calls=state["evaluations"])
        return Attempt(esp, state["phase"], fitness, state["curves"], state["details"])

    def _generations(
        self, problem: Problem, attempt: Attempt, count: int, *, adapt: bool, frames: int = 0
    ) -> None:
        """Up to ``count`` generations; with ``frames``, stop after the one whose emulator frames
        reach that many in all (the attempt's, from its start)."""
        esp, b = attempt.esp, self.budget
        if frames and attempt.frames >= frames:
            return
        self.progress("phase", name=attempt.phase.replace("_", "-"), total=count)
        for step in range(1, count + 1):
            started = time.perf_counter()
            members, networks = esp.ask(b.evaluations)
            scores = attempt.fitness.scores(networks)
            scorer = (lambda nets: self._lesion_scores(attempt, nets)) if adapt else None
            event = esp.tell(members, scores, score_batch=scorer)
            curves = attempt.curves
            curves.setdefault("best_so_far", []).append(esp.best_score)
            curves.setdefault("mean_score", []).append(float(np.mean(scores)))
            curves.setdefault("frames", []).append(float(attempt.frames))
            curves.setdefault("seconds", []).append(time.perf_counter() - started)
            curves.setdefault("hidden_neurons", []).append(float(esp.n_hidden))
            self.progress(
                "generation", step=step, best=esp.best_score, mean=float(np.mean(scores)), outcome=event
            )
            if (
                self.checkpoint is not None
                and self.checkpoint_every
                and esp.generation % self.checkpoint_every == 0
            ):
                self._save_checkpoint(problem, attempt)
            if self.on_generation is not None:
                self.on_generation(esp.generation, attempt.frames, esp.best)
            if problem.target is not None and esp.best_score >= problem.target:
                break
            if frames and attempt.frames >= frames:
                break

    def _fitness(self, problem: Problem, *, frames: int = 0, calls: int = 0) -> AtariFitness:
        """How an attempt at ``problem`` scores its networks, ``frames`` and ``calls`` spent so far."""
        return AtariFitness(
            problem.game,
            problem.substrate,
            trials=self.budget.trials,
            max_frames=self.budget.max_frames,
            seed=self.seed,
            workers=self.workers,
            device=self.device,
            frames=frames,
            calls=calls,
        )

    def _lesion_scores(self, attempt: Attempt, networks: Networks) -> np.ndarray:
        """What a lesion judges networks by: ``lesion_trials`` episodes each (0: the budget's)."""
        return attempt.fitness.scores(networks, trials=self.budget.lesion_trials)

    @staticmethod
    def _module_config(problem: Problem, best: Network, score: float) -> dict[str, Any]:
        return {
            "game": problem.game.rom,
            "n_inputs": problem.substrate.n_inputs,
            "n_outputs": N_OUTPUTS,
            "hidden": best.n_hidden,
            "score": score,
        }
