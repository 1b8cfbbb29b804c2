"""The SMART classification agent: self-organize frozen modules, grow by evolution, prune.

``ClassificationAgent`` implements :class:`agents.Agent`. The library's classification modules
form a stack of layers (``config["layer"]``); every module of a layer reads the same input
shape and writes the same output shape, so any subset of a layer can be mixed by α/β. All of a
task's randomness comes from seeds derived from the agent's seed alone, so a task learns the same
way wherever it comes in a run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn.functional import cross_entropy

from agents import NewModule, Progress, Solution, quiet
from agents.classification import evolution, recall
from agents.classification.budget import DEFAULT_TARGET, Budget
from agents.classification.candidates import Growth, TrainedGenome, train_generation
from agents.classification.genome import EXTRA_KINDS, GeneRanges, Genome, LayerGene, repair
from agents.classification.modules import (
    KINDS,
    LAYER,
    MIN_FIRE_CHANNELS,
    MIN_REDUCE_SIZE,
    Head,
    Member,
    Shape,
    freeze,
    layer_shapes,
    to_tensors,
)
from agents.classification.network import MixedLayer, TaskNetwork
from agents.classification.prefix import PrefixCandidate, train_prefixes
from agents.classification.training import Curve, accuracy, as_input, in_batches, predict_logits, train
from agents.task import DEFAULT_INPUT_SHAPE, DataLoader, TaskData, TaskSpec
from agents.workers import Workers
from library_store import Library, ModuleRecord, TaskArrays, TaskRecord

STEM = (
    LayerGene(reduce=False, residual=False, filters=16),
    LayerGene(reduce=True, residual=False, filters=16),
    LayerGene(reduce=False, residual=False, filters=32),
    LayerGene(reduce=True, residual=False, filters=32),
)
"""Where growth starts on an empty library: conv(16), halve, conv(32), halve. A 28×28 image is a
32×7×7 map after two cheap full-size layers, so later modules work at 14×14 and 7×7 and a task's
readout reads features the library learned, not pixels. Evolution mutates it like any genome."""


SCOUT_FRACTION = 5  # choose_modules' scout run: this fraction (1/5) of the self-organization steps


@dataclass
class Problem:
    """A task to learn: its data, the library's frozen layers (those it may use: see
    ``choose_modules``), the stored tasks' paths (see :mod:`~agents.classification.recall`), and
    its own random streams — ``generator`` (module, α/β and head initialisation; batches) and
    ``rng`` (evolution). ``target`` labels the outcome; ``solved`` (the target, or more under the
    budget's ``compete``) is the validation accuracy at which training and search stop."""

    data: TaskData
    library_layers: list[list[Member]]
    paths: list[recall.Path]
    input_shape: Shape
    target: float
    solved: float
    generator: torch.Generator
    rng: np.random.Generator


@dataclass
class Attempt:
    """A trained task network and how it was found."""

    network: TaskNetwork
    val_acc: float
    phase: str
    curves: dict[str, list[float]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def task_streams(seed: int) -> tuple[torch.Generator, np.random.Generator]:
    """A task's torch generator and evolution generator, two independent streams of ``seed``."""
    torch_seed, evolution_seed = np.random.SeedSequence(seed).spawn(2)
    generator = torch.Generator().manual_seed(int(torch_seed.generate_state(1, np.uint64)[0]))
    return generator, np.random.default_rng(evolution_seed)


def gene_space(layers: list[list[Member]], input_shape: Shape) -> GeneRanges:
    """The genes evolution may use on this library: only kinds its shapes can build. Beside a
    layer that halves H and W only dim_reduce fits; res_fire needs a layer that keeps its shape,
    or new layers' input, with at least MIN_FIRE_CHANNELS channels; new layers halve H and W only
    while both are at least MIN_REDUCE_SIZE."""
    conv_or_fire, conv, reduce = EXTRA_KINDS
    extra_kinds = []
    for into, out in layer_shapes(layers, input_shape):
        if out[1:] != into[1:]:
            extra_kinds.append(reduce)
        elif into == out and into[0] >= MIN_FIRE_CHANNELS:
            extra_kinds.append(conv_or_fire)
        else:
            extra_kinds.append(conv)
    top = layers[-1][0].output_shape if layers else input_shape
    halvings, size = 0, min(top[1:])
    while size >= MIN_REDUCE_SIZE:
        halvings, size = halvings + 1, size // 2
    return GeneRanges(
        max_new_layers=len(STEM),  # a genome can always spell the stem
        max_new_reductions=halvings,
        extra_kinds=tuple(extra_kinds),
        top_channels=top[0],
        min_fire_channels=MIN_FIRE_CHANNELS,
    )


def stem(ranges: GeneRanges, rng: np.random.Generator) -> Genome:
    """:data:`STEM` as far as the input allows (a halving it cannot take becomes a conv layer)."""
    return repair(Genome((), (), STEM), ranges, rng)


def load_library_layers(
    library: Library, records: Sequence[ModuleRecord] | None = None
) -> tuple[list[list[Member]], Shape]:
    """Every classification module of the library (or of ``records``, some of its modules),
    frozen, grouped by layer; and the input shape."""
    by_layer: dict[int, list[Member]] = {}
    for record in library.modules() if records is None else records:
        if record.kind not in KINDS or LAYER not in record.config:
            continue
        member = Member.stored(record, library.module_tensors(record.id))
        by_layer.setdefault(record.config[LAYER], []).append(member)
    layers = [by_layer[i] for i in sorted(by_layer)]
    if sorted(by_layer) != list(range(len(layers))):
        raise ValueError(f"library layers {sorted(by_layer)} are not contiguous")
    input_shape = layers[0][0].input_shape if layers else DEFAULT_INPUT_SHAPE
    return layers, input_shape


def stored_layers(
    record: TaskRecord, arrays: TaskArrays, member: Callable[[str], Member]
) -> list[MixedLayer]:
    """A stored task's mixed layers: ``member(id)`` for each module it uses, at its stored α/β."""
    layers = []
    for ids, uses in zip(record.layers, arrays.uses, strict=True):
        alpha = torch.tensor(np.stack([use["alpha"] for use in uses]))
        beta = torch.tensor(np.stack([use["beta"] for use in uses]))
        layers.append(MixedLayer([member(i) for i in ids], alpha, beta))
    return layers


def stored_head(record: TaskRecord, arrays: TaskArrays) -> Head:
    """A stored task's head, exactly as it was committed."""
    config = record.details["head"]
    head = Head(
        tuple(config["input_shape"]),
        config["n_classes"],
        config["hidden"],
        config.get("pool", 7),  # stored before the pool size was recorded: always 7
    )
    head.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.head.items()})
    return head


