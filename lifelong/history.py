"""Metrics of a library's own history: its classification tasks in commit order, what each cost
and added, and the accuracy matrix over them (``lifelong metrics``).

The matrix is (T+1) × T for T tasks (:mod:`lifelong.metrics`): row ``i < T`` is "after learning
task ``i``" and holds the accuracies stored when each task was learned (a committed task never
changes: its modules are frozen, its α/β and head its own), so ``R[i][i]`` is task ``i``'s accuracy
when learned; the last row is "now": every task re-evaluated, or with ``evaluate=False`` its stored
current accuracy. Backward transfer and both forgettings (Chaudhry's and Avalanche's, see
:mod:`lifelong.metrics`) compare "now" with the rows before it for every task, the last one
included, and are 0 for an intact library; GEM's forward transfer is absent (a library has no
accuracy for a task before learning it). Only a prune (``lifelong prune``, within its tolerance)
may move them: it re-fits a task and rewrites its stored accuracy, and its record keeps the
accuracy the task had when learned (``details["prunes"][0]["before"]``), which fills the task's
learning-time rows, so what the prune cost shows in "now".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from agents import module_parameters
from library_store import HistoryEntry, Library, ModuleRecord, TaskRecord
from lifelong import classification, listings, metrics
from lifelong.errors import LifelongError
from lifelong.listings import own_parameters

PHASES = ("self_organize", "grow", "settle")  # the order a task's learning curves were recorded in


def library_history(
    library: Library,
    *,
    data_dir: Path | None = None,
    device: torch.device = torch.device("cpu"),
    evaluate: bool = True,
) -> dict[str, Any]:
    """``{"tasks": [...], "skipped": [...], "matrix": R, "summary": {...}}`` (see the module doc);
    ``evaluate=False`` uses the stored (current) test accuracies for the "now" row instead of
    measuring."""
    records = {record.name: record for record in library.tasks()}
    order = commit_order(library.log(), library.state, list(records))
    created: dict[str, list[ModuleRecord]] = {}
    for module in library.modules():
        created.setdefault(module.created_by, []).append(module)
    damaged = listings.damaged_modules(library)
    rows, skipped = [], []
    library_modules = library_params = 0
    for name in order:
        record = records[name]
        new = created.get(name, [])
        library_modules += len(new)
        library_params += sum(module_parameters(m) for m in new)
        if record.family != "classification":
            skipped.append({"name": name, "family": record.family, "why": "not an image task"})
            continue
        stored = record.metrics.get("test_acc")
        if stored is None:
            raise LifelongError(f"task {name!r} has no stored test accuracy")
        prunes = record.details.get("prunes", [])
        learned = prunes[0]["before"]["test_acc"] if prunes else stored  # a prune re-fit it since
        rows.append(
            {
                "name": name,
                "spec": record.spec,
                "phase": record.metrics.get("phase"),
                "status": record.status,
                "test_acc_stored": learned,
                "test_acc_now": _accuracy_now(library, name, data_dir, device) if evaluate else stored,
                "evaluated": evaluate,
                "intact": not damaged.intersection(record.module_ids),  # its modules as committed
                "own_parameters": own_parameters(library, name),
                "library_parameters": library_params,
                "library_modules": library_modules,
                "new_modules": len(new),
                "modules_used": len(record.module_ids),
                "seconds": record.timings.get("total"),
                "examples_to_target": examples_to_target(record),
                "target": record.details.get("target"),
            }
        )
    if not rows:
        return {"tasks": [], "skipped": skipped, "matrix": [], "summary": {}}
    matrix = accuracy_matrix([row["test_acc_stored"] for row in rows], [row["test_acc_now"] for row in rows])
    return {"tasks": rows, "skipped": skipped, "matrix": matrix, "summary": metrics.summary(matrix)}


def commit_order(log: list[HistoryEntry], state: str, names: list[str]) -> list[str]:
    """``names`` in the order they were committed into the library's current state.

    The journal (newest first) is replayed oldest first: a learn appends its task, a restore
    returns to the task list of the state it restored. Names the journal does not tell come last.
    """
    known = sorted(names, key=len, reverse=True)  # "a (b)" before "a": the longest name that fits

    def learned(entry: HistoryEntry) -> str | None:
        if entry.kind not in ("learn", "recovered"):  # recovered: a commit logged after a crash
            return None
        return next((n for n in known if entry.message.startswith(f"learn {n} (")), None)

    current: list[str] = []
    at_state: dict[str, list[str]] = {}
    for entry in reversed(log):
        name = learned(entry)
        if name is not None:
            current = [n for n in current if n != name] + [name]
        elif entry.kind == "restore":
            current = list(at_state.get(entry.state, current))
        at_state[entry.state] = current
    ordered = [n for n in at_state.get(state, current) if n in names]
    return ordered + sorted(set(names) - set(ordered))


@dataclass(frozen=True)
class Contents:
    """Some of a library's modules and tasks: e.g. what it held when a task was learned."""

    modules: list[ModuleRecord]
    tasks: list[TaskRecord]


