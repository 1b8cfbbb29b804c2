"""``Library.check()``: re-read every record and tensor, recompute checksums, follow references,
and hold the history against the snapshots and the current state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from library_store import arrays
from library_store.errors import first_line
from library_store.records import ModuleRecord, Problem, TaskRecord, task_arrays_checksum, tensors_checksum

if TYPE_CHECKING:
    from library_store.library import Library


def find_problems(library: Library) -> list[Problem]:
    """Every problem in the library's current state, each with where it is."""
    from library_store.library import ARRAYS_CHECKSUM, FORMAT, SCHEMA_VERSION, task_key

    store = library._store
    problems: list[Problem] = []
    root = arrays.read_attributes(store, "")
    if root.get("format") != FORMAT:
        problems.append(Problem("library", f"unknown format {root.get('format')!r}"))
    if root.get("schema_version") != SCHEMA_VERSION:
        problems.append(
            Problem(
                "library",
                f"schema version {root.get('schema_version')!r}, expected {SCHEMA_VERSION}",
            )
        )

    module_ids: set[str] = set()
    for name, attributes in sorted(arrays.child_groups(store, "modules").items()):
        where = f"module {name}"
        try:
            record = ModuleRecord.from_json(attributes)
        except (KeyError, TypeError) as error:
            problems.append(Problem(where, f"unreadable record ({first_line(error)})"))
            continue
        module_ids.add(name)
        if record.id != name:
            problems.append(Problem(where, f"record says id {record.id!r}"))
        try:
            stored = set(arrays.array_names(store, f"modules/{name}"))
            if stored != set(record.tensors):
                problems.append(
                    Problem(where, f"tensors {sorted(stored)} != recorded {sorted(record.tensors)}")
                )
                continue
            tensors = arrays.read_arrays(store, {t: f"modules/{name}/{t}" for t in record.tensors})
        except Exception as error:
            problems.append(Problem(where, f"tensors cannot be read ({first_line(error)})"))
            continue
        if tensors_checksum(tensors) != record.checksum:
            problems.append(Problem(where, "checksum mismatch: tensors differ from those committed"))

    for key, attributes in sorted(arrays.child_groups(store, "tasks").items()):
        try:
            task = TaskRecord.from_json(attributes)
        except (KeyError, TypeError) as error:
            problems.append(Problem(f"task group {key}", f"unreadable record ({first_line(error)})"))
            continue
        where = f"task {task.name!r}"
        if task_key(task.name) != key:
            problems.append(Problem(where, f"stored under the wrong key {key!r}"))
        for module_id in task.module_ids:
            if module_id not in module_ids:
                problems.append(Problem(where, f"uses missing module {module_id}"))
        try:
            task_arrays = library._read_task_arrays(task)
        except Exception as error:
            problems.append(Problem(where, f"task arrays cannot be read ({first_line(error)})"))
            continue
        if task_arrays_checksum(task_arrays) != attributes.get(ARRAYS_CHECKSUM):
            problems.append(Problem(where, "checksum mismatch: task arrays (α/β, head, probe) changed"))

    for info in library.snapshots():
        try:
            next(library._repo.ancestry(snapshot_id=info.state))
        except Exception as error:
            problems.append(Problem(f"snapshot {info.name!r}", f"state unreadable ({first_line(error)})"))
    return problems + _history_problems(library)


def _history_problems(library: Library) -> list[Problem]:
    """Where the history and the repository disagree: snapshots it never logged, snapshots it
    logged that are gone, a current state it never logged. A writer killed in the middle of a
    change leaves the first and the last; the next change logs them."""
    from library_store.library import MAIN, snapshot_entries

    why = "a change was interrupted, or made behind the library's back; the next change logs it"
    entries = library.log()
    logged, tags = set(snapshot_entries(entries)), library._repo.list_tags()
    problems = [
        Problem("history", f"snapshot {name!r} was never logged ({why})") for name in sorted(tags - logged)
    ]
    problems += [
        Problem("history", f"it logs snapshot {name!r}, which is gone from the repository")
        for name in sorted(logged - tags)
    ]
    if entries and entries[0].state != library._repo.lookup_branch(MAIN):
        problems.append(Problem("history", f"the current state was never logged ({why})"))
    return problems
