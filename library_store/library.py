"""The persistent module library: an icechunk repository of zarr groups, plus a writer lock.

On disk, a library folder holds::

    repo/          icechunk repository: transactional commits, branches and tags
    writer.lock    held by the one process that may change the library

Branch ``main`` is the library state::

    /                      attributes: format, schema_version
    /modules/              attributes: records (the catalogue: every ModuleRecord by id)
    /modules/<id>/         arrays: the module's tensors
    /tasks/                attributes: records (every TaskRecord and its arrays' checksum, by key)
    /tasks/<key>/          groups: head/, probe/, uses/<layer>/<i>/

Branch ``journal`` is the history: one small commit per change (learn, prune, snapshot,
restore, ...) whose metadata names the ``main`` state it produced. A snapshot is an icechunk
tag of a ``main`` state, so snapshot and restore move pointers and never copy tensors.

Readers see the state that was committed when they opened (or last refreshed); a writer takes
the lock, works on a private icechunk session and commits it in one atomic step, so a crash at
any instant leaves the last committed state. A change that fails half-way (a full disk, Ctrl-C)
is taken back file by file (``rollback``); one killed half-way may leave its commit or its tag
without a history entry, which the next writer adds (``_repair_history``). Reading a module's or
a task's arrays verifies them against the checksum committed with them.
"""

from __future__ import annotations

import atexit
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import icechunk
import numpy as np
from filelock import FileLock, Timeout

from library_store import arrays, rollback
from library_store.catalogue import Catalogue, read_catalogue
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
    UnknownModule,
    UnknownSnapshot,
    UnknownTask,
    first_line,
)
from library_store.integrity import StoredState, find_problems
from library_store.layout import (
    ARRAYS_CHECKSUM,
    AUTO_SNAPSHOT_PREFIX,
    FORMAT,
    JOURNAL,
    LOCK_FILE,
    MAIN,
    REPO_DIR,
    SCHEMA_VERSION,
    readable_schema,
    task_key,
)
from library_store.records import (
    Finding,
    HistoryEntry,
    ModuleRecord,
    SnapshotInfo,
    TaskArrays,
    TaskRecord,
    snapshot_entries,
    task_arrays_checksum,
    tensors_checksum,
)
from library_store.transaction import Transaction, storage_errors

DEFAULT_LOCK_TIMEOUT_S = 30.0
LOCK_TIMEOUT_ENV = "LIFELONG_LOCK_TIMEOUT"
_FIX_DAMAGE = "run `lifelong check`, then `lifelong restore <snapshot>`"
_DIFFER = "its {} are missing or differ from those committed"
_INTERRUPTED = "logged after an interruption"
_SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

# icechunk warns that its local storage is unsafe for concurrent commits; our writer lock
# serialises every commit, so the warning would only alarm users.
icechunk.set_logs_filter("error")


def _let_io_threads_finish() -> None:
    """Release the GIL for a moment before the interpreter finalizes.

    icechunk's I/O threads hand each result to zarr's event loop (``call_soon_threadsafe``) and
    then take the GIL once more. If the main thread has started finalizing by then, CPython 3.11
    ends that thread with ``pthread_exit``, which unwinds through Rust frames and aborts the whole
    process (SIGABRT, exit status 134) after its work succeeded: 7 runs in 60 of a script that
    writes, checks and reopens a library; none in 60 with this pause. Registered after zarr's
    own exit handler, so it runs first, while the event loop is still alive.
    """
    time.sleep(0.05)


atexit.register(_let_io_threads_finish)


