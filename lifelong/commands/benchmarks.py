"""Every `lifelong bench …` command: each runs with live progress and writes a JSON result."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

import lifelong
from agents.atari.budget import ATARI_PRESETS, AtariBudget
from agents.classification.budget import Budget, PruneSettings
from lifelong.commands.knobs import NO_KNOBS, Given, knob_help, parse_settings, with_knobs
from lifelong.commands.options import (
    DataDirOpt,
    DeviceOpt,
    ResultsDirOpt,
    SeedOpt,
    SeedsOpt,
    WorkersOpt,
    cell,
    live_progress,
    out,
    parse_device,
    parse_ints,
    parse_seeds,
    settings_of,
    show,
)

if TYPE_CHECKING:
    from agents.atari.games import Game

bench_app = typer.Typer(help="Benchmarks; each writes a JSON result.", no_args_is_help=True)
TargetOpt = Annotated[float, typer.Option(help="Validation accuracy that counts as solved.")]
QuickOpt = Annotated[
    bool, typer.Option("--quick", help="The benchmark's quick budget (CPU minutes per seed).")
]
PresetOpt = Annotated[str, typer.Option("--budget", help="Budget preset when not --quick.")]


def parse_game(name: str) -> Game:
    """``--game``'s parser: the game ``name`` means, resolved once, when the command line is parsed
    (an unknown game is a usage error naming close ones)."""
    from agents.atari.games import GameError, resolve_game

    try:
        return resolve_game(name)
    except GameError as error:
        raise typer.BadParameter(str(error)) from None


# a --game option's value is a Game (typed Any: the ALE loads when it is parsed, not at start)
GameOpt = Annotated[Any, typer.Option(parser=parse_game, metavar="GAME", help="Any ALE game.")]


@bench_app.command("store")
def bench_store(
    ctx: typer.Context,
    sizes: Annotated[str, typer.Option(help="Library sizes in modules, comma-separated.")] = "10,100,1000",
    tasks: Annotated[
        str, typer.Option(help="Task counts at which a library learning task by task is timed.")
    ] = "10,100",
    seed: Annotated[int, typer.Option(help="Seed for the module tensors.")] = 0,
    results_dir: ResultsDirOpt = Path("results"),
) -> None:
    """Time commit, snapshot, restore and open+list for libraries of growing size, and open+list
    and a task's commit as a library learns task after task."""
    from lifelong.bench.store import bench_store as body

    counts = sorted(set(parse_ints(sizes, "--sizes")))
    task_counts = sorted(set(parse_ints(tasks, "--tasks")))
    if counts[0] < 1 or task_counts[0] < 1:
        raise typer.BadParameter("--sizes and --tasks must be positive")
    _bench(
        ctx, "store", lambda progress: body(counts, seed, progress, task_counts), [seed], "cpu", results_dir
    )


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
    from lifelong.plans import ClassificationPlan, budget_for

    seed_list = parse_seeds(seeds)
    plan = ClassificationPlan(budget_for("quick" if quick else budget), target)
    run = lambda progress: body(seed_list, plan, device, data_dir, progress)  # noqa: E731
    _bench(ctx, "smart-mnist", run, seed_list, str(device), results_dir)


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
    compete: Annotated[
        bool, typer.Option("--compete/--no-compete", help=knob_help(Budget, "compete"))
    ] = False,
    setting: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="A budget field for every condition, KEY=VALUE (e.g. growth_margin=0.02); repeatable.",
        ),
    ] = None,
    device: DeviceOpt = "auto",
    data_dir: DataDirOpt = None,
    results_dir: ResultsDirOpt = Path("results"),
    workers: WorkersOpt = None,
) -> None:
    """A stream learned by the agent and its controls (random library, independent, finetune,
    frozen first, PNN): accuracy matrices, transfer, parameters, seconds. The workers learn the
    controls beside the agent (equal thread counts, equal results)."""
    from lifelong.bench.streams import CONDITIONS, QUICK
    from lifelong.bench.streams import bench_streams as body
    from lifelong.plans import ClassificationPlan, budget_for
    from lifelong.streams import parse_stream

    if (stream is None) == (tasks is None):
        raise typer.BadParameter("give a stream (a preset or specs) or --tasks, not both")
    parsed = parse_stream(stream if stream is not None else tasks)
    names = CONDITIONS if conditions == "all" else tuple(c.strip() for c in conditions.split(","))
    seed_list = parse_seeds(seeds)
    preset = budget_for("quick", **QUICK) if quick else budget_for(budget)
    overrides = {"compete": compete, **parse_settings(setting or [], preset)}
    plan = ClassificationPlan(preset.override(**overrides), target)

    def run(progress: Callable[..., None]) -> Any:
        return body(
            parsed,
            seed_list,
            plan,
            conditions=names,
            device=device,
            data_dir=data_dir,
            workers=workers,
            progress=progress,
        )

    file_name = f"streams-{parsed.name}{'-quick' if quick else ''}.json"
    _bench(ctx, "streams", run, seed_list, str(device), results_dir, file_name)


