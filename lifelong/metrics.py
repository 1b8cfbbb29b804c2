"""Continual-learning metrics from an accuracy matrix.

``R[i][j]`` is the test accuracy on task ``j`` after learning tasks ``0..i``; entries for tasks
not learned yet (``j > i``) are ``None``, since a task's output layer does not exist before it
is learned. From ``R`` (T tasks):

- average final accuracy: the mean of the last row;
- backward transfer (Lopez-Paz & Ranzato, 2017): mean over ``j < T-1`` of ``R[T-1][j] - R[j][j]``
  (negative: the stream made earlier tasks worse);
- forgetting (Chaudhry et al., 2018): mean over ``j < T-1`` of the best ``R[i][j]`` seen before
  the end minus ``R[T-1][j]``;
- forward transfer against ``independent`` (each task learned alone): mean over the judged tasks
  of ``R[j][j] - independent[j]``; CTrL's transfer is the same difference on the last task.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

Matrix = Sequence[Sequence[float | None]]


def check_matrix(matrix: Matrix) -> None:
    """``matrix`` is square, with a number at and below the diagonal and ``None`` above it."""
    size = len(matrix)
    if size == 0 or any(len(row) != size for row in matrix):
        raise ValueError(f"an accuracy matrix is T × T, got rows of lengths {[len(r) for r in matrix]}")
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            if (value is None) != (j > i):
                raise ValueError(f"R[{i}][{j}] must be {'None' if j > i else 'a number'}, got {value!r}")


def average_final_accuracy(matrix: Matrix) -> float:
    check_matrix(matrix)
    return statistics.mean(_numbers(matrix[-1]))


def backward_transfer(matrix: Matrix) -> float:
    """0 for a learner that never changes a learned task; 0 as well for a single task."""
    check_matrix(matrix)
    last = len(matrix) - 1
    return statistics.mean([_at(matrix, last, j) - _at(matrix, j, j) for j in range(last)] or [0.0])


def forgetting(matrix: Matrix) -> float:
    check_matrix(matrix)
    last = len(matrix) - 1
    drops = [max(_at(matrix, i, j) for i in range(j, last)) - _at(matrix, last, j) for j in range(last)]
    return statistics.mean(drops or [0.0])


def forward_transfer(matrix: Matrix, independent: Sequence[float], judged_from: int = 1) -> float:
    """Mean gain over learning each judged task alone (``independent[j]``), on first learning it."""
    check_matrix(matrix)
    if len(independent) != len(matrix):
        raise ValueError(f"{len(independent)} independent accuracies for {len(matrix)} tasks")
    judged = range(judged_from, len(matrix))
    if not judged:
        raise ValueError(f"no judged task: judged_from={judged_from} with {len(matrix)} tasks")
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
        last = len(matrix) - 1
        result["transfer_last_task"] = _at(matrix, last, last) - independent[last]
    return result


def _at(matrix: Matrix, i: int, j: int) -> float:
    value = matrix[i][j]
    assert value is not None  # check_matrix guarantees it at and below the diagonal
    return value


def _numbers(row: Sequence[float | None]) -> list[float]:
    return [value for value in row if value is not None]
