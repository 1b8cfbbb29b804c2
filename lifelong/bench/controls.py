"""The learners a stream is run with: the agent itself and its controls.

Every learner learns tasks in stream order and answers "test accuracy on task j now". The
controls train with the agent's own code (:func:`train`, the budget's batch, learning
rate, validation points and early stop) for ``final_steps`` steps per task: the steps the agent
gives the network it grows.

- ``lifelong``: the agent through the real learn loop, into a real library on disk.
- ``random_library``: before each task, a library of the same modules as the agent's at that
  point, with fresh random weights (BatchNorm statistics calibrated on the task's own unlabeled
  training images) and the same stored tasks' paths, then the agent's same procedure on it
  (GRUSM-ESP's control).
- ``independent``: each task alone, from scratch, with the network the agent built for the
  stream's first task (its :class:`Blueprint`), all of it trained (CTrL's "independent").
- ``finetune``: one such network through the stream, a new head per task; it forgets.
- ``frozen_first``: the first task's network frozen, a new head per later task.
- ``pnn``: :class:`~lifelong.bench.pnn.ProgressiveNetwork`, a column per task.
- ``mntdp``: :class:`~lifelong.bench.mntdp.ModularNetworks`, MNTDP-D's path per task.

``finetune`` and ``frozen_first`` carry one network from task to task and add only a head, so
they have a model of a task before learning it: the trunk as the earlier tasks left it under the
head the task's training will start from. Its accuracy, and that of the same head on the trunk
as initialised, are GEM's ``R[j-1][j]`` and ``b_j`` (:meth:`Learner.before_learning`; Lopez-Paz &
Ranzato 2017, whose multi-head experiments read a task's untrained output units the same way).
The other learners build a task's network only when they learn it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from agents import Progress, module_parameters
from agents.classification.agent import (
    ClassificationAgent,
    load_library_layers,
    load_task_network,
    stored_head,
    stored_layers,
)
from agents.classification.modules import LAYER, Head, Member, Shape, freeze, initialise, to_tensors
from agents.classification.network import MixedLayer, TaskNetwork
from agents.classification.training import accuracy, as_input, predict_logits, train
from agents.task import TaskData, TaskSpec
from library_store import Library, TaskArrays, TaskRecord
from lifelong.bench.pnn import ProgressiveNetwork
from lifelong.history import Contents
from lifelong.listings import own_parameters, recalled
from lifelong.plans import ClassificationPlan
from lifelong.runner import learn_specs

CALIBRATION_IMAGES = 2048  # unlabeled training images that set a random module's BatchNorm statistics


@dataclass(frozen=True)
class Context:
    """What every learner of one seed shares."""

    plan: ClassificationPlan
    seed: int
    device: torch.device
    data_dir: Path | None
    root: Path  # a scratch folder for the libraries of this seed

    def generator(self, index: int, salt: int = 0) -> torch.Generator:
        """The seed's torch stream for task ``index`` (the same in every control, so their first
        tasks start from the same weights)."""
        state = np.random.SeedSequence([self.seed, index, salt]).generate_state(1, np.uint64)[0]
        return torch.Generator().manual_seed(int(state))

    def fit(
        self,
        network: nn.Module,
        parameters: list[nn.Parameter],
        data: TaskData,
        index: int,
        progress: Progress,
    ) -> None:
        budget = self.plan.budget
        train(
            network,
            parameters,
            data,
            budget.train_config(budget.final_steps, self.plan.target),
            generator=self.generator(index, salt=1),
            device=self.device,
            progress=progress,
            label=f"task {index}",
        )


def count(parameters: list[nn.Parameter] | list[torch.Tensor]) -> int:
    """Scalars in ``parameters``, each tensor once."""
    return sum(p.numel() for p in {id(p): p for p in parameters}.values())


@dataclass(frozen=True)
class Blueprint:
    """The shape of a task network: per layer, each module's kind, input shape and output
    channels. Built fresh, it is the network the controls train."""

    layers: tuple[tuple[tuple[str, Shape, int], ...], ...]

    @classmethod
    def of_task(cls, library: Library, name: str) -> Blueprint:
        modules = [[library.module(i) for i in ids] for ids in library.task(name).layers]
        return cls(
            tuple(
                tuple((m.kind, tuple(m.signature["input"]), m.signature["output"][0]) for m in layer)
                for layer in modules
            )
        )

    def trunk(self, generator: torch.Generator) -> list[MixedLayer]:
        """Fresh trainable layers (modules, α and β drawn from ``generator``)."""
        return [
            MixedLayer(
                [Member.new(kind, shape, out, generator) for kind, shape, out in layer], generator=generator
            )
            for layer in self.layers
        ]

    def network(self, n_classes: int, generator: torch.Generator) -> TaskNetwork:
        trunk = self.trunk(generator)
        return TaskNetwork(trunk, fresh_head(trunk, n_classes, generator))


def fresh_head(trunk: list[MixedLayer], n_classes: int, generator: torch.Generator) -> Head:
    return initialise(Head(trunk[-1].members[0].output_shape, n_classes), generator)


class Learner:
    """A condition: learns the stream's tasks in order and reports test accuracy on any of them.

    ``frozen`` learners never change a task once learned, so only their final row of the
    accuracy matrix is measured again (the rows between repeat each task's first value);
    the others are measured after every task."""

    name: str
    frozen: bool = True

    def learn(self, index: int, spec: TaskSpec, data: TaskData, progress: Progress) -> None:
        raise NotImplementedError

    def accuracy(self, index: int, data: TaskData) -> float:
        raise NotImplementedError

    def parameters(self) -> tuple[int, int]:
        """(shared parameters, parameters owned by single tasks), in total so far."""
        raise NotImplementedError

    def library_modules(self) -> int | None:
        """Modules in the library the latest task was learned with; None without a library."""
        return None

    def before_learning(self, index: int, data: TaskData) -> tuple[float | None, float | None] | None:
        """GEM's forward-transfer pair for task ``index``, called before it is learned: test
        accuracy of the model as the earlier tasks left it, and of the same model at its random
        initialisation; (None, None) for the first task (no earlier model); None for a learner
        with no model of a task before learning it."""
        return None

    def how(self, index: int) -> dict[str, Any] | None:
        """How a modular learner solved task ``index``: the agent's procedure (phase, new
        modules, the recalled task) or MNTDP's path choice; None for the other controls."""
        return None


