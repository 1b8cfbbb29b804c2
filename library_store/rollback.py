"""Taking back a change that failed half-way (a full disk, an I/O error, Ctrl-C during a commit).

icechunk writes a change as new, immutable objects (files in ``chunks/``, ``manifests/``,
``snapshots/``, ``transactions/``) and then moves references: a branch's
``refs/branch.<name>/ref.json`` is rewritten, a new tag is a new ``refs/tag.<name>/`` folder.
Under the writer lock nothing else writes to the repository, so a failed change is taken back
exactly by writing the branch references back, removing the tag folders and the objects it
added. No step needs free space, so this works on a full disk. (icechunk's own ``delete_tag``
would not do: it leaves a tombstone that forbids the tag's name for ever.)
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

REFS = "refs"
SETTLE_S, SETTLE_MAX_S = 0.02, 1.0  # how long to watch for an object write still in flight
# Folders of objects: every change may write to all of them ...
OBJECT_FOLDERS = ("chunks", "manifests", "snapshots", "transactions")
# ... but a commit without arrays (a history entry) writes only these; snapshot and restore
# list just them, so that their cost does not grow with the number of modules.
COMMIT_FOLDERS = ("snapshots", "transactions")


@dataclass(frozen=True)
class Mark:
    """The repository's files before a change, as far as the change can alter them."""

    objects: dict[str, frozenset[str]]  # folder → the names in it
    refs: frozenset[str]  # the folders under refs/ (one per branch or tag)
    branches: dict[str, bytes]  # refs/branch.<name>/ref.json → its bytes


def _names(folder: Path) -> frozenset[str]:
    try:
        return frozenset(os.listdir(folder))
    except FileNotFoundError:  # icechunk makes a folder with its first object
        return frozenset()


def tag_names(repo: Path) -> list[str]:
    """The repository's tags, sorted, from one directory listing (icechunk's own ``list_tags``
    reads every tag's file, so its cost grows with the number of snapshots)."""
    return sorted(ref.removeprefix("tag.") for ref in _names(repo / REFS) if ref.startswith("tag."))


def mark(repo: Path, folders: tuple[str, ...]) -> Mark:
    """Note what a change writing to ``folders`` (and to refs) could alter."""
    refs = _names(repo / REFS)
    branches = {
        f"{ref}/ref.json": (repo / REFS / ref / "ref.json").read_bytes()
        for ref in refs
        if ref.startswith("branch.")
    }
    return Mark({folder: _names(repo / folder) for folder in folders}, refs, branches)


def take_back(repo: Path, before: Mark) -> None:
    """Return the repository to ``before``: references first (so that nothing points at an object
    about to go), then the objects the change added. Raises ``OSError`` if a step fails."""
    for ref, content in before.branches.items():
        path = repo / REFS / ref
        if path.read_bytes() != content:
            # In place, in one write: a ref never shrinks or grows, so this needs no free space
            # and a kill cannot leave it empty.
            with open(path, "r+b") as file:
                file.write(content)
                file.truncate()
    for ref in _names(repo / REFS) - before.refs:
        shutil.rmtree(repo / REFS / ref)
    # icechunk writes a commit's objects concurrently: when one write fails, another may still
    # be landing. Remove what the change added until a listing SETTLE_S later finds nothing new.
    _remove_added(repo, before)
    deadline = time.monotonic() + SETTLE_MAX_S
    while time.monotonic() < deadline:
        time.sleep(SETTLE_S)
        if not _remove_added(repo, before):
            break


def _added(repo: Path, before: Mark) -> list[Path]:
    return [
        repo / folder / name
        for folder, names in before.objects.items()
        for name in _names(repo / folder) - names
    ]


def _remove_added(repo: Path, before: Mark) -> bool:
    """Remove the objects added since ``before``; whether there were any."""
    added = _added(repo, before)
    for path in added:
        path.unlink(missing_ok=True)
    return bool(added)
