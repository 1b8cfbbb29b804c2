"""Continual-learning metrics on hand-made accuracy matrices whose answers are known."""

from __future__ import annotations

import re

import pytest

from lifelong.metrics import (
    OLD_NAMES,
    average_final_accuracy,
    backward_transfer,
    check_matrix,
    forgetting_avalanche,
    forgetting_chaudhry,
    forward_transfer_gem,
    summary,
    transfer_vs_independent,
    with_current_names,
)

# zero forgetting: each task keeps the accuracy it had when learned
FROZEN = [[0.9, None, None], [0.9, 0.8, None], [0.9, 0.8, 0.7]]
# a fine-tuned network: learning later tasks costs earlier ones
FORGETFUL = [[0.9, None, None], [0.6, 0.8, None], [0.5, 0.4, 0.7]]
# `lifelong metrics`: a row after each task, then "now"; a prune since cost the last task 0.3
PRUNED_LAST = [[0.9, None, None], [0.9, 0.8, None], [0.9, 0.8, 0.7], [0.9, 0.8, 0.4]]
# what a matrix alone gives (no independent learner, no accuracies before learning)
UNPAIRED = {"average_final_accuracy", "backward_transfer", "forgetting_chaudhry", "forgetting_avalanche"}


def test_every_figure_of_a_hand_built_stream() -> None:
    """Three tasks, each figure worked out by hand from its paper's definition. Task 0 rose
    after task 1 (0.8 → 0.9) before falling to 0.6, so Chaudhry's forgetting (from the best
    earlier accuracy, 0.9) and Avalanche's (from the accuracy just after learning, 0.8) differ."""
    matrix = [
        [0.80, None, None],
        [0.90, 0.70, None],
        [0.60, 0.65, 0.75],
    ]
    independent = [0.80, 0.72, 0.70]  # each task learned alone: CTrL's reference
    before = [None, 0.55, 0.40]  # GEM's R[j-1][j]: task j by the model that learned 0..j-1
    at_init = [None, 0.50, 0.52]  # GEM's b_j: task j by that model at its random initialisation
    result = summary(matrix, independent, judged_from=1, before=before, at_init=at_init)
    assert list(result) == [
        "average_final_accuracy",
        "backward_transfer",
        "forgetting_chaudhry",
        "forgetting_avalanche",
        "transfer_vs_independent",
        "transfer_vs_independent_last_task",
        "forward_transfer_gem",
    ]
    # ACC (GEM): the last row's mean
    assert result["average_final_accuracy"] == pytest.approx((0.60 + 0.65 + 0.75) / 3)
    # BWT (GEM): final minus just after learning, tasks 0 and 1 (the last has no later row)
    assert result["backward_transfer"] == pytest.approx(((0.60 - 0.80) + (0.65 - 0.70)) / 2) == -0.125
    # Chaudhry et al. 2018: best before the end minus final
    assert result["forgetting_chaudhry"] == pytest.approx(((0.90 - 0.60) + (0.70 - 0.65)) / 2) == 0.175
    # Avalanche: just after learning minus final (= -BWT)
    assert result["forgetting_avalanche"] == pytest.approx(((0.80 - 0.60) + (0.70 - 0.65)) / 2) == 0.125
    # CTrL (Veniat et al. 2021): first-learned accuracy minus independent, judged tasks 1 and 2 ...
    assert result["transfer_vs_independent"] == pytest.approx(((0.70 - 0.72) + (0.75 - 0.70)) / 2) == 0.015
    # ... and on the last task alone, CTrL's own figure
    assert result["transfer_vs_independent_last_task"] == pytest.approx(0.75 - 0.70)
    # FWT (GEM): before learning minus at random initialisation, tasks 1 and 2
    assert result["forward_transfer_gem"] == pytest.approx(((0.55 - 0.50) + (0.40 - 0.52)) / 2) == -0.035
    assert forgetting_avalanche(matrix) == pytest.approx(-backward_transfer(matrix))
    assert forward_transfer_gem(before, at_init) == result["forward_transfer_gem"]
    # GEM's forward transfer is absent, not 0, without its accuracies
    assert "forward_transfer_gem" not in summary(matrix, independent)


