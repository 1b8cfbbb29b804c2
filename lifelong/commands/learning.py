"""Learning and using what was learned: learn, prune, demo, eval, play, predict, export."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

import lifelong
from agents.atari.budget import AtariBudget
from agents.classification.budget import Budget, PruneSettings
from lifelong.commands.knobs import NO_KNOBS, Given, with_knobs
from lifelong.commands.options import (
    SEED_MAX,
    BudgetOpt,
    DataDirOpt,
    DeviceOpt,
    EvalDeviceOpt,
    ExecutorOpt,
    RayAddressOpt,
    ReportDirOpt,
    SeedOpt,
    Settings,
    WorkersOpt,
    live_progress,
    out,
    settings_of,
    show,
)
from lifelong.plans import AtariPlan, ClassificationPlan, atari_budget, budget_for

app = typer.Typer()  # its commands join the top level
LEARN_KNOBS = {"classification": [Budget], "atari": [AtariBudget, AtariPlan]}  # learn's family flags
PRUNE_KNOBS = {"prune": [PruneSettings]}


def _task_rows(records: list[Any]) -> list[dict[str, Any]]:
    rows = [
        {
            "task": r.name,
            "phase": r.metrics.get("phase"),
            "test_acc": r.metrics.get("test_acc"),
            "val_acc": r.metrics.get("val_acc"),
            "score": r.metrics.get("eval_score_mean"),
            "modules_used": r.metrics.get("modules_used"),
            "new_modules": r.metrics.get("new_modules"),
            "target_met": r.metrics.get("target_met"),
            "seconds": r.timings.get("total"),
        }
        for r in records
    ]
    used = {key for row in rows for key, value in row.items() if value is not None}
    return [{key: value for key, value in row.items() if key in used} for row in rows]


@app.command()
@with_knobs(LEARN_KNOBS)
def learn(
    ctx: typer.Context,
    specs: Annotated[list[str], typer.Argument(help="Task specs, learned in order, e.g. mnist:3v8.")],
    name: Annotated[
        list[str] | None, typer.Option(help="Task name (once per spec); default: the spec.")
    ] = None,
    budget: BudgetOpt = "quick",
    target: Annotated[
        float | None, typer.Option(help="Accuracy (images) or score (Atari) that counts as solved.")
    ] = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    data_dir: DataDirOpt = None,
    workers: WorkersOpt = None,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    require_target: Annotated[
        bool,
        typer.Option(
            "--require-target", help="A task that misses --target is an error and is not committed."
        ),
    ] = False,
    prune: Annotated[
        str,
        typer.Option("--prune", help="auto: `lifelong prune` (its defaults) after each task; off: never."),
    ] = "off",
    knobs: Given = NO_KNOBS,
) -> None:
    """Learn tasks one after another: self-organize, grow if needed, prune, commit.

    --target is a validation accuracy for image tasks (default 0.97) and a game score for Atari
    (default none: use the whole budget); --generations counts ESP generations for Atari. A task
    that misses its target is committed with status below-target (and a warning), unless
    --require-target makes that an error. The image and Atari flags are their budgets' and plans'
    fields (each flag: its field's value unless given)."""
    from lifelong.prune import prune_settings
    from lifelong.runner import learn_specs, worker_pool
    from lifelong.tasks import parse_spec

    settings = settings_of(ctx)
    pool = worker_pool(workers, executor, ray_address)
    if prune not in ("auto", "off"):
        raise typer.BadParameter(f"--prune must be auto or off, not {prune!r}")
    parsed = [parse_spec(text) for text in specs]
    families = {spec.family for spec in parsed}
    knobs.refuse_other_families(families)  # every flag is checked before any work
    plans: dict[str, Any] = {}
    if "classification" in families:
        accuracy = lifelong.DEFAULT_TARGET if target is None else target
        plans["classification"] = ClassificationPlan(budget_for(budget, **knobs.of(Budget)), accuracy)
    if "atari" in families:
        esp = atari_budget(budget, **knobs.of(AtariBudget))
        plans["atari"] = AtariPlan(esp, target=target, **knobs.of(AtariPlan))
    library = settings.open()
    with live_progress(settings) as progress:
        records = learn_specs(
            library,
            parsed,
            plans=plans,
            names=name,
            seed=seed,
            device=device,
            data_dir=data_dir,
            progress=progress,
            require_target=require_target,
            prune=prune_settings() if prune == "auto" else None,
            workers=pool,
        )
    _show_learned(settings, records, "learned")


def _show_learned(settings: Settings, records: list[Any], title: str) -> None:
    """The learned tasks' rows, and a warning on stderr for each that missed its target."""
    show(settings, _task_rows(records), title)
    for record in records:
        if record.metrics.get("target_met") is False:
            print(
                f"warning: {record.name!r} missed its target (status {record.status}); "
                "it was committed anyway (--require-target refuses such tasks)",
                file=sys.stderr,
            )


@app.command()
@with_knobs(PRUNE_KNOBS)
def prune(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would change; change nothing.")
    ] = False,
    budget: BudgetOpt = "quick",
    device: DeviceOpt = "auto",
    data_dir: DataDirOpt = None,
    knobs: Given = NO_KNOBS,
) -> None:
    """Prune the library: soft pruning by α, merging near-identical modules, removing unused ones.

    Every changed task re-fits its own α/β and readout and is re-evaluated; a change costing it
    more than --tolerance points is refused for that task. One commit of kind prune (undo it
    with `lifelong restore`)."""
    from lifelong.prune import prune as run_prune
    from lifelong.prune import prune_settings

    settings = settings_of(ctx)
    chosen = prune_settings(**knobs.of(PruneSettings))
    library = settings.open()
    with live_progress(settings) as progress:
        result = run_prune(
            library,
            chosen,
            budget_for(budget),
            data_dir=data_dir,
            device=device,
            dry_run=dry_run,
            progress=progress,
        )
    if settings.as_json:
        show(settings, result)
        return
    show(settings, [_change_row(c) for c in result["changes"]], "changes", None)
    show(settings, result["merges"], "merges")
    for name, why in result["unchanged"].items():
        out.print(f"{name}: not changed, {why}")
    verb = "would remove" if dry_run else "removed"
    out.print(
        f"{verb} {len(result['removed_modules'])} modules: {result['parameters_removed']:,} of "
        f"{result['parameters_before']:,} library parameters ({result['parameter_reduction']:.1%})"
        + ("" if dry_run else f"; committed: {result['committed']}")
    )


