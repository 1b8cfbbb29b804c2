"""library_store basics: create/open, modules and tasks, exact round trips, errors, transactions,
snapshots, restore and its undo, history, and refusing to open what is not a healthy library."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from library_store import (
    NAME_MAX,
    SCHEMA_VERSION,
    Conflict,
    InvalidRecord,
    Library,
    LibraryDamaged,
    LibraryError,
    NotALibrary,
    SchemaTooNew,
    TaskArrays,
    TaskRecord,
    UnknownModule,
    UnknownSnapshot,
    UnknownTask,
    tensors_checksum,
)


def record(name: str, layers: list[list[str]]) -> TaskRecord:
    return TaskRecord(name=name, family="classification", spec=name, layers=layers)


def own_arrays(layers: list[list[str]], alpha: float, beta: float = 0.25) -> TaskArrays:
    """α/β as 0-d float32 per (task, module), plus a small head."""
    return TaskArrays(
        uses=[[{"alpha": np.float32(alpha), "beta": np.float32(beta)} for _ in layer] for layer in layers],
        head={"weight": np.full((2, 3), alpha, dtype=np.float32)},
    )


def learn(library: Library, name: str, modules: dict[str, dict[str, np.ndarray]], alpha: float = 1.0):
    """One 'learn' transaction: add ``modules`` (kind → tensors) in one layer and a task using them."""
    with library.transaction(f"learn {name}", kind="learn") as tx:
        ids = [tx.add_module(kind, tensors, created_by=name).id for kind, tensors in modules.items()]
        tx.add_task(record(name, [ids]), own_arrays([ids], alpha))
    return ids


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal shape, dtype (up to byte order) and identical bytes in little-endian order."""
    a, b = np.asarray(a), np.asarray(b)
    le = lambda x: x.astype(x.dtype.newbyteorder("<"), copy=False)  # noqa: E731
    return a.shape == b.shape and le(a).dtype == le(b).dtype and le(a).tobytes() == le(b).tobytes()


def snapshot_of(library: Library) -> dict:
    """Everything observable about a library's current state, for before/after comparisons."""
    return {
        "state": library.state,
        "modules": library.modules(),
        "tasks": library.tasks(),
        "snapshots": [(s.name, s.state) for s in library.snapshots()],
        "log": [(e.id, e.kind, e.state) for e in library.log()],
    }


# --------------------------------------------------------------------------- create / open


def test_create_makes_an_empty_healthy_library(library: Library, library_path: Path) -> None:
    assert library.modules() == []
    assert library.tasks() == []
    assert library.snapshots() == []
    assert library.schema_version == SCHEMA_VERSION
    assert [entry.kind for entry in library.log()] == ["init"]
    assert library.check() == []
    reopened = Library.open(library_path)
    assert reopened.state == library.state
    assert reopened.modules() == [] and reopened.tasks() == []


def test_create_refuses_an_existing_library(library: Library, library_path: Path) -> None:
    before = snapshot_of(library)
    with pytest.raises(Conflict, match="already exists"):
        Library.create(library_path)
    assert snapshot_of(Library.open(library_path)) == before