def test_gem_forward_transfer_needs_an_accuracy_before_learning_for_every_later_task() -> None:
    with pytest.raises(ValueError, match="task 2 has no accuracy before learning"):
        forward_transfer_gem([None, 0.5, None], [None, 0.5, 0.5])
    with pytest.raises(ValueError, match="3 accuracies before learning, 2 at initialisation"):
        forward_transfer_gem([None, 0.5, 0.5], [None, 0.5])
    with pytest.raises(ValueError, match="a task after the first"):
        forward_transfer_gem([None], [None])
    with pytest.raises(ValueError, match="2 accuracies before learning for 3 tasks"):
        summary(FROZEN, before=[None, 0.5], at_init=[None, 0.5])


def test_old_names_map_to_the_current_ones() -> None:
    """A `bench streams` condition's results and ratios as written before issue 27."""
    old = {
        "judged_test_acc": 0.9,
        "forgetting": 0.1,
        "forgetting_sd": 0.01,
        "forward_transfer": 0.02,
        "forward_transfer_sd": 0.002,
        "transfer_last_task": 0.03,
        "transfer_last_task_sd": None,
    }
    assert with_current_names(old) == {
        "judged_test_acc": 0.9,
        "forgetting_chaudhry": 0.1,
        "forgetting_chaudhry_sd": 0.01,
        "transfer_vs_independent": 0.02,
        "transfer_vs_independent_sd": 0.002,
        "transfer_vs_independent_last_task": 0.03,
        "transfer_vs_independent_last_task_sd": None,
    }
    ratios = {"lifelong_minus_random_library_points": 1.0, "lifelong_minus_independent_points": 2.0}
    assert with_current_names(ratios) == {"lifelong_minus_random_library_points": 1.0}  # a duplicate
    current = summary(FORGETFUL, [0.9, 0.8, 0.6])
    assert with_current_names(current) == current  # today's names stay
    assert not set(OLD_NAMES) & set(current)


def test_a_learner_that_never_changes_a_task_forgets_nothing() -> None:
    assert backward_transfer(FROZEN) == 0.0 and forgetting_chaudhry(FROZEN) == 0.0
    assert average_final_accuracy(FROZEN) == pytest.approx(0.8)


def test_forgetting_and_backward_transfer_measure_the_losses() -> None:
    assert backward_transfer(FORGETFUL) == pytest.approx(((0.5 - 0.9) + (0.4 - 0.8)) / 2)
    assert forgetting_chaudhry(FORGETFUL) == pytest.approx(((0.9 - 0.5) + (0.8 - 0.4)) / 2)
    assert average_final_accuracy(FORGETFUL) == pytest.approx((0.5 + 0.4 + 0.7) / 3)


def test_a_row_after_the_last_task_counts_every_task_the_last_one_included() -> None:
    assert backward_transfer(PRUNED_LAST) == pytest.approx((0 + 0 + (0.4 - 0.7)) / 3)
    assert forgetting_chaudhry(PRUNED_LAST) == pytest.approx((0 + 0 + (0.7 - 0.4)) / 3)
    assert forgetting_avalanche(PRUNED_LAST) == pytest.approx((0 + 0 + (0.7 - 0.4)) / 3)
    assert average_final_accuracy(PRUNED_LAST) == pytest.approx((0.9 + 0.8 + 0.4) / 3)
    assert summary([*FROZEN, FROZEN[-1]])["backward_transfer"] == 0  # "now" as learned: nothing lost
    assert summary([*FROZEN, FROZEN[-1]])["forgetting_chaudhry"] == 0


