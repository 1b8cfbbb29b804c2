"""``lifelong bench streams``: a stream learned by the agent and by its controls, side by side.

Per seed, every condition (:mod:`lifelong.bench.controls`) learns the stream's tasks in order on
the same data. After each task, the test accuracy on every task learned so far fills a row of
the accuracy matrix R (:mod:`lifelong.metrics`); the headline is the judged tasks' test
accuracy when first learned (R[j][j]), mean ± sd over seeds. Parameters (shared and owned by
single tasks), seconds and training examples until the validation target was first reached
are recorded per task; for the learners that have a model of a task before learning it
(``finetune``, ``frozen_first``), so is that model's accuracy on it and the same model's at its
random initialisation, GEM's forward transfer (:mod:`lifelong.metrics` defines every figure).
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from agents import Progress, quiet
from agents.classification.training import accuracy
from agents.task import DEFAULT_INPUT_SHAPE, TaskData
from agents.workers import Workers
from library_store import Library, first_line
from lifelong.bench import BenchResult, Stage, read_result
from lifelong.bench.controls import (
    Blueprint,
    Context,
    Independent,
    Learner,
    LibraryLearner,
    Progressive,
    RandomLibrary,
    SharedTrunk,
    task_name,
)
from lifelong.bench.mntdp import ModularNetworks
from lifelong.errors import LifelongError
from lifelong.history import Contents, contents_before
from lifelong.metrics import check_matrix, summary, with_current_names
from lifelong.plans import ClassificationPlan
from lifelong.streams import Stream
from lifelong.task_data import load_task_data

FOLLOW_S = 0.5  # how often the random library, one task behind the agent, looks for its commit
AGENT_FAILED = "agent-failed"  # marks a seed whose agent stopped: the random library gives up
CONDITIONS = ("lifelong", "random_library", "independent", "finetune", "frozen_first", "pnn", "mntdp")
# --quick: every named stream with every condition and one seed in minutes on 2 CPU cores
QUICK = dict(
    so_steps=300, batch_size=64, eval_every=50, patience=2, population=3, generations=1,
    candidate_steps=100, final_steps=500, settle_steps=100,
)  # fmt: skip


@dataclass
class Log:
    """What one condition recorded over one seed's stream."""

    matrix: list[list[float | None]] = field(default_factory=list)
    initial: list[float] = field(
        default_factory=list
    )  # each task's untrained network: the row before learning
    test_acc: list[float] = field(default_factory=list)  # R[j][j]
    params_shared: list[int] = field(default_factory=list)  # after each task
    params_owned: list[int] = field(default_factory=list)  # after each task, summed over tasks
    params_total: list[int] = field(default_factory=list)
    params_task: list[int] = field(default_factory=list)  # what each task added
    library_modules: list[int] = field(default_factory=list)  # lifelong and random_library only
    seconds: list[float] = field(default_factory=list)
    examples_to_target: list[int | None] = field(default_factory=list)
    curves: list[dict[str, list[float]]] = field(default_factory=list)
    how: list[dict[str, Any]] = field(default_factory=list)  # lifelong, random_library, mntdp only
    # finetune and frozen_first only (empty elsewhere, and in results written before issue 27):
    # each task's test accuracy just before it is learned (GEM's R[j-1][j]) and the same model's
    # at its random initialisation (GEM's b_j); None for the first task, which has no earlier model
    before_learning: list[float | None] = field(default_factory=list)
    at_init: list[float | None] = field(default_factory=list)


class Recorder:
    """Follows one task's training through the events every learner reports (``phase``,
    ``eval``, ``phase_done``), counting training examples across phases (evolution's candidates
    included), and passes every event on."""

    def __init__(self, progress: Progress, batch_size: int, target: float) -> None:
        self.progress, self.batch_size, self.target = progress, batch_size, target
        self.done_steps = self.phase_steps = 0
        self.examples: list[float] = []
        self.val_acc: list[float] = []
        self.examples_to_target: int | None = None

    def __call__(self, event: str, **fields: Any) -> None:
        if event == "eval":
            self.phase_steps = fields["step"]
            seen = (self.done_steps + self.phase_steps) * self.batch_size
            self.examples.append(seen)
            self.val_acc.append(fields["val_acc"])
            if self.examples_to_target is None and fields["val_acc"] >= self.target:
                self.examples_to_target = seen
        elif event == "phase_done":
            self.done_steps, self.phase_steps = self.done_steps + self.phase_steps, 0
        self.progress(event, **fields)


