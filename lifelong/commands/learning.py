"""Learning and using what was learned: learn, prune, demo, eval, play, predict, export."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

import lifelong
from lifelong.commands.options import (
    SEED_MAX,
    BudgetOpt,
    CompeteOpt,
    DataDirOpt,
    DeviceOpt,
    EvalDeviceOpt,
    ExecutorOpt,
    MeasureOpt,
    RayAddressOpt,
    RefitStepsOpt,
    ReportDirOpt,
    SeedOpt,
    Settings,
    ShareOpt,
    SimilarityOpt,
    ToleranceOpt,
    TransferInitOpt,
    WorkersOpt,
    live_progress,
    out,
    settings_of,
    show,
)

app = typer.Typer()  # its commands join the top level


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
    so_steps: Annotated[int | None, typer.Option(help="Self-organization steps.")] = None,
    batch_size: Annotated[int | None, typer.Option()] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate.")] = None,
    eval_every: Annotated[int | None, typer.Option()] = None,
    population: Annotated[int | None, typer.Option(help="Growth: genomes per generation.")] = None,
    elite: Annotated[
        int | None, typer.Option(help="Growth: best genomes kept each generation (< population).")
    ] = None,
    generations: Annotated[int | None, typer.Option(help="Growth: generations.")] = None,
    candidate_steps: Annotated[int | None, typer.Option(help="Growth: steps per candidate.")] = None,
    final_steps: Annotated[int | None, typer.Option(help="Growth: steps for the winner.")] = None,
    settle_steps: Annotated[int | None, typer.Option()] = None,
    growth_margin: Annotated[
        float | None,
        typer.Option(help="Growth: validation gain over self-organization that new modules must buy."),
    ] = None,
    grow: Annotated[
        bool | None,
        typer.Option("--grow/--no-grow", help="--no-grow: solve from the library alone (self-organization)."),
    ] = None,
    max_modules: Annotated[
        int | None, typer.Option(help="Self-organization: most modules per layer (the most relevant kept).")
    ] = None,
    recall: Annotated[
        bool | None,
        typer.Option(
            "--recall/--no-recall", help="Self-organization may start from the best-suited stored task."
        ),
    ] = None,
    recall_score: Annotated[
        str | None,
        typer.Option(help="How recall scores a stored path: ridge (a ridge readout) or knn (MNTDP's prior)."),
    ] = None,
    prefix_reuse: Annotated[
        bool | None,
        typer.Option(
            "--prefix-reuse/--no-prefix-reuse",
            help="Growth also tries MNTDP's candidates: the recalled path's first layers, fresh ones above.",
        ),
    ] = None,
    compete: Annotated[bool | None, CompeteOpt] = None,
    mutation_rate: Annotated[float | None, typer.Option()] = None,
    fitness: Annotated[str | None, typer.Option(help="acc+slope, max, mean, slope or fit.")] = None,
    crossover: Annotated[bool | None, typer.Option("--crossover/--no-crossover")] = None,
    rounding: Annotated[str | None, typer.Option(help="Scalar genes: stochastic or floor.")] = None,
    patience: Annotated[int | None, typer.Option(help="Evaluations without gain before stopping.")] = None,
    evaluations: Annotated[
        int | None, typer.Option(help="Atari: networks played per generation.", rich_help_panel="Atari")
    ] = None,
    trials: Annotated[
        int | None, typer.Option(help="Atari: episodes per evaluation.", rich_help_panel="Atari")
    ] = None,
    max_frames: Annotated[
        int | None, typer.Option(help="Atari: emulator frames per episode.", rich_help_panel="Atari")
    ] = None,
    frames: Annotated[
        int | None,
        typer.Option(
            help="Atari: emulator frames to learn with (stop at the generation reaching them; "
            "default: every generation's episodes at the frame cap).",
            min=1,
            rich_help_panel="Atari",
        ),
    ] = None,
    sources: Annotated[
        str, typer.Option(help="Atari: auto, none, or task names/module ids.", rich_help_panel="Atari")
    ] = "auto",
    condition: Annotated[
        str, typer.Option(help="Atari: transfer, scratch or random sources.", rich_help_panel="Atari")
    ] = "transfer",
    transfer_init: TransferInitOpt = None,
    screen: Annotated[
        bool | None,
        typer.Option(
            "--screen/--no-screen",
            help="Atari: recruit only sources whose probe generation beats a random twin's.",
            rich_help_panel="Atari",
        ),
    ] = None,
    lesion_trials: Annotated[
        int | None,
        typer.Option(
            help="Atari: episodes each lesioned network is scored on (0: --trials).", rich_help_panel="Atari"
        ),
    ] = None,
    checkpoint_every: Annotated[
        int, typer.Option(help="Atari: save the evolution every N generations.", rich_help_panel="Atari")
    ] = 0,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Atari: continue from the last checkpoint.", rich_help_panel="Atari"),
    ] = False,
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
) -> None:
    """Learn tasks one after another: self-organize, grow if needed, prune, commit.

    --target is a validation accuracy for image tasks (default 0.97) and a game score for Atari
    (default none: use the whole budget); --generations counts ESP generations for Atari. A task
    that misses its target is committed with status below-target (and a warning), unless
    --require-target makes that an error."""
    from lifelong.prune import prune_settings
    from lifelong.runner import learn_specs, worker_pool
    from lifelong.tasks import parse_spec

    settings = settings_of(ctx)
    pool = worker_pool(workers, executor, ray_address)
    if prune not in ("auto", "off"):
        raise typer.BadParameter(f"--prune must be auto or off, not {prune!r}")
    parsed = [parse_spec(text) for text in specs]
    families = {spec.family for spec in parsed}
    # Every option is checked before any work, whichever family it is for; one given for a family
    # that none of the tasks belongs to is refused rather than silently ignored.
    image_only = {
        "--so-steps": so_steps, "--batch-size": batch_size, "--lr": lr, "--eval-every": eval_every,
        "--population": population, "--elite": elite, "--candidate-steps": candidate_steps,
        "--final-steps": final_steps, "--settle-steps": settle_steps, "--growth-margin": growth_margin,
        "--grow/--no-grow": grow, "--max-modules": max_modules, "--recall/--no-recall": recall,
        "--recall-score": recall_score, "--prefix-reuse/--no-prefix-reuse": prefix_reuse,
        "--compete/--no-compete": compete, "--mutation-rate": mutation_rate, "--fitness": fitness,
        "--crossover/--no-crossover": crossover, "--rounding": rounding, "--patience": patience,
    }  # fmt: skip
    atari_only = {
        "--evaluations": evaluations, "--trials": trials, "--max-frames": max_frames, "--frames": frames,
        "--sources": None if sources == "auto" else sources,
        "--condition": None if condition == "transfer" else condition, "--transfer-init": transfer_init,
        "--screen/--no-screen": screen, "--lesion-trials": lesion_trials,
        "--checkpoint-every": checkpoint_every or None, "--resume": resume or None,
    }  # fmt: skip
    for options, family, kind in ((image_only, "classification", "image"), (atari_only, "atari", "Atari")):
        given = [flag for flag, value in options.items() if value is not None]
        if given and family not in families:
            raise typer.BadParameter(f"{', '.join(given)}: for {kind} tasks only, and no task given is one")
    from lifelong.atari import AtariPlan, atari_budget
    from lifelong.classification import ClassificationPlan, budget_for

    smart = budget_for(
        budget,
        so_steps=so_steps,
        batch_size=batch_size,
        lr=lr,
        eval_every=eval_every,
        population=population,
        elite=elite,
        generations=generations,
        candidate_steps=candidate_steps,
        final_steps=final_steps,
        settle_steps=settle_steps,
        growth_margin=growth_margin,
        max_modules=max_modules,
        recall=recall,
        recall_score=recall_score,
        prefix_reuse=prefix_reuse,
        grow=grow,
        compete=compete,
        mutation_rate=mutation_rate,
        fitness=fitness,
        crossover=crossover,
        rounding=rounding,
        patience=patience,
    )
    esp = atari_budget(
        budget,
        generations=generations,
        evaluations=evaluations,
        trials=trials,
        max_frames=max_frames,
        frames=frames,
        transfer_init=transfer_init,
        screen=screen,
        lesion_trials=lesion_trials,
    )
    plans: dict[str, Any] = {}
    if "classification" in families:
        accuracy = lifelong.DEFAULT_TARGET if target is None else target
        plans["classification"] = ClassificationPlan(smart, accuracy)
    if "atari" in families:
        plans["atari"] = AtariPlan(
            esp,
            target=target,
            sources=sources,
            condition=condition,
            checkpoint_every=checkpoint_every,
            resume=resume,
        )
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
def prune(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would change; change nothing.")
    ] = False,
    tolerance: ToleranceOpt = None,
    similarity: SimilarityOpt = None,
    share: ShareOpt = None,
    refit_steps: RefitStepsOpt = None,
    measure: MeasureOpt = None,
    budget: BudgetOpt = "quick",
    device: DeviceOpt = "auto",
    data_dir: DataDirOpt = None,
) -> None:
    """Prune the library: soft pruning by α, merging near-identical modules, removing unused ones.

    Every changed task re-fits its own α/β and readout and is re-evaluated; a change costing it
    more than --tolerance points is refused for that task. One commit of kind prune (undo it
    with `lifelong restore`)."""
    from lifelong.classification import budget_for
    from lifelong.prune import prune as run_prune
    from lifelong.prune import prune_settings

    settings = settings_of(ctx)
    chosen = prune_settings(
        tolerance=tolerance, similarity=similarity, share=share, refit_steps=refit_steps, measure=measure
    )
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
    from lifelong.classification import ClassificationPlan, budget_for
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