class Library:
    """A module library on disk. Create with :meth:`create`, open with :meth:`open`.

    All read methods see one committed state (``self.state``); :meth:`refresh` moves to the
    newest one. Changes go through :meth:`transaction`, :meth:`snapshot` and :meth:`restore`.
    """

    def __init__(self, path: Path, repo: icechunk.Repository, lock_timeout: float) -> None:
        self.path = path
        self.lock_timeout = lock_timeout
        self._repo = repo
        self.refresh()

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(cls, path: str | os.PathLike[str], *, lock_timeout: float | None = None) -> Library:
        """Make a new, empty library at ``path`` (which must not exist or be an empty folder)."""
        lock_timeout = _lock_timeout(lock_timeout)
        path = Path(path)
        if (path / REPO_DIR).exists():
            raise Conflict(f"a library already exists at {path}")
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise Conflict(f"{path} exists and is not an empty folder; choose another path")
        path.mkdir(parents=True, exist_ok=True)
        (path / LOCK_FILE).touch()
        repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(path / REPO_DIR)))
        origin = repo.lookup_branch(MAIN)
        session = repo.writable_session(MAIN)
        arrays.write_nodes(
            session.store,
            [
                arrays.Node("", {"format": FORMAT, "schema_version": SCHEMA_VERSION}),
                arrays.Node("modules"),
                arrays.Node("tasks"),
            ],
        )
        state = session.commit("library created", metadata={"kind": "init"})
        repo.create_branch(JOURNAL, origin)
        library = cls(path, repo, lock_timeout)
        library._record("init", "library created", state)
        return library

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        lock_timeout: float | None = None,
        any_schema: bool = False,
    ) -> Library:
        """Open an existing library. ``any_schema`` lets ``check()`` look at a mismatched one.

        ``lock_timeout``: seconds a writer waits for another one (default: LIFELONG_LOCK_TIMEOUT,
        else 30); 0 gives up at once.
        """
        lock_timeout = _lock_timeout(lock_timeout)
        path = Path(path)
        if not path.exists():
            raise NotALibrary(f"no library at {path} (create one with `lifelong init`)")
        if not (path / REPO_DIR).is_dir():
            raise NotALibrary(f"{path} is not a lifelong library (no {REPO_DIR}/ folder)")
        try:
            repo = icechunk.Repository.open(icechunk.local_filesystem_storage(str(path / REPO_DIR)))
            library = cls(path, repo, lock_timeout)
            root = library.catalogue().root
            repo.lookup_branch(JOURNAL)  # the history is part of the library, not optional
        except LibraryError:
            raise
        except Exception as error:
            raise LibraryDamaged(f"library at {path} cannot be read: {first_line(error)}") from None
        if root.get("format") != FORMAT:
            raise NotALibrary(f"{path} is not a lifelong library (unknown format)")
        version = root.get("schema_version")
        if not any_schema and not readable_schema(version):
            if isinstance(version, int) and version > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"library at {path} has schema {version}; this lifelong reads up to "
                    f"{SCHEMA_VERSION}: upgrade lifelong"
                )
            raise LibraryDamaged(f"library at {path} has unsupported schema {version!r}")
        return library

    def refresh(self) -> None:
        """Move this reader to the newest committed state (O(1): the session opens lazily)."""
        self._state = self._repo.lookup_branch(MAIN)
        self._session: icechunk.Session | None = None
        self._catalogue: Catalogue | None = None

    @property
    def state(self) -> str:
        """Id of the committed state this object reads."""
        return self._state

    @property
    def _store(self) -> Any:
        if self._session is None:
            self._session = self._repo.readonly_session(snapshot_id=self._state)
        return self._session.store

    # ------------------------------------------------------------------ reading
    def catalogue(self) -> Catalogue:
        """The state's root attributes and records, read once per state (a state never changes)."""
        if self._catalogue is None:
            self._catalogue = read_catalogue(self._store)
        return self._catalogue

    @property
    def schema_version(self) -> int:
        return self.catalogue().schema

    def modules(self) -> list[ModuleRecord]:
        return [ModuleRecord.from_json(attrs) for _, attrs in sorted(self.catalogue().modules.items())]

    def module(self, module_id: str) -> ModuleRecord:
        try:
            return ModuleRecord.from_json(self.catalogue().modules[module_id])
        except KeyError:
            raise UnknownModule(f"no module {module_id!r} in the library") from None

    def module_tensors(self, module_id: str) -> dict[str, np.ndarray]:
        """The module's tensors, verified against the checksum committed with them."""
        record = self.module(module_id)
        paths = {name: f"modules/{module_id}/{name}" for name in record.tensors}
        try:
            tensors = arrays.read_arrays(self._store, paths)
            intact = tensors_checksum(tensors) == record.checksum
        except Exception:  # a missing or truncated chunk file: icechunk's long report
            intact = False
        if not intact:
            raise LibraryDamaged(
                f"module {module_id} is damaged ({_DIFFER.format('tensors')}); {_FIX_DAMAGE}"
            )
        return tensors

    def tasks(self) -> list[TaskRecord]:
        records = [TaskRecord.from_json(attrs) for attrs in self.catalogue().tasks.values()]
        return sorted(records, key=lambda record: record.name)

    def task(self, name: str) -> TaskRecord:
        return TaskRecord.from_json(self._task_attributes(name))

    def _task_attributes(self, name: str) -> dict[str, Any]:
        try:
            return self.catalogue().tasks[task_key(name)]
        except KeyError:
            known = ", ".join(record.name for record in self.tasks()) or "none"
            raise UnknownTask(f"no task {name!r} in the library (tasks: {known})") from None

    def task_arrays(self, name: str) -> TaskArrays:
        """The task's own arrays, verified against the checksum committed with them."""
        attributes = self._task_attributes(name)
        try:
            task_arrays = self._read_task_arrays(TaskRecord.from_json(attributes))
            intact = task_arrays_checksum(task_arrays) == attributes.get(ARRAYS_CHECKSUM)
        except Exception:  # a missing or truncated chunk file, a missing group
            intact = False
        if not intact:
            what = _DIFFER.format("α/β, head and probe arrays")
            raise LibraryDamaged(f"task {name!r} is damaged ({what}); {_FIX_DAMAGE}")
        return task_arrays

    def _read_task_arrays(self, record: TaskRecord) -> TaskArrays:
        """The task's own arrays as stored, unverified (for ``check()``)."""
        base = f"tasks/{task_key(record.name)}"

        def group(path: str) -> dict[str, np.ndarray]:
            names = arrays.array_names(self._store, path)
            return arrays.read_arrays(self._store, {n: f"{path}/{n}" for n in names})

        uses = [
            [group(f"{base}/uses/{layer}/{i}") for i in range(len(ids))]
            for layer, ids in enumerate(record.layers)
        ]
        return TaskArrays(uses=uses, head=group(f"{base}/head"), probe=group(f"{base}/probe"))

    def users(self, module_id: str) -> list[str]:
        """Names of the tasks whose assembly uses ``module_id``."""
        return [record.name for record in self.tasks() if module_id in record.module_ids]

    def size_on_disk(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())

    # ------------------------------------------------------------------ history
    def log(self) -> list[HistoryEntry]:
        """Every change to the library, newest first."""
        entries = []
        try:
            for commit in self._repo.ancestry(branch=JOURNAL):
                meta = commit.metadata or {}
                if "kind" not in meta:  # the repository's own first, empty commit
                    continue
                entries.append(
                    HistoryEntry(
                        id=commit.id,
                        time=_time(commit.written_at),
                        kind=meta["kind"],
                        message=commit.message,
                        state=meta["state"],
                        details=meta.get("details", {}),
                    )
                )
        except Exception as error:  # a damaged journal object: icechunk's report, or a lost field
            raise LibraryDamaged(
                f"the library's history is damaged ({first_line(error)}); {_FIX_DAMAGE}"
            ) from None
        return entries

    def tags(self) -> dict[str, str]:
        """Every snapshot's name and the state it names."""
        return {name: self._repo.lookup_tag(name) for name in self._repo.list_tags()}

    def snapshots(self) -> list[SnapshotInfo]:
        taken = snapshot_entries(self.log())
        infos = []
        for name, state in self.tags().items():
            entry = taken.get(name)
            infos.append(
                SnapshotInfo(
                    name=name,
                    state=state,
                    time=entry.time if entry else "",
                    message=entry.message if entry else "",
                    automatic=name.startswith(AUTO_SNAPSHOT_PREFIX),
                )
            )
        return sorted(infos, key=lambda info: (info.time, info.name))

    def snapshot(self, name: str) -> SnapshotInfo:
        """Name the current state so that :meth:`restore` can return to it (a tag: no copying)."""
        if not _SNAPSHOT_NAME.match(name or ""):
            raise InvalidRecord(f"bad snapshot name {name!r}: use letters, digits, '.', '_' or '-' (max 100)")
        if name.startswith(AUTO_SNAPSHOT_PREFIX):
            raise InvalidRecord(
                f"snapshot names starting with '{AUTO_SNAPSHOT_PREFIX}' are reserved for the automatic "
                f"snapshots taken before a restore; choose another name than '{name}'"
            )
        what = f"taking snapshot '{name}'"
        with self._change(what, rollback.COMMIT_FOLDERS), storage_errors(what):
            if name in self._repo.list_tags():
                raise Conflict(f"snapshot {name!r} already exists")
            self._repo.create_tag(name, snapshot_id=self.state)
            message = f"snapshot '{name}' created"
            written = self._record("snapshot", message, self.state, snapshot=name)
        return SnapshotInfo(name=name, state=self.state, time=written, message=message, automatic=False)

    def restore(self, name: str) -> str:
        """Return the library to snapshot ``name``; the state before is kept as a new snapshot,
        whose name is returned, so the restore can itself be undone. Moves pointers: no copying."""
        what = f"restoring snapshot '{name}'"
        with self._change(what, rollback.COMMIT_FOLDERS), storage_errors(what):
            tags = self._repo.list_tags()
            if name not in tags:
                known = ", ".join(sorted(tags)) or "none"
                raise UnknownSnapshot(f"no snapshot {name!r} (snapshots: {known})")
            target, current = self._repo.lookup_tag(name), self.state
            backup = _next_auto_name(tags)
            self._repo.create_tag(backup, snapshot_id=current)
            self._repo.reset_branch(MAIN, target, from_snapshot_id=current)
            self.refresh()
            self._record(
                "restore",
                f"restored snapshot '{name}'; the state before is snapshot '{backup}'",
                target,
                snapshot=name,
                backup=backup,
            )
        return backup

    # ------------------------------------------------------------------ writing
    @contextmanager
    def transaction(self, message: str, kind: str = "change") -> Iterator[Transaction]:
        """Change the library atomically: all of the block's changes are committed, or none.

        The writer lock is held for the whole block; an exception (or a kill) commits nothing.
        A failure underneath (a full disk: ``StorageFull``; else ``StorageError``) is one line,
        and what the block had written is taken back.
        """
        what = f"committing '{message}'"
        with self._change(what, rollback.OBJECT_FOLDERS):
            with storage_errors(what):
                session = self._repo.writable_session(MAIN)
                tx = Transaction(self, session.store, what)
                tx.message = message
            yield tx
            tx.write_catalogue()
            if session.has_uncommitted_changes:
                with storage_errors(what):
                    state = session.commit(tx.message, metadata={"kind": kind})
                    self.refresh()
                    self._record(kind, tx.message, state)

    def check_writable(self) -> None:
        """Fail now, before any work, where a change would fail at its commit: a folder of the
        library that cannot be written (``NotWritable``), or another writer holding the lock past
        ``lock_timeout`` (``LibraryLocked``). Changes nothing: each probe is undone at once."""
        repo = self.path / REPO_DIR
        try:
            for folder in [self.path, repo, *sorted(p for p in repo.iterdir() if p.is_dir())]:
                with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-probe-"):
                    pass
        except OSError as error:
            raise self._not_writable(error) from None
        with self._writer_lock():
            pass

    def _not_writable(self, error: OSError) -> NotWritable:
        return NotWritable(f"library at {self.path} is not writable ({error.strerror or first_line(error)})")

    @contextmanager
    def _writer_lock(self) -> Iterator[None]:
        lock = FileLock(self.path / LOCK_FILE, timeout=self.lock_timeout)
        try:
            lock.acquire()
        except Timeout:
            raise LibraryLocked(
                f"library at {self.path} is locked by another writer; gave up after "
                f"{self.lock_timeout:g} s ({LOCK_TIMEOUT_ENV} sets the wait)"
            ) from None
        except OSError as error:  # the lock file cannot be opened for writing
            raise self._not_writable(error) from None
        try:
            yield
        finally:
            lock.release()

    @contextmanager
    def _change(self, what: str, folders: tuple[str, ...]) -> Iterator[None]:
        """One change under the writer lock, on the newest state. First the history is repaired if
        a killed writer left it behind; if the change then fails (an exception, Ctrl-C), all that
        was written since the lock was taken is taken back, so the library is as it was."""
        repo = self.path / REPO_DIR
        with self._writer_lock():
            with storage_errors(what):
                self.refresh()
                before = rollback.mark(repo, folders)
            try:
                with storage_errors(what):
                    self._repair_history()
                yield
            except BaseException:
                try:
                    rollback.take_back(repo, before)
                except OSError as error:
                    why = first_line(error)
                    raise LibraryDamaged(
                        f"{what} failed and could not be taken back ({why}); {_FIX_DAMAGE}"
                    ) from None
                finally:
                    self.refresh()
                raise

    def _record(self, kind: str, message: str, state: str, **details: str) -> str:
        """Append one entry to the journal branch (a tiny tree, so this costs O(1)); return the
        time it was written. Each entry also notes the tags that exist after its change, so the
        next writer sees at a glance whether anything happened that the history does not tell."""
        tags = rollback.tag_names(self.path / REPO_DIR)
        metadata = {"kind": kind, "state": state, "details": details, "tags": tags}
        session = self._repo.writable_session(JOURNAL)
        arrays.write_nodes(session.store, [arrays.Node("", {"last": metadata})])
        entry = self._repo.lookup_snapshot(session.commit(message, metadata=metadata))
        return _time(entry.written_at)

    def _repair_history(self) -> None:
        """Make the history tell what a writer killed in the middle of a change did.

        A snapshot killed before its entry left a tag the history does not know. So did a restore
        killed after tagging the state before it (``before-restore-N``, at the last logged state):
        killed before moving ``main``, that tag is all it did, and it is kept and explained
        (deleting a tag would forbid its name for ever); killed after, ``main`` is at the state of
        the restored snapshot (if several snapshots share that state, a user's is named first). A
        commit killed before its entry left ``main`` at a state the history does not know. Each
        gets an entry of its own kind, saying it was logged after an interruption.
        """
        newest = next(self._repo.ancestry(branch=JOURNAL), None)
        told = (newest.metadata or {}) if newest else {}
        if told.get("state") == self.state and told.get("tags") == rollback.tag_names(self.path / REPO_DIR):
            return  # the usual case, read from the newest entry alone
        entries = self.log()
        last = entries[0].state if entries else self.state  # main's state as the history tells it
        names = self._repo.list_tags()
        unlogged = sorted(names - set(snapshot_entries(entries)))
        tags = {name: self._repo.lookup_tag(name) for name in names} if unlogged else {}
        at_main = sorted((name for name, state in tags.items() if state == self.state), key=_automatic_last)
        restore = None
        for name in unlogged:
            automatic = name.startswith(AUTO_SNAPSHOT_PREFIX)
            target = next((other for other in at_main if other != name), None)
            if restore is None and automatic and tags[name] == last != self.state and target:
                restore = (target, name)
                continue
            message = f"snapshot '{name}' created"
            if automatic and tags[name] == self.state:
                message = (
                    f"snapshot '{name}' taken by a restore that was interrupted before changing anything"
                )
            self._record("snapshot", f"{message} ({_INTERRUPTED})", last, snapshot=name)
        if restore is not None:
            target, backup = restore
            message = f"restored snapshot '{target}'; the state before is snapshot '{backup}'"
            self._record("restore", f"{message} ({_INTERRUPTED})", self.state, snapshot=target, backup=backup)
            last = self.state
        if last != self.state:
            commit = next(self._repo.ancestry(branch=MAIN))
            self._record("recovered", f"{commit.message} (committed; {_INTERRUPTED})", self.state)

    # ------------------------------------------------------------------ integrity
    def check(self) -> list[Finding]:
        """Re-read everything, recompute checksums, verify references; name every problem."""
        return find_problems(
            StoredState(
                store=self._store,
                read_task_arrays=self._read_task_arrays,
                read_history=self.log,
                tags=self.tags(),
                newest=self._repo.lookup_branch(MAIN),
                unreadable=self._unreadable,
            )
        )

    def _unreadable(self, state: str) -> str | None:
        try:
            next(self._repo.ancestry(snapshot_id=state))
        except Exception as error:
            return first_line(error)
        return None


