"""Every failure the library can report, as one exception family.

Each message is a single line a user can act on; the CLI prints it as is.
"""


class LibraryError(Exception):
    """Base class: anything that goes wrong with a library, said in one line."""


class NotALibrary(LibraryError):
    """The path holds no library (or something that is not one)."""


class SchemaTooNew(LibraryError):
    """The library was written by a newer version of this software."""


class LibraryDamaged(LibraryError):
    """The store cannot be read: missing or corrupt files."""


class LibraryLocked(LibraryError):
    """Another writer holds the lock for longer than we were willing to wait."""


class UnknownModule(LibraryError):
    """No module with that id."""


class UnknownTask(LibraryError):
    """No task with that name."""


class UnknownSnapshot(LibraryError):
    """No snapshot with that name."""


class Conflict(LibraryError):
    """The change contradicts what is stored (duplicate name, module still in use, ...)."""


class InvalidRecord(LibraryError):
    """A record or array handed to the library is malformed."""
