"""Pruning the library: SMART's soft pruning by α and L2-similarity merging, every task verified.

SMART prunes "by L2 similarity measurement and weight-based soft-pruning according to α", so the
library's compute falls as well as rises. Over the stored image tasks:

    1. soft pruning   in every task, a module whose share |α·β| / Σ|α·β| of its layer is below
                      ``share`` leaves that task (the layer's largest share always stays)
    2. redundancy     modules of one layer with the same signature are run on the inputs the
                      stored tasks feed that layer (their probe images carried up their own
                      paths); similarity = 1 − ‖a − b‖ / (‖a‖ + ‖b‖), in [0, 1] (or, with
                      ``measure="js"``, 1 − the |γ|-weighted Jensen–Shannon divergence of their
                      sigmoid BatchNorm outputs, channel by channel); pairs at least
                      ``similarity`` alike merge, most alike first: the module fewer tasks use
                      is dropped and its users are re-pointed to the survivor
    3. verification   every changed task re-fits its own parameters (α/β, readout) on its own
                      training data and is re-evaluated on validation and test; a change costing
                      more than ``tolerance`` points on either is refused for that task, and its
                      edits are tried one at a time, each kept only if the task stays within it
    4. removal        modules no task uses any more leave the library (older snapshots keep them)

Untouched tasks are not rewritten, so their outputs stay bit-identical. A task whose data cannot
be reloaded is never changed. Atari tasks are not changed either; their modules count as used.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from agents import Progress, module_parameters, quiet
from agents.classification.agent import (
    ClassificationAgent,
    load_library_layers,
    own_arrays,
    stored_head,
    stored_layers,
)
from agents.classification.budget import Budget, PruneSettings
from agents.classification.modules import Member
from agents.classification.network import MixedLayer, TaskNetwork
from agents.classification.training import accuracy, as_input, in_batches, train
from agents.task import TaskData
from library_store import Library, TaskArrays, TaskRecord, Transaction


@dataclass(frozen=True)
class Merge:
    """Module ``dropped`` is replaced by ``survivor`` (same layer and signature) in every task."""

    layer: int
    dropped: str
    survivor: str
    similarity: float


@dataclass
class TaskChange:
    """What pruning proposed for one task, and what its verification found."""

    task: str
    dropped: dict[str, float]  # soft-pruned module → its share of its layer
    merged: dict[str, str]  # dropped module → survivor
    before: dict[str, float]  # val_acc, test_acc of the stored network (re-evaluated)
    after: dict[str, float] = field(default_factory=dict)  # the accepted variant's, else the full change's
    accepted: bool = False
    attempts: list[dict[str, Any]] = field(default_factory=list)  # every variant tried and its scores
    network: TaskNetwork | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "dropped": self.dropped,
            "merged": self.merged,
            "before": self.before,
            "after": self.after,
            "accepted": self.accepted,
            "attempts": self.attempts,
        }


@dataclass
class PrunePlan:
    """A prune, worked out and verified, not yet committed."""

    settings: PruneSettings
    merges: list[Merge]
    pairs: list[dict[str, Any]]  # the most alike same-signature pairs, merged or not
    changes: list[TaskChange]
    unchanged: dict[str, str]  # task → why it was not changed (no data, an Atari task)
    removed: list[str]  # modules that leave the library
    removed_parameters: int
    parameters_before: int

    def to_json(self) -> dict[str, Any]:
        return {
            "settings": self.settings.__dict__,
            "merges": [m.__dict__ for m in self.merges],
            "closest_pairs": self.pairs,
            "changes": [c.to_json() for c in self.changes],
            "unchanged": self.unchanged,
            "removed_modules": self.removed,
            "parameters_before": self.parameters_before,
            "parameters_removed": self.removed_parameters,
            "parameter_reduction": round(self.removed_parameters / max(1, self.parameters_before), 4),
        }


@dataclass
class _Stored:
    record: TaskRecord
    arrays: TaskArrays
    network: TaskNetwork


def layer_shares(layer: MixedLayer) -> list[float]:
    """Each module's share |α·β| / Σ|α·β| of the layer's mix."""
    weight = (layer.alpha * layer.beta).detach().abs()
    return (weight / weight.sum().clamp_min(1e-12)).tolist()


@torch.no_grad()
def similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    """1 − ‖a − b‖ / (‖a‖ + ‖b‖): 1 for equal outputs, 0 for opposite ones (the triangle
    inequality keeps it in [0, 1]); scale-aware, unlike a cosine."""
    total = float(a.norm() + b.norm())
    return 1.0 if total == 0 else 1.0 - float((a - b).norm()) / total


@torch.no_grad()
def channel_similarity(
    a: torch.Tensor, b: torch.Tensor, gamma_a: torch.Tensor, gamma_b: torch.Tensor
) -> float:
    """1 − the importance-weighted channel divergence of two modules' BatchNorm outputs ``a``,
    ``b`` (N, C, H, W): each unit's sigmoid read as a Bernoulli probability, the Jensen–Shannon
    divergence of the two per unit (in bits, so in [0, 1]) averaged per channel, and the channels
    weighted by their mean |γ| (a channel BatchNorm silences matters little)."""
    p, q = torch.sigmoid(a.double()), torch.sigmoid(b.double())
    m = (p + q) / 2

    def kl(x: torch.Tensor) -> torch.Tensor:  # KL(Bernoulli(x) ‖ Bernoulli(m)); 0·log 0 = 0
        return torch.xlogy(x, x / m) + torch.xlogy(1 - x, (1 - x) / (1 - m))

    per_channel = ((kl(p) + kl(q)) / (2 * math.log(2))).mean(dim=(0, 2, 3))
    weight = (gamma_a.abs() + gamma_b.abs()).double()
    weight = weight / weight.sum() if weight.sum() > 0 else torch.full_like(weight, 1 / len(weight))
    return float(1 - (weight * per_channel).sum().clamp(0, 1))


def module_signal(member: Member, inputs: torch.Tensor, measure: str) -> torch.Tensor:
    """What a module's similarity is measured on: its outputs (``l2``) or its BatchNorm's outputs
    before the nonlinearity (``js``, caught by a forward hook)."""
    module = member.module.eval()
    if measure == "l2":
        return in_batches(module, inputs)
    caught: list[torch.Tensor] = []
    handle = module.bn.register_forward_hook(lambda _, __, output: caught.append(output.cpu()))
    try:
        in_batches(module, inputs)
    finally:
        handle.remove()
    return torch.cat(caught)


def alike(a: Member, b: Member, signals: dict[str, torch.Tensor], measure: str) -> float:
    x, y = signals[str(a.library_id)], signals[str(b.library_id)]
    if measure == "l2":
        return similarity(x, y)
    return channel_similarity(x, y, a.module.bn.weight.detach().cpu(), b.module.bn.weight.detach().cpu())


def plan_prune(
    library: Library,
    settings: PruneSettings,
    budget: Budget,
    load_data: Callable[[TaskRecord], TaskData],
    *,
    device: torch.device | None = None,
    progress: Progress = quiet,
) -> PrunePlan:
    """Work out and verify a prune of ``library`` (read only). ``load_data(record)`` reloads a
    task's data exactly as it was learned (raising if it cannot); ``budget`` sets the re-fit's
    batch size, learning rate and evaluation interval."""
    device = device or torch.device("cpu")
    layers, _ = load_library_layers(library)
    members = {m.library_id: m for layer in layers for m in layer}
    for member in members.values():
        member.module.to(device)
    stored, unchanged = {}, {}
    for record in library.tasks():
        if record.family != ClassificationAgent.family:
            unchanged[record.name] = f"an {record.family} task: pruning changes image tasks only"
            continue
        arrays = library.task_arrays(record.name)
        network = TaskNetwork(stored_layers(record, arrays, members.__getitem__), stored_head(record, arrays))
        stored[record.name] = _Stored(record, arrays, network.to(device).eval())
    modules = {m.id: m for m in library.modules()}
    users = {i: {name for name, s in stored.items() if i in s.record.module_ids} for i in modules}
    merges, pairs = find_merges(layers, stored, users, settings.similarity, settings.measure, device)
    changes = []
    for name, task in stored.items():
        change = _propose(task, merges, settings.share)
        if change is None:
            continue
        progress("prune_task", name=name, dropped=len(change.dropped), merged=len(change.merged))
        try:
            data = load_data(task.record)
        except Exception as error:  # the task's data are gone: it keeps its modules
            unchanged[name] = f"its data cannot be reloaded ({str(error).splitlines()[0]})"
            continue
        changes.append(_verify(task, change, members, data, settings, budget, device, progress))
    used = {i for record in library.tasks() for i in record.module_ids if record.name not in stored}
    for name, task in stored.items():
        accepted = next((c for c in changes if c.task == name and c.accepted), None)
        used |= _module_ids(accepted.network) if accepted else set(task.record.module_ids)
    removed = sorted(set(modules) - used)
    return PrunePlan(
        settings=settings,
        merges=merges,
        pairs=pairs,
        changes=changes,
        unchanged=unchanged,
        removed=removed,
        removed_parameters=sum(module_parameters(modules[i]) for i in removed),
        parameters_before=sum(module_parameters(m) for m in modules.values()),
    )


def find_merges(
    layers: list[list[Member]],
    stored: dict[str, _Stored],
    users: dict[str, set[str]],
    threshold: float,
    measure: str,
    device: torch.device,
) -> tuple[list[Merge], list[dict[str, Any]]]:
    """Step 2: the merges (most alike first; a dropped module merges no further), and the ten
    most alike pairs with their similarity, merged or not (to choose ``--similarity`` by)."""
    candidates = []
    for index, layer in enumerate(layers):
        inputs = _layer_inputs(index, stored, device)
        if inputs is None:
            continue
        signals: dict[str, torch.Tensor] = {}
        for a, b in itertools.combinations(layer, 2):
            if a.signature != b.signature:
                continue
            for m in (a, b):
                if str(m.library_id) not in signals:
                    signals[str(m.library_id)] = module_signal(m, inputs, measure)
            value = alike(a, b, signals, measure)
            candidates.append((value, index, str(a.library_id), str(b.library_id)))
    candidates.sort(key=lambda c: (-c[0], c[1], c[2], c[3]))
    merges: list[Merge] = []
    dropped: set[str] = set()
    for value, index, a, b in candidates:
        if value < threshold or a in dropped or b in dropped:
            continue
        survivor, loser = sorted((a, b), key=lambda i: (-len(users[i]), i))
        if any(m.survivor == loser for m in merges):  # a survivor already absorbed others: it stays
            survivor, loser = loser, survivor
            if any(m.survivor == loser for m in merges):
                continue
        merges.append(Merge(index, loser, survivor, round(value, 6)))
        dropped.add(loser)
    pairs = [{"layer": i, "modules": [a, b], "similarity": round(v, 6)} for v, i, a, b in candidates[:10]]
    return merges, pairs


def _layer_inputs(index: int, stored: dict[str, _Stored], device: torch.device) -> torch.Tensor | None:
    """What the stored tasks feed layer ``index``: each task's probe images carried up its own
    layers below it (None when no task reaches that layer)."""
    inputs = []
    for task in stored.values():
        if len(task.network.layers) <= index:
            continue
        x = as_input(torch.from_numpy(task.arrays.probe["inputs"]), device)
        for layer in task.network.layers[:index]:
            x = in_batches(layer, x)
        inputs.append(x)
    return torch.cat(inputs) if inputs else None


def _propose(task: _Stored, merges: list[Merge], share: float) -> TaskChange | None:
    """The change pruning would make to one task (None: none)."""
    replaced = {m.dropped: m.survivor for m in merges}
    dropped, merged = {}, {}
    for layer in task.network.layers:
        shares = layer_shares(layer)
        largest = max(range(len(shares)), key=shares.__getitem__)
        for i, member in enumerate(layer.members):
            if i != largest and shares[i] < share:
                dropped[str(member.library_id)] = round(shares[i], 6)
            elif member.library_id in replaced:
                merged[str(member.library_id)] = replaced[member.library_id]
    if not dropped and not merged:
        return None
    merged = {m.dropped: m.survivor for m in merges if m.dropped in merged}  # most alike first
    return TaskChange(task.record.name, dropped, merged, before={})


def _edited(task: _Stored, dropped: set[str], merged: dict[str, str], members: dict) -> TaskNetwork:
    """The task's network with ``dropped`` modules left out and ``merged`` ones re-pointed; a
    module re-pointed to one its layer already mixes is left out too. Leaving modules out rescales
    the others' α as :meth:`MixedLayer.without` does (the mean is over fewer modules)."""
    layers = []
    for layer in task.network.layers:
        ids, keep = [], []
        for i, member in enumerate(layer.members):
            new = merged.get(str(member.library_id), str(member.library_id))
            if str(member.library_id) in dropped or new in ids:
                continue
            ids.append(new)
            keep.append(i)
        with torch.no_grad():
            alpha = layer.alpha[keep] * (len(keep) / len(layer.members))
            beta = layer.beta[keep]
        layers.append(MixedLayer([members[i] for i in ids], alpha, beta))
    head = stored_head(task.record, task.arrays)
    return TaskNetwork(layers, head)


