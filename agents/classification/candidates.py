"""Training a generation of SMART's growth candidates at once, on the workers
(:class:`agents.workers.Workers`: local processes, Ray actors, or on a GPU threads of this process
sharing the device).

A candidate is an extension genome built on the frozen library (:func:`extended_layers`) under
fresh α/β and a fresh head, trained for the budget's candidate steps. Everything random about it
(its new modules, α/β, head, batches) comes from a torch generator of its own, seeded by the
task's seed, its generation and its slot (:func:`candidate_generator`), so it trains the same
whichever worker trains it and whatever trains beside it: the search's result does not depend on
the number of workers (at equal torch thread counts). What every candidate of a task reads
(:class:`Growth`: the library layers chosen, the task's data, the budget) travels once a call;
each candidate comes back with its trained network and the progress events it made, which the
driver replays in slot order, as if it had trained them one after another.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from agents.classification.budget import Budget
from agents.classification.evolution import Newborn
from agents.classification.fitness import CurvePoints
from agents.classification.genome import GeneRanges, Genome
from agents.classification.modules import Member, Shape, layer_shapes
from agents.classification.network import TaskNetwork
from agents.classification.training import Curve, train
from agents.task import TaskData
from agents.workers import Workers

CANDIDATE_STREAM = 2  # spawn key of the candidates' streams: 0 and 1 are the task's own (task_streams)
CANDIDATE_TARGET = 2.0  # a candidate trains its whole budget: its curve is its fitness, not a solution


@dataclass(frozen=True)
class Growth:
    """What every growth candidate of a task reads. ``threads``: torch threads a worker's job
    uses (0: leave them as they are, in this process)."""

    library_layers: list[list[Member]]
    data: TaskData
    input_shape: Shape
    ranges: GeneRanges
    budget: Budget
    seed: int
    device: torch.device
    threads: int = 0


@dataclass
class TrainedGenome:
    """A genome built on the library and trained for its candidate steps (what
    :class:`~agents.classification.evolution.GA` ranks), with the progress events its training made."""

    genome: Genome
    network: TaskNetwork
    validation: Curve
    flops: int  # per input: the compute its modules add to every forward pass
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def curve(self) -> CurvePoints:
        return self.validation.points()


def candidate_generator(seed: int, generation: int, index: int) -> torch.Generator:
    """The random stream of the candidate in slot ``index`` of ``generation``, for task ``seed``."""
    sequence = np.random.SeedSequence(seed, spawn_key=(CANDIDATE_STREAM, generation, index))
    return torch.Generator().manual_seed(int(sequence.generate_state(1, np.uint64)[0]))


def extended_layers(
    library_layers: list[list[Member]],
    input_shape: Shape,
    genome: Genome,
    ranges: GeneRanges,
    generator: torch.Generator,
) -> list[list[Member]]:
    """The frozen library plus the genome's new trainable modules and layers, exactly as
    ``genome.describe(ranges)`` reads (a genome outside ``ranges`` is refused)."""
    genome.validate(ranges)
    layers = [list(layer) for layer in library_layers]
    shapes = layer_shapes(library_layers, input_shape)
    for index, (count, residual) in enumerate(zip(genome.extra_modules, genome.extra_residual, strict=True)):
        (into, out), kind = shapes[index], ranges.extra_kind(index, residual)
        layers[index] += [Member.new(kind, into, out[0], generator) for _ in range(count)]
    shape = shapes[-1][1] if shapes else input_shape
    for gene in genome.new_layers:
        member = Member.new(gene.kind, shape, gene.filters, generator)
        layers.append([member])
        shape = member.output_shape
    return layers


def train_candidate(growth: Growth, genome: Genome, generation: int, index: int) -> TrainedGenome:
    """Build ``genome`` on the library and train it for the budget's candidate steps, from its
    own random stream (a worker's job: module-level, its arguments picklable)."""
    if growth.threads:
        torch.set_num_threads(growth.threads)
    generator = candidate_generator(growth.seed, generation, index)
    layers = extended_layers(growth.library_layers, growth.input_shape, genome, growth.ranges, generator)
    network = TaskNetwork.fresh(layers, growth.data.n_classes, generator).to(growth.device)
    events: list[tuple[str, dict[str, Any]]] = []
    curve = train(
        network,
        network.trainable_parameters(),
        growth.data,
        growth.budget.train_config(growth.budget.candidate_steps, CANDIDATE_TARGET),
        generator=generator,
        device=growth.device,
        progress=lambda event, **fields: events.append((event, fields)),
        label=f"candidate {genome.describe(growth.ranges)}",
    )
    return TrainedGenome(genome, network, curve, network.flops(growth.input_shape), events)


def predicted_cost(growth: Growth, genome: Genome) -> float:
    """What training ``genome`` will cost, in multiply-accumulates: its network's forward pass
    (library and new modules) times the candidate steps. Built on a throwaway stream, not trained."""
    layers = extended_layers(
        growth.library_layers, growth.input_shape, genome, growth.ranges, torch.Generator()
    )
    network = TaskNetwork.fresh(layers, growth.data.n_classes, torch.Generator()).to(growth.device)
    return float(network.flops(growth.input_shape) * growth.budget.candidate_steps)


def train_generation(workers: Workers, growth: Growth, newborns: Sequence[Newborn]) -> list[TrainedGenome]:
    """Train ``newborns`` at once, returned in their order, the costliest started first (so no
    worker idles at the end of a generation), on ``workers`` (on a GPU: as threads of this
    process, each on a CUDA stream of its own)."""
    jobs = [(newborn.genome, newborn.generation, newborn.index) for newborn in newborns]
    cost = [predicted_cost(growth, newborn.genome) for newborn in newborns] if len(newborns) > 1 else None
    if growth.device.type == "cuda":
        return workers.map(train_apart, growth, jobs, cost=cost, device=growth.device)
    threads = workers.threads if workers.parts > 1 else 0
    return workers.map(train_candidate, replace(growth, threads=threads), jobs, cost=cost)


def train_apart(growth: Growth, genome: Genome, generation: int, index: int) -> TrainedGenome:
    """:func:`train_candidate` on its own copy of the library's modules, for candidates trained
    by threads of one process: switching a network to training mode briefly touches every
    module's mode, which must not reach a module another thread is running."""
    own = replace(growth, library_layers=copy.deepcopy(growth.library_layers))
    return train_candidate(own, genome, generation, index)
