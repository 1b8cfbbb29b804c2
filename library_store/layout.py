"""Names and keys of a library on disk, shared by the library and its integrity check."""

from __future__ import annotations

import hashlib
import re

FORMAT = "lifelong-library"
SCHEMA_VERSION = 2  # 2: the records in one catalogue document (catalogue.py); 1: in each group
READABLE_SCHEMAS = (1, 2)


def readable_schema(version: object) -> bool:
    """Whether this code reads a library of schema ``version`` (an int: ``true`` is not 1)."""
    return type(version) is int and version in READABLE_SCHEMAS


MAIN, JOURNAL = "main", "journal"  # the library state's branch, the history's branch
REPO_DIR, LOCK_FILE = "repo", "writer.lock"
AUTO_SNAPSHOT_PREFIX = "before-restore-"
ARRAYS_CHECKSUM = "arrays_checksum"  # task group attribute: checksum of the task's own arrays


def task_key(name: str) -> str:
    """A zarr-safe group name for a task name such as ``mnist:3v8``: readable and unique."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:60] or "task"
    return f"{slug}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