def own_arrays(
    network: TaskNetwork, probe_x: torch.Tensor, probe_y: torch.Tensor, device: torch.device
) -> TaskArrays:
    """What a task stores of its own: α/β per module it uses, its head, and a probe (inputs,
    labels and the logits the network gives them now, to verify later that nothing changed)."""
    uses = [
        [
            {
                "alpha": layer.alpha[i].detach().cpu().numpy().astype(np.float32),
                "beta": layer.beta[i].detach().cpu().numpy().astype(np.float32),
            }
            for i in range(len(layer.members))
        ]
        for layer in network.layers
    ]
    probe = {
        "inputs": probe_x.numpy(),
        "labels": probe_y.numpy(),
        "logits": predict_logits(network, probe_x, device).numpy(),
    }
    head = {k: v.detach().cpu().numpy() for k, v in network.head.state_dict().items()}
    return TaskArrays(uses=uses, head=head, probe=probe)


def load_task_network(library: Library, name: str) -> TaskNetwork:
    """Rebuild a stored task's network exactly as it was committed."""
    record, arrays = library.task(name), library.task_arrays(name)

    def member(module_id: str) -> Member:
        return Member.stored(library.module(module_id), library.module_tensors(module_id))

    network = TaskNetwork(stored_layers(record, arrays, member), stored_head(record, arrays))
    freeze(network)
    return network


def load_paths(library: Library, layers: list[list[Member]]) -> list[recall.Path]:
    """The path of every stored image task whose modules are all among ``layers``' members."""
    members = {member.library_id: member for layer in layers for member in layer}
    paths = []
    for task in library.tasks():
        if task.family == ClassificationAgent.family and set(task.module_ids) <= members.keys():
            mixed = stored_layers(task, library.task_arrays(task.name), members.__getitem__)
            paths.append(recall.Path.of_layers(task.name, mixed))
    return paths


