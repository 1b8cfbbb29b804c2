"""MNTDP-D (Veniat, Denoyer & Ranzato, ICLR 2021), the stream benchmark's modular peer.

The library holds modules layer by layer; a task's path is one module per layer under its own
head. For each new task (the paper's Algorithm 1, deterministic variant):

1. **Task-driven prior.** For every past task, the new task's training images (at most
   ``PRIOR_IMAGES``) go through that task's frozen path; a k-nearest-neighbour vote
   (:func:`~agents.classification.recall.knn_accuracy`, k = 5 as in CTrL's S_long setting) on
   those penultimate features, fit on the new labels, is scored on the task's validation
   images. The past task with the best score is the source.
2. **Candidates.** Reuse the first k modules of the source's path, frozen, with fresh modules
   above and a fresh head, for k = 0 … L: L + 1 networks (k = 0 learns alone; k = L trains a
   head only).
3. **Selection.** Each candidate trains on the task; the best by validation accuracy is kept,
   and its fresh modules join the library, frozen.

Here a module is one layer of the benchmark's :class:`~lifelong.bench.controls.Blueprint` (the
network the agent built for the stream's first task), so MNTDP works with the same shapes as the
other conditions; every candidate trains with the controls' budget (``final_steps`` steps, the
budget's batch, learning rate and early stop). The paper trains each candidate over a small grid
of learning rate × weight decay; this benchmark trains each at the budget's learning rate and no
weight decay (one grid point), so MNTDP's training per task is L + 1 times an independent
network's, not 4(L + 1) times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from agents import Progress
from agents.classification.modules import freeze
from agents.classification.network import MixedLayer, TaskNetwork
from agents.classification.recall import knn_accuracy
from agents.classification.training import accuracy, as_input, in_batches
from agents.task import TaskData, TaskSpec
from lifelong.bench.controls import Blueprint, Context, Learner, count, fresh_head, task_name

PRIOR_IMAGES = 1000  # training (and validation) images the prior scores each past path on


@dataclass
class PathChoice:
    """How one task was learned: the source task the prior chose, every past task's prior
    score, how many of the source's modules were reused, and each candidate's validation
    accuracy (index k: the first k modules reused)."""

    source: int | None
    prior: dict[str, float]
    reused: int
    candidates: list[float]

    def to_json(self) -> dict[str, Any]:
        return {
            "source": None if self.source is None else task_name(self.source),
            "prior": self.prior,
            "reused_layers": self.reused,
            "candidates_val_acc": self.candidates,
        }


class ModularNetworks(Learner):
    """MNTDP-D: a path per task through a library of frozen modules (``mntdp``)."""

    name = "mntdp"

    def __init__(self, context: Context, blueprint: Blueprint) -> None:
        self.context, self.blueprint = context, blueprint
        self.networks: list[TaskNetwork] = []  # each task's path and head, all frozen
        self.modules: list[MixedLayer] = []  # the library: every module any task added
        self.choices: list[PathChoice] = []

    def learn(self, index: int, spec: TaskSpec, data: TaskData, progress: Progress) -> None:
        prior = self.prior(data)
        source = max(prior, key=prior.__getitem__) if prior else None
        reusable = self.networks[source].layers if source is not None else []
        best: tuple[float, int, TaskNetwork] | None = None
        scores = []
        for k in range(len(reusable) + 1):
            network = self.candidate(list(reusable[:k]), data, index, k)
            trainable = [p for p in network.parameters() if p.requires_grad]
            self.context.fit(network, trainable, data, index, progress)
            score = accuracy(network, data.val_x, data.val_y, self.context.device)
            scores.append(score)
            if best is None or score > best[0]:
                best = (score, k, network)
        assert best is not None  # k = 0 always runs
        _, reused, network = best
        self.modules.extend(network.layers[reused:])
        self.networks.append(freeze(network))
        names = [task_name(i) for i in range(len(self.networks) - 1)]
        self.choices.append(PathChoice(source, {n: prior[i] for i, n in enumerate(names)}, reused, scores))

    def prior(self, data: TaskData) -> dict[int, float]:
        """Every past task's k-NN validation accuracy on the new task, through its frozen path."""
        device = self.context.device
        train_x = as_input(data.train_x[:PRIOR_IMAGES], device)
        val_x = as_input(data.val_x[:PRIOR_IMAGES], device)
        train_y, val_y = data.train_y[:PRIOR_IMAGES].to(device), data.val_y[:PRIOR_IMAGES].to(device)
        scores = {}
        for i, network in enumerate(self.networks):
            network.eval()
            with torch.no_grad():
                features = [in_batches(network.features, x).flatten(1) for x in (train_x, val_x)]
            scores[i] = knn_accuracy(features[0], train_y, features[1], val_y)
        return scores

    def candidate(self, reused: list[MixedLayer], data: TaskData, index: int, k: int) -> TaskNetwork:
        """The source's first ``k`` modules (frozen), fresh blueprint modules above, a fresh head;
        drawn from the task's own stream, a different one for each k."""
        generator = self.context.generator(index, salt=10 + k)
        fresh = self.blueprint.trunk(generator)[k:]
        layers = reused + fresh
        return TaskNetwork(layers, fresh_head(layers, data.n_classes, generator)).to(self.context.device)

    def accuracy(self, index: int, data: TaskData) -> float:
        return accuracy(self.networks[index], data.test_x, data.test_y, self.context.device)

    def parameters(self) -> tuple[int, int]:
        """The library's modules (each once); every task's head."""
        shared = count([p for module in self.modules for p in module.parameters()])
        return shared, sum(count(list(n.head.parameters())) for n in self.networks)

    def library_modules(self) -> int:
        return len(self.modules)

    def how(self, index: int) -> dict[str, Any]:
        return self.choices[index].to_json()
