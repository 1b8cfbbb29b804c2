"""lifelong: a lifelong-learning agent with a persistent, transactional module library.

The agent's loop for each task is ``self_organize → grow → prune → commit`` (see
``lifelong.learn``); the library itself lives in :mod:`library_store`. This package is what
the CLI talks to: it re-exports the library and its errors, and builds the reports users see.
"""

from agents import EXIT_INTERRUPTED, quiet
from agents.classification.budget import DEFAULT_TARGET
from library_store import Library, LibraryError, NotALibrary
from lifelong.errors import LifelongError

__version__ = "0.1.0"
__all__ = [
    "DEFAULT_TARGET",
    "EXIT_INTERRUPTED",
    "Library",
    "LibraryError",
    "LifelongError",
    "NotALibrary",
    "__version__",
    "quiet",
]
