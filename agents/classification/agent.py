"""The SMART classification agent: self-organize frozen modules, grow by evolution, prune.

``ClassificationAgent`` implements :class:`agents.Agent`. The library's classification modules
form a stack of layers (``config["layer"]``); every module of a layer reads the same input
shape and writes the same output shape, so any subset of a layer can be mixed by α/β.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from agents import NewModule, Report, Solution, quiet
from agents.classification import evolution
from agents.classification.budget import DEFAULT_TARGET, Budget
from agents.classification.modules import (
    KINDS,
    Head,
    Shape,
    build,
    freeze,
    from_tensors,
    module_config,
    output_shape,
    to_tensors,
)
from agents.classification.network import MixedLayer, TaskNetwork
from agents.classification.training import Curve, TrainConfig, accuracy, predict_logits, train
from agents.task import DEFAULT_INPUT_SHAPE, DataLoader, TaskData, TaskSpec
from library_store import Library, TaskArrays

HEAD_HIDDEN = 64
MIN_FIRE_CHANNELS = 4


@dataclass
class Problem:
    """A task to learn, with its data and the library's frozen layers (torch modules)."""

    name: str
    spec: TaskSpec
    data: TaskData
    library_layers: list[list[torch.nn.Module]]
    input_shape: Shape
    target: float


