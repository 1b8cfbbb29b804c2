"""Every failure the library can report, as one exception family.

Each message is a single line a user can act on; the CLI prints it as is.
"""

import re


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


class NotWritable(LibraryError):
    """The library's folders cannot be written (a read-only file system, no permission)."""


class StorageError(LibraryError):
    """Writing a change failed underneath the library; the change was taken back."""


class StorageFull(StorageError):
    """The disk filled up while writing a change; the change was taken back."""


class InvalidSetting(LibraryError):
    """A setting (an option or an environment variable) has a value that cannot be used."""


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


_OBJECT_REPR = re.compile(r" ?<[\w.]+ object at 0x[0-9a-fA-F]+>")


def first_line(error: BaseException) -> str:
    """The gist of ``error`` in one line; for icechunk's multi-line reports ("  x what", then
    context, then "`-> cause" lines), their innermost cause."""
    text = _OBJECT_REPR.sub("", str(error))  # "store <IcechunkStore object at 0x…>": internals
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    causes = [line.removeprefix("`->").strip() for line in lines if line.startswith("`->")]
    if causes:
        return causes[-1]
    if not lines:
        return type(error).__name__
    return lines[0][2:] if text.startswith("  x ") else lines[0]
