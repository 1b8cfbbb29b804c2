"""What every command group shares: the global settings, printing (rich tables or --json), live
progress, and the option definitions that more than one command takes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

import lifelong
from lifelong import listings

if TYPE_CHECKING:
    import torch

# Piped output (scripts, tests, logs) gets wide tables rather than rich's default 80 columns.
out = Console(width=None if sys.stdout.isatty() else 200)


class Settings:
    """Global options, shared by every command through typer's context."""

    def __init__(self, library: Path, as_json: bool, lock_timeout: float | None) -> None:
        self.library_path = library
        self.as_json = as_json
        self.lock_timeout = lock_timeout

    def open(self) -> lifelong.Library:
        return lifelong.Library.open(self.library_path, lock_timeout=self.lock_timeout)


def settings_of(ctx: typer.Context) -> Settings:
    return ctx.obj


def show(settings: Settings, data: Any, title: str = "", columns: list[str] | None = None) -> None:
    """Print ``data`` as JSON or as a rich table (a list of rows) / key-value table (a dict)."""
    if settings.as_json:
        print(listings.to_json(data))
        return
    if isinstance(data, dict):
        table = Table(title=title, show_header=False)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for key, value in data.items():
            table.add_row(key, cell(value))
        out.print(table)
        return
    if not data:
        out.print(f"{title}: none")
        return
    columns = columns or list(data[0])
    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in data:
        table.add_row(*(cell(row.get(column)) for column in columns))
    out.print(table)


def cell(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={cell(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def live_progress(settings: Settings) -> AbstractContextManager[Callable[..., None]]:
    """Live progress bars for a person; nothing for --json."""
    from lifelong.progress import LiveProgress

    return nullcontext(lifelong.quiet) if settings.as_json else LiveProgress()


BudgetOpt = Annotated[str, typer.Option("--budget", help="Preset: quick (CPU minutes), standard, paper.")]
SEED_MAX = 2**32 - 1  # what every generator the agents seed (numpy, torch, the ALE) accepts
SeedOpt = Annotated[
    int, typer.Option(min=0, max=SEED_MAX, help="Seed for data split, initialisation, batches, evolution.")
]


def parse_device(name: str) -> torch.device:
    """Every ``--device``'s parser: the device ``name`` means, resolved once, when the command line
    is parsed (a bad name fails before any work; nothing below the CLI resolves it again)."""
    from lifelong.device import resolve_device

    return resolve_device(name)


# a --device option's value is a torch.device (typed Any: torch loads when it is parsed, not at start)
DeviceOpt = Annotated[
    Any,
    typer.Option(
        parser=parse_device, metavar="DEVICE", help="auto (CUDA when present), cpu, cuda or cuda:N."
    ),
]
EvalDeviceOpt = Annotated[
    Any,
    typer.Option(
        parser=parse_device, metavar="DEVICE", help="cpu (bit-exact with the commit), cuda or cuda:N."
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        help="Worker processes (default: one per core, or per CPU of the Ray cluster; 0: this "
        "process does all the work). Each gets its share of the cores as torch threads.",
        min=0,
    ),
]
ExecutorOpt = Annotated[str, typer.Option(help="Where the workers run: local or ray.")]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(help="The Ray cluster for --executor ray (default: $RAY_ADDRESS, else a local one)."),
]
DataDirOpt = Annotated[Path | None, typer.Option(help="Data cache (env LIFELONG_DATA, default ./data).")]
ReportDirOpt = Annotated[Path, typer.Option("--out", help="Folder for the report's PNGs and index.html.")]


def warn_damaged(names: list[str], what: str) -> None:
    """One line on stderr naming what is damaged (the listing still shows it, flagged)."""
    if names:
        print(
            f"warning: {what}: {', '.join(names)}; run `lifelong check`, then `lifelong restore <snapshot>`",
            file=sys.stderr,
        )


# the benchmarks' results folder and seeds
ResultsDirOpt = Annotated[Path, typer.Option(help="Where the JSON result goes.")]
SeedsOpt = Annotated[str, typer.Option(help="Comma-separated seeds (≥ 3 for a mean ± sd).")]


def parse_ints(text: str, option: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise typer.BadParameter(f"{option} must be comma-separated whole numbers, got {text!r}") from None
    if not values:
        raise typer.BadParameter(f"{option} is empty")
    return values


def parse_seeds(text: str) -> list[int]:
    """--seeds: distinct whole numbers that every seeded generator accepts (as --seed)."""
    seeds = parse_ints(text, "--seeds")
    wrong = [seed for seed in seeds if not 0 <= seed <= SEED_MAX]
    if wrong:
        raise typer.BadParameter(f"--seeds must lie in 0..{SEED_MAX}, got {wrong[0]}")
    if len(set(seeds)) < len(seeds):
        raise typer.BadParameter(f"--seeds must be distinct, got {text!r}")
    return seeds
