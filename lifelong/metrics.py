"""Continual-learning metrics from an accuracy matrix, each under the name of its source.

``R[i][j]`` is the test accuracy on task ``j`` after learning tasks ``0..i``, for ``i < T`` (T
tasks, one column each); entries for tasks not learned yet (``j > i``) are ``None``, since a
task's output layer does not exist before it is learned. ``R`` may have rows after the T-th: each
an event after the last task was learned (a prune; "now", measured or read from the store), full,
since every task exists by then. So ``R`` is T × T (the learning rows only: a stream benchmark's
last row is measured right after the last task) or (T+k) × T (``lifelong metrics``: T rows of
accuracies when learned, then "now"). With ``last`` the last row, and "the tasks with a later
row" the ``j < last`` (every task of a (T+k) × T matrix, all but the last of a T × T one):

- ``average_final_accuracy``: the mean of the last row (ACC, Lopez-Paz & Ranzato 2017, GEM).
- ``backward_transfer``: mean over the tasks with a later row of ``R[last][j] - R[j][j]``
  (BWT, Lopez-Paz & Ranzato 2017, GEM; negative: the stream, or a later event, made the task
  worse).
- ``forgetting_chaudhry``: mean over the same ``j`` of ``max(R[i][j] for j <= i < last) -
  R[last][j]``, the best accuracy seen before the end minus the last (Chaudhry et al. 2018,
  "Riemannian Walk for Incremental Learning", ECCV).
- ``forgetting_avalanche``: mean over the same ``j`` of ``R[j][j] - R[last][j]``, the accuracy
  just after learning the task minus the last (Avalanche's ``StreamForgetting``, Lomonaco et al.
  2021, ``avalanche/evaluation/metrics/forgetting_bwt.py``). By definition it is
  ``-backward_transfer`` (Avalanche's own BWT is its forgetting negated); it differs from
  Chaudhry's when a task scored better after a later task than when it was learned.
- ``transfer_vs_independent``: mean over the judged tasks ``j >= judged_from`` of ``R[j][j] -
  independent[j]``, the accuracy when first learned minus that of the ``independent`` learner
  (the task alone, from scratch); ``transfer_vs_independent_last_task`` is the same on the last
  task only, ``R[T-1][T-1] - independent[T-1]``: CTrL's transfer (Veniat et al. 2021,
  "Efficient Continual Learning with Modular Networks and Task-Driven Priors", ICLR). Both use
  the diagonal (a task's accuracy when learned), never a row after the last task's.
- ``forward_transfer_gem``: mean over the tasks after the first (``j >= 1``) of ``before[j] -
  at_init[j]``, where ``before[j]`` is the accuracy on task ``j`` of the model as tasks
  ``0..j-1`` left it, before any training on ``j`` (GEM's ``R[j-1][j]``, which this matrix
  leaves ``None``) and ``at_init[j]`` that of the same model at its random initialisation (GEM's
  ``b_j``): FWT, Lopez-Paz & Ranzato 2017, "Gradient Episodic Memory for Continual Learning",
  NeurIPS; Avalanche's forward transfer too. It exists only for a learner that has a model of
  task ``j`` before learning it (in ``bench streams``: ``finetune`` and ``frozen_first``), and
  is absent, not 0, elsewhere.

Backward transfer and both forgettings are 0 when no task has a row after its own (one task, a
1 × 1 matrix). BWT and FWT follow the paper's formulas, means over T-1 tasks of a T × T matrix;
GEM's released code (``metrics/metrics.py``) divides both by T, counting the last task's BWT and
the first task's FWT as 0.

Results written before these names (issue 27) called ``transfer_vs_independent``
``forward_transfer``, ``transfer_vs_independent_last_task`` ``transfer_last_task`` and
``forgetting_chaudhry`` ``forgetting``, and had ``lifelong_minus_independent_points``, lifelong's
``transfer_vs_independent`` in points; :data:`OLD_NAMES` maps them and
:func:`with_current_names` applies it, for every reader of a stream result
(:func:`lifelong.bench.streams.check_bench`).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

Matrix = Sequence[Sequence[float | None]]

# a figure's name before issue 27 → its name now; None: dropped as a duplicate
OLD_NAMES: dict[str, str | None] = {
    "forward_transfer": "transfer_vs_independent",
    "transfer_last_task": "transfer_vs_independent_last_task",
    "forgetting": "forgetting_chaudhry",
    # `bench streams`' ratio: 100 × lifelong's transfer_vs_independent, the same figure in points
    "lifelong_minus_independent_points": None,
}
SD = "_sd"  # a figure's standard deviation over seeds, in a benchmark's results: <name>_sd


def with_current_names(figures: dict[str, Any]) -> dict[str, Any]:
    """``figures`` (a summary, a condition's results with their ``<name>_sd``, or ratios) under
    today's names (:data:`OLD_NAMES`), in the same order; a name already current is kept, a
    dropped duplicate left out."""
    renamed: dict[str, Any] = {}
    for key, value in figures.items():
        base, sd = (key[: -len(SD)], SD) if key.endswith(SD) else (key, "")
        if base not in OLD_NAMES:
            renamed[key] = value
        elif OLD_NAMES[base] is not None and f"{OLD_NAMES[base]}{sd}" not in figures:
            renamed[f"{OLD_NAMES[base]}{sd}"] = value
    return renamed


def check_matrix(matrix: Matrix) -> None:
    """``matrix`` has T columns (one per task) and T or more rows: rows ``i < T`` with a number at
    and below the diagonal and ``None`` above it, any later row all numbers."""
    lengths = [len(row) for row in matrix]
    tasks = lengths[0] if lengths else 0
    if tasks == 0 or any(n != tasks for n in lengths) or len(matrix) < tasks:
        raise ValueError(
            "an accuracy matrix is T × T or (T+k) × T (T tasks, k rows after the last task's), "
            f"got rows of lengths {lengths}"
        )
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            if (value is None) != (j > i):
                where = "above the diagonal" if j > i else "at or below the diagonal"
                where = "a row after the last task's: full" if i >= tasks else where
                raise ValueError(
                    f"R[{i}][{j}] must be {'None' if j > i else 'a number'} ({where}), got {value!r}"
                )


def average_final_accuracy(matrix: Matrix) -> float:
    check_matrix(matrix)
    return statistics.mean(_numbers(matrix[-1]))


def backward_transfer(matrix: Matrix) -> float:
    """0 for a learner that never changes a learned task; 0 as well for a single 1 × 1 matrix."""
    check_matrix(matrix)
    last = len(matrix) - 1
    changes = [_at(matrix, last, j) - _at(matrix, j, j) for j in _with_a_later_row(matrix)]
    return statistics.mean(changes or [0.0])


def forgetting_chaudhry(matrix: Matrix) -> float:
    """Chaudhry et al. (2018): the best accuracy before the end minus the last, mean over tasks."""
    check_matrix(matrix)
    last = len(matrix) - 1
    drops = [
        max(_at(matrix, i, j) for i in range(j, last)) - _at(matrix, last, j)
        for j in _with_a_later_row(matrix)
    ]
    return statistics.mean(drops or [0.0])


def forgetting_avalanche(matrix: Matrix) -> float:
    """Avalanche's forgetting: the accuracy just after learning minus the last, mean over tasks."""
    check_matrix(matrix)
    last = len(matrix) - 1
    drops = [_at(matrix, j, j) - _at(matrix, last, j) for j in _with_a_later_row(matrix)]
    return statistics.mean(drops or [0.0])


def transfer_vs_independent(matrix: Matrix, independent: Sequence[float], judged_from: int = 1) -> float:
    """Mean gain over learning each judged task alone (``independent[j]``), on first learning it
    (CTrL's transfer, over every judged task)."""
    check_matrix(matrix)
    tasks = _tasks(matrix)
    if len(independent) != tasks:
        raise ValueError(f"{len(independent)} independent accuracies for {tasks} tasks")
    judged = range(judged_from, tasks)
    if not judged:
        raise ValueError(f"no judged task: judged_from={judged_from} with {tasks} tasks")
    return statistics.mean(_at(matrix, j, j) - independent[j] for j in judged)


def forward_transfer_gem(before: Sequence[float | None], at_init: Sequence[float | None]) -> float:
    """GEM's FWT: mean over the tasks after the first of ``before[j] - at_init[j]`` (entries for
    the first task are not read: it has no earlier model)."""
    if len(before) != len(at_init):
        raise ValueError(f"{len(before)} accuracies before learning, {len(at_init)} at initialisation")
    if len(before) < 2:
        raise ValueError(f"forward transfer needs a task after the first, got {len(before)} task(s)")
    gains = []
    for j in range(1, len(before)):
        now, init = before[j], at_init[j]
        if now is None or init is None:
            raise ValueError(f"task {j} has no accuracy before learning or at initialisation")
        gains.append(now - init)
    return statistics.mean(gains)


def summary(
    matrix: Matrix,
    independent: Sequence[float] | None = None,
    judged_from: int = 1,
    *,
    before: Sequence[float | None] | None = None,
    at_init: Sequence[float | None] | None = None,
) -> dict[str, float]:
    """Every metric above that ``matrix`` allows, with ``independent`` the two transfers against
    it, and with ``before`` and ``at_init`` (one entry per task) GEM's forward transfer; a
    figure without its data is absent, never 0."""
    result = {
        "average_final_accuracy": average_final_accuracy(matrix),
        "backward_transfer": backward_transfer(matrix),
        "forgetting_chaudhry": forgetting_chaudhry(matrix),
        "forgetting_avalanche": forgetting_avalanche(matrix),
    }
    tasks = _tasks(matrix)
    if independent is not None:
        result["transfer_vs_independent"] = transfer_vs_independent(matrix, independent, judged_from)
        last = tasks - 1
        result["transfer_vs_independent_last_task"] = _at(matrix, last, last) - independent[last]
    if before is not None and at_init is not None:
        if len(before) != tasks:
            raise ValueError(f"{len(before)} accuracies before learning for {tasks} tasks")
        if tasks > 1:
            result["forward_transfer_gem"] = forward_transfer_gem(before, at_init)
    return result


def _tasks(matrix: Matrix) -> int:
    """T: the number of tasks (columns)."""
    return len(matrix[0])


def _with_a_later_row(matrix: Matrix) -> range:
    """The tasks with a row after their own: ``j < last`` (and ``j < T``)."""
    return range(min(_tasks(matrix), len(matrix) - 1))


def _at(matrix: Matrix, i: int, j: int) -> float:
    value = matrix[i][j]
    assert value is not None  # check_matrix guarantees it at and below the diagonal
    return value


def _numbers(row: Sequence[float | None]) -> list[float]:
    return [value for value in row if value is not None]
