"""A full disk (a small real tmpfs) during a learn commit, a snapshot or a restore.

The disk fills either before the change (its first write fails) or just before its history entry
(after ``main`` or a tag has already moved). Either way: one line, ``StorageFull``; the library's
state, history and snapshots as before; every file in ``repo/`` exactly as before (what the
failed change wrote is removed); and once space is freed the same change succeeds. Any other
failure underneath a change is one line too (``StorageError``), and is taken back the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import fill, fingerprint

from library_store import Library, StorageError, StorageFull, TaskRecord, rollback

FULL = "no space left on device while {}; nothing was committed — free space and retry"


def learn(library: Library, name: str, sizes: tuple[int, ...] = (4096,)) -> None:
    """Learn task ``name`` with one new module per size (bytes of its weight), written in order."""
    rng = np.random.default_rng(len(name))
    with library.transaction(f"learn {name}", kind="learn") as tx:
        ids = [
            tx.add_module(
                "conv", {"weight": rng.standard_normal(n // 4).astype(np.float32)}, created_by=name
            ).id
            for n in sizes
        ]
        tx.add_task(TaskRecord(name, "classification", name, [ids]))


def observable(library: Library) -> tuple:
    return (
        library.state,
        [task.name for task in library.tasks()],
        [(info.name, info.state, info.message) for info in library.snapshots()],
        library.log(),
    )


@pytest.fixture
def disk(mounts, tmp_path: Path) -> Path:
    return mounts(tmp_path / "disk", "tmpfs", size="4m")


@pytest.fixture
def full_library(disk: Path) -> Library:
    library = Library.create(disk / "library", lock_timeout=5)
    learn(library, "a")
    library.snapshot("first")
    learn(library, "b")
    return library


CHANGES: dict[str, tuple[Callable[[Library], object], str, str]] = {
    # name → (the change, what the error says it was doing, the kind of its history entry)
    # the first module fits (its chunk file is written), the second does not
    "learn": (lambda library: learn(library, "big", (16 << 10, 1 << 20)), "committing 'learn big'", "learn"),
    "snapshot": (lambda library: library.snapshot("second"), "taking snapshot 'second'", "snapshot"),
    "restore": (lambda library: library.restore("first"), "restoring snapshot 'first'", "restore"),
}


@pytest.mark.parametrize("when", ["before", "at-history"])
@pytest.mark.parametrize("change", list(CHANGES))
def test_a_full_disk_takes_the_change_back(
    full_library: Library, disk: Path, monkeypatch: pytest.MonkeyPatch, change: str, when: str
) -> None:
    library, repo = full_library, disk / "library" / "repo"
    act, doing, kind = CHANGES[change]
    before, files = observable(library), fingerprint(repo)
    if when == "before":
        fill(disk, leave=64 << 10 if change == "learn" else 0)
    else:  # main (learn, restore) or the tag (snapshot) has moved: the disk fills just then
        record = Library._record

        def fill_then_record(self: Library, entry_kind: str, *args, **details) -> None:
            if entry_kind == kind:
                fill(disk)
            record(self, entry_kind, *args, **details)

        monkeypatch.setattr(Library, "_record", fill_then_record)

    with pytest.raises(StorageFull) as caught:
        act(library)
    assert str(caught.value) == FULL.format(doing)
    assert observable(library) == before
    assert fingerprint(repo) == files, "every file in repo/ is as it was"
    reopened = Library.open(library.path)
    assert observable(reopened) == before
    assert reopened.check() == []

    monkeypatch.undo()
    (disk / "filler").unlink()
    act(reopened)  # the same change, once there is room (no name was used up)
    assert reopened.log()[0].kind == kind
    assert reopened.check() == []


def test_any_other_failure_underneath_is_one_line_and_taken_back(
    full_library: Library, disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    library, repo = full_library, disk / "library" / "repo"
    before, files = observable(library), fingerprint(repo)

    def fail(*args, **kwargs) -> None:  # the shape of icechunk's reports
        raise RuntimeError(
            "  x object store error\n  | context:\n  |    0: icechunk::x\n  `-> Input/output error"
        )

    monkeypatch.setattr(Library, "_record", fail)  # main has moved by then
    with pytest.raises(StorageError) as caught:
        learn(library, "c")
    assert str(caught.value) == "committing 'learn c' failed (Input/output error); nothing was committed"
    assert not isinstance(caught.value, StorageFull)
    assert observable(library) == before
    assert fingerprint(repo) == files


def test_the_repository_layout_the_take_back_relies_on(library: Library, library_path: Path) -> None:
    """A branch is refs/branch.NAME/ref.json, rewritten in place; a tag is a refs/tag.NAME/ folder."""
    refs = library_path / "repo" / "refs"
    assert sorted(p.name for p in refs.iterdir()) == ["branch.journal", "branch.main"]
    size = (refs / "branch.main" / "ref.json").stat().st_size
    library.snapshot("s")
    assert (refs / "tag.s" / "ref.json").is_file()
    assert (refs / "branch.main" / "ref.json").stat().st_size == size
    library.snapshot("t.2")
    assert rollback.tag_names(library_path / "repo") == sorted(library._repo.list_tags()) == ["s", "t.2"]
