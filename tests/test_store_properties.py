"""Property-based: random sequences of library operations agree with a plain in-memory model.

The model is dicts: module id → tensors checksum, task name → layers, snapshot name → a copy of
the model. Every rule applies an operation to both; the invariants compare them after each step.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from library_store import (
    Conflict,
    Library,
    TaskArrays,
    TaskRecord,
    UnknownSnapshot,
    tensors_checksum,
)

DTYPES = ["float32", "float64", "int8", "int64", "uint8", "bool", "float16"]

shapes = st.lists(st.integers(1, 6), min_size=0, max_size=3).map(tuple)
tensor_specs = st.dictionaries(
    keys=st.sampled_from(["weight", "bias", "scale", "running_mean", "b0", "W"]),
    values=st.tuples(st.sampled_from(DTYPES), shapes, st.integers(0, 2**32 - 1)),
    min_size=1,
    max_size=3,
)


def make_tensor(dtype: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "bool":
        return rng.integers(0, 2, size=shape).astype(bool)
    if dtype.startswith("float"):
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


class Model:
    def __init__(self) -> None:
        self.modules: dict[str, str] = {}  # id → checksum
        self.tasks: dict[str, list[list[str]]] = {}  # name → layers
        self.alphas: dict[str, list[list[float]]] = {}

    def copy(self) -> Model:
        other = Model()
        other.modules = dict(self.modules)
        other.tasks = {name: [list(layer) for layer in layers] for name, layers in self.tasks.items()}
        other.alphas = {name: [list(layer) for layer in alphas] for name, alphas in self.alphas.items()}
        return other

    def used(self) -> set[str]:
        return {module_id for layers in self.tasks.values() for layer in layers for module_id in layer}


class LibraryMachine(RuleBasedStateMachine):
    snapshot_names = Bundle("snapshot_names")

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="library-props-"))
        self.library = Library.create(self.folder / "library", lock_timeout=5)
        self.model = Model()
        self.snapshots: dict[str, Model] = {}
        self.counter = 0

    def teardown(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    # ------------------------------------------------------------------ rules
    @initialize(target=snapshot_names)
    def empty_snapshot(self) -> str:
        self.library.snapshot("empty")
        self.snapshots["empty"] = self.model.copy()
        return "empty"

    @rule(
        specs=tensor_specs, creator=st.sampled_from(["a", "b", "c"]), kind=st.sampled_from(["conv", "dense"])
    )
    def add_module(self, specs, creator: str, kind: str) -> None:
        tensors = {name: make_tensor(*spec) for name, spec in specs.items()}
        checksum = tensors_checksum(tensors)
        duplicate = any(
            module.checksum == checksum and module.created_by == creator and module.kind == kind
            for module in self.library.modules()
        )
        try:
            with self.library.transaction("add module", kind="add") as tx:
                record = tx.add_module(kind, tensors, created_by=creator)
        except Conflict:
            assert duplicate, "a Conflict for a module that is not in the library"
            return
        assert not duplicate
        assert record.checksum == checksum
        self.model.modules[record.id] = checksum

    @rule(data=st.data(), depth=st.integers(1, 3))
    def add_task(self, data, depth: int) -> None:
        ids = sorted(self.model.modules)
        layers = [
            data.draw(st.lists(st.sampled_from(ids), min_size=1, max_size=3), label=f"layer {layer}")
            if ids
            else []
            for layer in range(depth)
        ]
        name = self.fresh("task:")
        alphas = [[float(self.counter + i) for i in range(len(layer))] for layer in layers]
        uses = [[{"alpha": np.float32(a), "beta": np.float32(-a)} for a in layer] for layer in alphas]
        with self.library.transaction(f"learn {name}", kind="learn") as tx:
            tx.add_task(TaskRecord(name, "classification", name, layers), TaskArrays(uses=uses))
        self.model.tasks[name] = layers
        self.model.alphas[name] = alphas

    @precondition(lambda self: self.model.tasks)
    @rule(data=st.data())
    def duplicate_task_is_refused(self, data) -> None:
        name = data.draw(st.sampled_from(sorted(self.model.tasks)))
        state = self.library.state
        try:
            with self.library.transaction("again") as tx:
                tx.add_task(TaskRecord(name, "classification", name, []))
        except Conflict:
            pass
        else:
            raise AssertionError(f"duplicate task {name!r} accepted")
        assert self.library.state == state

    @precondition(lambda self: set(self.model.modules) - self.model.used())
    @rule(data=st.data())
    def delete_unused_module(self, data) -> None:
        module_id = data.draw(st.sampled_from(sorted(set(self.model.modules) - self.model.used())))
        with self.library.transaction("prune", kind="prune") as tx:
            tx.delete_module(module_id)
        del self.model.modules[module_id]

    @precondition(lambda self: self.model.used())
    @rule(data=st.data())
    def delete_used_module_is_refused(self, data) -> None:
        module_id = data.draw(st.sampled_from(sorted(self.model.used())))
        state = self.library.state
        try:
            with self.library.transaction("prune", kind="prune") as tx:
                tx.delete_module(module_id)
        except Conflict:
            pass
        else:
            raise AssertionError(f"deleted {module_id}, which tasks use")
        assert self.library.state == state

    @rule(target=snapshot_names)
    def snapshot(self) -> str:
        name = self.fresh("snap-")
        self.library.snapshot(name)
        self.snapshots[name] = self.model.copy()
        return name

    @rule(name=snapshot_names)
    def restore(self, name: str) -> None:
        backup = self.library.restore(name)
        assert backup.startswith("before-restore-") and backup not in self.snapshots
        with pytest.raises(UnknownSnapshot):  # and an unknown name changes nothing
            self.library.restore(f"{name}-unknown")
        self.snapshots[backup] = self.model
        self.model = self.snapshots[name].copy()

    @rule(name=snapshot_names)
    def restore_then_undo(self, name: str) -> None:
        """Restore ``name``, then undo it at once: the library is back where it was."""
        before = self.model
        backup = self.library.restore(name)
        self.snapshots[backup] = before
        undo = self.library.restore(backup)
        self.snapshots[undo] = self.snapshots[name].copy()
        self.model = before.copy()

    @precondition(lambda self: self.model.modules)
    @rule(data=st.data())
    def tensors_read_back_exactly(self, data) -> None:
        module_id = data.draw(st.sampled_from(sorted(self.model.modules)))
        assert tensors_checksum(self.library.module_tensors(module_id)) == self.model.modules[module_id]

    @precondition(lambda self: self.model.tasks)
    @rule(data=st.data())
    def task_arrays_read_back_exactly(self, data) -> None:
        name = data.draw(st.sampled_from(sorted(self.model.tasks)))
        uses = self.library.task_arrays(name).uses
        assert [[float(use["alpha"]) for use in layer] for layer in uses] == self.model.alphas[name]

    # ------------------------------------------------------------------ invariants
    @invariant()
    def modules_and_tasks_equal_the_model(self) -> None:
        # a new Library object on the same folder (as a later process would open it)
        reopened = Library.open(self.folder / "library", lock_timeout=5)
        assert reopened.state == self.library.state
        self.library = reopened
        modules = {record.id: record.checksum for record in self.library.modules()}
        assert modules == self.model.modules
        tasks = {record.name: record.layers for record in self.library.tasks()}
        assert tasks == self.model.tasks
        for module_id in self.model.modules:
            expected = sorted(
                name
                for name, layers in self.model.tasks.items()
                if any(module_id in layer for layer in layers)
            )
            assert self.library.users(module_id) == expected

    @invariant()
    def snapshots_equal_the_model(self) -> None:
        infos = self.library.snapshots()
        assert {info.name for info in infos} == set(self.snapshots)
        assert all(info.automatic == info.name.startswith("before-restore-") for info in infos)


LibraryMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=True,
)
TestLibraryMachine = LibraryMachine.TestCase


def test_restore_brings_back_exactly_the_snapshot(tmp_path: Path) -> None:
    """A direct check of the restore invariant, including tensors and per-task arrays."""
    library = Library.create(tmp_path / "library")
    rng = np.random.default_rng(3)
    with library.transaction("one") as tx:
        module = tx.add_module("conv", {"w": rng.standard_normal(700).astype(np.float32)}, created_by="x")
        tx.add_task(TaskRecord("one", "classification", "one", [[module.id]]))
    library.snapshot("s")
    expected = (library.modules(), library.tasks(), library.module_tensors(module.id)["w"].tobytes())
    with library.transaction("prune") as tx:
        tx.add_task(TaskRecord("two", "classification", "two", []))
    library.restore("s")
    assert (library.modules(), library.tasks(), library.module_tensors(module.id)["w"].tobytes()) == expected
    assert {s.name for s in library.snapshots()} == {"s", "before-restore-1"}