def test_create_refuses_a_non_empty_folder_or_a_file(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(Conflict):
        Library.create(folder)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(Conflict):
        Library.create(a_file)


def test_create_accepts_an_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert Library.create(tmp_path / "empty").check() == []


def test_open_nonexistent_path(tmp_path: Path) -> None:
    with pytest.raises(NotALibrary, match="no library"):
        Library.open(tmp_path / "nothing-here")


def test_open_plain_folder_and_plain_file(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "data.bin").write_bytes(b"\0" * 10)
    with pytest.raises(NotALibrary):
        Library.open(folder)
    a_file = tmp_path / "plain.txt"
    a_file.write_text("hello")
    with pytest.raises(NotALibrary):
        Library.open(a_file)


def test_open_folder_with_a_foreign_repo_folder(tmp_path: Path) -> None:
    (tmp_path / "other" / "repo").mkdir(parents=True)
    (tmp_path / "other" / "repo" / "README").write_text("not icechunk")
    with pytest.raises((NotALibrary, LibraryDamaged)):
        Library.open(tmp_path / "other")


def _set_root_attribute(raw_main_session, raw_root_group, path: Path, key: str, value) -> None:
    """Change a root attribute like a foreign (e.g. newer) writer would: raw icechunk + zarr."""
    session = raw_main_session(path)
    raw_root_group(session).attrs[key] = value
    session.commit(f"set {key}")


def test_open_newer_schema_raises_schema_too_new(
    library: Library, library_path: Path, raw_main_session, raw_root_group
) -> None:
    _set_root_attribute(raw_main_session, raw_root_group, library_path, "schema_version", 99)
    with pytest.raises(SchemaTooNew, match="99") as caught:
        Library.open(library_path)
    assert "upgrade" in str(caught.value)
    assert Library.open(library_path, any_schema=True).schema_version == 99


@pytest.mark.parametrize("version", [0, "one", None])
def test_open_unsupported_schema_is_an_error(
    library: Library, library_path: Path, raw_main_session, raw_root_group, version
) -> None:
    _set_root_attribute(raw_main_session, raw_root_group, library_path, "schema_version", version)
    with pytest.raises(LibraryError) as caught:
        Library.open(library_path)
    assert not isinstance(caught.value, SchemaTooNew)


def _as_schema_1(raw_main_session, raw_root_group, path: Path) -> None:
    """Rewrite a library as lifelong wrote schema 1: each record in its own group's attributes,
    no catalogue (committed behind the library's back, as the older lifelong's commits look)."""
    session = raw_main_session(path)
    root = raw_root_group(session)
    for kind in ("modules", "tasks"):
        records = dict(root[kind].attrs["records"])
        root[kind].attrs.clear()
        for key, attributes in records.items():
            root[f"{kind}/{key}"].attrs.update(attributes)
    root.attrs["schema_version"] = 1
    session.commit("written as schema 1")


def test_a_schema_1_library_is_read_and_upgraded_by_its_next_change(
    library: Library, library_path: Path, make_tensors, raw_main_session, raw_root_group
) -> None:
    (old,) = learn(library, "old", {"conv": make_tensors()})
    before = snapshot_of(library)
    _as_schema_1(raw_main_session, raw_root_group, library_path)
    reopened = Library.open(library_path)
    assert reopened.schema_version == 1
    assert reopened.modules() == before["modules"] and reopened.tasks() == before["tasks"]
    assert reopened.module_tensors(old) and reopened.task_arrays("old")  # verified against their checksums
    assert [finding.where for finding in reopened.check()] == ["history"]  # only the foreign commit

    (new,) = learn(reopened, "new", {"conv": make_tensors()})
    upgraded = Library.open(library_path)
    assert upgraded.schema_version == SCHEMA_VERSION
    assert [m.id for m in upgraded.modules()] == sorted([old, new])
    assert [t.name for t in upgraded.tasks()] == ["new", "old"]
    assert upgraded.module_tensors(old) and upgraded.task_arrays("old")
    assert upgraded.check() == []
    groups = raw_root_group(raw_main_session(library_path))
    assert dict(groups[f"modules/{old}"].attrs) == {}  # its record moved into the catalogue
    assert set(groups["modules"].attrs["records"]) == {old, new}


def test_a_change_that_fails_leaves_a_schema_1_library_as_it_was(
    library: Library, library_path: Path, make_tensors, raw_main_session, raw_root_group
) -> None:
    learn(library, "old", {"conv": make_tensors()})
    _as_schema_1(raw_main_session, raw_root_group, library_path)
    reopened = Library.open(library_path)
    with pytest.raises(RuntimeError), reopened.transaction("fails", kind="learn") as tx:
        tx.add_module("conv", make_tensors(), created_by="new")
        raise RuntimeError("the agent failed")
    assert Library.open(library_path).schema_version == 1
    assert [t.name for t in Library.open(library_path).tasks()] == ["old"]


def test_open_foreign_format_is_not_a_library(
    library: Library, library_path: Path, raw_main_session, raw_root_group
) -> None:
    _set_root_attribute(raw_main_session, raw_root_group, library_path, "format", "someone-else")
    with pytest.raises(NotALibrary, match="format"):
        Library.open(library_path)


def _garble_all(folder: Path) -> None:
    for file in folder.rglob("*"):
        if file.is_file():
            file.write_bytes(b"garbage!" * (1 + file.stat().st_size // 8))


def _delete_main_ref(repo: Path) -> None:
    shutil.rmtree(repo / "refs" / "branch.main")


def _delete_journal_ref(repo: Path) -> None:
    shutil.rmtree(repo / "refs" / "branch.journal")


def _garble_main_ref(repo: Path) -> None:
    (repo / "refs" / "branch.main" / "ref.json").write_text("{not json")


def _main_ref_to_missing_state(repo: Path) -> None:
    (repo / "refs" / "branch.main" / "ref.json").write_text('{"snapshot":"0000000000000000000G"}')


def _truncate_snapshots(repo: Path) -> None:
    for file in (repo / "snapshots").iterdir():
        file.write_bytes(file.read_bytes()[:10])


DAMAGE = {
    "refs deleted": lambda repo: shutil.rmtree(repo / "refs"),
    "refs garbled": lambda repo: _garble_all(repo / "refs"),
    "main branch ref deleted": _delete_main_ref,
    "main branch ref garbled": _garble_main_ref,
    "main branch points nowhere": _main_ref_to_missing_state,
    "journal branch ref deleted": _delete_journal_ref,
    "snapshots deleted": lambda repo: shutil.rmtree(repo / "snapshots"),
    "snapshots garbled": lambda repo: _garble_all(repo / "snapshots"),
    "snapshots truncated": _truncate_snapshots,
    "repo emptied": lambda repo: [shutil.rmtree(child) for child in repo.iterdir()],
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_open_damaged_library_raises_library_damaged(
    library: Library, library_path: Path, make_tensors, damage: str
) -> None:
    learn(library, "t1", {"conv": make_tensors()})
    library.snapshot("s1")
    DAMAGE[damage](library_path / "repo")
    with pytest.raises(LibraryDamaged) as caught:
        Library.open(library_path)
    message = str(caught.value)
    assert str(library_path) in message
    assert "\n" not in message


# --------------------------------------------------------------------------- modules and tasks


DTYPE_CASES = {
    "float32": np.linspace(-3, 3, 24, dtype=np.float32).reshape(2, 3, 4),
    "float32 specials": np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 3.4e38], dtype=np.float32),
    "float64": np.random.default_rng(0).standard_normal((5, 7)),
    "float16": np.arange(-8, 8, dtype=np.float16) / 3,
    "int8": np.arange(-128, 128, dtype=np.int8),
    "int32": np.array([-(2**31), 0, 2**31 - 1], dtype=np.int32),
    "int64": np.array([-(2**63), -1, 2**63 - 1], dtype=np.int64),
    "uint8": np.arange(256, dtype=np.uint8).reshape(16, 16),
    "uint16": np.array([0, 1, 65535], dtype=np.uint16),
    "bool": np.array([[True, False], [False, True]]),
    "0-d float32": np.float32(0.1),
    "0-d float64 array": np.array(np.pi),
    "0-d int64": np.int64(-7),
    "0-d uint8": np.uint8(255),
    "empty": np.zeros((0, 3), dtype=np.float32),
    "big endian": np.arange(6, dtype=">f4"),
    "fortran order": np.asfortranarray(np.arange(12, dtype=np.int16).reshape(3, 4)),
    "non-contiguous view": np.arange(40, dtype=np.float32).reshape(8, 5)[::2, 1:4],
    "large (not inlined)": np.random.default_rng(1).standard_normal(4096).astype(np.float32),
}


@pytest.mark.parametrize("case", list(DTYPE_CASES))
def test_tensor_round_trip_is_bit_identical(library: Library, library_path: Path, case: str) -> None:
    tensor = DTYPE_CASES[case]
    with library.transaction("add") as tx:
        module = tx.add_module("probe", {"t": tensor, "other": np.ones(3, np.float32)}, created_by="test")
    assert module.tensors["t"] == {"shape": list(np.shape(tensor)), "dtype": np.asarray(tensor).dtype.name}
    for reader in (library, Library.open(library_path)):
        back = reader.module_tensors(module.id)
        assert set(back) == {"t", "other"}
        assert same_bits(back["t"], tensor), (back["t"], tensor)
        assert back["t"].shape == np.shape(tensor)
        assert tensors_checksum(back) == module.checksum
    assert library.check() == []


def test_all_dtypes_in_one_module_and_in_task_arrays(library: Library, library_path: Path) -> None:
    tensors = {name.replace(" ", "_"): value for name, value in DTYPE_CASES.items()}
    with library.transaction("add all") as tx:
        module = tx.add_module("everything", tensors, created_by="test")
        layers = [[module.id]]
        use = {name: value for name, value in tensors.items()}
        tx.add_task(
            record("t", layers), TaskArrays(uses=[[use]], head=tensors, probe={"x": tensors["uint8"]})
        )
    reopened = Library.open(library_path)
    back = reopened.module_tensors(module.id)
    assert all(same_bits(back[name], value) for name, value in tensors.items())
    own = reopened.task_arrays("t")
    assert all(same_bits(own.uses[0][0][name], value) for name, value in tensors.items())
    assert all(same_bits(own.head[name], value) for name, value in tensors.items())
    assert same_bits(own.probe["x"], tensors["uint8"])
    assert reopened.check() == []


def test_module_record_and_task_record_round_trip(library: Library, library_path: Path, make_tensors) -> None:
    tensors = make_tensors()
    with library.transaction("learn", kind="learn") as tx:
        module = tx.add_module(
            "conv",
            tensors,
            created_by="mnist:3v8",
            config={"channels": 8, "kernel": [3, 3]},
            signature={"input": [1, 28, 28], "output": [8, 28, 28]},
            frozen=False,
        )
        assert tx.module(module.id) == module
        task = TaskRecord(
            name="mnist:3v8",
            family="classification",
            spec="mnist:3v8",
            layers=[[module.id], []],
            metrics={"accuracy": 0.99},
            curves={"loss": [1.0, 0.5]},
            timings={"train_s": 1.5},
            seed=7,
            command="lifelong learn mnist:3v8",
            details={"note": "ünïcode"},
        )
        tx.add_task(task)
    reopened = Library.open(library_path)
    assert reopened.module(module.id) == module
    assert reopened.modules() == [module]
    assert module.checksum == tensors_checksum(tensors)
    assert module.config == {"channels": 8, "kernel": [3, 3]} and module.frozen is False
    assert reopened.task("mnist:3v8") == task
    assert reopened.tasks() == [task]
    assert reopened.task("mnist:3v8").module_ids == [module.id]


def test_module_id_is_derived_from_content(library: Library, make_tensors) -> None:
    tensors = make_tensors()
    with library.transaction("a") as tx:
        first = tx.add_module("conv", tensors, created_by="a")
        other_creator = tx.add_module("conv", tensors, created_by="b")
    assert first.id != other_creator.id
    assert first.id.startswith("conv-")
    before = snapshot_of(library)
    with pytest.raises(Conflict, match="already exists"), library.transaction("again") as tx:
        tx.add_module("conv", {k: v.copy() for k, v in tensors.items()}, created_by="a")
    assert snapshot_of(library) == before


def test_two_tasks_sharing_a_module_keep_their_own_alpha(
    library: Library, library_path: Path, make_tensors
) -> None:
    tensors = make_tensors()
    (shared,) = learn(library, "first", {"conv": tensors}, alpha=0.5)
    with library.transaction("learn second", kind="learn") as tx:
        tx.add_task(record("second", [[shared]]), own_arrays([[shared]], alpha=2.0, beta=-1.0))
    reopened = Library.open(library_path)
    first, second = reopened.task_arrays("first"), reopened.task_arrays("second")
    assert first.uses[0][0]["alpha"] == np.float32(0.5)
    assert second.uses[0][0]["alpha"] == np.float32(2.0)
    assert second.uses[0][0]["beta"] == np.float32(-1.0)
    assert first.uses[0][0]["alpha"].shape == () and first.uses[0][0]["alpha"].dtype == np.float32
    assert first.head["weight"][0, 0] == np.float32(0.5)
    assert second.head["weight"][0, 0] == np.float32(2.0)
    back = reopened.module_tensors(shared)
    assert all(same_bits(back[name], value) for name, value in tensors.items())
    assert reopened.users(shared) == ["first", "second"]


def test_users_lists_exactly_the_tasks_using_a_module(library: Library, make_tensors) -> None:
    a, b = learn(library, "one", {"conv": make_tensors(), "dense": make_tensors()})
    with library.transaction("two") as tx:
        c = tx.add_module("conv", make_tensors(), created_by="two").id
        tx.add_task(record("two", [[a], [c]]))
    assert library.users(a) == ["one", "two"]
    assert library.users(b) == ["one"]
    assert library.users(c) == ["two"]
    assert library.users("conv-000000000000") == []


def test_delete_used_module_is_a_conflict_and_changes_nothing(library: Library, make_tensors) -> None:
    (used,) = learn(library, "user", {"conv": make_tensors()})
    before = snapshot_of(library)
    with pytest.raises(Conflict, match="user"), library.transaction("prune", kind="prune") as tx:
        tx.delete_module(used)
    assert snapshot_of(library) == before
    assert library.module(used).id == used
    assert library.check() == []


def test_delete_unused_module(library: Library, make_tensors) -> None:
    with library.transaction("add") as tx:
        keep = tx.add_module("conv", make_tensors(), created_by="x").id
        drop = tx.add_module("conv", make_tensors(), created_by="y").id
    with library.transaction("prune", kind="prune") as tx:
        tx.delete_module(drop)
        with pytest.raises(UnknownModule):
            tx.module(drop)
    assert [m.id for m in library.modules()] == [keep]
    with pytest.raises(UnknownModule):
        library.module(drop)
    assert library.log()[0].kind == "prune"
    assert library.check() == []


def test_replace_task_repoints_it_so_the_old_module_can_leave(
    library: Library, library_path: Path, make_tensors
) -> None:
    old, survivor = learn(library, "one", {"conv": make_tensors(), "res_fire": make_tensors()})
    learn(library, "other", {"dim_reduce": make_tensors()}, alpha=3.0)
    other_before = library.task_arrays("other")
    with library.transaction("prune", kind="prune") as tx:
        with pytest.raises(UnknownTask):
            tx.replace_task(record("missing", [[survivor]]), own_arrays([[survivor]], 1.0))
        with pytest.raises(UnknownModule):  # refused before anything is written
            tx.replace_task(record("one", [["conv-000000000000"]]), own_arrays([["x"]], 1.0))
        with pytest.raises(Conflict, match="one"):
            tx.delete_module(old)
    assert library.task("one").layers == [[old, survivor]], "a refused replacement commits nothing"
    with library.transaction("prune", kind="prune") as tx:
        tx.replace_task(record("one", [[survivor]]), own_arrays([[survivor]], alpha=7.0))
        tx.delete_module(old)
    reopened = Library.open(library_path)
    assert reopened.task("one").layers == [[survivor]]
    assert reopened.task_arrays("one").uses[0][0]["alpha"] == np.float32(7.0)
    assert len(reopened.task_arrays("one").uses[0]) == 1
    assert [m.id for m in reopened.modules()] == sorted([survivor, *reopened.task("other").module_ids])
    assert reopened.users(survivor) == ["one"]
    other_after = reopened.task_arrays("other")
    assert same_bits(other_after.uses[0][0]["alpha"], other_before.uses[0][0]["alpha"])
    assert reopened.log()[0].kind == "prune"
    assert reopened.check() == []


def test_duplicate_task_name_is_a_conflict_and_changes_nothing(library: Library, make_tensors) -> None:
    learn(library, "same", {"conv": make_tensors()}, alpha=1.0)
    before = snapshot_of(library)
    with pytest.raises(Conflict, match="same"):
        learn(library, "same", {"conv": make_tensors()}, alpha=2.0)
    assert snapshot_of(library) == before
    assert library.task_arrays("same").uses[0][0]["alpha"] == np.float32(1.0)


def test_task_names_that_differ_only_in_punctuation_are_distinct(library: Library) -> None:
    with library.transaction("tasks") as tx:
        for name in ("mnist:3v8", "mnist_3v8", "mnist/3v8", "MNIST:3v8"):
            tx.add_task(record(name, []))
    assert [t.name for t in library.tasks()] == sorted(["mnist:3v8", "mnist_3v8", "mnist/3v8", "MNIST:3v8"])
    assert library.task("mnist/3v8").name == "mnist/3v8"


def test_unknown_task_module_snapshot(library: Library, make_tensors) -> None:
    learn(library, "known", {"conv": make_tensors()})
    with pytest.raises(UnknownTask, match="known"):  # the message lists the tasks there are
        library.task("unknown")
    with pytest.raises(UnknownTask):
        library.task_arrays("unknown")
    with pytest.raises(UnknownModule):
        library.module("conv-123456789abc")
    with pytest.raises(UnknownModule):
        library.module_tensors("conv-123456789abc")
    before = snapshot_of(library)
    with pytest.raises(UnknownSnapshot):
        library.restore("never-made")
    with pytest.raises(UnknownModule), library.transaction("x") as tx:
        tx.delete_module("conv-123456789abc")
    with pytest.raises(UnknownModule, match="conv-123456789abc"), library.transaction("x") as tx:
        tx.add_task(record("dangling", [["conv-123456789abc"]]))
    assert snapshot_of(library) == before
    for error in (UnknownTask, UnknownModule, UnknownSnapshot, Conflict, NotALibrary):
        assert issubclass(error, LibraryError)


@pytest.mark.parametrize(
    "bad",
    [
        lambda tx, t: tx.add_module("Bad Kind", t, created_by="x"),
        lambda tx, t: tx.add_module("conv", {"a/b": t["weight"]}, created_by="x"),
        lambda tx, t: tx.add_module("conv", {"c": np.array([1 + 2j])}, created_by="x"),
        lambda tx, t: tx.add_module("conv", {"o": np.array(["text"], dtype=object)}, created_by="x"),
        lambda tx, t: tx.add_module("conv", t, created_by="x", config={"f": float("nan")}),
        lambda tx, t: tx.add_task(TaskRecord("x", "poetry", "x", [])),
        lambda tx, t: tx.add_task(TaskRecord("", "classification", "x", [])),
        lambda tx, t: tx.add_task(TaskRecord("tab\there", "classification", "x", [])),
        lambda tx, t: tx.add_task(TaskRecord("x" * (NAME_MAX + 1), "classification", "x", [])),
        lambda tx, t: tx.add_task(record("x", [[]]), TaskArrays(uses=[[{"alpha": np.float32(1)}]])),
    ],
)
def test_malformed_input_is_invalid_record_and_commits_nothing(library: Library, make_tensors, bad) -> None:
    before = snapshot_of(library)
    with pytest.raises(InvalidRecord), library.transaction("bad") as tx:
        bad(tx, make_tensors())
    assert snapshot_of(library) == before


# --------------------------------------------------------------------------- transactions


def test_exception_inside_transaction_commits_nothing(
    library: Library, library_path: Path, make_tensors
) -> None:
    learn(library, "kept", {"conv": make_tensors()})
    before = snapshot_of(library)

    class Boom(Exception):
        pass

    files = set((library_path / "repo").rglob("*"))
    with pytest.raises(Boom), library.transaction("half", kind="learn") as tx:
        module = tx.add_module("conv", make_tensors(nbytes=8192), created_by="half")
        tx.add_task(record("half", [[module.id]]))
        assert set((library_path / "repo").rglob("*")) > files  # its chunk is on disk already
        raise Boom
    assert snapshot_of(library) == before
    assert set((library_path / "repo").rglob("*")) == files, "what it wrote is taken back"
    assert snapshot_of(Library.open(library_path)) == before
    # the lock was released: the next transaction works
    learn(library, "next", {"conv": make_tensors()})
    assert [t.name for t in library.tasks()] == ["kept", "next"]
    assert library.check() == []


def test_empty_transaction_records_nothing(library: Library) -> None:
    before = snapshot_of(library)
    with library.transaction("nothing"):
        pass
    assert snapshot_of(library) == before


def test_transaction_sees_its_own_modules_and_commits_atomically(library: Library, make_tensors) -> None:
    with library.transaction("many", kind="learn") as tx:
        ids = [tx.add_module("conv", make_tensors(), created_by=f"m{i}").id for i in range(5)]
        tx.add_task(record("uses all", [ids[:2], ids[2:]]))
        assert library.modules() == []  # the library's readers see only committed states
    assert sorted(m.id for m in library.modules()) == sorted(ids)
    assert len(library.log()) == 2


def test_reader_sees_its_state_until_refresh(library: Library, library_path: Path, make_tensors) -> None:
    reader = Library.open(library_path)
    learn(library, "new", {"conv": make_tensors()})
    assert reader.tasks() == []
    reader.refresh()
    assert [t.name for t in reader.tasks()] == ["new"]
    assert reader.state == library.state


# --------------------------------------------------------------------------- snapshots and history


def test_snapshot_restore_and_undo_restore(library: Library, library_path: Path, make_tensors) -> None:
    learn(library, "a", {"conv": make_tensors()})
    info = library.snapshot("after-a")
    assert info.name == "after-a" and info.state == library.state and not info.automatic
    at_snapshot = snapshot_of(library)
    (b_module,) = learn(library, "b", {"conv": make_tensors()}, alpha=3.0)
    before_restore = (library.state, library.modules(), library.tasks())

    backup = library.restore("after-a")
    assert backup == "before-restore-1"
    assert [t.name for t in library.tasks()] == ["a"]
    assert library.modules() == at_snapshot["modules"]
    assert library.state == at_snapshot["state"]
    with pytest.raises(UnknownModule):
        library.module(b_module)
    snapshots = {s.name: s for s in library.snapshots()}
    assert snapshots[backup].automatic and snapshots[backup].state == before_restore[0]
    assert Library.open(library_path).tasks() == library.tasks()

    undo = library.restore(backup)
    assert undo == "before-restore-2"
    assert (library.state, library.modules(), library.tasks()) == before_restore
    assert library.task_arrays("b").uses[0][0]["alpha"] == np.float32(3.0)
    assert set(s.name for s in library.snapshots()) == {"after-a", "before-restore-1", "before-restore-2"}
    assert library.check() == []


def test_snapshot_names_are_validated_and_unique(library: Library) -> None:
    library.snapshot("v1.0_ok-name")
    with pytest.raises(Conflict):
        library.snapshot("v1.0_ok-name")
    for bad in ("", "-starts-with-dash", "has space", "a/b", "x" * 101):
        with pytest.raises(InvalidRecord):
            library.snapshot(bad)
    assert [s.name for s in library.snapshots()] == ["v1.0_ok-name"]


@pytest.mark.parametrize("name", ["before-restore-1", "before-restore-", "before-restore-mine"])
def test_snapshot_names_of_automatic_snapshots_are_reserved(library: Library, name: str) -> None:
    before = snapshot_of(library)
    with pytest.raises(InvalidRecord) as caught:
        library.snapshot(name)
    message = str(caught.value)
    assert "'before-restore-'" in message and "reserved" in message and "before a restore" in message
    assert "\n" not in message
    assert snapshot_of(library) == before
    library.restore(library.snapshot("mine").name)
    assert {s.name for s in library.snapshots()} == {"mine", "before-restore-1"}


def test_work_after_restore_continues_from_the_restored_state(library: Library, make_tensors) -> None:
    learn(library, "a", {"conv": make_tensors()})
    library.snapshot("s")
    learn(library, "b", {"conv": make_tensors()})
    library.restore("s")
    learn(library, "c", {"conv": make_tensors()})
    assert [t.name for t in library.tasks()] == ["a", "c"]
    library.restore("before-restore-1")
    assert [t.name for t in library.tasks()] == ["a", "b"]
    assert library.check() == []


def test_log_records_every_change_newest_first(library: Library, library_path: Path, make_tensors) -> None:
    states = [library.state]
    learn(library, "a", {"conv": make_tensors()})
    states.append(library.state)
    library.snapshot("s1")
    learn(library, "b", {"conv": make_tensors()})
    states.append(library.state)
    backup = library.restore("s1")

    log = Library.open(library_path).log()
    assert [e.kind for e in log] == ["restore", "learn", "snapshot", "learn", "init"]
    assert [e.message for e in log[1::2]] == ["learn b", "learn a"]
    restore, _, snapshot, _, init = log
    assert restore.details == {"snapshot": "s1", "backup": backup}
    assert restore.state == states[1] == library.state
    assert snapshot.details == {"snapshot": "s1"} and snapshot.state == states[1]
    assert [e.state for e in log[1:]] == [states[2], states[1], states[1], states[0]]
    assert init.message == "library created"
    assert len({e.id for e in log}) == len(log)
    assert all(e.time for e in log)


def test_reopen_sees_the_same_state(library: Library, library_path: Path, make_tensors) -> None:
    learn(library, "a", {"conv": make_tensors(), "dense": make_tensors(300)}, alpha=0.1)
    library.snapshot("s")
    learn(library, "b", {"conv": make_tensors()}, alpha=0.2)
    library.restore("s")
    reopened = Library.open(library_path)
    assert snapshot_of(reopened) == snapshot_of(library)
    for module in library.modules():
        ours, theirs = library.module_tensors(module.id), reopened.module_tensors(module.id)
        assert all(same_bits(ours[k], theirs[k]) for k in ours)
    assert reopened.task_arrays("a").uses[0][1]["alpha"] == np.float32(0.1)
    assert reopened.check() == []