def _verify(
    task: _Stored,
    change: TaskChange,
    members: dict[str, Member],
    data: TaskData,
    settings: PruneSettings,
    budget: Budget,
    device: torch.device,
    progress: Progress,
) -> TaskChange:
    """Step 3: the whole change, re-fitted and re-evaluated; if it costs more than
    ``tolerance``, its edits one at a time (merges most alike first, then soft drops smallest
    share first), each kept only if the task, with the edits kept so far, stays within it."""

    def scores(network: TaskNetwork) -> dict[str, float]:
        return {
            "val_acc": accuracy(network, data.val_x, data.val_y, device),
            "test_acc": accuracy(network, data.test_x, data.test_y, device),
        }

    def attempt(edits: list[tuple[str, str]]) -> tuple[TaskNetwork, dict[str, float], float]:
        dropped = {module for kind, module in edits if kind == "drop"}
        merged = {module: change.merged[module] for kind, module in edits if kind == "merge"}
        network = _edited(task, dropped, merged, members).to(device)
        if settings.refit_steps:
            train(
                network,
                network.scale_parameters() + list(network.head.parameters()),
                data,
                budget.train_config(settings.refit_steps, change.before["val_acc"]),
                generator=torch.Generator().manual_seed(task.record.seed or 0),
                device=device,
                progress=progress,
                label=f"re-fit {task.record.name}",
            )
        after = scores(network)
        cost = max(change.before[k] - after[k] for k in after) * 100
        change.attempts.append(
            {"dropped": sorted(dropped), "merged": merged, **after, "cost_points": round(cost, 4)}
        )
        return network.eval(), after, cost

    change.before = scores(task.network)
    edits = [("merge", module) for module in change.merged]  # in the merges' order: most alike first
    edits += [("drop", module) for module in sorted(change.dropped, key=change.dropped.__getitem__)]
    kept: list[tuple[str, str]] = []
    network, after, cost = attempt(edits)
    change.after = after
    if cost <= settings.tolerance:
        kept = edits
    elif len(edits) > 1:
        for edit in edits:
            trial, trial_after, trial_cost = attempt([*kept, edit])
            if trial_cost <= settings.tolerance:
                kept, network, after = [*kept, edit], trial, trial_after
    if kept:
        change.dropped = {m: s for m, s in change.dropped.items() if ("drop", m) in kept}
        change.merged = {m: s for m, s in change.merged.items() if ("merge", m) in kept}
        change.after, change.accepted, change.network = after, True, network
    return change


def _module_ids(network: TaskNetwork) -> set[str]:
    return {str(m.library_id) for layer in network.layers for m in layer.members}


def apply_prune(
    plan: PrunePlan, library: Library, tx: Transaction, device: torch.device | None = None
) -> None:
    """Write ``plan`` into ``tx``: every accepted task re-pointed with its re-fitted α/β, readout
    and a new probe (same images, new logits) and a record of the change; then the removals."""
    device = device or torch.device("cpu")
    for change in plan.changes:
        if not change.accepted:
            continue
        record, stored = library.task(change.task), library.task_arrays(change.task)
        network = change.network
        arrays = own_arrays(
            network,
            torch.from_numpy(stored.probe["inputs"]),
            torch.from_numpy(stored.probe["labels"]),
            device,
        )
        layers = [[str(m.library_id) for m in layer.members] for layer in network.layers]
        history = [*record.details.get("prunes", []), change.to_json()]
        tx.replace_task(
            replace(
                record,
                layers=layers,
                metrics={
                    **record.metrics,
                    **change.after,
                    "modules_used": sum(len(layer) for layer in layers),
                },
                details={**record.details, "prunes": history},
            ),
            arrays,
        )
    for module_id in plan.removed:
        tx.delete_module(module_id)
