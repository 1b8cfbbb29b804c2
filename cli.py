"""The `lifelong` command line: parse, call into `lifelong`, print (rich tables or --json).

Every error is one line on stderr and exit code 2; nothing here touches the store directly.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

import lifelong
from lifelong import reports

app = typer.Typer(
    name="lifelong",
    help="A lifelong-learning agent with a persistent module library.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
snapshot_app = typer.Typer(help="Name library states and list them.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks; each writes a JSON result.", no_args_is_help=True)
app.add_typer(snapshot_app, name="snapshot")
app.add_typer(bench_app, name="bench")

# Piped output (scripts, tests, logs) gets wide tables rather than rich's default 80 columns.
out = Console(width=None if sys.stdout.isatty() else 200)
EXIT_ERROR = 2


class Settings:
    """Global options, shared by every command through typer's context."""

    def __init__(self, library: Path, as_json: bool, lock_timeout: float | None) -> None:
        self.library_path = library
        self.as_json = as_json
        self.lock_timeout = lock_timeout

    def open(self) -> lifelong.Library:
        return lifelong.Library.open(self.library_path, lock_timeout=self.lock_timeout)


@app.callback()
def options(
    ctx: typer.Context,
    library: Annotated[
        Path,
        typer.Option("--library", "-L", envvar="LIFELONG_LIBRARY", help="Library folder.", show_default=True),
    ] = Path("library"),
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    lock_timeout: Annotated[
        float | None,
        typer.Option(help="Seconds to wait for another writer [env LIFELONG_LOCK_TIMEOUT, 30]."),
    ] = None,
) -> None:
    ctx.obj = Settings(library, as_json, lock_timeout)


def _settings(ctx: typer.Context) -> Settings:
    return ctx.obj


def _show(settings: Settings, data: Any, title: str = "", columns: list[str] | None = None) -> None:
    """Print ``data`` as JSON or as a rich table (a list of rows) / key-value table (a dict)."""
    if settings.as_json:
        print(json.dumps(data, indent=2, default=str))
        return
    if isinstance(data, dict):
        table = Table(title=title, show_header=False)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for key, value in data.items():
            table.add_row(key, _cell(value))
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
        table.add_row(*(_cell(row.get(column)) for column in columns))
    out.print(table)


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


@app.command()
def init(ctx: typer.Context) -> None:
    """Create an empty library."""
    settings = _settings(ctx)
    library = lifelong.Library.create(settings.library_path, lock_timeout=settings.lock_timeout)
    _show(settings, reports.info(library), "library created")


@app.command()
def info(ctx: typer.Context) -> None:
    """Counts, size on disk, schema and last change."""
    settings = _settings(ctx)
    _show(settings, reports.info(settings.open()), "library")


@app.command()
def tasks(ctx: typer.Context) -> None:
    """The learned tasks."""
    settings = _settings(ctx)
    _show(settings, reports.tasks(settings.open()), "tasks")


@app.command()
def modules(
    ctx: typer.Context,
    task: Annotated[str | None, typer.Option(help="Only the modules this task uses, with its α/β.")] = None,
) -> None:
    """The library's modules, or which modules a task uses (layer, kind, α/β, norms, creator)."""
    settings = _settings(ctx)
    _show(settings, reports.modules(settings.open(), task), f"modules of {task}" if task else "modules")


@snapshot_app.command("create")
def snapshot_create(ctx: typer.Context, name: str) -> None:
    """Name the current library state (costs the same for any library size)."""
    settings = _settings(ctx)
    library = settings.open()
    library.snapshot(name)
    _show(settings, next(s for s in reports.snapshots(library) if s["name"] == name), "snapshot")


@snapshot_app.command("list")
def snapshot_list(ctx: typer.Context) -> None:
    """Every snapshot, including the automatic ones taken before each restore."""
    settings = _settings(ctx)
    _show(settings, reports.snapshots(settings.open()), "snapshots", ["name", "time", "automatic", "message"])


@app.command()
def restore(ctx: typer.Context, name: str) -> None:
    """Return the library to a snapshot; the state before is kept as a new snapshot (undo)."""
    settings = _settings(ctx)
    library = settings.open()
    backup = library.restore(name)
    _show(
        settings,
        {"restored": name, "previous_state_saved_as": backup, "undo": f"lifelong restore {backup}"},
        "restored",
    )


@app.command()
def log(ctx: typer.Context) -> None:
    """History: every change (learn, prune, snapshot, restore), newest first."""
    settings = _settings(ctx)
    _show(settings, reports.log(settings.open()), "history", ["time", "kind", "message"])


@app.command()
def check(ctx: typer.Context) -> None:
    """Re-read everything, recompute checksums, verify references. Exit 1 if problems."""
    settings = _settings(ctx)
    library = lifelong.Library.open(
        settings.library_path, lock_timeout=settings.lock_timeout, any_schema=True
    )
    report = reports.check(library)
    if settings.as_json:
        _show(settings, report)
    elif report["clean"]:
        out.print("library is clean")
    else:
        _show(settings, report["problems"], "problems")
    if not report["clean"]:
        raise typer.Exit(1)


@bench_app.command("store")
def bench_store(
    ctx: typer.Context,
    sizes: Annotated[str, typer.Option(help="Library sizes in modules, comma-separated.")] = "10,100,1000",
    seed: Annotated[int, typer.Option(help="Seed for the module tensors.")] = 0,
    results_dir: Annotated[Path, typer.Option(help="Where the JSON result goes.")] = Path("results"),
) -> None:
    """Time commit, snapshot, restore and open+list for libraries of growing size."""
    from lifelong import bench
    from lifelong.bench.store import bench_store as body

    try:
        counts = sorted({int(s) for s in sizes.split(",")})
    except ValueError:
        raise typer.BadParameter(f"--sizes must be whole numbers, got {sizes!r}") from None
    if not counts or counts[0] < 1:
        raise typer.BadParameter("--sizes must be positive")
    report, path = bench.run(
        "store", lambda: body(counts, seed), seeds=[seed], device="cpu", out_dir=results_dir
    )
    settings = _settings(ctx)
    if settings.as_json:
        _show(settings, report)
        return
    rows = [{"library": name, **values} for name, values in report["results"].items()]
    _show(settings, rows, "bench store")
    _show(settings, report["ratios"], "ratios")
    out.print(f"written to {path}")


def _fail(message: str, code: int = EXIT_ERROR) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def main() -> None:
    """Entry point: run the app; turn every expected failure into one line and exit code 2."""
    if len(sys.argv) == 1:
        sys.argv.append("--help")
    try:
        code = app(standalone_mode=False)  # returns the code of a typer.Exit raised by a command
        sys.exit(code if isinstance(code, int) else 0)
    except lifelong.LibraryError as error:
        _fail(str(error))
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.TyperException as error:  # usage errors: unknown command, bad option value, ...
        _fail(error.format_message())
    except (typer.Abort, KeyboardInterrupt):
        _fail("interrupted; nothing was committed", 130)
    except OSError as error:
        _fail(f"{error.strerror or error}: {error.filename}" if error.filename else str(error))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