def _time(written_at: datetime) -> str:
    return written_at.astimezone(UTC).isoformat(timespec="seconds")


def _lock_timeout(value: float | None) -> float:
    """The writer's wait in seconds: ``value`` if given, else LIFELONG_LOCK_TIMEOUT (unset or
    empty: the default). Anything but a finite number ≥ 0 is refused, naming where it came from."""
    if value is not None:
        return _seconds(value, "--lock-timeout", str(value))
    text = os.environ.get(LOCK_TIMEOUT_ENV, "").strip()
    return _seconds(text, LOCK_TIMEOUT_ENV, repr(text)) if text else DEFAULT_LOCK_TIMEOUT_S


def _seconds(value: float | str, source: str, shown: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not 0 <= seconds < math.inf:  # also refuses nan, which compares false
        raise InvalidSetting(f"{source} must be a number of seconds ≥ 0, got {shown}")
    return seconds


def _automatic_last(name: str) -> tuple[bool, str]:
    return name.startswith(AUTO_SNAPSHOT_PREFIX), name


def _next_auto_name(tags: set[str]) -> str:
    used = [
        int(t[len(AUTO_SNAPSHOT_PREFIX) :])
        for t in tags
        if t.startswith(AUTO_SNAPSHOT_PREFIX) and t[len(AUTO_SNAPSHOT_PREFIX) :].isdigit()
    ]
    return f"{AUTO_SNAPSHOT_PREFIX}{max(used, default=0) + 1}"
