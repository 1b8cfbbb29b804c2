"""The fitness of a learning curve: what SMART's growth ranks its candidates by.

A candidate is trained briefly and validated along the way; its learning curve (training step,
validation accuracy) is turned into a sort key, bigger is better. SMART ranks by the slope of the
learning curve and compares it with the curve's max, its mean and a curve fit; here the default
``acc+slope`` ranks by final accuracy with the late slope breaking ties, and ``max``, ``mean``,
``slope`` and ``fit`` (a power law extrapolated to a horizon) are the alternatives. Pure numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

CurvePoints = Sequence[tuple[int, float]]  # a learning curve: (training step, validation accuracy)

# --- named constants (all overridable where they are used) -----------------------------------------

SLOPE_PER_STEPS = 1000
"""The ``slope`` criterion is in accuracy per this many training steps."""

FIT_EXPONENTS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(2, 41))
"""Grid of exponents c (0.10 … 2.00) for the ``fit`` criterion's model acc(t) = a − b·t^(−c)."""

FIT_STEP_OFFSET = 1
"""The ``fit`` model uses t = step + offset, so a curve that starts at step 0 is fine."""

CRITERIA = ("acc+slope", "max", "mean", "slope", "fit")
"""Fitness criteria of :func:`fitness`; SMART's default is ``acc+slope``."""


def _arrays(curve: CurvePoints) -> tuple[np.ndarray, np.ndarray]:
    if len(curve) == 0:
        raise ValueError("empty learning curve: the candidate was never validated")
    points = sorted((int(step), float(acc)) for step, acc in curve)
    steps = np.array([step for step, _ in points], dtype=float)
    accs = np.array([acc for _, acc in points], dtype=float)
    return steps, accs


def final_accuracy(curve: CurvePoints) -> float:
    """Validation accuracy at the last step."""
    return float(_arrays(curve)[1][-1])


def max_accuracy(curve: CurvePoints) -> float:
    return float(np.max(_arrays(curve)[1]))


def mean_accuracy(curve: CurvePoints) -> float:
    return float(np.mean(_arrays(curve)[1]))


def late_slope(curve: CurvePoints, *, per_steps: int = SLOPE_PER_STEPS) -> float:
    """Least-squares slope of accuracy vs step over the curve's second half, per ``per_steps`` steps.

    The second half is the last ``max(2, ⌈n/2⌉)`` points — what the candidate is doing now, not
    how fast it left chance level. A single point, or all points at one step, has slope 0.
    """
    steps, accs = _arrays(curve)
    start = min(len(steps) // 2, len(steps) - 2)
    if start < 0:
        return 0.0
    steps, accs = steps[start:], accs[start:]
    spread = float(np.sum((steps - steps.mean()) ** 2))
    if spread == 0.0:
        return 0.0
    return float(np.sum((steps - steps.mean()) * (accs - accs.mean())) / spread * per_steps)


def extrapolate(curve: CurvePoints, horizon: int, *, exponents: Sequence[float] = FIT_EXPONENTS) -> float:
    """Predicted accuracy at step ``horizon`` from a power-law fit, clipped to [0, 1].

    Model ``acc(t) = a − b·t^(−c)`` with ``t = step + FIT_STEP_OFFSET``: for each c on the grid,
    a and b are the closed-form least-squares solution (linear in x = t^(−c)); the c with the
    smallest squared error wins. Fewer than two distinct steps: the final accuracy.
    """
    steps, accs = _arrays(curve)
    t = steps + FIT_STEP_OFFSET
    if np.unique(t).size < 2:
        return float(np.clip(accs[-1], 0.0, 1.0))
    best_error, best_prediction = math.inf, float(accs[-1])
    for c in exponents:
        x = t ** (-c)
        dx = x - x.mean()
        spread = float(np.sum(dx * dx))
        if spread == 0.0:
            continue
        k = float(np.sum(dx * (accs - accs.mean())) / spread)  # k = −b
        a = float(accs.mean() - k * x.mean())
        error = float(np.sum((a + k * x - accs) ** 2))
        if error < best_error:
            best_error = error
            best_prediction = a + k * (horizon + FIT_STEP_OFFSET) ** (-c)
    return float(np.clip(best_prediction, 0.0, 1.0))


def check_criterion(criterion: str, horizon: int | None) -> None:
    """Raise ValueError unless ``criterion`` is one of :data:`CRITERIA` with what it needs."""
    if criterion not in CRITERIA:
        raise ValueError(f"unknown fitness criterion {criterion!r}; choose one of {', '.join(CRITERIA)}")
    if criterion == "fit" and horizon is None:
        raise ValueError("the 'fit' criterion needs a horizon (the step to extrapolate the curve to)")


def fitness(
    curve: CurvePoints, criterion: str = "acc+slope", horizon: int | None = None
) -> tuple[float, ...]:
    """A sort key for a learning curve: bigger is better, compared lexicographically.

    ``acc+slope`` (default): (final accuracy, late slope) — accuracy decides, slope breaks ties.
    ``max`` / ``mean``: (max or mean accuracy, final accuracy). ``slope``: (late slope, final
    accuracy). ``fit``: (accuracy extrapolated to step ``horizon``, final accuracy). NaN (a
    diverged run) counts as worst.
    """
    check_criterion(criterion, horizon)
    final = final_accuracy(curve)
    if criterion == "acc+slope":
        key = (final, late_slope(curve))
    elif criterion == "max":
        key = (max_accuracy(curve), final)
    elif criterion == "mean":
        key = (mean_accuracy(curve), final)
    elif criterion == "slope":
        key = (late_slope(curve), final)
    else:
        assert horizon is not None
        key = (extrapolate(curve, horizon), final)
    return tuple(-math.inf if math.isnan(value) else value for value in key)