# the controls handed to the workers after the agent's first task, costliest first (PNN's step
# costs grow with the square of its columns), so it does not run on alone at the end; the random
# library follows the agent one task behind
SUBMIT_ORDER = ("pnn", "mntdp", "random_library", "independent", "finetune", "frozen_first")


@dataclass
class SeedRun:
    """One seed under way: the agent's log, and each control's log or the job computing it."""

    seed: int
    tasks: int
    conditions: tuple[str, ...]
    logs: dict[str, Future[Log] | Log]
    initial: list[float]  # each task's untrained network: the row before learning

    def finish(self, stage: Stage) -> dict[str, Log]:
        """Every condition's log, once its job is done."""
        logs = {}
        for name, job in self.logs.items():
            if isinstance(job, Future):
                job = job.result()
                stage.advance(self.tasks, f"seed {self.seed}: {name} learned the stream")
            job.initial = self.initial
            logs[name] = job
        return {name: logs[name] for name in self.conditions}


def start_seed(
    stream: Stream, context: Context, conditions: tuple[str, ...], stage: Stage, pool: Workers | None = None
) -> SeedRun:
    """The agent through the stream with one seed, here; every control through it in ``pool``'s
    processes when given (returning at once: the next seed's agent can start), else here too.
    Libraries live under ``context.root``.

    The agent learns first (its first network is the controls' blueprint); the random library
    re-draws the agent's library as it was before each task, so in a worker it follows the agent
    one task behind, and here it waits for the agent's whole run. Every learner draws its
    randomness from (seed, task), so the order they run in changes nothing."""
    data = _load(stream, context)
    agent = LibraryLearner(context, Library.create(context.root / "lifelong"))
    lifelong = Log()
    _learn_one(agent, lifelong, 0, stream, data, context, stage.progress)
    stage.advance(1, f"seed {context.seed}: lifelong learned {stream.specs[0].text}")
    blueprint = Blueprint.of_task(agent.library, task_name(0))
    later = ("random_library",) if pool is None else ()
    controls = [name for name in SUBMIT_ORDER if name in conditions and name not in later]
    logs = {name: _start(pool, name, stream, context, blueprint, stage, data) for name in controls}
    try:
        for index in range(1, len(stream.specs)):
            _learn_one(agent, lifelong, index, stream, data, context, stage.progress)
            stage.advance(1, f"seed {context.seed}: lifelong learned {stream.specs[index].text}")
    except BaseException:
        (context.root / AGENT_FAILED).touch()
        raise
    for name in later:
        if name in conditions:
            logs[name] = _start(pool, name, stream, context, blueprint, stage, data)
    if "lifelong" in conditions:
        logs["lifelong"] = lifelong
    initial = _initial(context, blueprint, data)
    return SeedRun(context.seed, len(data), conditions, logs, initial)


def _start(
    pool: Workers | None,
    name: str,
    stream: Stream,
    context: Context,
    blueprint: Blueprint,
    stage: Stage,
    data: list[TaskData],
) -> Future[Log] | Log:
    """Condition ``name`` through the whole stream: a job in ``pool`` (which loads the data
    itself), or now, here, on ``data``."""
    if pool is not None:
        return pool.submit(run_condition, name, stream, context, blueprint)
    return run_condition(name, stream, context, blueprint, stage, data)


def run_condition(
    name: str,
    stream: Stream,
    context: Context,
    blueprint: Blueprint,
    stage: Stage | None = None,
    data: list[TaskData] | None = None,
) -> Log:
    """One control through the stream (``random_library`` re-draws the agent's library as it was
    before each task, once the agent has committed that task); ``data`` is loaded when not given."""
    data = data if data is not None else _load(stream, context)
    learner: Learner
    if name == "random_library":
        learned = Library.open(context.root / "lifelong")
        learner = RandomLibrary(context, learned, lambda index: _before(learned, index, context.root))
    else:
        learner = _control(name, context, blueprint)
    log = Log()
    for index in range(len(stream.specs)):
        _learn_one(learner, log, index, stream, data, context, stage.progress if stage else quiet)
        if stage:
            stage.advance(1, f"seed {context.seed}: {name} learned {stream.specs[index].text}")
    return log