def contents_before(library: Library, name: str) -> Contents:
    """The modules and tasks ``library`` held when task ``name`` was learned: those committed
    before it."""
    committed = commit_order(library.log(), library.state, [task.name for task in library.tasks()])
    position = {task: i for i, task in enumerate(committed)}
    modules = [m for m in library.modules() if position.get(m.created_by, -1) < position[name]]
    return Contents(modules, [library.task(task) for task in committed[: position[name]]])


def accuracy_matrix(learned: list[float], now: list[float]) -> list[list[float | None]]:
    """(T+1) × T: row ``i < T`` (after task ``i``) holds ``learned[j]`` for ``j ≤ i`` (``None``
    above the diagonal); the last row is ``now``."""
    size = len(learned)
    if len(now) != size:
        raise ValueError(f"{len(now)} accuracies now for {size} tasks")
    matrix: list[list[float | None]] = [
        [learned[j] if j <= i else None for j in range(size)] for i in range(size)
    ]
    return [*matrix, list(now)]


def learning_curve(record: TaskRecord) -> tuple[list[int], list[float]]:
    """Validation accuracy against training examples seen, over the phases in the order they ran
    (each phase's steps continue from where the previous one ended; before the winner's ``grow``
    curve come evolution's candidates, each trained ``candidate_steps``, as the stream benchmark
    counts them)."""
    batch = record.details.get("budget", {}).get("batch_size", 0)
    train_examples = record.metrics.get("train_examples")
    if train_examples:  # a step draws min(batch, examples) examples
        batch = min(batch, train_examples)
    examples: list[int] = []
    accuracies: list[float] = []
    offset = 0.0
    budget = record.details.get("budget", {})
    for phase in PHASES:
        if phase == "grow":
            offset += record.details.get("evaluations", 0) * budget.get("candidate_steps", 0)
        steps, values = record.curves.get(f"{phase}_step", []), record.curves.get(f"{phase}_val_acc", [])
        for step, value in zip(steps, values, strict=False):
            examples.append(int((offset + step) * batch))
            accuracies.append(float(value))
        if steps:
            offset += steps[-1]
    return examples, accuracies


def examples_to_target(record: TaskRecord) -> int | None:
    """Training examples until validation accuracy first reached the task's target; None if never."""
    target = record.details.get("target")
    if target is None:
        return None
    examples, accuracies = learning_curve(record)
    return next((n for n, value in zip(examples, accuracies, strict=True) if value >= target), None)


def _accuracy_now(library: Library, name: str, data_dir: Path | None, device: torch.device) -> float:
    try:
        return float(
            classification.evaluate_task(library, name, data_dir=data_dir, device=device)["test_acc"]
        )
    except LifelongError as error:
        raise LifelongError(
            f"cannot re-evaluate {name!r}: {error} (--no-eval uses stored accuracies)"
        ) from None