@bench_app.command("growth")
@with_knobs({"prune": [PruneSettings]})
def bench_growth(
    ctx: typer.Context,
    quick: Annotated[
        bool, typer.Option("--quick", help="10 smaller tasks and the stream benchmark's quick budget.")
    ] = False,
    stream: Annotated[
        str | None,
        typer.Option(help="A stream preset or specs to learn instead (e.g. s-long100); '|' is ignored."),
    ] = None,
    budget: PresetOpt = "quick",
    seeds: SeedsOpt = "0",
    data_dir: DataDirOpt = None,
    results_dir: ResultsDirOpt = Path("results"),
    workers: WorkersOpt = None,
    knobs: Given = NO_KNOBS,
) -> None:
    """The library's size over a stream of ≥ 10 MNIST and Fashion-MNIST tasks, with and without
    `learn --prune auto` (`lifelong prune`'s defaults unless given): modules, parameters, compute
    per task, final accuracy (CPU). The workers learn the libraries."""
    from lifelong.bench.growth import bench_growth as body
    from lifelong.bench.streams import QUICK
    from lifelong.plans import budget_for
    from lifelong.prune import prune_settings
    from lifelong.streams import parse_stream

    chosen = prune_settings(**knobs.of(PruneSettings))
    seed_list = parse_seeds(seeds)
    preset = budget_for("quick", **QUICK) if quick else budget_for(budget)
    parsed = parse_stream(stream) if stream is not None else None
    specs = [spec.text for spec in parsed.specs] if parsed else None
    name = f"-{parsed.name}" if parsed else ""
    file_name = f"growth{name}{'-quick' if quick else ''}.json"

    def run(progress: Callable[..., None]) -> Any:
        return body(
            seed_list, preset, chosen, data_dir, quick=quick, workers=workers, progress=progress, stream=specs
        )

    _bench(ctx, "growth", run, seed_list, "cpu", results_dir, file_name)


@bench_app.command("merge")
def bench_merge(
    ctx: typer.Context,
    files: Annotated[
        list[Path],
        typer.Argument(
            help="`lifelong bench streams` or `bench atari-transfer` results over disjoint seeds."
        ),
    ],
    results_dir: ResultsDirOpt = Path("results"),
) -> None:
    """One result from results run apart (one seed a machine, or a seed a day): `bench streams`
    of the same stream, budget, target, conditions, device, workers and threads, or `bench
    atari-transfer` of the same paths, budget and protocol; disjoint seeds. Its figures are those
    of one run with all the seeds; it names the file each seed came from."""
    from lifelong.bench import atari_transfer, read_result, streams

    kinds = {"streams": streams, "atari-transfer": atari_transfer}
    checks = {"streams": streams.check_bench, "atari-transfer": atari_transfer.check_atari_transfer}
    benches = [(path, read_result(path, checks)) for path in files]
    protocols = {bench["protocol"] for _, bench in benches}
    if len(protocols) > 1:
        raise typer.BadParameter(
            f"these results come from different benchmarks: {', '.join(sorted(protocols))}"
        )
    protocol = protocols.pop()
    result, sources = kinds[protocol].merge_seeds(benches)
    seeds = sorted({int(seed) for _, bench in benches for seed in bench["seeds"]})
    file_name = files[0].name
    if any((results_dir / file_name).resolve() == path.resolve() for path in files):
        raise typer.BadParameter(
            f"{results_dir / file_name} is one of the files merged: choose another --results-dir"
        )
    device = benches[0][1]["device"]
    _bench(ctx, protocol, lambda _: result, seeds, device, results_dir, file_name, {"sources": sources})


@bench_app.command("atari-throughput")
def bench_atari_throughput(
    ctx: typer.Context,
    game: GameOpt = "Freeway",
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
    game: GameOpt = "Freeway",
    networks: Annotated[int, typer.Option(help="Networks in the generation (one episode each).")] = 32,
    max_frames: Annotated[int, typer.Option(help="Frame cap per episode.")] = 2000,
    rounds: Annotated[int, typer.Option(help="Interleaved repetitions.", min=1)] = 3,
    workers: WorkersOpt = None,
    growth_task: Annotated[
        str, typer.Option(help="The growth half's image task ('none': Atari only).")
    ] = "mnist:0-4",
    candidates: Annotated[
        int | None, typer.Option(help="Growth candidates (default: the quick budget's population).", min=1)
    ] = None,
    candidate_steps: Annotated[
        int | None, typer.Option(help="Steps each candidate trains (default: the quick budget's).", min=1)
    ] = None,
    device: Annotated[
        Any,
        typer.Option(
            parser=parse_device, metavar="DEVICE", help="cpu, cuda or cuda:N: where the agent's networks run."
        ),
    ] = "cpu",
    data_dir: DataDirOpt = None,
    seed: SeedOpt = 0,
    results_dir: ResultsDirOpt = Path("results"),
) -> None:
    """A real ESP generation's episodes, and a real generation of growth candidates, in one
    process, over all local workers and on a local Ray instance, against one raw emulator:
    steps/s, candidates/s and the scaling ratios. The workers are the all-workers conditions'."""
    from lifelong.bench.scaling import GrowthCase
    from lifelong.bench.scaling import bench_scaling as body

    if workers == 0:
        raise typer.BadParameter("bench scaling compares one process with its workers: give at least 1")
    if quick:
        networks, max_frames, rounds = 16, 1000, 2
    sizes = {"population": candidates, "candidate_steps": candidate_steps}
    given = {name: value for name, value in sizes.items() if value is not None}
    growth = None if growth_task == "none" else GrowthCase(growth_task, data_dir, **given)
    where = str(device)
    file_name = (
        f"scaling{'-quick' if quick else ''}{'' if where == 'cpu' else '-' + where.split(':')[0]}.json"
    )
    _bench(
        ctx,
        "scaling",
        lambda _: body(
            game, networks, max_frames, seed, rounds=rounds, workers=workers, device=device, growth=growth
        ),
        [seed],
        where,
        results_dir,
        file_name,
    )


