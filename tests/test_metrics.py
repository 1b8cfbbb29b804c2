"""Continual-learning metrics on hand-made accuracy matrices whose answers are known."""

from __future__ import annotations

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


def test_a_learner_that_never_changes_a_task_forgets_nothing() -> None:
    assert backward_transfer(FROZEN) == 0.0 and forgetting(FROZEN) == 0.0
    assert average_final_accuracy(FROZEN) == pytest.approx(0.8)


def test_forgetting_and_backward_transfer_measure_the_losses() -> None:
    assert backward_transfer(FORGETFUL) == pytest.approx(((0.5 - 0.9) + (0.4 - 0.8)) / 2)
    assert forgetting(FORGETFUL) == pytest.approx(((0.9 - 0.5) + (0.8 - 0.4)) / 2)
    assert average_final_accuracy(FORGETFUL) == pytest.approx((0.5 + 0.4 + 0.7) / 3)


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
    ],
)
def test_malformed_matrices_are_refused(matrix: list, needle: str) -> None:
    with pytest.raises(ValueError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        check_matrix(matrix)


def test_forward_transfer_needs_one_independent_accuracy_per_task() -> None:
    with pytest.raises(ValueError, match="2 independent accuracies for 3 tasks"):
        forward_transfer(FROZEN, [0.9, 0.8])
    with pytest.raises(ValueError, match="no judged task"):
        forward_transfer(FROZEN, [0.9, 0.8, 0.7], judged_from=3)
