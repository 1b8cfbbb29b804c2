"""Pruning the library (`lifelong prune`): duplicates merged, unused modules removed, every changed
task verified, refused changes leave a task as it was, a kill changes nothing, a writer waits.

Synthetic images and small constructed modules: no MNIST, each test runs in seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_classification_agent import agent as tiny_agent
from test_classification_agent import bigger_channel_problem, channel_copy, comparing_network, halves

from agents.classification.agent import load_task_network, own_arrays
from agents.classification.modules import LAYER, Head, Member, to_tensors
from agents.classification.network import MixedLayer, TaskNetwork
from agents.classification.pruning import (
    PruneSettings,
    apply_prune,
    channel_similarity,
    plan_prune,
    similarity,
)
from agents.classification.training import accuracy
from agents.task import TaskData, TaskSpec
from library_store import Library, TaskRecord
from lifelong.learn import learn
from lifelong.plans import budget_for

BUDGET = budget_for("quick", batch_size=32, eval_every=10)
CPU = torch.device("cpu")


def halves_data(record: TaskRecord) -> TaskData:
    return halves(TaskSpec("a", "npz"), tuple(record.details["input_shape"]), 0)


def store_copy(library: Library, source: str, name: str, replace_first: dict[str, np.ndarray]) -> str:
    """Task ``name``: task ``source``'s assembly, α/β and head, with its first layer's first module
    replaced by a new module of the given tensors (a copy, exact or not). Returns that module's id."""
    record, arrays = library.task(source), library.task_arrays(source)
    original = library.module(record.layers[0][0])
    with library.transaction(f"copy {name}", kind="learn") as tx:
        new = tx.add_module(
            original.kind,
            replace_first,
            created_by=name,
            config=original.config,
            signature=original.signature,
        ).id
        layers = [[new, *record.layers[0][1:]], *record.layers[1:]]
        tx.add_task(
            TaskRecord(
                name,
                "classification",
                record.spec,
                layers,
                metrics=record.metrics,
                details=record.details,
                seed=0,
            ),
            arrays,
        )
    network = load_task_network(library, name)  # the copy's own probe: its logits with the copy
    probe = arrays.probe
    with library.transaction(f"probe {name}") as tx:
        own = own_arrays(network, torch.from_numpy(probe["inputs"]), torch.from_numpy(probe["labels"]), CPU)
        tx.replace_task(library.task(name), own)
    return new


@pytest.fixture
def duplicated(library: Library) -> tuple[Library, dict[str, str]]:
    """Task ``a`` learned on synthetic halves; ``exact`` uses an exact copy of a's first module,
    ``near`` a copy with noise of 1e-4 on every tensor."""
    learn(library, tiny_agent(), TaskSpec("a", "npz"), name="a", seed=0, command="test")
    first = library.task("a").layers[0][0]
    tensors = library.module_tensors(first)
    rng = np.random.default_rng(0)
    noisy = {
        k: (v + rng.normal(0, 1e-4, v.shape)).astype(v.dtype) if v.dtype.kind == "f" else v
        for k, v in tensors.items()
    }
    ids = {
        "original": first,
        "exact": store_copy(library, "a", "exact", tensors),
        "near": store_copy(library, "a", "near", noisy),
    }
    return library, ids


def test_similarity_is_one_for_equal_outputs_and_falls_with_their_distance() -> None:
    a = torch.randn(50, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    assert similarity(a, a.clone()) == 1.0
    assert similarity(a, -a) == 0.0
    assert 1.0 > similarity(a, a * 1.01) > similarity(a, a * 1.5) > similarity(a, torch.zeros_like(a)) == 0.0


def test_channel_similarity_weighs_channels_by_gamma() -> None:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(40, 2, 3, 3, generator=generator)
    b = a.clone()
    b[:, 1] = -b[:, 1] * 3  # channel 1 disagrees
    ones = torch.ones(2)
    assert channel_similarity(a, a.clone(), ones, ones) == 1.0
    both = channel_similarity(a, b, ones, ones)
    assert 0 < both < 1
    assert channel_similarity(a, b, torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0])) == 1.0  # silenced
    assert channel_similarity(a, b, torch.tensor([0.1, 1.0]), torch.tensor([0.1, 1.0])) < both