class LibraryLearner(Learner):
    """The real agent, learning every task into one library (``lifelong``)."""

    name, frozen = "lifelong", False  # measured after every task: zero forgetting is the claim

    def __init__(self, context: Context, library: Library) -> None:
        self.context, self.library = context, library
        self.owned: list[int] = []

    def learn(self, index: int, spec: TaskSpec, data: TaskData, progress: Progress) -> None:
        c = self.context
        plans = {c.plan.family: c.plan}
        learn_specs(
            self.library,
            [spec],
            plans=plans,
            names=[task_name(index)],
            seed=c.seed,
            device=c.device,
            data_dir=c.data_dir,
            progress=progress,
        )
        self.owned.append(own_parameters(self.library, task_name(index)))

    def accuracy(self, index: int, data: TaskData) -> float:
        network = load_task_network(self.library, task_name(index)).to(self.context.device)
        return accuracy(network, data.test_x, data.test_y, self.context.device)

    def parameters(self) -> tuple[int, int]:
        return sum(module_parameters(m) for m in self.library.modules()), sum(self.owned)

    def library_modules(self) -> int:
        return len(self.library.modules())

    def how(self, index: int) -> dict[str, Any]:
        record = self.library.task(task_name(index))
        return {
            "phase": record.metrics.get("phase"),
            "new_modules": record.metrics.get("new_modules"),
            "recalled": recalled(record),
        }


