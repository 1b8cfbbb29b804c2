"""Task specs and task names.

A spec names a task and its data in one string::

    mnist:3v8        binary: digit 3 → class 0, digit 8 → class 1
    mnist:0-4        classes 0..4          mnist:0,2,5   those three classes
    mnist            all ten classes       fashion:…     the same for Fashion-MNIST
    imagefolder:PATH your own images (torchvision ImageFolder: one sub-folder per class)
    npz:PATH         arrays x_train, y_train, x_test, y_test
    atari:Pong       an Atari game (the Atari agent), resolved when the spec is parsed
    …@200            suffix: use 200 training examples (not for atari); …@5pc: 5 per class
    …~invert         suffixes, applied in order: ~invert, ~rot90 (images), ~permute=SEED (one
                     fixed pixel permutation), ~labels=SEED (one fixed permutation of the labels)

Spec text and task names are stripped of surrounding white space; a name must not be empty, hold
a control character (newline, tab, …) or be longer than ``NAME_MAX`` characters: the store's rules
(:func:`library_store.task_name_problem`), checked here before any work. What a spec's data may
hold, and how they are read, is :mod:`lifelong.task_data`'s business.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from agents.task import TaskSpec
from library_store import task_name_problem
from lifelong.errors import TaskSpecError

if TYPE_CHECKING:
    from agents.atari.games import Game
    from library_store import Library

DATASETS = {"mnist": "mnist", "fashion": "fashion-mnist"}
SOURCES = (*DATASETS, "imagefolder", "npz", "atari")
# spec transforms (``~name`` or ``~name=SEED``): whether each takes a seed
TRANSFORMS = {"invert": False, "rot90": False, "permute": True, "labels": True}


def parse_spec(text: str) -> TaskSpec:
    """Parse a spec string; raise :class:`TaskSpecError` with a one-line reason if it is wrong."""
    text = text.strip()
    if not text:
        raise TaskSpecError("empty task spec (e.g. mnist:3v8)")
    rest, transforms = _split_transforms(text)
    body, at, size_text = rest.partition("@")
    train_size, per_class = None, False
    if at:
        size = re.fullmatch(r"([0-9]+)(pc)?", size_text)
        if size is None or int(size[1]) < 1:
            raise TaskSpecError(
                f"bad spec {text!r}: '@{size_text}' must be a positive number of examples "
                "(e.g. @200), or of examples per class (e.g. @5pc)"
            )
        train_size, per_class = int(size[1]), bool(size[2])
    source, colon, argument = body.partition(":")
    source = source.lower()
    if source not in SOURCES:
        raise TaskSpecError(f"unknown dataset {source!r} in {text!r} (known: {', '.join(SOURCES)})")
    if source in DATASETS:
        if colon and not argument:
            raise TaskSpecError(
                f"bad spec {text!r}: no classes after ':' (e.g. {source}:3v8; {source} alone means all ten)"
            )
        classes = _parse_classes(argument, text) if argument else tuple(range(10))
        return TaskSpec(
            text, source, classes=classes, train_size=train_size, per_class=per_class, transforms=transforms
        )
    if not argument:
        raise TaskSpecError(f"bad spec {text!r}: {source} needs a {'game' if source == 'atari' else 'path'}")
    if source == "atari":
        if at:
            raise TaskSpecError(f"bad spec {text!r}: '@N' counts training examples; Atari tasks have none")
        if transforms:
            raise TaskSpecError(f"bad spec {text!r}: '~' transforms images; Atari tasks have none")
        return TaskSpec(text, source, game=_resolve_game(argument))
    path = Path(argument).expanduser()
    if not path.exists():
        raise TaskSpecError(f"bad spec {text!r}: {path} does not exist")
    return TaskSpec(
        text, source, path=path, train_size=train_size, per_class=per_class, transforms=transforms
    )


def _split_transforms(text: str) -> tuple[str, tuple[str, ...]]:
    """``mnist:3v8@20~invert~permute=3`` → (``mnist:3v8@20``, (``invert``, ``permute=3``)).
    Only a trailing ``~word`` counts, so a path such as ``npz:~/data.npz`` keeps its ``~``."""
    found: list[str] = []
    while match := re.search(r"~([A-Za-z]\w*(?:=[^~@/]*)?)$", text):
        name, _, value = match[1].partition("=")
        if (
            name not in TRANSFORMS
            or (TRANSFORMS[name] and not value.isdigit())
            or (not TRANSFORMS[name] and value)
        ):
            known = ", ".join(f"~{n}=SEED" if seeded else f"~{n}" for n, seeded in TRANSFORMS.items())
            raise TaskSpecError(f"bad spec {text!r}: unknown transform '~{match[1]}' (known: {known})")
        found.insert(0, match[1])
        text = text[: match.start()]
    return text, tuple(found)


def check_names(library: Library, specs: list[TaskSpec], names: list[str] | None) -> list[str]:
    """The task names for ``specs`` (default: the spec strings), stripped and checked before any
    work starts: one per spec, each a usable name, no two alike, none already in ``library``."""
    names = [name.strip() for name in names] if names else [spec.text for spec in specs]
    if len(names) != len(specs):
        raise TaskSpecError(f"{len(names)} --name values for {len(specs)} specs")
    for name in names:
        problem = task_name_problem(name)  # the store's rules, the ones it applies at commit
        if problem:
            raise TaskSpecError(problem)
    twice = next((name for i, name in enumerate(names) if name in names[:i]), None)
    if twice is not None:
        raise TaskSpecError(f"the same task name is given twice: {twice!r}")
    existing = {task.name.strip() for task in library.tasks()}
    clash = [name for name in names if name in existing]
    if clash:
        raise TaskSpecError(f"task {clash[0]!r} already exists; choose another --name")
    return names


def _resolve_game(argument: str) -> Game:
    """An Atari game; an unknown game (or a missing ROM) fails here, before any work."""
    from agents.atari.games import GameError, resolve_game

    try:
        return resolve_game(argument)
    except GameError as error:
        raise TaskSpecError(str(error)) from None


def _parse_classes(argument: str, text: str) -> tuple[int, ...]:
    if re.fullmatch(r"\d+v\d+", argument):
        parts = argument.split("v")
    elif re.fullmatch(r"\d+-\d+", argument):
        low, high = (int(p) for p in argument.split("-"))
        if low >= high:
            raise TaskSpecError(f"bad spec {text!r}: range {argument} must go up (e.g. 0-4)")
        parts = [str(c) for c in range(low, high + 1)]
    elif re.fullmatch(r"\d+(,\d+)+", argument):
        parts = argument.split(",")
    else:
        raise TaskSpecError(f"bad spec {text!r}: classes must look like 3v8, 0-4 or 0,2,5")
    classes = tuple(int(p) for p in parts)
    for c in classes:
        if c > 9:
            raise TaskSpecError(f"bad spec {text!r}: class {c} does not exist (classes are 0-9)")
    duplicates = sorted({c for c in classes if classes.count(c) > 1})
    if duplicates:
        raise TaskSpecError(f"bad spec {text!r}: class {duplicates[0]} is listed twice")
    return classes