class ClassificationAgent:
    """SMART: self-organization over frozen modules, mutation-only growth, α-based pruning."""

    family = "classification"

    def __init__(
        self,
        budget: Budget,
        *,
        target: float = DEFAULT_TARGET,
        seed: int = 0,
        device: torch.device | None = None,
        load_data: DataLoader,
        prune_tolerance: float = 0.0,
        progress: Progress = quiet,
        workers: Workers | None = None,
    ) -> None:
        """``load_data(spec, input_shape, seed)``: the task's data, resized to the library's input;
        ``workers``: where a generation's growth candidates train (None: in this process)."""
        self.budget = budget
        self.target = target
        self.seed = seed
        self.device = device or torch.device("cpu")
        self.load_data = load_data
        self.prune_tolerance = prune_tolerance
        self.progress = progress
        self.workers = workers or Workers(0)

    # -------------------------------------------------------------- protocol
    def prepare(self, library: Library, spec: TaskSpec, name: str) -> Problem:
        """Fresh random streams from the seed for every task, so a task learns the same way
        whether it comes first in a ``learn`` call or in a later one."""
        layers, input_shape = load_library_layers(library)
        data = self.load_data(spec, input_shape, self.seed)  # `lifelong eval` splits with the seed too
        for layer in layers:
            for member in layer:
                member.module.to(self.device)
        paths = load_paths(library, layers) if self.budget.recall else []
        # growth competes with self-organization; a first task has none to compete with
        solved = self.budget.solved(self.target) if layers else self.target
        return Problem(data, layers, paths, input_shape, self.target, solved, *task_streams(self.seed))

    def good_enough(self, problem: Problem, attempt: Attempt | None) -> bool:
        """Self-organization's attempt stands if it is solved (reaches the target; under
        ``compete``, leaves growth less than its margin to win), or whatever it reaches when the
        budget allows no growth (a task solved from the library alone)."""
        return attempt is not None and (attempt.val_acc >= problem.solved or not self.budget.grow)

    def self_organize(self, problem: Problem) -> Attempt | None:
        """Frozen library, fresh α/β (N(1, 0.1)) and head; train only those. None if no library.
        A layer of more than ``max_modules`` modules is first cut to its most relevant ones
        (:meth:`choose_modules`); growth then builds on the same choice. When a stored task's
        path suits the task better than that fresh mix (:func:`~agents.classification.recall.recall`),
        training starts from the path's modules and α/β instead."""
        if not problem.library_layers:
            return None
        chosen = self.choose_modules(problem)
        details: dict[str, Any] = {"chosen_modules": chosen} if chosen else {}
        start = None
        if problem.paths:
            recalled = recall.recall(
                problem.paths,
                problem.library_layers,
                problem.data,
                problem.data.n_classes,
                self.device,
                self.budget.recall_score,
            )
            details["recall"], start = recalled.to_json(), recalled.path
        if start is None:
            network = self._network(problem, [list(layer) for layer in problem.library_layers])
        else:
            network = self._with_head(problem, start.layers())
        curve = self._train(
            network,
            network.scale_parameters() + list(network.head.parameters()),
            problem,
            self.budget.so_steps,
            "self-organize",
            problem.solved,
        )
        return Attempt(network, curve.best, "self_organize", self._curves("self_organize", curve), details)

    def choose_modules(self, problem: Problem) -> list[list[str]]:
        """Keep at most ``max_modules`` modules per layer, so self-organization's cost stops
        growing with the library: a short scout run (1/SCOUT_FRACTION of the self-organization
        steps) mixes every module; then each crowded layer keeps the modules whose removal from
        the scout network costs the most validation loss (a module the task learned to ignore
        costs nothing). ``problem.library_layers`` becomes the choice; returns the kept module ids
        per layer ([] when no layer was crowded)."""
        k = self.budget.max_modules
        if all(len(layer) <= k for layer in problem.library_layers):
            return []
        scout = self._network(problem, [list(layer) for layer in problem.library_layers])
        self._train(
            scout,
            scout.scale_parameters() + list(scout.head.parameters()),
            problem,
            max(1, self.budget.so_steps // SCOUT_FRACTION),
            "choose modules",
            target=2.0,  # the whole scout run: a ranking, not a solution
        )
        crowded = [index for index, layer in enumerate(scout.layers) if len(layer.members) > k]
        costs = removal_costs(scout, problem.data.val_x, problem.data.val_y, crowded, self.device)
        kept = []
        for index, layer in enumerate(scout.layers):
            cost = costs.get(index, [0.0] * len(layer.members))  # an uncrowded layer keeps all
            best = sorted(range(len(cost)), key=lambda i: -cost[i])[:k]
            kept.append([layer.members[i] for i in sorted(best)])
        problem.library_layers = kept
        return [[str(member.library_id) for member in layer] for layer in kept]

    def grow(self, problem: Problem, attempt: Attempt | None) -> Attempt:
        """Evolve extension genomes (new modules per layer, new layers); train the winner on.
        The grown network replaces self-organization's ``attempt`` only if it is better on
        validation by the budget's ``growth_margin``; otherwise nothing new enters the library."""
        b = self.budget
        ranges = gene_space(problem.library_layers, problem.input_shape)
        growth = Growth(
            problem.library_layers, problem.data, problem.input_shape, ranges, b, self.seed, self.device
        )

        def on_candidate(generation: int, index: int, genome: Genome, trained: TrainedGenome) -> None:
            for event, fields in trained.events:  # its training's progress, in slot order
                self.progress(event, **fields)
            self.progress(
                "candidate",
                generation=generation,
                index=index,
                genome=genome.describe(ranges),
                val_acc=trained.validation.best,
            )

        ga: evolution.GA[TrainedGenome] = evolution.GA(
            b,
            len(problem.library_layers),
            problem.rng,
            ranges=ranges,
            initial=None if problem.library_layers else stem(ranges, problem.rng),
            good_enough=lambda trained: trained.validation.best >= problem.solved,
            cost=lambda trained: trained.flops,  # extra compute, like new modules, must buy growth_margin
        )
        result = evolution.run(
            ga,
            lambda newborns: train_generation(self.workers, growth, newborns),
            # with several workers a generation's newborns train in one call, costliest first, so
            # none waits at its end (more candidates than workers); alone, one at a time (an early
            # stop then skips the rest)
            batch=b.population if self.workers.parts > 1 else 1,
            on_candidate=on_candidate,
        )
        winner: TrainedGenome = result.best.evaluated
        network = winner.network
        final = self._train(
            network, network.trainable_parameters(), problem, b.final_steps, "train winner", problem.solved
        )
        for module in network.trainable_modules():
            freeze(module)
        settle = self._train(
            network,
            network.scale_parameters() + list(network.head.parameters()),
            problem,
            b.settle_steps,
            "settle α/β + head",
            problem.solved,
        )
        curves = {
            **(attempt.curves if attempt else {}),
            **self._curves("grow", final),
            **self._curves("settle", settle),
            "evolution_best_val_acc": [max(acc for e in gen for _, acc in e.curve) for gen in result.history],
        }
        details = {
            "genome": winner.genome.to_json(),
            "genome_text": winner.genome.describe(ranges),
            "evaluations": result.evaluations,
        }
        val = accuracy(network, problem.data.val_x, problem.data.val_y, self.device)
        if b.prefix_reuse and attempt is not None and problem.paths:
            better = self.reuse_prefix(problem, attempt, val, details)
            if better is not None:
                network, val = better.network, better.val_acc
                curves = {**curves, **self._curves("prefix", better.curve)}
        if attempt is not None and val < attempt.val_acc + b.growth_margin:
            # the new modules do not pay for themselves: the library alone solves the task
            attempt.details["growth_rejected"] = {**details, "val_acc": val, "margin": b.growth_margin}
            return attempt
        return Attempt(network, val, "grow", curves, details)

    def reuse_prefix(
        self, problem: Problem, attempt: Attempt, val_acc: float, details: dict[str, Any]
    ) -> PrefixCandidate | None:
        """MNTDP's prefix-reuse candidates around the stored path recall scored best
        (:mod:`~agents.classification.prefix`); the best of them if it beats evolution's winner
        (``val_acc``) on validation, its new modules frozen. ``details`` records them."""
        scores = attempt.details["recall"]["scores"]
        path = max(problem.paths, key=lambda p: scores[p.task])
        trained = train_prefixes(
            path, problem.data, self.budget, problem.solved, problem.generator, self.device, self.progress
        )
        best = max(trained, key=lambda candidate: candidate.val_acc, default=None)
        chosen = best is not None and best.val_acc > val_acc
        details["prefix"] = {
            "path": path.task,
            "val_acc": [candidate.val_acc for candidate in trained],
            "reused": best.reused if chosen else None,
        }
        if not chosen:
            return None
        for module in best.network.trainable_modules():
            freeze(module)
        return best

    def prune(self, problem: Problem, attempt: Attempt) -> Attempt:
        """Drop modules (smallest |α·β| first) while validation accuracy holds."""
        network, data = attempt.network, problem.data
        baseline = accuracy(network, data.val_x, data.val_y, self.device)
        order = sorted(
            (
                (abs((layer.alpha[i] * layer.beta[i]).item()), layer.members[i])
                for layer in network.layers
                if len(layer.members) > 1
                for i in range(len(layer.members))
            ),
            key=lambda pair: pair[0],
        )
        dropped = 0
        for _, member in order:
            position = next(
                (li, mi)
                for li, layer in enumerate(network.layers)
                for mi, other in enumerate(layer.members)
                if other is member
            )
            layer = network.layers[position[0]]
            if len(layer.members) == 1:
                continue
            network.layers[position[0]] = layer.without(position[1])
            if accuracy(network, data.val_x, data.val_y, self.device) >= baseline - self.prune_tolerance:
                dropped += 1
            else:
                network.layers[position[0]] = layer
        attempt.val_acc = accuracy(network, data.val_x, data.val_y, self.device)
        attempt.details.update(pruned_modules=dropped, val_acc_before_prune=baseline)
        return attempt

    def solution(self, problem: Problem, attempt: Attempt) -> Solution:
        network, data = attempt.network, problem.data
        freeze(network)
        layers: list[list[str | NewModule]] = []
        for index, layer in enumerate(network.layers):
            layers.append(
                [
                    member.library_id
                    if member.library_id is not None
                    else NewModule(
                        member.kind,
                        to_tensors(member.module),
                        {**member.config, LAYER: index},
                        member.signature,
                    )
                    for member in layer.members
                ]
            )
        probe_x, probe_y = data.val_x[: self.budget.probe_size], data.val_y[: self.budget.probe_size]
        test_acc = accuracy(network, data.test_x, data.test_y, self.device)
        new = sum(isinstance(e, NewModule) for layer in layers for e in layer)
        metrics = {
            "val_acc": round(attempt.val_acc, 6),
            "test_acc": test_acc,
            "modules_used": sum(len(layer) for layer in layers),
            "new_modules": new,
            "depth": len(layers),
            "train_examples": len(data.train_y),
            "test_examples": len(data.test_y),
        }
        details = {
            **attempt.details,
            "class_names": data.class_names,
            "input_shape": list(problem.input_shape),
            "head": {
                "input_shape": list(network.layers[-1].members[0].output_shape),
                "n_classes": data.n_classes,
                **network.head.config,
            },
            "target": problem.target,
            "budget": self.budget.__dict__,
            "device": str(self.device),
        }
        met = attempt.val_acc >= problem.target
        return Solution(
            layers,
            own_arrays(network, probe_x, probe_y, self.device),
            attempt.phase,
            {**metrics, "target_met": met},
            attempt.curves,
            details,
            missed_target=None if met else f"validation accuracy {attempt.val_acc:.4f} < {problem.target:g}",
        )

    def committed(self, problem: Problem) -> None:
        """Nothing is kept to resume an image task."""

    # -------------------------------------------------------------- helpers
    def _network(self, problem: Problem, layers: list[list[Member]]) -> TaskNetwork:
        """The layers mixed by fresh α/β, under a fresh head, all drawn from the task's generator."""
        return TaskNetwork.fresh(layers, problem.data.n_classes, problem.generator).to(self.device)

    def _with_head(self, problem: Problem, layers: list[MixedLayer]) -> TaskNetwork:
        """``layers`` under a fresh head drawn from the task's generator."""
        return TaskNetwork.with_fresh_head(layers, problem.data.n_classes, problem.generator).to(self.device)

    def _train(
        self,
        network: TaskNetwork,
        parameters: list[torch.nn.Parameter],
        problem: Problem,
        steps: int,
        label: str,
        target: float,
    ) -> Curve:
        return train(
            network,
            parameters,
            problem.data,
            self.budget.train_config(steps, target),
            generator=problem.generator,
            device=self.device,
            progress=self.progress,
            label=label,
        )

    @staticmethod
    def _curves(prefix: str, curve: Curve) -> dict[str, list[float]]:
        return {f"{prefix}_step": [float(s) for s in curve.steps], f"{prefix}_val_acc": curve.accuracies}


def removal_costs(
    network: TaskNetwork,
    images: torch.Tensor,
    labels: torch.Tensor,
    layers: Sequence[int],
    device: torch.device,
) -> dict[int, list[float]]:
    """For each of ``layers``, what removing each of its modules (:meth:`MixedLayer.without`)
    adds to ``network``'s loss on ``images``: the same numbers as evaluating every reduced
    network whole, with each layer's input computed once instead of once per module."""
    network.eval()

    def loss(stack: Sequence[torch.nn.Module], inputs: torch.Tensor) -> float:
        logits = in_batches(torch.nn.Sequential(*stack, network.head), inputs).cpu()
        return float(cross_entropy(logits, labels))

    x = as_input(images, device)
    full, costs = loss(network.layers, x), {}
    for index, layer in enumerate(network.layers):
        if index in layers:
            above = list(network.layers[index + 1 :])
            reduced = (layer.without(i).eval() for i in range(len(layer.members)))
            costs[index] = [loss([smaller, *above], x) - full for smaller in reduced]
        x = in_batches(layer, x)
    return costs