@dataclass
class Attempt:
    """A trained task network and how it was found."""

    network: TaskNetwork
    val_acc: float
    phase: str
    curves: dict[str, list[float]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Candidate:
    """A growth candidate after its T training steps (what ``evolution.evolve`` ranks)."""

    genome: evolution.Genome
    network: TaskNetwork
    training: Curve

    @property
    def curve(self) -> list[tuple[int, float]]:
        return self.training.points()


def layer_shapes(layers: list[list[torch.nn.Module]], input_shape: Shape) -> list[tuple[Shape, Shape]]:
    """(input, output) shape of every library layer."""
    shapes = []
    for layer in layers:
        out = tuple(layer[0].signature["output"])
        shapes.append((input_shape, out))
        input_shape = out
    return shapes


def load_library_layers(library: Library) -> tuple[list[list[torch.nn.Module]], Shape]:
    """Every classification module of the library, frozen, grouped by layer; and the input shape."""
    by_layer: dict[int, list[torch.nn.Module]] = {}
    for record in library.modules():
        if record.kind not in KINDS or "layer" not in record.config:
            continue
        module = load_module(library, record.id)
        by_layer.setdefault(record.config["layer"], []).append(module)
    layers = [by_layer[i] for i in sorted(by_layer)]
    if sorted(by_layer) != list(range(len(layers))):
        raise ValueError(f"library layers {sorted(by_layer)} are not contiguous")
    input_shape = tuple(layers[0][0].signature["input"]) if layers else DEFAULT_INPUT_SHAPE
    return layers, input_shape


def load_module(library: Library, module_id: str) -> torch.nn.Module:
    """A stored module as a frozen torch module that remembers its library id and signature."""
    record = library.module(module_id)
    config = {k: v for k, v in record.config.items() if k != "layer"}
    module = from_tensors(record.kind, config, library.module_tensors(module_id))
    module.library_id, module.kind, module.config = record.id, record.kind, record.config
    module.signature = record.signature
    return module


def load_task_network(library: Library, name: str) -> TaskNetwork:
    """Rebuild a stored task's network exactly as it was committed."""
    record, arrays = library.task(name), library.task_arrays(name)
    layers = []
    for ids, uses in zip(record.layers, arrays.uses, strict=True):
        alpha = torch.tensor(np.stack([use["alpha"] for use in uses]))
        beta = torch.tensor(np.stack([use["beta"] for use in uses]))
        layers.append(MixedLayer([load_module(library, i) for i in ids], alpha, beta))
    head_config = record.details["head"]
    head = Head(tuple(head_config["input_shape"]), head_config["n_classes"], head_config["hidden"])
    head.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.head.items()})
    network = TaskNetwork(layers, head)
    freeze(network)
    return network


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
        report: Report = quiet,
    ) -> None:
        """``load_data(spec, input_shape, seed)``: the task's data, resized to the library's input."""
        self.budget = budget
        self.target = target
        self.seed = seed
        self.device = device or torch.device("cpu")
        self.load_data = load_data
        self.prune_tolerance = prune_tolerance
        self.report = report
        self.generator = torch.Generator().manual_seed(seed)

    # -------------------------------------------------------------- protocol
    def prepare(self, library: Library, spec: TaskSpec, name: str) -> Problem:
        # Every task starts from the same seeded state, so a task learns the same way whether it
        # comes first in a `learn` call or in a later one.
        torch.manual_seed(self.seed)  # module initialisation draws from torch's global generator
        self.generator.manual_seed(self.seed)
        layers, input_shape = load_library_layers(library)
        data = self.load_data(spec, input_shape, self.seed)
        for layer in layers:
            for module in layer:
                module.to(self.device)
        return Problem(name, spec, data, layers, input_shape, self.target)

    def good_enough(self, problem: Problem, attempt: Attempt | None) -> bool:
        return attempt is not None and attempt.val_acc >= problem.target

    def self_organize(self, problem: Problem) -> Attempt | None:
        """Frozen library, fresh α/β (N(1, 0.1)) and head; train only those. None if no library."""
        if not problem.library_layers:
            return None
        network = self._network(problem, [list(layer) for layer in problem.library_layers])
        curve = self._train(
            network,
            network.scale_parameters() + list(network.head.parameters()),
            problem,
            self.budget.so_steps,
            "self-organize",
            problem.target,
        )
        return Attempt(network, curve.best, "self_organize", self._curves("self_organize", curve))

    def grow(self, problem: Problem, attempt: Attempt | None) -> Attempt:
        """Evolve extension genomes (new modules per layer, new layers); train the winner on."""
        b = self.budget
        rng = np.random.default_rng(self.seed)
        horizon = b.final_steps

        def evaluate(genome: evolution.Genome) -> Candidate:
            network = self._network(problem, self._extended_layers(problem, genome), genome=genome)
            curve = self._train(
                network,
                _trainable(network),
                problem,
                b.candidate_steps,
                f"candidate {genome.describe()}",
                target=2.0,
            )
            return Candidate(genome, network, curve)

        def on_candidate(generation: int, index: int, genome: evolution.Genome, candidate: Candidate) -> None:
            self.report(
                "candidate",
                generation=generation,
                index=index,
                genome=genome.describe(),
                val_acc=candidate.training.best,
            )

        result = evolution.evolve(
            evaluate,
            len(problem.library_layers),
            population=b.population,
            generations=b.generations,
            mutation_rate=b.mutation_rate,
            elite=b.elite,
            criterion=b.fitness,
            horizon=horizon,
            ranges=evolution.GeneRanges(),
            rng=rng,
            crossover=b.crossover,
            on_candidate=on_candidate,
            good_enough=lambda c: c.training.best >= problem.target,
            rounding=b.rounding,
        )
        winner: Candidate = result.best.evaluated
        network = winner.network
        final = self._train(
            network, _trainable(network), problem, b.final_steps, "train winner", problem.target
        )
        for module in network.trainable_modules():
            freeze(module)
        settle = self._train(
            network,
            network.scale_parameters() + list(network.head.parameters()),
            problem,
            b.settle_steps,
            "settle α/β + head",
            problem.target,
        )
        curves = {
            **(attempt.curves if attempt else {}),
            **self._curves("grow", final),
            **self._curves("settle", settle),
            "evolution_best_val_acc": [max(acc for e in gen for _, acc in e.curve) for gen in result.history],
        }
        details = {
            "genome": winner.genome.to_json(),
            "genome_text": winner.genome.describe(),
            "evaluations": result.evaluations,
        }
        val = accuracy(network, problem.data.val_x, problem.data.val_y, self.device)
        return Attempt(network, val, "grow", curves, details)

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
        for _, module in order:
            position = next(
                (li, mi)
                for li, layer in enumerate(network.layers)
                for mi, member in enumerate(layer.members)
                if member is module
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
        uses = []
        shape = problem.input_shape
        for index, layer in enumerate(network.layers):
            entries: list[str | NewModule] = []
            for member in layer.members:
                if hasattr(member, "library_id"):
                    entries.append(member.library_id)
                else:
                    entries.append(
                        NewModule(
                            member.kind,
                            to_tensors(member),
                            {**member.config, "layer": index},
                            member.signature,
                        )
                    )
            layers.append(entries)
            uses.append(
                [
                    {
                        "alpha": layer.alpha[i].detach().cpu().numpy().astype(np.float32),
                        "beta": layer.beta[i].detach().cpu().numpy().astype(np.float32),
                    }
                    for i in range(len(layer.members))
                ]
            )
            shape = tuple(layer.members[0].signature["output"])
        probe_x, probe_y = data.val_x[: self.budget.probe_size], data.val_y[: self.budget.probe_size]
        probe = {
            "inputs": probe_x.numpy(),
            "labels": probe_y.numpy(),
            "logits": predict_logits(network, probe_x, self.device).numpy(),
        }
        head = {k: v.detach().cpu().numpy() for k, v in network.head.state_dict().items()}
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
            "head": {"input_shape": list(shape), "n_classes": data.n_classes, "hidden": HEAD_HIDDEN},
            "target": problem.target,
            "budget": self.budget.__dict__,
            "device": str(self.device),
        }
        met = attempt.val_acc >= problem.target
        return Solution(
            layers,
            TaskArrays(uses=uses, head=head, probe=probe),
            attempt.phase,
            {**metrics, "target_met": met},
            attempt.curves,
            details,
            missed_target=None if met else f"validation accuracy {attempt.val_acc:.4f} < {problem.target:g}",
        )

    def committed(self, problem: Problem) -> None:
        """Nothing is kept to resume an image task."""

    # -------------------------------------------------------------- helpers
    def _network(
        self, problem: Problem, layers: list[list[torch.nn.Module]], genome: evolution.Genome | None = None
    ) -> TaskNetwork:
        shape = problem.input_shape
        mixed = []
        for members in layers:
            mixed.append(MixedLayer(members, generator=self.generator))
            shape = tuple(members[0].signature["output"])
        network = TaskNetwork(mixed, Head(shape, problem.data.n_classes, HEAD_HIDDEN))
        return network.to(self.device)

    def _extended_layers(self, problem: Problem, genome: evolution.Genome) -> list[list[torch.nn.Module]]:
        """The frozen library plus the genome's new trainable modules and layers."""
        layers = [list(layer) for layer in problem.library_layers]
        shapes = layer_shapes(problem.library_layers, problem.input_shape)
        for index, (count, residual) in enumerate(
            zip(genome.extra_modules, genome.extra_residual, strict=True)
        ):
            (in_shape, out_shape), template = shapes[index], layers[index][0]
            for _ in range(count):
                if template.kind == "dim_reduce":
                    kind = "dim_reduce"
                else:
                    fits = in_shape == out_shape and in_shape[0] >= MIN_FIRE_CHANNELS
                    kind = "res_fire" if residual and fits else "conv"
                layers[index].append(_new_module(kind, in_shape, out_shape[0]))
        shape = shapes[-1][1] if shapes else problem.input_shape
        for gene in genome.new_layers:
            kind = "dim_reduce" if gene.reduce else "res_fire" if gene.residual else "conv"
            if kind == "dim_reduce" and min(shape[1:]) < 4:
                kind = "conv"  # too small to halve usefully: keep the size instead
            if kind == "res_fire" and shape[0] < MIN_FIRE_CHANNELS:
                kind = "conv"  # a Fire module needs channels to squeeze and split
            module = _new_module(kind, shape, gene.filters)
            layers.append([module])
            shape = output_shape(kind, module.config, shape)
        return layers

    def _train(
        self,
        network: TaskNetwork,
        parameters: list[torch.nn.Parameter],
        problem: Problem,
        steps: int,
        label: str,
        target: float,
    ) -> Curve:
        b = self.budget
        config = TrainConfig(
            steps=steps,
            batch_size=b.batch_size,
            lr=b.lr,
            eval_every=b.eval_every,
            target=target,
            patience=b.patience,
        )
        self.report("phase", name=label, total=steps)
        started = time.perf_counter()
        curve = train(
            network,
            parameters,
            problem.data,
            config,
            generator=self.generator,
            device=self.device,
            on_eval=lambda step, acc: self.report("eval", step=step, val_acc=acc),
        )
        self.report("phase_done", name=label, seconds=time.perf_counter() - started, val_acc=curve.best)
        return curve

    @staticmethod
    def _curves(prefix: str, curve: Curve) -> dict[str, list[float]]:
        return {f"{prefix}_step": [float(s) for s in curve.steps], f"{prefix}_val_acc": curve.accuracies}


def _new_module(kind: str, input_shape: Shape, filters: int) -> torch.nn.Module:
    config = module_config(kind, input_shape, filters)
    module = build(kind, config)
    module.kind, module.config = kind, config
    module.signature = {"input": list(input_shape), "output": list(output_shape(kind, config, input_shape))}
    return module


def _trainable(network: TaskNetwork) -> list[torch.nn.Parameter]:
    return [p for p in network.parameters() if p.requires_grad]