def _before(learned: Library, index: int, root: Path) -> Contents:
    """What the agent's library held before task ``index``, once the agent (perhaps learning in
    another process) has committed that task."""
    name = task_name(index)
    while name not in {task.name for task in learned.tasks()}:
        if (root / AGENT_FAILED).exists():
            raise LifelongError(f"{root.name}: the agent stopped before {name}, so the random library does")
        time.sleep(FOLLOW_S)
        learned.refresh()
    return contents_before(learned, name)


def _load(stream: Stream, context: Context) -> list[TaskData]:
    return [
        load_task_data(spec, data_dir=context.data_dir, input_shape=DEFAULT_INPUT_SHAPE, seed=context.seed)
        for spec in stream.specs
    ]


def _learn_one(
    learner: Learner,
    log: Log,
    index: int,
    stream: Stream,
    data: list[TaskData],
    context: Context,
    progress: Progress = quiet,
) -> None:
    """``learner`` learns task ``index``; ``log`` gets the matrix row and the task's figures."""
    budget, last = context.plan.budget, len(data) - 1
    recorder = Recorder(progress, min(budget.batch_size, len(data[index].train_y)), context.plan.target)
    gem = learner.before_learning(index, data[index])  # before the clock: not the task's seconds
    if gem is not None:
        log.before_learning.append(gem[0])
        log.at_init.append(gem[1])
    started = time.perf_counter()
    learner.learn(index, stream.specs[index], data[index], recorder)
    seconds = time.perf_counter() - started
    row: list[float | None] = []
    for j in range(index + 1):
        measure = j == index or index == last or not learner.frozen
        row.append(learner.accuracy(j, data[j]) if measure else log.test_acc[j])
    log.matrix.append(row + [None] * (last - index))
    log.test_acc.append(row[index])  # type: ignore[arg-type]
    shared, owned = learner.parameters()
    before = log.params_total[-1] if log.params_total else 0
    log.params_shared.append(shared)
    log.params_owned.append(owned)
    log.params_total.append(shared + owned)
    log.params_task.append(shared + owned - before)
    modules = learner.library_modules()
    if modules is not None:
        log.library_modules.append(modules)
    log.seconds.append(round(seconds, 3))
    log.examples_to_target.append(recorder.examples_to_target)
    log.curves.append({"examples": recorder.examples, "val_acc": recorder.val_acc})
    how = learner.how(index)
    if how is not None:
        log.how.append(how)


def _control(name: str, context: Context, blueprint: Blueprint) -> Learner:
    if name == "independent":
        return Independent(context, blueprint)
    if name == "pnn":
        return Progressive(context, blueprint)
    if name == "mntdp":
        return ModularNetworks(context, blueprint)
    return SharedTrunk(context, blueprint, train_trunk_after_first=name == "finetune")


def _initial(context: Context, blueprint: Blueprint, data: list[TaskData]) -> list[float]:
    """Each task's test accuracy before any learning: the untrained blueprint network."""
    return [
        accuracy(blueprint.network(d.n_classes, context.generator(j)), d.test_x, d.test_y, context.device)
        for j, d in enumerate(data)
    ]


def seed_metrics(log: Log, independent: list[float] | None, judged_from: int) -> dict[str, float | None]:
    """One condition's figures over one seed's stream (see :func:`lifelong.metrics.summary`)."""
    judged = range(judged_from, len(log.test_acc))
    reached = [n for n in log.examples_to_target if n is not None]
    gem = {"before": log.before_learning, "at_init": log.at_init} if log.before_learning else {}
    figures: dict[str, float | None] = {
        "judged_test_acc": statistics.mean(log.test_acc[j] for j in judged),
        **summary(log.matrix, independent, judged_from, **gem),
        "params_total": log.params_total[-1],
        "params_shared": log.params_shared[-1],
        "params_owned_per_task": log.params_owned[-1] / len(log.test_acc),
        "seconds_per_task": statistics.mean(log.seconds),
        "examples_to_target": statistics.mean(reached) if reached else None,
        "tasks_reaching_target": len(reached) / len(log.test_acc),
    }
    if log.library_modules:
        figures["library_modules"] = log.library_modules[-1]
    return figures