@pytest.mark.parametrize("measure", ["l2", "js"])
def test_an_exact_and_a_near_duplicate_merge_into_one_and_every_task_keeps_its_accuracy(
    duplicated: tuple[Library, dict[str, str]], measure: str
) -> None:
    library, ids = duplicated
    others = [m.id for m in library.modules() if m.id not in ids.values()]
    before = {
        t.name: accuracy(load_task_network(library, t.name), *halves_pair(library, t.name), CPU)
        for t in library.tasks()
    }
    settings = PruneSettings(share=0.0, refit_steps=20, measure=measure)
    with library.transaction("prune", kind="prune") as tx:
        plan = plan_prune(library, settings, BUDGET, halves_data)
        apply_prune(plan, library, tx)
    assert len(plan.merges) == 2
    (survivor,) = {m.survivor for m in plan.merges}
    assert {m.dropped for m in plan.merges} | {survivor} == set(ids.values())
    exact_pair = {ids["original"], ids["exact"]}
    assert [m.similarity for m in plan.merges if {m.dropped, m.survivor} == exact_pair] in ([1.0], [])
    assert all(m.similarity >= settings.similarity for m in plan.merges)
    assert sorted(plan.removed) == sorted(set(ids.values()) - {survivor})
    assert sorted(m.id for m in library.modules()) == sorted([survivor, *others])
    for task in library.tasks():
        assert task.layers[0][0] == survivor, task.name
        after = accuracy(load_task_network(library, task.name), *halves_pair(library, task.name), CPU)
        assert after >= before[task.name] - settings.tolerance / 100, task.name
    assert library.log()[0].kind == "prune"
    assert library.check() == []


