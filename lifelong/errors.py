"""Errors of the agent layer. Like the library's, each message is one line a user can act on."""

from agents.errors import LifelongError, TrainingError

__all__ = ["Interrupted", "LifelongError", "TargetMissed", "TaskDataError", "TaskSpecError", "TrainingError"]


class TaskSpecError(LifelongError):
    """A task spec string that does not parse, or names classes that do not exist."""


class TaskDataError(LifelongError):
    """The task's data is missing or malformed (empty image folder, wrong npz shapes, ...)."""


class TargetMissed(LifelongError):
    """``--require-target``: the task fell short of its target, so it was not committed."""


class Interrupted(LifelongError):
    """Ctrl-C during ``learn``; the message says what the call committed before it."""