def test_later_rows_mix_with_losses_while_learning() -> None:
    """FORGETFUL, then a prune (row 3) and "now" (row 4): the best before the end is each task's
    maximum over rows j..3, the backward transfer against R[j][j]."""
    matrix = [*FORGETFUL, [0.7, 0.5, 0.75], [0.6, 0.5, 0.5]]
    assert backward_transfer(matrix) == pytest.approx(((0.6 - 0.9) + (0.5 - 0.8) + (0.5 - 0.7)) / 3)
    assert forgetting_chaudhry(matrix) == pytest.approx(((0.9 - 0.6) + (0.8 - 0.5) + (0.75 - 0.5)) / 3)
    # Avalanche's from the accuracy just after learning: task 2's 0.7, not the prune's 0.75
    assert forgetting_avalanche(matrix) == pytest.approx(((0.9 - 0.6) + (0.8 - 0.5) + (0.7 - 0.5)) / 3)
    # a gain since learning: positive backward transfer, negative forgetting (the best before
    # the end is below the end)
    better = [[0.5, None], [0.5, 0.6], [0.7, 0.9]]
    assert backward_transfer(better) == pytest.approx(((0.7 - 0.5) + (0.9 - 0.6)) / 2)
    assert forgetting_chaudhry(better) == pytest.approx(((0.5 - 0.7) + (0.6 - 0.9)) / 2)


def test_a_single_task_and_then_now() -> None:
    assert summary([[0.9], [0.5]]) == pytest.approx(
        {
            "average_final_accuracy": 0.5,
            "backward_transfer": -0.4,
            "forgetting_chaudhry": 0.4,
            "forgetting_avalanche": 0.4,
        }
    )


def test_a_square_matrix_is_measured_as_before() -> None:
    """The learning rows only (`bench streams`): the last task has no row after its own."""
    assert backward_transfer(FORGETFUL) == pytest.approx(-0.4)
    assert forgetting_chaudhry(FORGETFUL) == pytest.approx(0.4)
    square = [[0.9, None, None], [0.9, 0.8, None], [0.9, 0.8, 0.1]]  # the last task is not judged
    assert backward_transfer(square) == 0 and forgetting_chaudhry(square) == 0


def test_transfer_vs_independent_uses_the_diagonal_not_the_rows_after_the_last_task() -> None:
    independent = [0.9, 0.85, 0.6]
    result = summary(PRUNED_LAST, independent)
    assert result["transfer_vs_independent"] == pytest.approx(((0.8 - 0.85) + (0.7 - 0.6)) / 2)
    assert result["transfer_vs_independent_last_task"] == pytest.approx(0.7 - 0.6)  # R[2][2], not "now"'s 0.4
    with pytest.raises(ValueError, match="4 independent accuracies for 3 tasks"):
        transfer_vs_independent(PRUNED_LAST, [0.9, 0.85, 0.6, 0.5])


def test_transfer_vs_independent_compares_first_learning_with_learning_alone() -> None:
    independent = [0.9, 0.85, 0.6]
    assert transfer_vs_independent(FROZEN, independent) == pytest.approx(((0.8 - 0.85) + (0.7 - 0.6)) / 2)
    assert transfer_vs_independent(FROZEN, independent, judged_from=2) == pytest.approx(0.1)
    result = summary(FROZEN, independent)
    assert result["transfer_vs_independent_last_task"] == pytest.approx(0.1)
    assert set(result) == {*UNPAIRED, "transfer_vs_independent", "transfer_vs_independent_last_task"}
    assert set(summary(FROZEN)) == UNPAIRED


def test_a_single_task_has_nothing_to_forget() -> None:
    assert summary([[0.7]]) == {
        "average_final_accuracy": 0.7,
        "backward_transfer": 0.0,
        "forgetting_chaudhry": 0.0,
        "forgetting_avalanche": 0.0,
    }
    assert summary([[0.7]], before=[None], at_init=[None]) == summary([[0.7]])  # no task after the first


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


def test_transfer_vs_independent_needs_one_independent_accuracy_per_task() -> None:
    with pytest.raises(ValueError, match="2 independent accuracies for 3 tasks"):
        transfer_vs_independent(FROZEN, [0.9, 0.8])
    with pytest.raises(ValueError, match="no judged task"):
        transfer_vs_independent(FROZEN, [0.9, 0.8, 0.7], judged_from=3)