def halves_pair(library: Library, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    data = halves_data(library.task(name))
    return data.test_x, data.test_y


def test_an_unused_module_leaves_head_and_comes_back_with_an_older_snapshot(library: Library) -> None:
    learn(library, tiny_agent(), TaskSpec("a", "npz"), name="a", seed=0, command="test")
    record = library.module(library.task("a").layers[0][0])
    tensors = {k: -v if v.dtype.kind == "f" else v for k, v in library.module_tensors(record.id).items()}
    with library.transaction("unused") as tx:  # a's first module negated: valid, unlike it, unused
        unused = tx.add_module(
            record.kind, tensors, created_by="nobody", config=record.config, signature=record.signature
        ).id
    library.snapshot("with-unused")
    before = library.task("a"), library.task_arrays("a")
    with library.transaction("prune", kind="prune") as tx:
        plan = plan_prune(library, PruneSettings(), BUDGET, halves_data)
        apply_prune(plan, library, tx)
    assert plan.removed == [unused] and plan.changes == []
    assert unused not in {m.id for m in library.modules()}
    after = library.task_arrays("a")
    assert library.task("a") == before[0], "a task the prune does not change is not rewritten"
    for group in ("head", "probe"):
        assert all(
            np.array_equal(getattr(before[1], group)[k], getattr(after, group)[k])
            for k in getattr(after, group)
        )
    assert library.log()[0].kind == "prune"
    library.restore("with-unused")
    assert unused in {m.id for m in library.modules()}
    assert library.check() == []


def comparing_library(library: Library) -> tuple[str, str]:
    """Task ``x`` compares channels 0 and 1 through modules copy-0 and copy-1; task ``y`` uses
    copy-0 alone. Merging copy-1 into copy-0 (the module more tasks use) would blind ``x``."""
    first, second = channel_copy(0, None), channel_copy(1, None)
    config = {"in_channels": 2, "out_channels": 2, LAYER: 0}
    signature = first.signature
    task = bigger_channel_problem()
    details = {
        "input_shape": [2, 1, 1],
        "head": {"input_shape": [2, 1, 1], "n_classes": 2, "hidden": 0, "pool": 1},
    }
    with library.transaction("modules") as tx:
        ids = [
            tx.add_module(
                "conv", to_tensors(m.module), created_by=f"copy-{i}", config=config, signature=signature
            ).id
            for i, m in enumerate((first, second))
        ]
    stored = [Member.stored(library.module(i), library.module_tensors(i)) for i in ids]
    x = comparing_network(stored, [1.0, 1.0])
    y = TaskNetwork(
        [MixedLayer(stored[:1], torch.ones(1), torch.ones(1))], Head((2, 1, 1), 2)
    )  # channel 0 only
    probe = task.data.val_x[:8], task.data.val_y[:8]
    with library.transaction("tasks") as tx:
        tx.add_task(
            TaskRecord("x", "classification", "x", [ids], details=details, seed=0), own_arrays(x, *probe, CPU)
        )
        tx.add_task(
            TaskRecord("y", "classification", "y", [[ids[0]]], details=details, seed=0),
            own_arrays(y, *probe, CPU),
        )
    return ids[0], ids[1]


def test_a_merge_that_costs_a_task_more_than_the_tolerance_is_refused_for_it(library: Library) -> None:
    kept, blinding = comparing_library(library)
    data = bigger_channel_problem().data
    before = library.task_arrays("x"), library.task("x")
    plan = plan_prune(
        library, PruneSettings(similarity=0.0, share=0.0, refit_steps=0), BUDGET, lambda record: data
    )
    assert [(m.dropped, m.survivor) for m in plan.merges] == [(blinding, kept)]
    (change,) = plan.changes
    assert change.task == "x" and not change.accepted
    assert change.before["val_acc"] == 1.0 and change.attempts[0]["val_acc"] < 0.9
    assert plan.removed == []  # x still uses the module the merge would have dropped
    with library.transaction("prune", kind="prune") as tx:
        apply_prune(plan, library, tx)
    assert library.task("x") == before[1]
    assert all(np.array_equal(before[0].probe[k], library.task_arrays("x").probe[k]) for k in before[0].probe)
    assert library.log()[0].kind != "prune", "nothing changed, nothing committed"


def test_a_task_keeps_the_edits_within_tolerance_and_refuses_the_rest(library: Library) -> None:
    """Task ``w`` mixes an exact copy of copy-0 with copy-1; both merge into copy-0 (which x and y
    use). Together they blind w; one at a time, the copy's merge costs nothing and is kept, and
    copy-1's is refused."""
    kept, blinding = comparing_library(library)
    tensors, record = library.module_tensors(kept), library.module(kept)
    with library.transaction("copy") as tx:
        copy = tx.add_module(
            "conv", tensors, created_by="w", config=record.config, signature=record.signature
        ).id
    members = {i: Member.stored(library.module(i), library.module_tensors(i)) for i in (copy, blinding)}
    w = comparing_network([members[copy], members[blinding]], [1.0, 1.0])
    data = bigger_channel_problem().data
    details = library.task("x").details
    with library.transaction("w") as tx:
        tx.add_task(
            TaskRecord("w", "classification", "w", [[copy, blinding]], details=details, seed=0),
            own_arrays(w, data.val_x[:8], data.val_y[:8], CPU),
        )
    settings = PruneSettings(similarity=0.0, share=0.0, refit_steps=0)
    with library.transaction("prune", kind="prune") as tx:
        plan = plan_prune(library, settings, BUDGET, lambda record: data)
        apply_prune(plan, library, tx)
    assert [(m.dropped, m.survivor) for m in plan.merges] == [(copy, kept), (blinding, kept)]
    change = next(c for c in plan.changes if c.task == "w")
    assert change.accepted and change.merged == {copy: kept}
    assert [a["cost_points"] > 0.5 for a in change.attempts] == [
        True,
        False,
        True,
    ]  # all; copy; copy + copy-1
    assert library.task("w").layers == [[kept, blinding]]
    assert accuracy(load_task_network(library, "w"), data.test_x, data.test_y, CPU) == 1.0
    assert copy not in {m.id for m in library.modules()} and blinding in {m.id for m in library.modules()}
