"""The errors agents raise, and the base of every error of the agent layer (one line each)."""


class LifelongError(Exception):
    """Base class: a request the agent cannot carry out (bad spec, bad data, diverged training)."""


class TrainingError(LifelongError):
    """Training could not continue, e.g. the loss became NaN (learning rate too high?)."""


class BudgetError(LifelongError):
    """A budget with a value out of range (e.g. ``--population 1``)."""
