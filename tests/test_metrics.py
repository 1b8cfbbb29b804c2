"""Continual-learning metrics on hand-made accuracy matrices whose answers are known."""

from __future__ import annotations

import re

import pytest

from lifelong.metrics import (
    average_final_accuracy,
    backward_transfer,
    check_matrix,
    forgetting,
    forward_transfer,
    summary,
)

# zero forgetting: each task keeps the accuracy it had when learned
FROZEN = [[0.9, None, None], [0.9, 0.8, None], [0.9, 0.8, 0.7]]
# a fine-tuned network: learning later tasks costs earlier ones
FORGETFUL = [[0.9, None, None], [0.6, 0.8, None], [0.5, 0.4, 0.7]]
# `lifelong metrics`: a row after each task, then "now"; a prune since cost the last task 0.3
PRUNED_LAST = [[0.9, None, None], [0.9, 0.8, None], [0.9, 0.8, 0.7], [0.9, 0.8, 0.4]]


def test_a_learner_that_never_changes_a_task_forgets_nothing() -> None:
    assert backward_transfer(FROZEN) == 0.0 and forgetting(FROZEN) == 0.0
    assert average_final_accuracy(FROZEN) == pytest.approx(0.8)


def test_forgetting_and_backward_transfer_measure_the_losses() -> None:
    assert backward_transfer(FORGETFUL) == pytest.approx(((0.5 - 0.9) + (0.4 - 0.8)) / 2)
    assert forgetting(FORGETFUL) == pytest.approx(((0.9 - 0.5) + (0.8 - 0.4)) / 2)
    assert average_final_accuracy(FORGETFUL) == pytest.approx((0.5 + 0.4 + 0.7) / 3)


def test_a_row_after_the_last_task_counts_every_task_the_last_one_included() -> None:
    assert backward_transfer(PRUNED_LAST) == pytest.approx((0 + 0 + (0.4 - 0.7)) / 3)
    assert forgetting(PRUNED_LAST) == pytest.approx((0 + 0 + (0.7 - 0.4)) / 3)
    assert average_final_accuracy(PRUNED_LAST) == pytest.approx((0.9 + 0.8 + 0.4) / 3)
    assert summary([*FROZEN, FROZEN[-1]])["backward_transfer"] == 0  # "now" as learned: nothing lost
    assert summary([*FROZEN, FROZEN[-1]])["forgetting"] == 0


def test_later_rows_mix_with_losses_while_learning() -> None:
    """FORGETFUL, then a prune (row 3) and "now" (row 4): the best before the end is each task's
    maximum over rows j..3, the backward transfer against R[j][j]."""
    matrix = [*FORGETFUL, [0.7, 0.5, 0.75], [0.6, 0.5, 0.5]]
    assert backward_transfer(matrix) == pytest.approx(((0.6 - 0.9) + (0.5 - 0.8) + (0.5 - 0.7)) / 3)
    assert forgetting(matrix) == pytest.approx(((0.9 - 0.6) + (0.8 - 0.5) + (0.75 - 0.5)) / 3)
    # a gain since learning: positive backward transfer, negative forgetting (the best before
    # the end is below the end)
    better = [[0.5, None], [0.5, 0.6], [0.7, 0.9]]
    assert backward_transfer(better) == pytest.approx(((0.7 - 0.5) + (0.9 - 0.6)) / 2)
    assert forgetting(better) == pytest.approx(((0.5 - 0.7) + (0.6 - 0.9)) / 2)


def test_a_single_task_and_then_now() -> None:
    assert summary([[0.9], [0.5]]) == pytest.approx(
        {"average_final_accuracy": 0.5, "backward_transfer": -0.4, "forgetting": 0.4}
    )


def test_a_square_matrix_is_measured_as_before() -> None:
    """The learning rows only (`bench streams`): the last task has no row after its own."""
    assert backward_transfer(FORGETFUL) == pytest.approx(-0.4)
    assert forgetting(FORGETFUL) == pytest.approx(0.4)
    square = [[0.9, None, None], [0.9, 0.8, None], [0.9, 0.8, 0.1]]  # the last task is not judged
    assert backward_transfer(square) == 0 and forgetting(square) == 0


def test_forward_transfer_uses_the_diagonal_not_the_rows_after_the_last_task() -> None:
    independent = [0.9, 0.85, 0.6]
    result = summary(PRUNED_LAST, independent)
    assert result["forward_transfer"] == pytest.approx(((0.8 - 0.85) + (0.7 - 0.6)) / 2)
    assert result["transfer_last_task"] == pytest.approx(0.7 - 0.6)  # R[2][2], not "now"'s 0.4
    with pytest.raises(ValueError, match="4 independent accuracies for 3 tasks"):
        forward_transfer(PRUNED_LAST, [0.9, 0.85, 0.6, 0.5])


def test_forward_transfer_compares_first_learning_with_learning_alone() -> None:
    independent = [0.9, 0.85, 0.6]
    assert forward_transfer(FROZEN, independent) == pytest.approx(((0.8 - 0.85) + (0.7 - 0.6)) / 2)
    assert forward_transfer(FROZEN, independent, judged_from=2) == pytest.approx(0.1)
    result = summary(FROZEN, independent)
    assert result["transfer_last_task"] == pytest.approx(0.1)
    assert set(result) == {
        "average_final_accuracy", "backward_transfer", "forgetting", "forward_transfer", "transfer_last_task",
    }  # fmt: skip
    assert set(summary(FROZEN)) == {"average_final_accuracy", "backward_transfer", "forgetting"}


def test_a_single_task_has_nothing_to_forget() -> None:
    assert summary([[0.7]]) == {"average_final_accuracy": 0.7, "backward_transfer": 0.0, "forgetting": 0.0}


@pytest.mark.parametrize(
    ("matrix", "needle"),
    [
        ([], "T × T"),
        ([[0.9, None], [0.8]], "T × T"),
        ([[0.9, 0.1], [0.8, 0.7]], "R[0][1] must be None"),
        ([[0.9, None], [None, 0.7]], "R[1][0] must be a number"),
        ([[]], "T × T or (T+k) × T"),
        ([[0.9, None, None], [0.9, 0.8, None]], "T × T or (T+k) × T"),  # fewer rows than tasks
        ([[0.9, None], [0.9, 0.8], [0.9]], "T × T or (T+k) × T"),  # a short row after the last task's
        ([[0.9, None], [0.9, 0.8], [0.9, None]], "R[2][1] must be a number (a row after the last"),
        ([[0.9, None], [0.9, 0.8], [0.9, 0.8], [None, 0.8]], "R[3][0] must be a number"),
        ([[0.9, 0.5], [0.9, 0.8], [0.9, 0.8]], "R[0][1] must be None (above the diagonal)"),
    ],
)
def test_malformed_matrices_are_refused(matrix: list, needle: str) -> None:
    with pytest.raises(ValueError, match=re.escape(needle)):
        check_matrix(matrix)


def test_forward_transfer_needs_one_independent_accuracy_per_task() -> None:
    with pytest.raises(ValueError, match="2 independent accuracies for 3 tasks"):
        forward_transfer(FROZEN, [0.9, 0.8])
    with pytest.raises(ValueError, match="no judged task"):
        forward_transfer(FROZEN, [0.9, 0.8, 0.7], judged_from=3)
