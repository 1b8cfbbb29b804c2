"""The learn loop: one task at a time, ``self_organize → grow → prune → commit``.

The loop is the same for every task family; what each step means is the agent's business
(:mod:`agents.classification`, :mod:`agents.atari`). Nothing reaches the library before the
final commit, which is one atomic transaction: Ctrl-C or a crash at any earlier instant leaves
the library exactly as it was.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from agents import Agent, NewModule, Solution
from agents.task import TaskSpec
from library_store import Library, TaskRecord
from lifelong.errors import TargetMissed

LEARNED, BELOW_TARGET = "learned", "below-target"  # a task record's status


def learn(
    library: Library,
    agent: Agent,
    spec: TaskSpec,
    *,
    name: str,
    seed: int,
    command: str,
    require_target: bool = False,
) -> TaskRecord:
    """Learn one task and commit it; return the stored task record. A task that misses its
    target is committed with status ``below-target``, or, with ``require_target``, refused.
    ``name`` was checked before any work (:func:`lifelong.tasks.check_names`); one that another
    writer took meanwhile is refused by the commit (``Conflict``), which then writes nothing."""
    timings: dict[str, float] = {}
    with _timed(timings, "prepare"):
        problem = agent.prepare(library, spec, name)
    with _timed(timings, "self_organize"):
        attempt = agent.self_organize(problem)
    if not agent.good_enough(problem, attempt):
        with _timed(timings, "grow"):
            attempt = agent.grow(problem, attempt)
    with _timed(timings, "prune"):
        attempt = agent.prune(problem, attempt)
    with _timed(timings, "finalize"):
        solution = agent.solution(problem, attempt)
    if require_target and solution.missed_target:
        raise TargetMissed(f"{name!r} missed its target ({solution.missed_target}); nothing was committed")
    record = commit(
        library,
        solution,
        name=name,
        spec=spec.text,
        family=agent.family,
        seed=seed,
        command=command,
        timings=timings,
    )
    agent.committed(problem)
    return record


def commit(
    library: Library,
    solution: Solution,
    *,
    name: str,
    spec: str,
    family: str,
    seed: int,
    command: str,
    timings: dict[str, float],
) -> TaskRecord:
    """Store the new modules (frozen) and the task record in one atomic transaction."""
    with library.transaction(f"learn {name} ({solution.phase})", kind="learn") as tx:
        layers = [
            [
                tx.add_module(e.kind, e.tensors, created_by=name, config=e.config, signature=e.signature).id
                if isinstance(e, NewModule)
                else e
                for e in layer
            ]
            for layer in solution.layers
        ]
        timings = {**timings, "total": round(sum(timings.values()), 3)}
        record = TaskRecord(
            name=name,
            family=family,
            spec=spec,
            layers=layers,
            status=BELOW_TARGET if solution.missed_target else LEARNED,
            metrics={**solution.metrics, "phase": solution.phase},
            curves=solution.curves,
            timings={k: round(v, 3) for k, v in timings.items()},
            seed=seed,
            command=command,
            details=solution.details,
        )
        tx.add_task(record, solution.arrays)
    return record


@contextmanager
def _timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[phase] = time.perf_counter() - start
