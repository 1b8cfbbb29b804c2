"""``Library.check()``: silent on a healthy library, and names each problem planted behind its back;
loading a damaged module or task refuses with one line instead of serving wrong numbers.

Damage is done the way it would happen for real: bytes flipped in a chunk file on disk, or a
foreign writer changing ``main`` through a raw icechunk session and zarr (no lock, no journal),
which check() also names as a change the history never logged.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from library_store import Finding, Library, LibraryDamaged, TaskArrays, TaskRecord

WEIGHT_BYTES = 4096  # > 1 KB: stored as a chunk file, not inlined in a manifest
UNLOGGED = Finding(
    "history",
    "the current state was never logged "
    "(a change was interrupted, or made behind the library's back; the next change logs it)",
)


def chunk_files(library_path: Path) -> set[Path]:
    return set((library_path / "repo" / "chunks").iterdir())


def add_module(library: Library, creator: str, rng: np.random.Generator, task: bool = True) -> str:
    with library.transaction(f"learn {creator}", kind="learn") as tx:
        weight = rng.standard_normal(WEIGHT_BYTES // 4).astype(np.float32)
        module = tx.add_module("conv", {"weight": weight}, created_by=creator)
        if task:
            tx.add_task(
                TaskRecord(creator, "classification", creator, [[module.id]]),
                TaskArrays(uses=[[{"alpha": np.float32(1), "beta": np.float32(0)}]]),
            )
    return module.id


def flip_bytes(file: Path) -> None:
    data = bytearray(file.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    file.write_bytes(bytes(data))


def damage(chunk: Path, how: str) -> None:
    """``flip``: same size, other bytes; ``truncate``: half of it gone; ``delete``: all of it."""
    size = chunk.stat().st_size
    if how == "flip":
        flip_bytes(chunk)
        assert chunk.stat().st_size == size
    elif how == "truncate":
        chunk.write_bytes(chunk.read_bytes()[: size // 2])
    else:
        chunk.unlink()


def assert_one_line_naming(error: LibraryDamaged, *needles: str) -> None:
    message = str(error)
    assert "\n" not in message and "icechunk" not in message and ".rs" not in message, message
    for needle in (*needles, "lifelong check", "lifelong restore"):
        assert needle in message, (needle, message)


def wheres(problems: list[Finding]) -> list[str]:
    return [problem.where for problem in problems]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(99)


def test_check_is_empty_on_a_healthy_library(library: Library, library_path: Path, rng) -> None:
    assert library.check() == []
    first = add_module(library, "one", rng)
    library.snapshot("s1")
    add_module(library, "two", rng)
    with library.transaction("share", kind="learn") as tx:
        tx.add_task(TaskRecord("three", "classification", "three", [[first], []]))
        tx.add_module("dense", {"w": np.zeros((0, 4), np.float32), "s": np.float32(2)}, created_by="x")
    library.restore("s1")
    library.restore("before-restore-1")
    assert library.check() == []
    assert Library.open(library_path).check() == []


@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
def test_corrupt_chunk_is_reported_naming_the_module(library: Library, library_path: Path, rng, how):
    victim = add_module(library, "victim", rng)
    victim_chunks = chunk_files(library_path)
    assert len(victim_chunks) == 1, "the weight is one chunk file"
    bystander = add_module(library, "bystander", rng)
    assert len(chunk_files(library_path)) == 2

    (chunk,) = victim_chunks
    damage(chunk, how)

    problems = Library.open(library_path).check()
    assert wheres(problems) == [f"module {victim}"], problems
    if how == "flip":
        assert "checksum mismatch" in problems[0].what
    assert bystander not in str(problems)
    assert "\n" not in str(problems[0])


@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
def test_loading_a_damaged_module_refuses_in_one_line(library: Library, library_path: Path, rng, how) -> None:
    victim = add_module(library, "victim", rng, task=False)
    (chunk,) = chunk_files(library_path)
    bystander = add_module(library, "bystander", rng, task=False)
    damage(chunk, how)

    reopened = Library.open(library_path)
    with pytest.raises(LibraryDamaged) as caught:
        reopened.module_tensors(victim)
    assert_one_line_naming(caught.value, f"module {victim} is damaged")
    assert reopened.module_tensors(bystander)["weight"].nbytes == WEIGHT_BYTES
    assert wheres(reopened.check()) == [f"module {victim}"], "check() still names it"


@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
def test_loading_a_damaged_task_refuses_in_one_line(library: Library, library_path: Path, rng, how) -> None:
    module_id = add_module(library, "module", rng, task=False)
    modules_chunk = chunk_files(library_path)
    with library.transaction("learn victim", kind="learn") as tx:
        head = {"weight": rng.standard_normal(WEIGHT_BYTES // 4).astype(np.float32)}
        tx.add_task(TaskRecord("victim", "classification", "victim", [[module_id]]), TaskArrays(head=head))
    (chunk,) = chunk_files(library_path) - modules_chunk  # the task's head
    add_module(library, "bystander", rng)
    damage(chunk, how)

    reopened = Library.open(library_path)
    with pytest.raises(LibraryDamaged) as caught:
        reopened.task_arrays("victim")
    assert_one_line_naming(caught.value, "task 'victim' is damaged")
    assert reopened.task_arrays("bystander").uses[0][0]["alpha"] == np.float32(1)
    assert reopened.module_tensors(module_id)["weight"].nbytes == WEIGHT_BYTES  # its module is fine
    assert wheres(reopened.check()) == ["task 'victim'"], "check() still names it"


def test_corruption_in_a_snapshot_only_state_is_not_a_problem_of_the_current_state(
    library: Library, library_path: Path, rng
) -> None:
    """check() looks at the current state: a module only a snapshot holds is not checked, but a
    restore brings it (and its damage) back, and check() then names it."""
    library.snapshot("empty")
    old = add_module(library, "old", rng, task=False)
    library.snapshot("with-old")
    with library.transaction("prune", kind="prune") as tx:
        tx.delete_module(old)
    (chunk,) = chunk_files(library_path)
    flip_bytes(chunk)
    assert library.check() == []
    library.restore("with-old")
    assert wheres(library.check()) == [f"module {old}"]


def test_task_using_a_module_deleted_behind_the_library_is_reported(
    library: Library, library_path: Path, rng, raw_main_session, raw_root_group
) -> None:
    gone = add_module(library, "user", rng)
    kept = add_module(library, "other", rng)
    session = raw_main_session(library_path)
    del raw_root_group(session)[f"modules/{gone}"]
    session.commit("foreign writer deletes a module")

    reopened = Library.open(library_path)
    problems = reopened.check()
    assert problems == [
        Finding(f"module {gone}", "recorded in the catalogue, but its group is not stored"),
        Finding("task 'user'", f"uses missing module {gone}"),
        UNLOGGED,
    ]
    assert kept not in str(problems)
    assert reopened.users(kept) == ["other"]
    with pytest.raises(LibraryDamaged, match=gone):
        reopened.module_tensors(gone)


def test_a_group_the_catalogue_does_not_record_is_reported(
    library: Library, library_path: Path, rng, raw_main_session, raw_root_group
) -> None:
    add_module(library, "user", rng)
    session = raw_main_session(library_path)
    raw_root_group(session).create_group("modules/conv-foreign").create_array(
        "weight", shape=(3,), dtype="float32"
    )
    session.commit("foreign writer adds a module group without a record")
    reopened = Library.open(library_path)
    assert "conv-foreign" not in {record.id for record in reopened.modules()}
    assert reopened.check() == [Finding("module conv-foreign", "stored but not in the catalogue"), UNLOGGED]


def test_module_whose_arrays_differ_from_its_record_is_reported(
    library: Library, library_path: Path, rng, raw_main_session, raw_root_group
) -> None:
    module_id = add_module(library, "user", rng)
    session = raw_main_session(library_path)
    group = raw_root_group(session)[f"modules/{module_id}"]
    del group["weight"]
    group.create_array("extra", shape=(3,), dtype="float32")
    session.commit("foreign writer swaps a tensor")
    problems = Library.open(library_path).check()
    assert problems[1:] == [UNLOGGED]
    assert wheres(problems) == [f"module {module_id}", "history"]
    assert "extra" in problems[0].what and "weight" in problems[0].what


def test_unreadable_module_record_is_reported(
    library: Library, library_path: Path, rng, raw_main_session, raw_root_group
) -> None:
    module_id = add_module(library, "user", rng, task=False)
    session = raw_main_session(library_path)
    modules = raw_root_group(session)["modules"]
    modules.attrs["records"] = {module_id: {"id": module_id}}  # the rest of the record wiped
    session.commit("foreign writer wipes a record")
    problems = Library.open(library_path).check()
    assert problems[1:] == [UNLOGGED]
    assert "unreadable record" in problems[0].what and problems[0].where == f"module {module_id}"


def test_task_arrays_that_cannot_be_read_are_reported(
    library: Library, library_path: Path, rng, raw_main_session, raw_root_group
) -> None:
    add_module(library, "user", rng)
    task_group = next(name for name, _ in raw_root_group(raw_main_session(library_path))["tasks"].groups())
    session = raw_main_session(library_path)
    del raw_root_group(session)[f"tasks/{task_group}/uses"]
    session.commit("foreign writer deletes a task's per-module arrays")
    problems = Library.open(library_path).check()
    assert problems[1:] == [UNLOGGED]
    assert "task arrays cannot be read" in problems[0].what and problems[0].where == "task 'user'"


def test_wrong_schema_version_is_reported_when_opened_with_any_schema(
    library: Library, library_path: Path, rng, raw_main_session, raw_root_group
) -> None:
    add_module(library, "user", rng)
    session = raw_main_session(library_path)
    raw_root_group(session).attrs["schema_version"] = 99
    session.commit("a newer writer")
    checked = Library.open(library_path, any_schema=True)
    assert checked.check() == [Finding("library", "schema version 99, expected 2"), UNLOGGED]


def test_snapshot_whose_state_is_gone_is_reported(library: Library, library_path: Path, rng) -> None:
    add_module(library, "one", rng)
    old_state = library.snapshot("old").state
    add_module(library, "two", rng)
    (library_path / "repo" / "snapshots" / old_state).unlink()
    reopened = Library.open(library_path)
    problems = reopened.check()
    assert wheres(problems) == ["snapshot 'old'"]
    assert "state unreadable" in problems[0].what


def test_snapshots_deleted_from_disk_are_reported(library: Library, library_path: Path, rng) -> None:
    add_module(library, "one", rng)
    library.snapshot("kept")
    library.snapshot("lost")
    backup = library.restore("kept")
    for name in ("lost", backup):
        shutil.rmtree(library_path / "repo" / "refs" / f"tag.{name}")
    reopened = Library.open(library_path)
    assert [info.name for info in reopened.snapshots()] == ["kept"]
    gone = [
        Finding("history", f"it logs snapshot {name!r}, which is gone from the repository")
        for name in sorted([backup, "lost"])
    ]
    assert reopened.check() == gone
    add_module(reopened, "two", rng)  # a writer cannot bring them back: check() keeps naming them
    assert reopened.check() == gone


def test_check_reads_the_raw_group_layout_it_expects(library: Library, library_path: Path, rng) -> None:
    """Guards the layout the damage tests above rely on (one group per module, under modules/)."""
    module_id = add_module(library, "user", rng)
    repo_store = Library.open(library_path)._store
    root = zarr.open_group(repo_store, mode="r")
    assert [name for name, _ in root["modules"].groups()] == [module_id]
    assert root["modules"][module_id]["weight"].nbytes == WEIGHT_BYTES


def test_changed_task_arrays_are_reported(
    library: Library, library_path: Path, rng, raw_main_session, raw_root_group
) -> None:
    add_module(library, "user", rng)
    task_group = next(name for name, _ in raw_root_group(raw_main_session(library_path))["tasks"].groups())
    session = raw_main_session(library_path)
    raw_root_group(session)[f"tasks/{task_group}/uses/0/0/alpha"][...] = np.float32(2)  # was 1
    session.commit("foreign writer changes a task's alpha")
    problems = Library.open(library_path).check()
    assert problems[1:] == [UNLOGGED]
    assert "checksum mismatch" in problems[0].what and problems[0].where == "task 'user'"
