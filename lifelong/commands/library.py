"""The library's commands: init, info, tasks, modules, snapshot create/list, restore, log, check."""

from __future__ import annotations

from typing import Annotated

import typer

import lifelong
from lifelong import listings
from lifelong.commands.options import out, settings_of, show, warn_damaged

app = typer.Typer()  # its commands join the top level
snapshot_app = typer.Typer(help="Name library states and list them.", no_args_is_help=True)


@app.command()
def init(ctx: typer.Context) -> None:
    """Create an empty library."""
    settings = settings_of(ctx)
    library = lifelong.Library.create(settings.library_path, lock_timeout=settings.lock_timeout)
    show(settings, listings.info(library), "library created")


@app.command()
def info(ctx: typer.Context) -> None:
    """Counts, size on disk, schema and last change."""
    settings = settings_of(ctx)
    show(settings, listings.info(settings.open()), "library")


@app.command()
def tasks(ctx: typer.Context) -> None:
    """The learned tasks."""
    settings = settings_of(ctx)
    show(settings, listings.tasks(settings.open()), "tasks")


@app.command()
def modules(
    ctx: typer.Context,
    task: Annotated[str | None, typer.Option(help="Only the modules this task uses, with its α/β.")] = None,
) -> None:
    """The library's modules, or which modules a task uses (layer, kind, α/β, norms, creator)."""
    settings = settings_of(ctx)
    library = settings.open()
    title = "modules"
    if task is not None:
        record = library.task(task)
        split, start = listings.parameter_split(library, record), listings.recalled(record)
        title = (
            f"modules of {task}: {split['library_params']:,} library parameters, "
            f"{split['own_params']:,} its own ({split['own_share']:.1%})"
            + (f"; started from {start}'s path" if start else "")
        )
    rows = listings.modules(library, task)
    show(settings, rows, title)
    warn_damaged([row["id"] for row in rows if row.get("intact") is False], "damaged modules")


@snapshot_app.command("create")
def snapshot_create(ctx: typer.Context, name: str) -> None:
    """Name the current library state (costs the same for any library size)."""
    settings = settings_of(ctx)
    library = settings.open()
    library.snapshot(name)
    show(settings, next(s for s in listings.snapshots(library) if s["name"] == name), "snapshot")


@snapshot_app.command("list")
def snapshot_list(ctx: typer.Context) -> None:
    """Every snapshot, including the automatic ones taken before each restore."""
    settings = settings_of(ctx)
    show(settings, listings.snapshots(settings.open()), "snapshots", ["name", "time", "automatic", "message"])


@app.command()
def restore(ctx: typer.Context, name: str) -> None:
    """Return the library to a snapshot; the state before is kept as a new snapshot (undo)."""
    settings = settings_of(ctx)
    library = settings.open()
    backup = library.restore(name)
    show(
        settings,
        {"restored": name, "previous_state_saved_as": backup, "undo": f"lifelong restore {backup}"},
        "restored",
    )


@app.command()
def log(ctx: typer.Context) -> None:
    """History: every change (init, learn, snapshot, restore), newest first."""
    settings = settings_of(ctx)
    show(settings, listings.log(settings.open()), "history", ["time", "kind", "message"])


@app.command()
def check(ctx: typer.Context) -> None:
    """Re-read everything, recompute checksums, verify references. Exit 1 if problems."""
    settings = settings_of(ctx)
    library = lifelong.Library.open(
        settings.library_path, lock_timeout=settings.lock_timeout, any_schema=True
    )
    report = listings.check(library)
    if settings.as_json:
        show(settings, report)
    elif report["clean"]:
        out.print("library is clean")
    else:
        show(settings, report["problems"], "problems")
    if not report["clean"]:
        raise typer.Exit(1)
