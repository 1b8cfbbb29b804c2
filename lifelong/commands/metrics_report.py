"""The library's own history and its pictures: `lifelong metrics` and `lifelong report`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lifelong.commands.options import (
    DataDirOpt,
    EvalDeviceOpt,
    ReportDirOpt,
    settings_of,
    show,
    warn_damaged,
)

app = typer.Typer()  # its commands join the top level


NoEvalOpt = Annotated[
    bool, typer.Option("--no-eval", help="Use the stored test accuracies; do not re-evaluate the tasks.")
]


@app.command("metrics")
def metrics_command(
    ctx: typer.Context, no_eval: NoEvalOpt = False, data_dir: DataDirOpt = None, device: EvalDeviceOpt = "cpu"
) -> None:
    """The library's own history: per image task in commit order, accuracy stored and now, own
    and library parameters, examples to target; accuracy matrix, backward transfer,
    forgetting (Chaudhry's and Avalanche's)."""
    from lifelong.history import library_history

    settings = settings_of(ctx)
    history = library_history(settings.open(), data_dir=data_dir, device=device, evaluate=not no_eval)
    damaged = [row["name"] for row in history["tasks"] if not row["intact"]]
    warn_damaged(damaged, "tasks using damaged modules")
    if settings.as_json:
        show(settings, history)
        return
    rows = [
        {
            "task": row["name"],
            "phase": row["phase"],
            "status": row["status"],
            "test_acc": row["test_acc_stored"],
            "test_acc_now": row["test_acc_now"] if row["evaluated"] else "not evaluated",
            "intact": row["intact"],
            "own_params": row["own_parameters"],
            "library_params": row["library_parameters"],
            "library_modules": row["library_modules"],
            "new_modules": row["new_modules"],
            "modules_used": row["modules_used"],
            "examples_to_target": row["examples_to_target"],
            "seconds": row["seconds"],
        }
        for row in history["tasks"]
    ]
    show(settings, rows, "image tasks in commit order")
    if history["skipped"]:
        show(settings, history["skipped"], "skipped (not image tasks)")
    if history["summary"]:
        show(settings, history["summary"], "accuracy matrix summary")


@app.command("report")
def report_command(
    ctx: typer.Context,
    out_dir: ReportDirOpt = Path("report"),
    bench: Annotated[
        list[Path] | None,
        typer.Option(
            "--bench", help="A `lifelong bench streams`, `growth` or `atari-transfer` result (repeatable)."
        ),
    ] = None,
    no_eval: NoEvalOpt = False,
    data_dir: DataDirOpt = None,
    device: EvalDeviceOpt = "cpu",
) -> None:
    """Pictures (PNG) and an index.html: the library's growth, module usage, learning curves and
    accuracy matrix; and, for each --bench file, its conditions side by side."""
    from lifelong.files import check_output_folder
    from lifelong.history import library_history
    from lifelong.report import load_result, write_report

    settings = settings_of(ctx)
    check_output_folder(out_dir)
    for path in bench or []:
        load_result(path)  # a bad file fails now, before any evaluation
    library = history = None
    if settings.library_path.exists() or not bench:
        library = settings.open()
        history = library_history(library, data_dir=data_dir, device=device, evaluate=not no_eval)
    index = write_report(out_dir, history=history, library=library, bench_files=bench or [])
    if settings.as_json:
        show(settings, {"index": str(index)})
    else:
        print(index)
