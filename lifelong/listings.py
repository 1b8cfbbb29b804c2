"""Listings: what users see of a library, as plain JSON-able rows.

The CLI prints these as rich tables or, with ``--json``, as they are; both show the same content.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from agents import module_parameters
from library_store import Library, LibraryDamaged, TaskRecord


def to_json(data: Any) -> str:
    """Strict JSON text (RFC 8259): NaN and ±inf, which JSON cannot hold, become ``null``;
    numpy scalars become numbers; anything else unknown becomes its ``str``."""
    return json.dumps(_finite(data), indent=2, allow_nan=False, default=str)


def _finite(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _norm(tensors: dict[str, np.ndarray]) -> float:
    """L2 norm over all floating-point tensors (integer counters such as BN's are skipped)."""
    floats = (t for t in tensors.values() if t.dtype.kind == "f")
    total = sum(float(np.sum(np.square(t, dtype=np.float64))) for t in floats)
    return round(total**0.5, 6)


def _value(array: np.ndarray) -> float | list[float]:
    """A per-(task, module) parameter as users read it: the number if scalar, else its norm."""
    if array.size == 1:
        return round(float(array.reshape(())), 6)
    return _norm({"x": array})


def info(library: Library) -> dict[str, Any]:
    modules, tasks, snapshots, log = library.modules(), library.tasks(), library.snapshots(), library.log()
    last = log[0] if log else None
    return {
        "path": str(library.path.resolve()),
        "schema_version": library.schema_version,
        "state": library.state,
        "modules": len(modules),
        "frozen_modules": sum(m.frozen for m in modules),
        "parameters": sum(module_parameters(m) for m in modules),
        "tasks": len(tasks),
        "snapshots": len(snapshots),
        "size_on_disk_bytes": library.size_on_disk(),
        "last_change": {"time": last.time, "kind": last.kind, "message": last.message} if last else None,
    }


def own_parameters(library: Library, name: str) -> int:
    """A task's own numbers: α and β of every module it uses, and its head."""
    arrays = library.task_arrays(name)
    scales = sum(int(value.size) for layer in arrays.uses for use in layer for value in use.values())
    return scales + sum(int(value.size) for value in arrays.head.values())


def parameter_split(library: Library, task: TaskRecord) -> dict[str, Any]:
    """Where a task's numbers live: in the library modules it uses (shared, frozen) or in its own
    α/β and head, and the share that is its own."""
    shared = sum(module_parameters(library.module(i)) for i in dict.fromkeys(task.module_ids))
    own = own_parameters(library, task.name)
    return {"library_params": shared, "own_params": own, "own_share": round(own / max(1, shared + own), 4)}


def recalled(task: TaskRecord) -> str | None:
    """The stored task whose path self-organization started from (None: a fresh mix, or none)."""
    return task.details.get("recall", {}).get("task")


def tasks(library: Library) -> list[dict[str, Any]]:
    return [
        {
            "name": task.name,
            "family": task.family,
            "spec": task.spec,
            "status": task.status,
            "depth": task.depth,
            "modules": len(task.module_ids),
            "recalled": recalled(task),
            **parameter_split(library, task),
            "metrics": task.metrics,
            "seed": task.seed,
        }
        for task in library.tasks()
    ]


def damaged_modules(library: Library) -> set[str]:
    """The modules whose stored tensors no longer match their checksum (every tensor is read)."""
    damaged = set()
    for module in library.modules():
        try:
            library.module_tensors(module.id)
        except LibraryDamaged:
            damaged.add(module.id)
    return damaged


def modules(library: Library, task: str | None = None) -> list[dict[str, Any]]:
    """All modules (each checked against its checksum), or (with ``task``) the ones that task
    uses, layer by layer, with its α/β (a damaged one is an error)."""
    if task is None:
        damaged = damaged_modules(library)
        users: dict[str, list[str]] = {}
        for record in library.tasks():
            for module_id in record.module_ids:
                users.setdefault(module_id, []).append(record.name)
        return [
            {
                "id": m.id,
                "kind": m.kind,
                "created_by": m.created_by,
                "frozen": m.frozen,
                "parameters": module_parameters(m),
                "used_by": users.get(m.id, []),
                "intact": m.id not in damaged,
            }
            for m in library.modules()
        ]
    record, arrays = library.task(task), library.task_arrays(task)
    rows = []
    for layer, ids in enumerate(record.layers):
        for position, module_id in enumerate(ids):
            module = library.module(module_id)
            params = arrays.uses[layer][position] if arrays.uses else {}
            rows.append(
                {
                    "layer": layer,
                    "id": module_id,
                    "kind": module.kind,
                    "created_by": module.created_by,
                    "frozen": module.frozen,
                    "config": module.config,
                    "parameters": module_parameters(module),
                    "task_params": {name: _value(value) for name, value in sorted(params.items())},
                    "weight_norm": _norm(library.module_tensors(module_id)),
                }
            )
    return rows


def snapshots(library: Library) -> list[dict[str, Any]]:
    return [
        {"name": s.name, "time": s.time, "automatic": s.automatic, "state": s.state, "message": s.message}
        for s in library.snapshots()
    ]


def log(library: Library) -> list[dict[str, Any]]:
    return [
        {"time": e.time, "kind": e.kind, "message": e.message, "state": e.state, "id": e.id}
        for e in library.log()
    ]


def check(library: Library) -> dict[str, Any]:
    problems = library.check()
    return {"clean": not problems, "problems": [{"where": p.where, "what": p.what} for p in problems]}
