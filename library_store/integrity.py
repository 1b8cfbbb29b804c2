"""``Library.check()``: re-read every record and tensor, recompute checksums, follow references,
and hold the history against the snapshots and the current state.

The library hands over what to read as a :class:`StoredState` (its door for this check), so this
module reads the store and never the library's internals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from library_store import arrays
from library_store.catalogue import MODULES, TASKS, read_catalogue
from library_store.errors import LibraryDamaged, first_line
from library_store.layout import ARRAYS_CHECKSUM, FORMAT, SCHEMA_VERSION, readable_schema, task_key
from library_store.records import (
    Finding,
    HistoryEntry,
    ModuleRecord,
    TaskArrays,
    TaskRecord,
    snapshot_entries,
    task_arrays_checksum,
    tensors_checksum,
)

_NOT_STORED = "recorded in the catalogue, but its group is not stored"


@dataclass(frozen=True)
class StoredState:
    """What the check reads: one committed state and the history around it."""

    store: Any  # the state's zarr store, read-only
    read_task_arrays: Callable[[TaskRecord], TaskArrays]  # a task's own arrays as stored, unverified
    read_history: Callable[[], list[HistoryEntry]]  # newest first; LibraryDamaged if unreadable
    tags: dict[str, str]  # snapshot name → the state it names
    newest: str  # the newest committed state of the library
    unreadable: Callable[[str], str | None]  # why a state cannot be read; None if it can


def find_problems(state: StoredState) -> list[Finding]:
    """Every problem in the library's current state, each with where it is."""
    store = state.store
    problems: list[Finding] = []
    catalogue = read_catalogue(store)
    if catalogue.root.get("format") != FORMAT:
        problems.append(Finding("library", f"unknown format {catalogue.root.get('format')!r}"))
    if not readable_schema(catalogue.schema):
        problems.append(Finding("library", f"schema version {catalogue.schema!r}, expected {SCHEMA_VERSION}"))

    stored_modules = set(arrays.child_groups(store, MODULES))
    problems += _uncatalogued("module", stored_modules, catalogue.modules)
    module_ids: set[str] = set()
    for name, attributes in sorted(catalogue.modules.items()):
        where = f"module {name}"
        try:
            record = ModuleRecord.from_json(attributes)
        except (KeyError, TypeError) as error:
            problems.append(Finding(where, f"unreadable record ({first_line(error)})"))
            continue
        if name not in stored_modules:
            problems.append(Finding(where, _NOT_STORED))
            continue
        module_ids.add(name)
        if record.id != name:
            problems.append(Finding(where, f"record says id {record.id!r}"))
        try:
            stored = set(arrays.array_names(store, f"{MODULES}/{name}"))
            if stored != set(record.tensors):
                problems.append(
                    Finding(where, f"tensors {sorted(stored)} != recorded {sorted(record.tensors)}")
                )
                continue
            tensors = arrays.read_arrays(store, {t: f"{MODULES}/{name}/{t}" for t in record.tensors})
        except Exception as error:
            problems.append(Finding(where, f"tensors cannot be read ({first_line(error)})"))
            continue
        if tensors_checksum(tensors) != record.checksum:
            problems.append(Finding(where, "checksum mismatch: tensors differ from those committed"))

    stored_tasks = set(arrays.child_groups(store, TASKS))
    problems += _uncatalogued("task group", stored_tasks, catalogue.tasks)
    for key, attributes in sorted(catalogue.tasks.items()):
        try:
            task = TaskRecord.from_json(attributes)
        except (KeyError, TypeError) as error:
            problems.append(Finding(f"task group {key}", f"unreadable record ({first_line(error)})"))
            continue
        where = f"task {task.name!r}"
        if task_key(task.name) != key:
            problems.append(Finding(where, f"stored under the wrong key {key!r}"))
        for module_id in task.module_ids:
            if module_id not in module_ids:
                problems.append(Finding(where, f"uses missing module {module_id}"))
        try:
            if key not in stored_tasks:
                raise FileNotFoundError(f"no group {TASKS}/{key}")
            task_arrays = state.read_task_arrays(task)
        except Exception as error:
            problems.append(Finding(where, f"task arrays cannot be read ({first_line(error)})"))
            continue
        if task_arrays_checksum(task_arrays) != attributes.get(ARRAYS_CHECKSUM):
            problems.append(Finding(where, "checksum mismatch: task arrays (α/β, head, probe) changed"))

    for name, named in sorted(state.tags.items()):
        why = state.unreadable(named)
        if why is not None:
            problems.append(Finding(f"snapshot {name!r}", f"state unreadable ({why})"))
    return problems + _history_problems(state)


def _uncatalogued(what: str, stored: set[str], catalogued: dict[str, Any]) -> list[Finding]:
    """Groups that hold arrays but have no record in the catalogue (a foreign writer's)."""
    return [
        Finding(f"{what} {name}", "stored but not in the catalogue")
        for name in sorted(stored - set(catalogued))
    ]


def _history_problems(state: StoredState) -> list[Finding]:
    """Where the history and the repository disagree: snapshots it never logged, snapshots it
    logged that are gone, a current state it never logged. A writer killed in the middle of a
    change leaves the first and the last; the next change logs them."""
    why = "a change was interrupted, or made behind the library's back; the next change logs it"
    try:
        history = state.read_history()
    except LibraryDamaged as error:
        return [Finding("history", str(error))]
    logged, tags = set(snapshot_entries(history)), set(state.tags)
    problems = [
        Finding("history", f"snapshot {name!r} was never logged ({why})") for name in sorted(tags - logged)
    ]
    problems += [
        Finding("history", f"it logs snapshot {name!r}, which is gone from the repository")
        for name in sorted(logged - tags)
    ]
    if history and history[0].state != state.newest:
        problems.append(Finding("history", f"the current state was never logged ({why})"))
    return problems