@bench_app.command("atari-transfer")
@with_knobs({"atari": [AtariBudget]})
def bench_atari_transfer(
    ctx: typer.Context,
    quick: Annotated[
        bool, typer.Option("--quick", help="Freeway>SpaceInvaders, 180,000 frames a run (9 min, 2 cores).")
    ] = False,
    budget: Annotated[
        str, typer.Option(help="Budget when not --quick: mid (10x quick's frames), standard or paper.")
    ] = "standard",
    pairs: Annotated[
        str, typer.Option(help="Paths of games, comma-separated: A>B (a pair) or A>B>C (a chain).")
    ] = "",
    seeds: SeedsOpt = "0,1,2,3,4",
    episodes: Annotated[int, typer.Option(help="Fresh episodes a champion is re-evaluated on.", min=1)] = 30,
    curve_every: Annotated[
        int | None,
        typer.Option(
            help="Re-evaluate the champion every N generations (default: a tenth of them, 2 at least).", min=1
        ),
    ] = None,
    peer: Annotated[str, typer.Option(help="The EvoTorch peer: snes, cmaes or ga.")] = "snes",
    setting: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="A budget field of every agent run, KEY=VALUE (e.g. screen=true); repeatable."
        ),
    ] = None,
    device: DeviceOpt = "cpu",
    results_dir: ResultsDirOpt = Path("results"),
    knobs: Given = NO_KNOBS,
) -> None:
    """Scratch vs random library vs transfer vs an EvoTorch peer on paths of games, at equal frames:
    champions re-evaluated on fresh episodes, mean with a 95% bootstrap CI, transfer effectiveness.
    The Atari flags (a generation's frames make the budget) set every agent run's budget."""
    from lifelong.bench.atari_transfer import BENCH_BUDGETS, PATHS, QUICK, QUICK_PATHS, Protocol, parse_paths
    from lifelong.bench.atari_transfer import bench_atari_transfer as body
    from lifelong.plans import atari_budget

    seed_list = parse_seeds(seeds)
    paths = parse_paths(pairs or ",".join(QUICK_PATHS if quick else PATHS))
    if not quick and budget not in BENCH_BUDGETS and budget not in ATARI_PRESETS:
        raise typer.BadParameter(
            f"unknown --budget {budget!r} (choose {', '.join([*BENCH_BUDGETS, *ATARI_PRESETS])})"
        )
    base = QUICK if quick else BENCH_BUDGETS.get(budget) or atari_budget(budget)
    plan = base.override(**{**knobs.of(AtariBudget), **parse_settings(setting or [], base)})
    every = curve_every or max(2, plan.generations // 10)
    protocol = Protocol(plan, episodes, every, peer, device)
    file_name = f"atari-transfer{'-quick' if quick else '-mid' if budget == 'mid' else ''}.json"
    run = lambda progress: body(paths, seed_list, protocol, progress)  # noqa: E731
    _bench(ctx, "atari-transfer", run, seed_list, str(device), results_dir, file_name)


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

    settings = settings_of(ctx)
    with live_progress(settings) as progress:
        result, path = bench.run(
            protocol,
            body,
            seeds=seeds,
            device=device,
            out_dir=results_dir,
            progress=progress,
            file_name=file_name,
            extra=extra,
        )
    if settings.as_json:
        show(settings, result)
        return
    results = result["results"]
    if any(key.endswith(SD) for values in results.values() for key in values):
        show(settings, _by_metric(results), result["protocol"])
    else:
        show(
            settings, [{"condition": name, **values} for name, values in results.items()], result["protocol"]
        )
    show(settings, result["ratios"], "ratios")
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
            row[condition] = cell(mean) + (f" ± {sd:.2g}" if mean is not None and sd else "")
        rows.append(row)
    return rows