class RandomLibrary(Learner):
    """Before each task, the agent's library as it is then, re-drawn at random; then the agent's
    procedure on that copy (``random_library``). The first task meets an empty library, as in
    ``lifelong``. ``before(index)``, when given, says what the agent's library held before task
    ``index`` (for a library that has since learned more); else all of ``learned``, now."""

    name = "random_library"

    def __init__(
        self,
        context: Context,
        learned: Library,
        before: Callable[[int], Contents] | None = None,
    ) -> None:
        self.context, self.learned, self.before = context, learned, before
        self.agents: dict[int, LibraryLearner] = {}

    def learn(self, index: int, spec: TaskSpec, data: TaskData, progress: Progress) -> None:
        library = Library.create(self.context.root / f"random-{index}")
        contents = self.before(index) if self.before else None
        generator = self.context.generator(index, salt=2)
        randomise(self.learned, library, data, generator, self.context.device, contents)
        agent = LibraryLearner(self.context, library)
        agent.learn(index, spec, data, progress)
        self.agents[index] = agent

    def accuracy(self, index: int, data: TaskData) -> float:
        return self.agents[index].accuracy(index, data)

    def parameters(self) -> tuple[int, int]:
        """The newest random library's parameters; every task's own."""
        newest = self.agents[max(self.agents)]
        return newest.parameters()[0], sum(agent.owned[0] for agent in self.agents.values())

    def library_modules(self) -> int:
        return self.agents[max(self.agents)].library_modules()

    def how(self, index: int) -> dict[str, Any]:
        return self.agents[index].how(index)


def randomise(
    learned: Library,
    into: Library,
    data: TaskData,
    generator: torch.Generator,
    device: torch.device,
    contents: Contents | None = None,
) -> None:
    """Store in ``into`` a module of the same kind and shape for every image module of
    ``learned`` (or of ``contents``, part of it), freshly initialised, with BatchNorm statistics
    from ``data``'s unlabeled training images (each layer calibrated on the plain mean of the
    layer below); and every image task, its path re-pointed to the fresh modules with the same
    α/β and head, so the agent's procedure (recall included) meets the same structure."""
    contents = contents or Contents(learned.modules(), learned.tasks())
    layers, _ = load_library_layers(learned, contents.modules)
    if not layers:
        return
    x = as_input(data.train_x[:CALIBRATION_IMAGES], device)
    fresh: dict[str, Member] = {}
    with torch.no_grad():
        for layer in layers:
            outputs = []
            for old in layer:
                member = Member.new(old.kind, old.input_shape, old.output_shape[0], generator)
                module = member.module.to(device)
                for norm in module.modules():
                    if isinstance(norm, nn.BatchNorm2d):
                        norm.reset_running_stats()
                        norm.momentum = None  # a cumulative average over the calibration batches
                module.train()
                for start in range(0, len(x), 256):
                    module(x[start : start + 256])
                freeze(module)
                outputs.append(module(x))
                fresh[str(old.library_id)] = member
            x = torch.stack(outputs).mean(0)
    with into.transaction("random library: same shapes, fresh weights", kind="change") as tx:
        stored = {}
        for index, layer in enumerate(layers):
            for old in layer:
                member = fresh[str(old.library_id)]
                stored[old.library_id] = tx.add_module(
                    member.kind,
                    to_tensors(member.module),
                    created_by="random",
                    config={**member.config, LAYER: index},
                    signature=member.signature,
                ).id
        for task in contents.tasks:
            if task.family != ClassificationAgent.family or not set(task.module_ids) <= stored.keys():
                continue
            arrays = learned.task_arrays(task.name)
            head = stored_head(task, arrays)
            network = TaskNetwork(stored_layers(task, arrays, fresh.__getitem__), head).to(device)
            inputs = torch.from_numpy(arrays.probe["inputs"])
            probe = {**arrays.probe, "logits": predict_logits(network, inputs, device).numpy()}
            ids = [[stored[i] for i in layer] for layer in task.layers]
            tx.add_task(
                TaskRecord(task.name, task.family, task.spec, ids, details={"head": task.details["head"]}),
                TaskArrays(uses=arrays.uses, head=arrays.head, probe=probe),
            )