def _change_row(change: dict[str, Any]) -> dict[str, Any]:
    return {
        "task": change["task"],
        "accepted": change["accepted"],
        "soft-pruned": list(change["dropped"]),
        "merged": [f"{a} → {b}" for a, b in change["merged"].items()],
        "val before→after": f"{change['before']['val_acc']:.4f} → {change['after']['val_acc']:.4f}",
        "test before→after": f"{change['before']['test_acc']:.4f} → {change['after']['test_acc']:.4f}",
    }


@app.command()
def demo(
    ctx: typer.Context,
    budget: BudgetOpt = "quick",
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    data_dir: DataDirOpt = None,
    out_dir: ReportDirOpt = Path("report"),
    workers: WorkersOpt = None,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
) -> None:
    """The main job: the default curriculum (MNIST and Fashion-MNIST tasks grow the library, then
    unseen and few-shot tasks), each judged task beside a random-library control; the report's
    pictures. Creates the library if needed; skips tasks already learned."""
    from lifelong.demo import DEMO_STREAM, run_demo
    from lifelong.runner import worker_pool
    from lifelong.streams import parse_stream

    settings = settings_of(ctx)
    pool = worker_pool(workers, executor, ray_address)
    try:
        library = settings.open()
    except lifelong.NotALibrary:  # nothing there yet (any other failure to open is the error to show)
        library = lifelong.Library.create(settings.library_path, lock_timeout=settings.lock_timeout)
    with live_progress(settings) as progress:
        result = run_demo(
            library,
            parse_stream(DEMO_STREAM),
            ClassificationPlan(budget_for(budget)),
            seed=seed,
            device=device,
            data_dir=data_dir,
            out_dir=out_dir,
            progress=progress,
            workers=pool,
        )
    rows = [asdict(row) for row in result.rows]
    if settings.as_json:
        report_files = {"report": str(result.report), "result_file": str(result.result_file)}
        show(settings, {"tasks": rows, "gap_points": result.gap_points, **report_files})
        return
    show(settings, rows, "demo curriculum (random_library: the same procedure over random weights)")
    out.print(
        f"judged tasks, mean test accuracy: learned library minus random library = "
        f"{result.gap_points:+.2f} points; report: {result.report}; result: {result.result_file}"
    )


@app.command("eval")
def evaluate(
    ctx: typer.Context,
    task: str,
    data_dir: DataDirOpt = None,
    device: EvalDeviceOpt = "cpu",
    episodes: Annotated[int, typer.Option(min=1, help="Atari: episodes to play.")] = 10,
    seed: Annotated[
        int | None,
        typer.Option(min=0, max=SEED_MAX, help="Atari: episode seed (default: the committed one)."),
    ] = None,
    workers: WorkersOpt = None,
) -> None:
    """Re-evaluate a stored task: test accuracy and probe check (images), mean ± sd score (Atari;
    the workers share the episodes, with the same scores)."""
    settings = settings_of(ctx)
    library = settings.open()
    if library.task(task).family == "atari":
        from lifelong.atari import evaluate_atari
        from lifelong.runner import worker_pool

        pool = worker_pool(workers)
        with live_progress(settings) as progress:
            result = evaluate_atari(
                library, task, episodes=episodes, seed=seed, device=device, progress=progress, workers=pool
            )
    else:
        from lifelong.classification import evaluate_task

        result = evaluate_task(library, task, data_dir=data_dir, device=device)
    show(settings, result, f"eval {task}")


@app.command()
def play(
    ctx: typer.Context,
    task: str,
    video: Annotated[Path, typer.Option(help="Where to write the episode (.mp4 or .gif).")],
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="Episode seed (sticky actions).")] = 0,
    max_frames: Annotated[int | None, typer.Option(min=1, help="Frame cap (default: the task's).")] = None,
) -> None:
    """Play one episode of a stored Atari task and record it."""
    from lifelong.atari import play_atari

    settings = settings_of(ctx)
    show(settings, play_atari(settings.open(), task, video, seed=seed, max_frames=max_frames), "played")


@app.command()
def predict(ctx: typer.Context, task: str, files: Annotated[list[Path], typer.Argument()]) -> None:
    """Label image files with a stored task."""
    from lifelong.classification import predict_files

    settings = settings_of(ctx)
    show(settings, predict_files(settings.open(), task, files), f"predictions of {task}")


@app.command()
def export(ctx: typer.Context, task: str, out: Path) -> None:
    """Write a task's network with torch.export (torch.export.load(OUT).module(), no lifelong needed)."""
    from lifelong.classification import export_task

    settings = settings_of(ctx)
    show(settings, export_task(settings.open(), task, out), "exported")