def aggregate(per_seed: list[dict[str, float | None]]) -> dict[str, float | None]:
    """Mean over seeds of every figure, and ``<figure>_sd`` (0 for one seed; None where a figure
    is None or missing in a seed: GEM's forward transfer of a seed run before issue 27)."""
    result: dict[str, float | None] = {}
    for key in dict.fromkeys(key for figures in per_seed for key in figures):
        values = [figures.get(key) for figures in per_seed]
        if any(value is None for value in values):
            result[key] = result[f"{key}_sd"] = None
            continue
        result[key] = statistics.mean(values)  # type: ignore[arg-type]
        result[f"{key}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0  # type: ignore[arg-type]
    return result


def bench_streams(
    stream: Stream,
    seeds: list[int],
    plan: ClassificationPlan,
    *,
    conditions: tuple[str, ...] = CONDITIONS,
    device: torch.device,
    data_dir: Path | None = None,
    workers: int | None = 0,
    threads: int | None = None,
    progress: Progress = quiet,
) -> BenchResult:
    """Run ``stream`` under ``conditions`` for every seed; results, ratios and the raw runs.

    ``workers`` > 0 learns the controls in that many processes while this one runs the agent
    (None: one per core; 0: all here, one after another); every process uses ``threads`` torch
    threads (default: the cores shared out among the workers). Results depend on the thread
    count (floating-point sums), never on the number of workers."""
    if workers is not None and workers < 0:
        raise LifelongError(f"--workers must be 0 or more, not {workers}")
    pool = Workers(workers, threads=threads)  # threads: as given, else the cores shared out
    threads = pool.threads
    unknown = sorted(set(conditions) - set(CONDITIONS))
    if unknown or not conditions:
        raise LifelongError(
            f"unknown condition(s) {', '.join(unknown) or '(none)'}: choose among {', '.join(CONDITIONS)}"
        )
    conditions = tuple(name for name in CONDITIONS if name in conditions)
    learners = len({*conditions, "lifelong"})  # the agent runs for the blueprint whatever is asked
    stage = Stage(progress, f"bench streams {stream.name}", len(seeds) * len(stream.specs) * learners)
    runs: dict[str, dict[str, Log]] = {name: {} for name in conditions}
    with ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="lifelong-streams-"))
        stack.enter_context(torch_threads(threads))
        stack.enter_context(pool)
        started = [
            start_seed(
                stream,
                Context(plan, seed, device, data_dir, Path(tmp) / f"seed-{seed}"),
                conditions,
                stage,
                pool if pool.workers else None,
            )
            for seed in seeds
        ]
        for seed, run in zip(seeds, started, strict=True):
            for name, log in run.finish(stage).items():
                runs[name][str(seed)] = log
    results = _results(runs, stream.judged_from)
    raw = {
        "stream": {
            "name": stream.name,
            "tasks": [s.text for s in stream.specs],
            "judged_from": stream.judged_from,
        },
        "budget": asdict(plan.budget),
        "target": plan.target,
        "workers": pool.workers,
        "threads": threads,
        "conditions": {
            name: {seed: asdict(log) for seed, log in by_seed.items()} for name, by_seed in runs.items()
        },
    }
    return results, _ratios(results), raw


def _results(runs: dict[str, dict[str, Log]], judged_from: int) -> dict[str, dict[str, float | None]]:
    """Each condition's figures, mean ± sd over its seeds' logs."""
    results = {}
    for name, by_seed in runs.items():
        per_seed = []
        for seed, log in by_seed.items():
            independent = runs["independent"][seed].test_acc if "independent" in runs else None
            per_seed.append(seed_metrics(log, independent, judged_from))
        results[name] = aggregate(per_seed)
    return results


# what in ``runs`` must be equal for results over different seeds to be one result: the figures
# depend on the stream, budget, target and torch threads; the seconds also on the workers (and on
# the device, which a result records outside ``runs`` and a merge checks too)
SAME_IN_A_MERGE = ("stream", "budget", "target", "threads", "workers")


