"""``lifelong demo``: the main job. A stream learned into the user's library, each judged task
beside its random-library control, and the report's pictures.

The stream's building tasks (MNIST and Fashion-MNIST by default) go through the whole learn
loop and grow the library; its judged tasks (unseen classes, few-shot) are then solved from the
library alone: self-organization, no growth (SMART's protocol for unseen tasks), and committed.
Each judged task is also learned the same way, with the same seed, over a same-shape copy of the
library it met with fresh random weights (:class:`~lifelong.bench.controls.RandomLibrary`, in a
scratch folder): the gap between the two is what the library's learned weights are worth. Tasks
already in the library are not learned again, so an interrupted demo resumes; the controls
always run.
"""

from __future__ import annotations

import functools
import statistics
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from agents import Progress, quiet
from agents.task import DEFAULT_INPUT_SHAPE
from agents.workers import Workers
from library_store import Library
from lifelong.bench import versions
from lifelong.bench.controls import Context, RandomLibrary
from lifelong.files import check_output_folder
from lifelong.history import contents_before, library_history
from lifelong.listings import own_parameters, to_json
from lifelong.plans import ClassificationPlan
from lifelong.report import write_report
from lifelong.runner import command_line, learn_specs
from lifelong.streams import Stream
from lifelong.task_data import load_task_data

DEMO_STREAM = "demo"  # the preset in lifelong.streams


@dataclass(frozen=True)
class DemoRow:
    """One task of the demo: what the library gave it and, when judged, what a random library gave."""

    task: str
    judged: bool
    phase: str
    test_acc: float
    random_library: float | None
    own_params: int
    new_modules: int
    seconds: float


@dataclass(frozen=True)
class DemoResult:
    rows: list[DemoRow]
    report: Path  # the report's index.html
    result_file: Path  # demo.json beside it: the rows, command, seed, budget, versions
    gap_points: float  # judged tasks' mean test accuracy minus the random library's, in points


def run_demo(
    library: Library,
    stream: Stream,
    plan: ClassificationPlan,
    *,
    seed: int,
    device: torch.device,
    data_dir: Path | None,
    out_dir: Path,
    progress: Progress = quiet,
    workers: Workers | None = None,
) -> DemoResult:
    """Learn ``stream``'s tasks missing from ``library`` (named by their specs; judged tasks
    without growth; growth candidates on ``workers``), run the random-library control of every
    judged task, and write the report under ``out_dir``."""
    check_output_folder(out_dir)  # before the work, not after it
    judge = replace(plan, budget=plan.budget.override(grow=False))
    done = {task.name for task in library.tasks()}
    for part, how in ((stream.specs[: stream.judged_from], plan), (stream.judged, judge)):
        todo = [spec for spec in part if spec.text not in done]
        learn_specs(
            library,
            todo,
            plans={how.family: how},
            seed=seed,
            device=device,
            data_dir=data_dir,
            progress=progress,
            workers=workers,
        )
    library.refresh()
    names = [spec.text for spec in stream.specs]
    before = functools.partial(contents_before, library)
    controls: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="lifelong-demo-") as scratch:
        context = Context(judge, seed, device, data_dir, Path(scratch))
        control = RandomLibrary(context, library, lambda index: before(names[index]))
        for index in range(stream.judged_from, len(stream.specs)):
            spec = stream.specs[index]
            progress("task", name=f"{spec.text} over a random library")
            data = load_task_data(spec, data_dir=data_dir, input_shape=DEFAULT_INPUT_SHAPE, seed=seed)
            control.learn(index, spec, data, functools.partial(_scratch_events, progress))
            controls[index] = control.accuracy(index, data)
    created = [module.created_by for module in library.modules()]
    rows = []
    for index, name in enumerate(names):
        record = library.task(name)
        rows.append(
            DemoRow(
                task=name,
                judged=index >= stream.judged_from,
                phase=record.metrics["phase"],
                test_acc=record.metrics["test_acc"],
                random_library=controls.get(index),
                own_params=own_parameters(library, name),
                new_modules=created.count(name),
                seconds=record.timings.get("total", 0.0),
            )
        )
    history = library_history(library, data_dir=data_dir, evaluate=False)
    index = write_report(out_dir, history=history, library=library)
    result_file = index.parent / "demo.json"
    judged = [row for row in rows if row.judged]
    gap = statistics.mean(row.test_acc - row.random_library for row in judged)  # type: ignore[operator]
    facts = {
        "command": command_line(),
        "seed": seed,
        "stream": stream.text,
        "budget": asdict(plan.budget),
        "target": plan.target,
        "device": str(device),
        "versions": versions(),
        "tasks": [asdict(row) for row in rows],
        "gap_points": 100 * gap,  # judged tasks: learned library minus random library
    }
    result_file.write_text(to_json(facts) + "\n")
    return DemoResult(rows, index, result_file, 100 * gap)


def _scratch_events(progress: Progress, event: str, **fields: object) -> None:
    """The control's own events, less its scratch task's name (the demo names it above)."""
    if event != "task":
        progress(event, **fields)
