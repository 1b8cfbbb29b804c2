"""Plain records the library stores: modules, tasks, history entries, snapshots, problems.

Records are JSON-able dataclasses (they live in zarr attributes); tensors travel beside them
as ``numpy`` arrays. Nothing here knows about torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from library_store.errors import InvalidRecord

Tensors = Mapping[str, np.ndarray]
FAMILIES = ("classification", "atari")
NAME_MAX = 200  # the most characters a task name may have


def task_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a new task (one line), or None if it can: it must hold more than
    spaces, no control character (newline, tab, ...) and at most ``NAME_MAX`` characters. The one
    definition of the rules: the store applies them to every task it adds, and ``lifelong learn``
    to every name before any work. (A stored task keeps its name: one stored before the rules
    were this strict can still be replaced.)"""
    if not isinstance(name, str):
        return f"task name {name!r} is not text"
    if not name.strip():
        return "--name cannot be empty or only spaces"
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in name):
        return f"task name {name!r} holds a control character (newline, tab, ...); choose another --name"
    if len(name) > NAME_MAX:
        return (
            f"task name {name[:40]!r}... is {len(name)} characters long, at most {NAME_MAX} are allowed;"
            " choose a shorter --name"
        )
    return None


def tensors_checksum(tensors: Tensors) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        array = np.asarray(tensors[name], order="C")
        # Hash values, not byte order: the store keeps every array little endian, so a
        # big-endian input must hash the same as what is read back.
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def validate_tensors(tensors: Tensors, what: str) -> dict[str, np.ndarray]:
    """Check names and values of a tensor mapping; return it as plain numpy arrays."""
    clean: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or not name or "/" in name or name.strip(".") == "":
            raise InvalidRecord(f"{what}: bad tensor name {name!r} (non-empty, no '/')")
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise InvalidRecord(f"{what}: tensor {name!r} has unsupported dtype {array.dtype}")
        clean[name] = array
    return clean


def _json_roundtrip(value: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise InvalidRecord(f"{what} is not plain JSON: {error}") from None


@dataclass(frozen=True)
class ModuleRecord:
    """A stored module: what it is, where it fits, who made it, and a checksum of its tensors.

    ``signature`` says what the module consumes and produces (e.g. ``{"input": [8, 28, 28],
    "output": [16, 28, 28]}``) so agents can tell where it fits without loading it.
    ``tensors`` maps each tensor name to ``{"shape": [...], "dtype": "float32"}``.
    """

    id: str
    kind: str
    config: dict[str, Any]
    signature: dict[str, Any]
    frozen: bool
    created_by: str
    checksum: str
    tensors: dict[str, dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModuleRecord:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class TaskRecord:
    """Everything about a learned task that is not a tensor.

    ``layers[l]`` lists the ids of the modules the task uses in layer ``l``; the task's own
    per-module parameters (α, β, transfer weights, ...) are in :class:`TaskArrays`, never in
    the shared module, so a later task can never overwrite them.
    """

    name: str
    family: str
    spec: str
    layers: list[list[str]]
    status: str = "learned"
    metrics: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, list[float]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    seed: int | None = None
    command: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def depth(self) -> int:
        return len(self.layers)

    @property
    def module_ids(self) -> list[str]:
        return [module_id for layer in self.layers for module_id in layer]

    def validate(self) -> TaskRecord:
        if self.family not in FAMILIES:
            raise InvalidRecord(f"task {self.name!r}: family must be one of {', '.join(FAMILIES)}")
        if not all(isinstance(layer, list) for layer in self.layers):
            raise InvalidRecord(f"task {self.name!r}: layers must be lists of module ids")
        _json_roundtrip(self.to_json(), f"task {self.name!r}")
        return self

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TaskRecord:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


@dataclass(frozen=True)
class TaskArrays:
    """A task's own tensors.

    ``uses[l][i]`` holds this task's parameters for module ``layers[l][i]`` (e.g. scalars
    ``alpha`` and ``beta``); ``head`` the task-specific output layers; ``probe`` a few inputs
    and the outputs they produced at commit time, to verify later that nothing changed.
    """

    uses: list[list[dict[str, np.ndarray]]] = field(default_factory=list)
    head: dict[str, np.ndarray] = field(default_factory=dict)
    probe: dict[str, np.ndarray] = field(default_factory=dict)

    def validate(self, record: TaskRecord) -> TaskArrays:
        shape = [len(layer) for layer in self.uses]
        if self.uses and shape != [len(layer) for layer in record.layers]:
            raise InvalidRecord(
                f"task {record.name!r}: per-module arrays {shape} do not match layers "
                f"{[len(layer) for layer in record.layers]}"
            )
        what = f"task {record.name!r}"
        return TaskArrays(
            uses=[[validate_tensors(use, what) for use in layer] for layer in self.uses],
            head=validate_tensors(self.head, what),
            probe=validate_tensors(self.probe, what),
        )


def task_arrays_checksum(task_arrays: TaskArrays) -> str:
    """One checksum over all of a task's own arrays (per-module parameters, head, probe)."""
    flat = {f"head/{n}": a for n, a in task_arrays.head.items()}
    flat.update({f"probe/{n}": a for n, a in task_arrays.probe.items()})
    for layer, uses in enumerate(task_arrays.uses):
        for i, use in enumerate(uses):
            flat.update({f"uses/{layer}/{i}/{n}": a for n, a in use.items()})
    return tensors_checksum(flat)


@dataclass(frozen=True)
class HistoryEntry:
    """One line of history: a change to the library (learn, prune, snapshot, restore, ...)."""

    id: str
    time: str
    kind: str
    message: str
    state: str  # the library state (main snapshot id) after the change
    details: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SnapshotInfo:
    """A named, immutable library state."""

    name: str
    state: str
    time: str
    message: str
    automatic: bool


@dataclass(frozen=True)
class Finding:
    """One thing ``check()`` found wrong, and where."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


def snapshot_entries(entries: list[HistoryEntry]) -> dict[str, HistoryEntry]:
    """The history entry that took each snapshot: a snapshot entry names it, a restore its backup."""
    taken: dict[str, HistoryEntry] = {}
    for entry in entries:
        name = entry.details.get("snapshot" if entry.kind == "snapshot" else "backup")
        if name:
            taken.setdefault(name, entry)
    return taken
