"""One atomic change to the library: what a writer adds, deletes and replaces inside
:meth:`Library.transaction <library_store.library.Library.transaction>`, and how a failure of the
storage underneath it is said in one line."""

from __future__ import annotations

import errno
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from library_store import arrays
from library_store.catalogue import MODULES, TASKS, Catalogue, upgrade_nodes
from library_store.errors import (
    Conflict,
    InvalidRecord,
    LibraryError,
    StorageError,
    StorageFull,
    UnknownModule,
    UnknownTask,
    first_line,
)
from library_store.layout import ARRAYS_CHECKSUM, SCHEMA_VERSION, task_key
from library_store.records import (
    ModuleRecord,
    TaskArrays,
    TaskRecord,
    Tensors,
    task_arrays_checksum,
    task_name_problem,
    tensors_checksum,
    validate_tensors,
)

if TYPE_CHECKING:
    from library_store.library import Library

_MODULE_KIND = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class Transaction:
    """The changes of one atomic commit. Obtained from :meth:`Library.transaction`. ``message``
    (the transaction's, to begin with) is what the commit and its history entry will say; a
    change that learns what it did only in the block (a prune) sets it there."""

    message: str

    def __init__(self, library: Library, store: Any, what: str) -> None:
        self._library = library
        self._store = store
        self._what = what  # "committing '<message>'", to say a storage failure in one line
        self._modules = {record.id: record for record in library.modules()}
        self._tasks = {record.name: record for record in library.tasks()}
        before = library.catalogue()
        self._catalogue = Catalogue(before.root, dict(before.modules), dict(before.tasks))
        self._upgrade = before.schema != SCHEMA_VERSION  # a schema-1 library: its records move
        self._changed = False

    def add_module(
        self,
        kind: str,
        tensors: Tensors,
        *,
        created_by: str,
        config: Mapping[str, Any] | None = None,
        signature: Mapping[str, Any] | None = None,
        frozen: bool = True,
    ) -> ModuleRecord:
        """Store a new module; its id is derived from its content, so it is reproducible."""
        if not _MODULE_KIND.match(kind or ""):
            raise InvalidRecord(f"bad module kind {kind!r}: lowercase letters, digits, '_'")
        clean = validate_tensors(tensors, f"module of kind {kind!r}")
        checksum = tensors_checksum(clean)
        config, signature = _plain(config or {}, "config"), _plain(signature or {}, "signature")
        identity = json.dumps([kind, config, created_by, checksum], sort_keys=True)
        record = ModuleRecord(
            id=f"{kind}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}",
            kind=kind,
            config=config,
            signature=signature,
            frozen=bool(frozen),
            created_by=created_by,
            checksum=checksum,
            tensors={n: {"shape": list(a.shape), "dtype": a.dtype.name} for n, a in clean.items()},
        )
        if record.id in self._modules:
            if created_by in self._tasks:  # that task learned again (another writer took its name)
                raise _task_exists(created_by)
            raise Conflict(f"module {record.id} already exists (same content and creator)")
        self._write([arrays.Node(f"{MODULES}/{record.id}", {}, clean)])
        self._modules[record.id] = record
        self._catalogue.modules[record.id] = record.to_json()
        return record

    def delete_module(self, module_id: str) -> None:
        """Remove a module that no task uses."""
        if module_id not in self._modules:
            raise UnknownModule(f"no module {module_id!r} in the library")
        users = [name for name, task in self._tasks.items() if module_id in task.module_ids]
        if users:
            raise Conflict(f"module {module_id} is used by tasks {', '.join(sorted(users))}")
        with storage_errors(self._what):
            arrays.delete_node(self._store, f"{MODULES}/{module_id}")
        del self._modules[module_id]
        del self._catalogue.modules[module_id]
        self._changed = True

    def add_task(self, record: TaskRecord, task_arrays: TaskArrays | None = None) -> None:
        """Store a learned task: its record and its own arrays (α/β per module, head, probe)."""
        problem = task_name_problem(record.name)
        if problem:
            raise InvalidRecord(problem)
        if record.name in self._tasks:
            raise _task_exists(record.name)
        self._write_task(*self._checked(record, task_arrays))

    def replace_task(self, record: TaskRecord, task_arrays: TaskArrays) -> None:
        """Store ``record`` and its arrays in place of the stored task of the same name (a prune
        re-points a task to other modules and re-fits its own parameters). Checked first: a
        refused replacement leaves the task as it was."""
        if record.name not in self._tasks:
            raise UnknownTask(f"no task {record.name!r} in the library")
        record, task_arrays = self._checked(record, task_arrays)
        with storage_errors(self._what):
            arrays.delete_node(self._store, f"{TASKS}/{task_key(record.name)}")
        self._write_task(record, task_arrays)

    def _checked(self, record: TaskRecord, task_arrays: TaskArrays | None) -> tuple[TaskRecord, TaskArrays]:
        record = record.validate()
        task_arrays = (task_arrays or TaskArrays()).validate(record)
        missing = sorted({m for m in record.module_ids if m not in self._modules})
        if missing:
            raise UnknownModule(f"task {record.name!r} uses unknown modules {', '.join(missing)}")
        return record, task_arrays

    def _write_task(self, record: TaskRecord, task_arrays: TaskArrays) -> None:
        key = task_key(record.name)
        base = f"{TASKS}/{key}"
        nodes = [
            arrays.Node(base),
            arrays.Node(f"{base}/head", {}, task_arrays.head),
            arrays.Node(f"{base}/probe", {}, task_arrays.probe),
            arrays.Node(f"{base}/uses"),
        ]
        for layer, ids in enumerate(record.layers):
            nodes.append(arrays.Node(f"{base}/uses/{layer}"))
            uses = task_arrays.uses[layer] if task_arrays.uses else [{} for _ in ids]
            nodes += [arrays.Node(f"{base}/uses/{layer}/{i}", {}, use) for i, use in enumerate(uses)]
        self._write(nodes)
        self._tasks[record.name] = record
        self._catalogue.tasks[key] = {**record.to_json(), ARRAYS_CHECKSUM: task_arrays_checksum(task_arrays)}

    def module(self, module_id: str) -> ModuleRecord:
        """A module as this transaction sees it (including ones it added)."""
        if module_id not in self._modules:
            raise UnknownModule(f"no module {module_id!r} in the library")
        return self._modules[module_id]

    def write_catalogue(self) -> None:
        """Write the records of this transaction's changes (the library calls this once, before
        its commit); a schema-1 library's records move into the catalogue here."""
        if self._changed:
            upgrade = upgrade_nodes(self._catalogue) if self._upgrade else []
            with storage_errors(self._what):
                arrays.write_nodes(self._store, upgrade + self._catalogue.nodes())

    def _write(self, nodes: list[arrays.Node]) -> None:
        self._changed = True
        with storage_errors(self._what):
            arrays.write_nodes(self._store, nodes)


@contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Say in one line how the storage underneath a change failed (library errors pass as they are)."""
    try:
        yield
    except LibraryError:
        raise
    except Exception as error:
        if _disk_full(error):
            raise StorageFull(
                f"no space left on device while {what}; nothing was committed — free space and retry"
            ) from None
        raise StorageError(f"{what} failed ({first_line(error)}); nothing was committed") from None


def _disk_full(error: Exception) -> bool:
    """ENOSPC, raised by Python or reported in icechunk's text."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    text = str(error)
    return "No space left on device" in text or f"(os error {errno.ENOSPC})" in text


def _plain(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError) as error:
        raise InvalidRecord(f"module {what} is not plain JSON: {error}") from None


def _task_exists(name: str) -> Conflict:
    return Conflict(f"task {name!r} already exists; choose another --name")