class Independent(Learner):
    """Each task alone, from scratch, with the blueprint network, all of it trained."""

    name = "independent"

    def __init__(self, context: Context, blueprint: Blueprint) -> None:
        self.context, self.blueprint = context, blueprint
        self.networks: list[TaskNetwork] = []

    def learn(self, index: int, spec: TaskSpec, data: TaskData, progress: Progress) -> None:
        network = self.blueprint.network(data.n_classes, self.context.generator(index)).to(
            self.context.device
        )
        self.context.fit(network, list(network.parameters()), data, index, progress)
        self.networks.append(freeze(network))

    def accuracy(self, index: int, data: TaskData) -> float:
        return accuracy(self.networks[index], data.test_x, data.test_y, self.context.device)

    def parameters(self) -> tuple[int, int]:
        return 0, sum(count(list(n.parameters())) for n in self.networks)


class SharedTrunk(Learner):
    """One blueprint trunk for the whole stream and a new head per task. ``finetune`` trains the
    trunk with every task (and forgets); ``frozen_first`` trains it with the first task only."""

    def __init__(self, context: Context, blueprint: Blueprint, *, train_trunk_after_first: bool) -> None:
        self.context, self.blueprint = context, blueprint
        self.train_trunk_after_first = train_trunk_after_first
        self.name = "finetune" if train_trunk_after_first else "frozen_first"
        self.frozen = not train_trunk_after_first
        self.trunk: list[MixedLayer] = []
        self.trunk_at_init: list[MixedLayer] = []  # a copy of the trunk as drawn, never trained
        self.networks: list[TaskNetwork] = []

    def learn(self, index: int, spec: TaskSpec, data: TaskData, progress: Progress) -> None:
        generator = self.context.generator(index)
        if not self.trunk:
            self.trunk = self.blueprint.trunk(generator)
            self.trunk_at_init = copy.deepcopy(self.trunk)
        network = TaskNetwork(self.trunk, fresh_head(self.trunk, data.n_classes, generator))
        network.to(self.context.device)
        trains_trunk = index == 0 or self.train_trunk_after_first
        parameters = list(network.parameters() if trains_trunk else network.head.parameters())
        self.context.fit(network, parameters, data, index, progress)
        freeze(network.head)
        if index == 0 and not self.train_trunk_after_first:
            for layer in self.trunk:
                freeze(layer)
        self.networks.append(network)

    def accuracy(self, index: int, data: TaskData) -> float:
        return accuracy(self.networks[index], data.test_x, data.test_y, self.context.device)

    def before_learning(self, index: int, data: TaskData) -> tuple[float | None, float | None]:
        """The head task ``index``'s training will start from (drawn as :meth:`learn` draws it:
        first from the task's generator once the trunk exists), on the trunk now and on the
        trunk as initialised; both evaluated only, nothing trained or kept."""
        if not self.trunk:
            return None, None
        head = fresh_head(self.trunk, data.n_classes, self.context.generator(index))
        device = self.context.device
        now, init = (
            accuracy(TaskNetwork(trunk, head).to(device), data.test_x, data.test_y, device)
            for trunk in (self.trunk, self.trunk_at_init)
        )
        return now, init

    def parameters(self) -> tuple[int, int]:
        trunk = count([p for layer in self.trunk for p in layer.parameters()])
        return trunk, sum(count(list(n.head.parameters())) for n in self.networks)


class Progressive(Learner):
    """Progressive Neural Networks: a new blueprint column per task, lateral adapters from every
    earlier column; earlier columns are frozen."""

    name = "pnn"

    def __init__(self, context: Context, blueprint: Blueprint) -> None:
        self.context, self.blueprint = context, blueprint
        self.network = ProgressiveNetwork()

    def learn(self, index: int, spec: TaskSpec, data: TaskData, progress: Progress) -> None:
        column = self.network.add_column(self.blueprint.trunk, data.n_classes, self.context.generator(index))
        self.network.to(self.context.device)
        view = self.network.view(index)
        self.context.fit(view, list(column.parameters()), data, index, progress)

    def accuracy(self, index: int, data: TaskData) -> float:
        return accuracy(self.network.view(index), data.test_x, data.test_y, self.context.device)

    def parameters(self) -> tuple[int, int]:
        return 0, count(list(self.network.parameters()))


def task_name(index: int) -> str:
    return f"task-{index:02d}"
