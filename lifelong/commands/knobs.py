"""Flags derived from the option dataclasses. A field made with :func:`agents.knob` (a budget's,
a plan's, the prune settings') becomes a flag of every command that takes its dataclass:
``so_steps`` is ``--so-steps``, a bool ``--grow/--no-grow``, its type the field's, its help the
field's (with the field's default, if it has one). A flag left out is None: the preset's or the
dataclass's value. So a new knob is one field, written once.

``--set KEY=VALUE`` (the benchmarks) reaches every field of a budget, knob or not, by the same
types.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, fields
from typing import Annotated, Any, TypeVar

import typer

from agents import KNOB
from lifelong.errors import LifelongError

Command = TypeVar("Command", bound=Callable[..., None])
PANELS = {"classification": "Image tasks", "atari": "Atari"}  # a family's flags' help panel
KINDS = {"classification": "image", "atari": "Atari"}  # a family's tasks, as a message names them
TYPES = {kind.__name__: kind for kind in (int, float, str, bool)}  # what a knob's value can be


@dataclass(frozen=True)
class Knob:
    """One flag: the fields named ``name`` of the option dataclasses of ``families``."""

    name: str
    type: type
    help: str
    families: tuple[str, ...]

    @property
    def flag(self) -> str:
        dashed = self.name.replace("_", "-")
        return f"--{dashed}/--no-{dashed}" if self.type is bool else f"--{dashed}"

    def option(self) -> Any:
        panel = PANELS.get(self.families[0]) if len(self.families) == 1 else None
        return typer.Option(self.flag, help=self.help, rich_help_panel=panel)


@dataclass(frozen=True)
class Given:
    """The knob flags a user gave (field name → value), and which families each is for."""

    values: dict[str, Any]
    knobs: dict[str, Knob]

    def of(self, options: type) -> dict[str, Any]:
        """The given values of the fields of dataclass ``options``: its overrides."""
        return {f.name: self.values[f.name] for f in fields(options) if f.name in self.values}

    def refuse_other_families(self, families: set[str]) -> None:
        """A flag for a family that none of the tasks belongs to is refused, not silently ignored."""
        for family in KINDS:
            given = [self.knobs[n].flag for n in self.values if self.knobs[n].families == (family,)]
            if given and family not in families:
                raise typer.BadParameter(
                    f"{', '.join(given)}: for {KINDS[family]} tasks only, and no task given is one"
                )


NO_KNOBS = Given({}, {})  # a command's ``knobs`` default; the decorator always passes the given ones


def knobs_of(families: Mapping[str, Sequence[type]]) -> dict[str, Knob]:
    """The knobs of each family's dataclasses, one per name: a name that two families share (as
    ``generations``) is one flag setting both, its help saying what it means for each."""
    found: dict[str, list[tuple[str, type, str]]] = {}
    for family, classes in families.items():
        for options in classes:
            for f in fields(options):
                if KNOB in f.metadata:
                    found.setdefault(f.name, []).append((family, field_type(options, f), _help(f)))
    knobs = {}
    for name, owners in found.items():
        kinds = {kind for _, kind, _ in owners}
        if len(kinds) > 1:
            raise TypeError(f"knob {name!r} has different types: {kinds}")
        if len(owners) == 1:
            text = owners[0][2]
        else:
            text = " ".join(f"{KINDS[family].capitalize()} tasks: {help}" for family, _, help in owners)
        knobs[name] = Knob(name, kinds.pop(), text, tuple(family for family, _, _ in owners))
    return knobs


def field_type(options: type, f: Field[Any]) -> type:
    """The type of field ``f`` of dataclass ``options``: what a flag or a ``--set`` value is read as."""
    kind = TYPES.get(f.type) if isinstance(f.type, str) else f.type  # postponed annotations: a name
    if kind not in TYPES.values():
        raise TypeError(f"{options.__name__}.{f.name}: a flag is an int, float, str or bool, not {f.type}")
    return kind


def with_knobs(families: Mapping[str, Sequence[type]]) -> Callable[[Command], Command]:
    """Add every knob of ``families``' dataclasses to a typer command as a flag (after its own
    parameters); the command receives the flags the user gave as ``knobs: Given``. Keys of
    ``families`` name task families (their flags' help panel); any other key just groups."""
    knobs = knobs_of(families)

    def decorate(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "knobs"]
        added = [
            inspect.Parameter(
                k.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[k.type | None, k.option()],
            )
            for k in knobs.values()
        ]

        @functools.wraps(command)
        def with_given(*args: Any, **kwargs: Any) -> None:
            values = {n: v for n in knobs if (v := kwargs.pop(n)) is not None}
            command(*args, knobs=Given(values, knobs), **kwargs)

        with_given.__signature__ = signature.replace(parameters=[*own, *added])  # type: ignore[attr-defined]
        return typing.cast(Command, with_given)

    return decorate


def knob_help(options: type, name: str) -> str:
    """The help of knob ``name`` of dataclass ``options`` (for a flag a command declares itself)."""
    return _help(next(f for f in fields(options) if f.name == name))


def parse_settings(settings: list[str], budget: Any) -> dict[str, Any]:
    """``--set KEY=VALUE`` fields of a family's ``budget`` (``growth_margin=0.02``,
    ``recall=false``, ``transfer_init=inherit``), each value read as its field's type; the budget
    they go into checks the values."""
    kinds = {f.name: field_type(type(budget), f) for f in fields(budget)}
    names = list(kinds)
    values: dict[str, Any] = {}
    for setting in settings:
        key, equals, text = setting.partition("=")
        key = key.strip().replace("-", "_")
        if not equals or key not in names:
            raise LifelongError(f"bad --set {setting!r}: give KEY=VALUE, KEY one of {', '.join(names)}")
        kind = kinds[key]
        try:
            if kind is bool:
                if text.lower() not in ("true", "false"):
                    raise ValueError
                values[key] = text.lower() == "true"
            else:
                values[key] = kind(text)
        except ValueError:
            raise LifelongError(f"bad --set {setting!r}: {key} takes a {kind.__name__}") from None
    return values


def _help(f: Field[Any]) -> str:
    """A knob's help, with its default when the field has one (else the preset gives it)."""
    text, default = f.metadata[KNOB], f.default
    if default is MISSING:
        return text
    if isinstance(default, bool):
        default = f"--{'' if default else 'no-'}{f.name.replace('_', '-')}"
    return f"{text} (default: {default})"
