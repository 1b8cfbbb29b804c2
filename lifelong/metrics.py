"""Continual-learning metrics from an accuracy matrix.

``R[i][j]`` is the test accuracy on task ``j`` after learning tasks ``0..i``, for ``i < T`` (T
tasks, one column each); entries for tasks not learned yet (``j > i``) are ``None``, since a
task's output layer does not exist before it is learned. ``R`` may have rows after the T-th: each
an event after the last task was learned (a prune; "now", measured or read from the store), full,
since every task exists by then. So ``R`` is T × T (the learning rows only: a stream benchmark's
last row is measured right after the last task) or (T+k) × T (``lifelong metrics``: T rows of
accuracies when learned, then "now"). With ``last`` the last row:

- average final accuracy: the mean of the last row;
- backward transfer (Lopez-Paz & Ranzato, 2017): mean over the tasks ``j`` that have a row after
  their own (``j < last``: every task of a (T+k) × T matrix, all but the last of a T × T one) of
  ``R[last][j] - R[j][j]`` (negative: the stream, or a later event, made the task worse);
- forgetting (Chaudhry et al., 2018): mean over the same ``j`` of
  ``max(R[i][j] for j <= i < last) - R[last][j]``, the best accuracy seen before the end minus
  the last;
- forward transfer against ``independent`` (each task learned alone): mean over the judged tasks
  of ``R[j][j] - independent[j]``; CTrL's transfer is the same difference on the last task,
  ``R[T-1][T-1] - independent[T-1]`` (the diagonal: a task's accuracy when learned, not later).

Both backward transfer and forgetting are 0 when no task has a row after its own (one task, a
1 × 1 matrix).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

Matrix = Sequence[Sequence[float | None]]


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


def forgetting(matrix: Matrix) -> float:
    check_matrix(matrix)
    last = len(matrix) - 1
    drops = [
        max(_at(matrix, i, j) for i in range(j, last)) - _at(matrix, last, j)
        for j in _with_a_later_row(matrix)
    ]
    return statistics.mean(drops or [0.0])


def forward_transfer(matrix: Matrix, independent: Sequence[float], judged_from: int = 1) -> float:
    """Mean gain over learning each judged task alone (``independent[j]``), on first learning it."""
    check_matrix(matrix)
    tasks = _tasks(matrix)
    if len(independent) != tasks:
        raise ValueError(f"{len(independent)} independent accuracies for {tasks} tasks")
    judged = range(judged_from, tasks)
    if not judged:
        raise ValueError(f"no judged task: judged_from={judged_from} with {tasks} tasks")
    return statistics.mean(_at(matrix, j, j) - independent[j] for j in judged)


def summary(
    matrix: Matrix, independent: Sequence[float] | None = None, judged_from: int = 1
) -> dict[str, float]:
    """Every metric above that ``matrix`` (and ``independent``, when given) allows."""
    result = {
        "average_final_accuracy": average_final_accuracy(matrix),
        "backward_transfer": backward_transfer(matrix),
        "forgetting": forgetting(matrix),
    }
    if independent is not None:
        result["forward_transfer"] = forward_transfer(matrix, independent, judged_from)
        last = _tasks(matrix) - 1
        result["transfer_last_task"] = _at(matrix, last, last) - independent[last]
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
