"""`lifelong prune` and `learn --prune auto`: pruning the library as one commit of kind ``prune``.

The algorithm is :mod:`agents.classification.pruning`; here each task's data are reloaded as it
was learned (its spec, seed and input shape), and the plan is worked out under the writer lock
(a second writer waits) and committed in one transaction (a kill at any instant leaves the
library as it was; `lifelong restore` undoes a prune). ``dry_run`` takes no lock, changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from agents import Progress, quiet
from agents.classification.budget import Budget, PruneSettings
from agents.classification.pruning import PrunePlan, apply_prune, plan_prune
from library_store import Library, TaskRecord
from lifelong.errors import LifelongError
from lifelong.task_data import TaskData, load_task_data
from lifelong.tasks import parse_spec


def prune_settings(**values: Any) -> PruneSettings:
    """Settings from the command line (None: the default), checked once."""
    try:
        return PruneSettings(**{k: v for k, v in values.items() if v is not None})
    except ValueError as error:
        raise LifelongError(str(error)) from None


def prune(
    library: Library,
    settings: PruneSettings,
    budget: Budget,
    *,
    data_dir: Path | None = None,
    device: torch.device,
    dry_run: bool = False,
    progress: Progress = quiet,
) -> dict[str, Any]:
    """Prune ``library`` (or, with ``dry_run``, say what a prune would do); return the plan as
    JSON with ``committed`` and the library state after."""

    def load(record: TaskRecord) -> TaskData:
        return load_task_data(
            parse_spec(record.spec),
            data_dir=data_dir,
            input_shape=tuple(record.details["input_shape"]),
            seed=record.seed or 0,
        )

    if dry_run:
        library.refresh()
        plan = plan_prune(library, settings, budget, load, device=device, progress=progress)
        return {
            **plan.to_json(),
            "summary": summary(plan),
            "dry_run": True,
            "committed": False,
            "state": library.state,
        }
    with library.transaction("prune", kind="prune") as tx:
        plan = plan_prune(library, settings, budget, load, device=device, progress=progress)
        apply_prune(plan, library, tx, device)
        tx.message = summary(plan)
    committed = bool(plan.removed) or any(change.accepted for change in plan.changes)
    return {
        **plan.to_json(),
        "summary": summary(plan),
        "dry_run": False,
        "committed": committed,
        "state": library.state,
    }


def summary(plan: PrunePlan) -> str:
    """One line: what the prune changed."""
    changed = sum(change.accepted for change in plan.changes)
    refused = len(plan.changes) - changed
    return (
        f"prune: {len(plan.removed)} modules removed ({plan.removed_parameters:,} parameters), "
        f"{changed} tasks changed, {refused} changes refused"
    )