def merge_seeds(benches: list[tuple[Path, dict[str, Any]]]) -> tuple[BenchResult, list[dict[str, Any]]]:
    """One result from ``bench streams`` results over disjoint seeds of the same stream, budget,
    target, conditions, device, workers and threads: the figures one run with all their seeds
    gives (every learner draws its randomness from (seed, task)), and where each seed came from."""
    if len(benches) < 2:
        raise LifelongError("give two or more `lifelong bench streams` results to merge")
    (first_path, first), owner = benches[0], {}
    for path, bench in benches:
        theirs, ref = bench["runs"], first["runs"]
        for key in SAME_IN_A_MERGE:
            if theirs.get(key) != ref.get(key):
                raise LifelongError(f"{path} and {first_path} differ in {key}: they are not one experiment")
        if bench.get("device") != first.get("device"):
            raise LifelongError(f"{path} ran on {bench.get('device')}, {first_path} on {first.get('device')}")
        if list(theirs["conditions"]) != list(ref["conditions"]):
            raise LifelongError(f"{path} and {first_path} ran different conditions")
        for seed in next(iter(theirs["conditions"].values())):
            if seed in owner:
                raise LifelongError(f"seed {seed} is in both {owner[seed][0]} and {path}")
            owner[seed] = (path, theirs["conditions"])
    seeds = sorted(owner, key=int)
    try:
        runs = {
            name: {seed: Log(**owner[seed][1][name][seed]) for seed in seeds}
            for name in first["runs"]["conditions"]
        }
    except TypeError as error:
        raise LifelongError(f"a run in these results is malformed: {first_line(error)}") from None
    as_json = {name: {seed: asdict(log) for seed, log in by_seed.items()} for name, by_seed in runs.items()}
    raw = {**first["runs"], "conditions": as_json}
    results = _results(runs, first["runs"]["stream"]["judged_from"])
    sources = [
        {"file": str(path), **{key: bench.get(key) for key in ("command", "seeds", "versions", "wall_s")}}
        for path, bench in benches
    ]
    return (results, _ratios(results), raw), sources


def load_bench(path: str | Path) -> dict[str, Any]:
    """A ``lifelong bench streams`` result, checked; a one-line error if it is not one."""
    return read_result(path, {"streams": check_bench})


def check_bench(data: dict[str, Any]) -> None:
    """Raise if ``data`` is not a well-formed stream result. Every reader of one checks it here,
    so here too a result written before issue 27 gets today's figure names
    (:func:`lifelong.metrics.with_current_names`), in place."""
    results = data.get("results")
    if isinstance(results, dict):
        for condition, figures in results.items():
            if isinstance(figures, dict):
                results[condition] = with_current_names(figures)
    if isinstance(data.get("ratios"), dict):
        data["ratios"] = with_current_names(data["ratios"])
    stream, conditions = data["runs"]["stream"], data["runs"]["conditions"]
    size = len(stream["tasks"])
    if not size or not isinstance(conditions, dict) or not conditions:
        raise ValueError("no tasks or no conditions in runs")
    if not 0 <= int(stream.get("judged_from", 1)) <= size:
        raise ValueError(f"judged_from {stream.get('judged_from')} outside 0..{size}")
    for condition, seeds in conditions.items():
        if not isinstance(seeds, dict) or not seeds:
            raise ValueError(f"condition {condition!r} has no runs")
        for seed, run in seeds.items():
            where = f"{condition} seed {seed}"
            check_matrix(run["matrix"])
            shape = (len(run["matrix"]), len(run["matrix"][0]))
            if shape != (size, size):  # a stream's matrix has a row per task, no row after them
                raise ValueError(f"{where}: a {shape[0]}×{shape[1]} matrix for {size} tasks")
            for key in ("test_acc", "params_total"):
                if len(run[key]) != size or not all(isinstance(v, int | float) for v in run[key]):
                    raise ValueError(f"{where}: {key} must hold {size} numbers")
            for key in ("before_learning", "at_init"):  # absent or empty: no model before learning
                if run.get(key) and len(run[key]) != size:
                    raise ValueError(f"{where}: {key} must hold {size} entries")
        if set(seeds) != set(next(iter(conditions.values()))):
            raise ValueError(f"condition {condition!r} ran other seeds than the rest")


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _ratios(results: dict[str, dict[str, float | None]]) -> dict[str, float]:
    """The agent against the random library in points, and PNN's parameters over the agent's
    (against ``independent`` it is lifelong's ``transfer_vs_independent``, in its results)."""
    ratios = {}
    lifelong = results.get("lifelong", {})
    if "random_library" in results and lifelong:
        ratios["lifelong_minus_random_library_points"] = 100 * (
            lifelong["judged_test_acc"] - results["random_library"]["judged_test_acc"]  # type: ignore[operator]
        )
    if "pnn" in results and lifelong:
        ratios["params_pnn_over_lifelong"] = results["pnn"]["params_total"] / lifelong["params_total"]  # type: ignore[operator]
    return ratios
