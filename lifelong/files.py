"""Files written for users (exported networks, videos): checked before the work that makes them,
then written whole or not at all (a temporary file beside the target, moved into place)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from lifelong.errors import LifelongError


def check_output_file(path: Path) -> None:
    """Raise a one-line :class:`LifelongError` unless ``path`` can be written as a file."""
    if path.is_dir():
        raise LifelongError(f"cannot write {path}: it is a folder; give a file name")
    _check_writable(path.parent, path)


def check_output_folder(path: Path) -> None:
    """Raise a one-line :class:`LifelongError` unless files can be written into the folder
    ``path`` (made when missing)."""
    if path.exists() and not path.is_dir():
        raise LifelongError(f"cannot write into {path}: it is a file; give a folder")
    _check_writable(path, path)


def _check_writable(folder: Path, target: Path) -> None:
    """``folder``, or its nearest existing parent, is a folder this process can write in."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise LifelongError(f"cannot write {target}: {existing} is a file, not a folder")
    try:  # a real probe: permission bits do not stop root, a read-only mount does
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".lifelong-probe-"):
            pass
    except OSError as error:
        raise LifelongError(f"cannot write {target}: {existing} is not writable ({error.strerror})") from None


def write_file(path: Path, write: Callable[[Path], None]) -> None:
    """Create ``path`` with ``write(temporary_path)``; on any failure no partial file is left."""
    check_output_file(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=path.suffix)
        os.close(handle)
        try:
            write(Path(temporary))
            os.replace(temporary, path)
        finally:
            Path(temporary).unlink(missing_ok=True)
    except OSError as error:
        raise LifelongError(f"cannot write {path}: {error.strerror or error}") from None
