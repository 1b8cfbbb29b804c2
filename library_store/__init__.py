"""library_store: the persistent module library (numpy + zarr + icechunk + JSON; no torch).

>>> library = Library.create("library")
>>> with library.transaction("learn mnist:3v8", kind="learn") as tx:
...     conv = tx.add_module("conv", {"weight": w}, created_by="mnist:3v8")
...     tx.add_task(TaskRecord("mnist:3v8", "classification", "mnist:3v8", [[conv.id]]))
>>> library.snapshot("after-first-task")
"""

from library_store.errors import (
    Conflict,
    InvalidRecord,
    InvalidSetting,
    LibraryDamaged,
    LibraryError,
    LibraryLocked,
    NotALibrary,
    NotWritable,
    SchemaTooNew,
    StorageError,
    StorageFull,
    UnknownModule,
    UnknownSnapshot,
    UnknownTask,
    first_line,
)
from library_store.layout import SCHEMA_VERSION, task_key
from library_store.library import Library, Transaction
from library_store.records import (
    NAME_MAX,
    Finding,
    HistoryEntry,
    ModuleRecord,
    SnapshotInfo,
    TaskArrays,
    TaskRecord,
    task_name_problem,
    tensors_checksum,
)

__all__ = [
    "NAME_MAX",
    "SCHEMA_VERSION",
    "Conflict",
    "Finding",
    "HistoryEntry",
    "InvalidRecord",
    "InvalidSetting",
    "Library",
    "LibraryDamaged",
    "LibraryError",
    "LibraryLocked",
    "ModuleRecord",
    "NotALibrary",
    "NotWritable",
    "SchemaTooNew",
    "SnapshotInfo",
    "StorageError",
    "StorageFull",
    "TaskArrays",
    "TaskRecord",
    "Transaction",
    "UnknownModule",
    "UnknownSnapshot",
    "UnknownTask",
    "first_line",
    "task_key",
    "task_name_problem",
    "tensors_checksum",
]
