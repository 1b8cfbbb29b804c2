"""Pictures of a library's history and of ``lifelong bench streams``, ``growth`` and
``atari-transfer`` results: PNGs plus one ``index.html`` that shows each picture beside its
numbers (``lifelong report``)."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Colormap
from matplotlib.figure import Figure  # figures drawn with Agg, never through pyplot's global state

from library_store import Library
from lifelong.bench import mean_ci, read_result
from lifelong.bench.atari_transfer import check_atari_transfer, summarize
from lifelong.bench.growth import check_growth
from lifelong.bench.streams import CONDITIONS, check_bench
from lifelong.history import learning_curve

DPI = 110
MARKERS, STYLES = ("o", "s", "^", "D", "v", "P"), ("-", "--", "-.", ":")


@dataclass
class Picture:
    file: str
    title: str
    caption: str
    tables: list[str] = field(default_factory=list)  # HTML shown beside the picture


@dataclass
class Section:
    title: str
    note: str
    pictures: list[Picture] = field(default_factory=list)


def write_report(
    out_dir: str | Path,
    *,
    history: dict[str, Any] | None = None,
    library: Library | None = None,
    bench_files: Sequence[str | Path] = (),
) -> Path:
    """Write the pictures of ``history`` (with ``library``: its modules) and of every bench file,
    and ``index.html`` showing them; return the index's path. Bench files are read and checked
    before anything is written."""
    benches = [(Path(path), load_result(path)) for path in bench_files]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sections = []
    if history is not None and library is not None:
        sections.append(library_section(out, history, library))
    for index, (path, bench) in enumerate(benches):
        sections.append(bench_section(out, f"bench{index + 1}-{_slug(path.stem)}", path, bench))
    index = out / "index.html"
    index.write_text(_page(sections), encoding="utf-8")
    return index


def load_result(path: str | Path) -> dict[str, Any]:
    """A `lifelong bench streams`, `growth` or `atari-transfer` result, checked (a one-line error
    if not); a streams result written before issue 27 comes under today's figure names."""
    return read_result(
        path, {"streams": check_bench, "growth": check_growth, "atari-transfer": check_atari_transfer}
    )


# ---------------------------------------------------------------------------- a library
def library_section(out: Path, history: dict[str, Any], library: Library) -> Section:
    tasks = history["tasks"]
    skipped = ", ".join(f"{s['name']} ({s['family']})" for s in history.get("skipped", []))
    note = f"library {library.path}: {len(tasks)} image tasks in commit order"
    note += f"; not shown (not image tasks): {skipped}" if skipped else ""
    if not any(row.get("evaluated") for row in tasks):
        note += "; not re-evaluated: the last row of the matrix repeats the stored accuracies"
    section = Section("Library", note)
    if not tasks:
        section.note += " — nothing to draw"
        return section
    section.pictures = [
        _size_picture(out, tasks),
        _usage_picture(out, tasks, library),
        _curves_picture(out, tasks, library),
        _matrix_picture(out, history),
    ]
    return section


def _size_picture(out: Path, tasks: list[dict[str, Any]]) -> Picture:
    names = [row["name"] for row in tasks]
    x = np.arange(len(names))
    fig = Figure(figsize=(max(6.0, 0.7 * len(names) + 3), 6.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(x, [row["library_parameters"] for row in tasks], "o-", color="tab:blue", label="parameters")
    top.set_ylabel("library parameters", color="tab:blue")
    top.set_ylim(bottom=0)
    modules = top.twinx()
    modules.plot(x, [row["library_modules"] for row in tasks], "s--", color="tab:orange")
    modules.set_ylabel("library modules", color="tab:orange")
    modules.set_ylim(bottom=0)
    modules.yaxis.get_major_locator().set_params(integer=True)
    top.set_title("Library size after each task (blue: parameters, orange: modules)")
    bottom.bar(x, [row["own_parameters"] for row in tasks], color="tab:green")
    bottom.set_ylabel("task's own parameters")
    bottom.set_title("Each task's own parameters (α, β per module used + its head)")
    _task_ticks(bottom, names)
    file = _save(fig, out, "library_size.png")
    table = _table(
        ["task", "own parameters", "library parameters", "library modules", "new modules"],
        [
            [r["name"], r["own_parameters"], r["library_parameters"], r["library_modules"], r["new_modules"]]
            for r in tasks
        ],
    )
    caption = (
        "Library parameters count module weights (BatchNorm running statistics excluded) of the "
        "modules created by the tasks up to and including each one."
    )
    return Picture(file, "(a) Library size and task parameters", caption, [table])


def module_usage(tasks: list[dict[str, Any]], library: Library) -> tuple[list[str], list[str], np.ndarray]:
    """(module ids, short labels, |α·β| per task × module; NaN where a task does not use it)."""
    strengths: list[dict[str, float]] = []
    for row in tasks:
        record, arrays = library.task(row["name"]), library.task_arrays(row["name"])
        used = {}
        for ids, uses in zip(record.layers, arrays.uses, strict=True):
            for module_id, use in zip(ids, uses, strict=True):
                used[module_id] = float(np.mean(np.abs(use["alpha"] * use["beta"])))
        strengths.append(used)
    first_use = {}
    for position, used in enumerate(strengths):
        for module_id in used:
            first_use.setdefault(module_id, position)
    records = {module_id: library.module(module_id) for module_id in first_use}
    order = sorted(first_use, key=lambda m: (records[m].config.get("layer", 0), first_use[m], m))
    labels = []
    for module_id in order:
        record = records[module_id]
        digest = module_id.removeprefix(f"{record.kind}-")[:6]
        labels.append(f"L{record.config.get('layer', '?')} {record.kind} {digest}")
    values = np.array([[used.get(m, np.nan) for m in order] for used in strengths], dtype=float)
    return order, labels, values.reshape(len(tasks), len(order))


def _usage_picture(out: Path, tasks: list[dict[str, Any]], library: Library) -> Picture:
    names = [row["name"] for row in tasks]
    _, labels, values = module_usage(tasks, library)
    fig = Figure(
        figsize=(max(6.0, 0.55 * len(labels) + 3.5), max(3.5, 0.45 * len(names) + 2.5)), layout="constrained"
    )
    ax = fig.subplots()
    cmap = _cmap("viridis")
    cmap.set_bad("white")
    finite = values[np.isfinite(values)]
    image = ax.imshow(
        np.ma.masked_invalid(values),
        cmap=cmap,
        vmin=0,
        vmax=float(finite.max()) if finite.size else 1,
        aspect="auto",
    )
    if values.size <= 300:
        _annotate(ax, values, image, "{:.2f}")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("module (layer, kind, id)")
    ax.set_ylabel("task (commit order)")
    ax.set_title("Module usage: |α·β| of each module a task uses\n(blank: not used)", fontsize=10)
    fig.colorbar(image, ax=ax, label="|α·β|", shrink=0.8)
    file = _save(fig, out, "module_usage.png")
    rows = [
        [name, *("" if math.isnan(v) else f"{v:.3f}" for v in line)]
        for name, line in zip(names, values, strict=True)
    ]
    table = _table(["task", *labels], rows)
    caption = "Module labels: layer, kind, first 6 characters of the module id's hash."
    return Picture(file, "(b) Module usage", caption, [table])


def _curves_picture(out: Path, tasks: list[dict[str, Any]], library: Library) -> Picture:
    fig = Figure(figsize=(9, 5), layout="constrained")
    ax = fig.subplots()
    colours = _cmap("tab20" if len(tasks) > 10 else "tab10")
    rows = []
    for index, row in enumerate(tasks):
        record = library.task(row["name"])
        examples, accuracies = learning_curve(record)
        colour = colours(index % colours.N)
        ax.plot(examples, accuracies, "-", marker=".", color=colour, label=row["name"], linewidth=1.2)
        reached = row["examples_to_target"]
        if reached is not None:
            ax.plot([reached], [row["target"]], "*", color=colour, markersize=12, markeredgecolor="black")
        final = accuracies[-1] if accuracies else None
        rows.append([row["name"], row["phase"], row["target"], reached, final, row["seconds"]])
    targets = sorted({row["target"] for row in tasks if row["target"] is not None})
    for target in targets:
        ax.axhline(target, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("training examples (steps × batch size, phases in order)")
    ax.set_ylabel("validation accuracy")
    ax.set_title("Learning curves (★: target first reached; dotted: target)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), title="task")
    ax.grid(alpha=0.3)
    file = _save(fig, out, "learning_curves.png")
    table = _table(["task", "phase", "target", "examples to target", "final val acc", "seconds"], rows)
    caption = (
        "Phases self-organize, grow, settle, one after another; a grown task's grow curve starts "
        "after the examples its evolution's candidates trained on."
    )
    return Picture(file, "(c) Learning curves", caption, [table])


def _matrix_picture(out: Path, history: dict[str, Any]) -> Picture:
    names = [row["name"] for row in history["tasks"]]
    matrix = history["matrix"]
    evaluated = any(row.get("evaluated") for row in history["tasks"])
    rows = [f"after {name}" for name in names]
    rows.append("now (re-evaluated)" if evaluated else "now (stored, not re-evaluated)")
    fig = Figure(figsize=(max(6.0, 0.8 * len(names) + 4), max(4.0, 0.6 * len(rows) + 2.5)))
    fig.set_layout_engine("constrained")
    ax = fig.subplots()
    _matrix_axes(ax, fig, np.array(_floats(matrix)), names, rows, *_range([matrix]), colorbar=True)
    s = history["summary"]
    fig.suptitle(  # over the whole figure: the row labels take much of its width
        f"Accuracy matrix R[i][j]: test accuracy on task j after task i, then now\n"
        f"average final {s['average_final_accuracy']:.4f}, backward transfer "
        f"{s['backward_transfer']:+.4f}, forgetting (Chaudhry) {s['forgetting_chaudhry']:.4f}, "
        f"(Avalanche) {s['forgetting_avalanche']:.4f}",
        fontsize=10,
    )
    file = _save(fig, out, "accuracy_matrix.png")
    tables = [
        _table(["", *names], [[label, *row] for label, row in zip(rows, matrix, strict=True)]),
        _table(["metric", "value"], [[k, v] for k, v in s.items()]),
    ]
    now = "every task re-evaluated" if evaluated else "the stored accuracies, not re-evaluated"
    caption = (
        "Row 'after <task>' holds each task's test accuracy stored when it was learned (a committed "
        "task never changes; one a prune re-fitted since counts at its accuracy before the prune); "
        f"the last row, 'now', is {now}. Backward transfer and both forgettings compare 'now' with the "
        "rows above it for every task, the last one included, so what a prune cost shows there: "
        "Chaudhry's from the best row before 'now', Avalanche's from the task's own row (README, "
        "Metrics and reports, gives each figure's source)."
    )
    return Picture(file, "(d) Accuracy matrix", caption, tables)


# ---------------------------------------------------------------------------- a bench result
def bench_section(out: Path, prefix: str, path: Path, bench: dict[str, Any]) -> Section:
    if bench["protocol"] == "growth":
        return growth_section(out, prefix, path, bench)
    if bench["protocol"] == "atari-transfer":
        return atari_transfer_section(out, prefix, path, bench)
    stream = bench["runs"]["stream"]
    conditions = bench["runs"]["conditions"]
    seeds = bench.get("seeds", [])
    took = f"{bench.get('wall_s', 0):.0f} s"
    if "sources" in bench:  # `lifelong bench merge`: each merged run's own time
        took = "merged from " + "; ".join(
            f"seeds {s['seeds']} in {s['wall_s']:.0f} s" for s in bench["sources"]
        )
    note = (
        f"{path}: stream {stream.get('name', '?')}, {len(stream['tasks'])} tasks (judged from task "
        f"{stream.get('judged_from', 1) + 1}), conditions {', '.join(conditions)}, seeds "
        f"{', '.join(map(str, seeds))}; device {bench.get('device', '?')}, {took}"
    )
    section = Section(f"Bench: {path.name}", note)
    section.pictures = [
        _bench_accuracy(out, prefix, bench),
        _bench_params(out, prefix, bench),
        _bench_matrices(out, prefix, bench),
    ]
    return section


def growth_section(out: Path, prefix: str, path: Path, bench: dict[str, Any]) -> Section:
    """`lifelong bench growth`: the library's size and compute after each task, with and
    without pruning (mean ± sd over seeds)."""
    tasks, conditions = bench["runs"]["stream"], bench["runs"]["conditions"]
    note = (
        f"{path}: {len(tasks)} tasks, conditions {', '.join(conditions)}, seeds "
        f"{', '.join(map(str, bench.get('seeds', [])))}; {bench.get('wall_s', 0):.0f} s"
    )
    panels = (
        ("library_params", "library parameters"),
        ("library_modules", "library modules"),
        ("macs_per_task", "MACs per image, mean over tasks"),
    )
    x = np.arange(len(tasks))
    fig = Figure(figsize=(max(7.0, 0.5 * len(tasks) + 4), 10), layout="constrained")
    axes = fig.subplots(len(panels), 1, sharex=True)
    for ax, (key, label) in zip(axes, panels, strict=True):
        for k, (condition, runs) in enumerate(conditions.items()):
            values = np.array([[a[key] for a in run["after"]] for run in runs.values()], dtype=float)
            mean = values.mean(axis=0)
            sd = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros_like(mean)
            ax.plot(x, mean, marker=MARKERS[k], linestyle=STYLES[k], label=condition, color=f"C{k}")
            ax.fill_between(x, mean - sd, mean + sd, color=f"C{k}", alpha=0.15)
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].set_title("The library after each task, with and without `learn --prune auto`")
    axes[0].legend(fontsize=8)
    _task_ticks(axes[-1], tasks)
    file = _save(fig, out, f"{prefix}-growth.png")
    results = bench["results"]
    keys = sorted({k for values in results.values() for k in values})
    tables = [
        _table(["condition", *keys], [[c, *(results[c].get(k) for k in keys)] for c in results]),
        _table(["ratio", "value"], [[k, v] for k, v in bench.get("ratios", {}).items()]),
    ]
    caption = (
        "Lines: mean over seeds; bands: ± sd. Tables: final figures per condition, and the goal's ratios."
    )
    section = Section(f"Bench: {path.name}", note)
    section.pictures = [
        Picture(file, "(g) Library size over time, with and without pruning", caption, tables)
    ]
    return section


def atari_transfer_section(out: Path, prefix: str, path: Path, bench: dict[str, Any]) -> Section:
    """`lifelong bench atari-transfer`: per hop, the re-evaluated champion over the frames spent
    (each seed's curve, and the mean with its 95% CI at the checkpoints), and the final scores."""
    runs = bench["runs"]
    note = (
        f"{path}: paths {', '.join(runs['paths'])}; {runs['frames_per_run']:,} frames a run, champions "
        f"re-evaluated on {runs['episodes']} fresh episodes, peer {runs['peer']}; seeds "
        f"{', '.join(map(str, bench.get('seeds', [])))}; {bench.get('wall_s', 0):.0f} s"
    )
    section = Section(f"Bench: {path.name}", note)
    results, ratios = summarize(runs["hops"])  # the figures, from the file's runs
    for hop, conditions in runs["hops"].items():
        fig = Figure(figsize=(8, 4.5), layout="constrained")
        ax = fig.subplots()
        marks = runs["checkpoint_frames"]
        for k, (condition, by_seed) in enumerate(conditions.items()):
            colour = f"C{k}"
            for run in by_seed.values():
                curve = np.array(run["curve"], dtype=float)
                ax.step(curve[:, 1], curve[:, 2], where="post", color=colour, alpha=0.2, linewidth=0.8)
            stats = [
                mean_ci([run["at_checkpoints"][i] for run in by_seed.values()]) for i in range(len(marks))
            ]
            mean, low, high = (np.array(values) for values in zip(*stats, strict=True))
            ax.plot(marks, mean, marker=MARKERS[k], linestyle=STYLES[k], color=colour, label=condition)
            ax.fill_between(marks, low, high, color=colour, alpha=0.12)
        ax.set_xlabel("emulator frames spent learning")
        ax.set_ylabel("champion's score on fresh episodes")
        ax.set_title(f"{hop}: re-evaluated champion while learning")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        file = _save(fig, out, f"{prefix}-{_slug(hop)}.png")
        rows = []
        for condition in conditions:
            row = results[f"{condition}:{hop}"]
            te = ratios.get(f"te_{condition}:{hop}")
            rows.append(
                [
                    condition,
                    _ci(row, "score"),
                    _ci(row, "champion"),
                    _ci(row, "vs_scratch", "+"),
                    te,
                    row["frames_mean"],
                ]
            )
        header = ["condition", "score [95% CI]", "before the lesion", "vs scratch", "TE", "frames"]
        table = _table(header, rows)
        caption = (
            "Faint steps: each seed's champion, re-evaluated when it changed; lines: mean over seeds "
            "at the paper's checkpoints (as shares of the frame budget); bands: 95% bootstrap CI. "
            "Table: the committed network's score, the champion's when the frames ran out (before "
            "the agent's lesion), the paired gain over scratch, all with 95% CIs; TE; learning frames."
        )
        section.pictures.append(Picture(file, f"(t) Transfer: {hop}", caption, [table]))
    return section


def _per_task(bench: dict[str, Any], key: str) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """Per condition: mean and sd (over seeds) of ``key`` per task, and the number of seeds."""
    result = {}
    for condition, runs in bench["runs"]["conditions"].items():
        values = np.array([run[key] for run in runs.values()], dtype=float)
        sd = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1])
        result[condition] = (values.mean(axis=0), sd, len(values))
    return result


def _bench_accuracy(out: Path, prefix: str, bench: dict[str, Any]) -> Picture:
    tasks, judged_from = bench["runs"]["stream"]["tasks"], int(bench["runs"]["stream"].get("judged_from", 1))
    stats = _per_task(bench, "test_acc")
    x = np.arange(len(tasks))
    width = 0.8 / len(stats)
    fig = Figure(figsize=(max(7.0, 0.25 * len(tasks) * len(stats) + 4), 5), layout="constrained")
    ax = fig.subplots()
    if judged_from < len(tasks):
        ax.axvspan(judged_from - 0.5, len(tasks) - 0.5, color="gold", alpha=0.15, label="judged tasks")
    lowest = 1.0
    for k, (condition, (mean, sd, _)) in enumerate(stats.items()):
        offset = (k - (len(stats) - 1) / 2) * width
        ax.bar(x + offset, mean, width, yerr=sd, capsize=2, label=condition, color=_colour(condition))
        lowest = min(lowest, float(np.min(mean - sd)))
    ax.set_ylim(max(0.0, math.floor(lowest * 10) / 10 - 0.05), 1.0)
    ax.set_ylabel("test accuracy (mean ± sd over seeds)")
    _task_ticks(ax, [f"{t} *" if i >= judged_from else t for i, t in enumerate(tasks)])
    ax.set_title("Test accuracy on each task when first learned (*: judged task)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(axis="y", alpha=0.3)
    file = _save(fig, out, f"{prefix}-accuracy.png")
    rows = [
        [f"{t}{' *' if i >= judged_from else ''}", *(_pm(m[i], s[i]) for m, s, _ in stats.values())]
        for i, t in enumerate(tasks)
    ]
    results = bench.get("results", {})
    keys = sorted({k for values in results.values() for k, v in values.items() if isinstance(v, int | float)})
    tables = [
        _table(["task", *stats], rows),
        _table(["condition", *keys], [[c, *(results[c].get(k) for k in keys)] for c in results]),
    ]
    if bench.get("ratios"):
        tables.append(_table(["ratio", "value"], [[k, v] for k, v in bench["ratios"].items()]))
    caption = "Bars: mean over seeds; error bars: sample sd. Second table: the file's results per condition."
    return Picture(file, "(e) Test accuracy per task", caption, tables)


def _bench_params(out: Path, prefix: str, bench: dict[str, Any]) -> Picture:
    tasks = bench["runs"]["stream"]["tasks"]
    stats = _per_task(bench, "params_total")
    x = np.arange(len(tasks))
    fig = Figure(figsize=(max(7.0, 0.45 * len(tasks) + 4), 5), layout="constrained")
    ax = fig.subplots()
    for k, (condition, (mean, sd, _)) in enumerate(stats.items()):
        # hollow markers of distinct shapes and sizes: conditions with equal counts stay visible
        marker, style = MARKERS[k % len(MARKERS)], STYLES[k % len(STYLES)]
        size = max(4.0, 12.0 - 1.6 * k)
        ax.plot(
            x,
            mean,
            marker=marker,
            linestyle=style,
            markersize=size,
            markerfacecolor="none",
            markeredgewidth=1.6,
            label=condition,
            color=_colour(condition),
        )
        ax.fill_between(x, mean - sd, mean + sd, color=_colour(condition), alpha=0.15)
    positive = [float(v) for mean, _, _ in stats.values() for v in mean if v > 0]
    log = bool(positive) and max(positive) / min(positive) > 10
    if log:
        ax.set_yscale("log")
    ax.set_ylabel("total parameters after the task" + (" (log scale)" if log else ""))
    _task_ticks(ax, tasks)
    ax.set_title("Parameters: the learner's total after each task (mean over seeds)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(alpha=0.3)
    file = _save(fig, out, f"{prefix}-params.png")
    rows = [[t, *(f"{m[i]:,.0f}" for m, _, _ in stats.values())] for i, t in enumerate(tasks)]
    return Picture(
        file, "(f) Parameters per task", "Band: ± sd over seeds.", [_table(["task", *stats], rows)]
    )


def mean_matrix(runs: Iterable[dict[str, Any]]) -> list[list[float | None]]:
    """The element-wise mean of the runs' accuracy matrices (None stays None)."""
    stacked = np.array([_floats(run["matrix"]) for run in runs], dtype=float)
    mean = stacked.mean(axis=0)
    return [[None if math.isnan(v) else float(v) for v in row] for row in mean]


def _bench_matrices(out: Path, prefix: str, bench: dict[str, Any]) -> Picture:
    tasks = bench["runs"]["stream"]["tasks"]
    conditions = bench["runs"]["conditions"]
    means = {condition: mean_matrix(runs.values()) for condition, runs in conditions.items()}
    columns = min(3, len(means))
    grid = math.ceil(len(means) / columns)
    side = min(6.0, max(3.2, 0.35 * len(tasks) + 1.5))
    fig = Figure(figsize=(side * columns + 1.2, side * grid + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(grid, columns, squeeze=False)).ravel()
    vmin, vmax = _range(means.values())
    numbers = [str(i + 1) for i in range(len(tasks))]
    image = None
    for ax, (condition, matrix) in zip(axes, means.items(), strict=False):
        image = _matrix_axes(
            ax, fig, np.array(_floats(matrix)), numbers, numbers, vmin, vmax, annotate=len(tasks) <= 8
        )
        seeds = len(conditions[condition])
        ax.set_title(f"{condition} ({seeds} seed{'s' if seeds != 1 else ''})", fontsize=10)
        ax.set_xlabel("task j (tested)")
        ax.set_ylabel("after task i")
    for ax in axes[len(means) :]:
        ax.set_visible(False)
    fig.colorbar(image, ax=list(axes[: len(means)]), label="test accuracy (mean over seeds)", shrink=0.8)
    fig.suptitle("Mean accuracy matrix per condition (one colour scale for all)")
    file = _save(fig, out, f"{prefix}-matrices.png")
    tables = [
        _table([condition, *numbers], [[f"after {i + 1}", *row] for i, row in enumerate(matrix)])
        for condition, matrix in means.items()
    ]
    tasks_table = _table(["#", "task"], [[i + 1, t] for i, t in enumerate(tasks)])
    caption = "Tasks are numbered in stream order; blank: not learned yet."
    return Picture(file, "(g) Accuracy matrices", caption, [tasks_table, *tables])


# ---------------------------------------------------------------------------- drawing helpers
def _matrix_axes(
    ax: Any,
    fig: Figure,
    values: np.ndarray,
    columns: list[str],
    rows: list[str],
    vmin: float,
    vmax: float,
    *,
    colorbar: bool = False,
    annotate: bool = True,
) -> Any:
    cmap = _cmap("viridis")
    cmap.set_bad("white")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax)
    if annotate and values.size <= 400:
        _annotate(ax, values, image, "{:.3f}")
    turn = len(columns[0]) > 3
    ax.set_xticks(range(len(columns)), columns, rotation=45 if turn else 0, ha="right" if turn else "center")
    ax.set_yticks(range(len(rows)), rows)
    ax.tick_params(labelsize=8)
    if colorbar:
        fig.colorbar(image, ax=ax, label="test accuracy", shrink=0.8)
    return image


def _annotate(ax: Any, values: np.ndarray, image: Any, form: str) -> None:
    """Each finite cell's value, in black or white, whichever reads on its colour."""
    for (i, j), value in np.ndenumerate(values):
        if math.isfinite(value):
            red, green, blue, _ = image.cmap(image.norm(value))
            dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
            colour = "white" if dark else "black"
            ax.text(j, i, form.format(value), ha="center", va="center", fontsize=7, color=colour)


def _range(matrices: Iterable[Sequence[Sequence[float | None]]]) -> tuple[float, float]:
    """A colour range for accuracies: from a round number at or below the lowest up to 1."""
    values = [v for matrix in matrices for row in matrix for v in row if v is not None]
    low = min(values, default=0.0)
    return max(0.0, math.floor(low * 20) / 20 - 0.05 if low < 1 else 0.9), 1.0


def _task_ticks(ax: Any, names: list[str]) -> None:
    turn = len(names) > 2
    ax.set_xticks(
        range(len(names)), names, rotation=45 if turn else 0, ha="right" if turn else "center", fontsize=8
    )
    ax.set_xlabel("task (learning order)")
    ax.set_xlim(-0.6, len(names) - 0.4)


def _colour(condition: str) -> Any:
    tab = _cmap("tab10")
    return tab(CONDITIONS.index(condition) if condition in CONDITIONS else 6 + sum(map(ord, condition)) % 4)


def _cmap(name: str) -> Colormap:
    return colormaps[name].copy()


def _floats(matrix: Sequence[Sequence[float | None]]) -> list[list[float]]:
    return [[math.nan if v is None else float(v) for v in row] for row in matrix]


def _save(fig: Figure, out: Path, name: str) -> str:
    fig.savefig(out / name, dpi=DPI)
    return name


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:40] or "bench"


def _ci(row: dict[str, float], key: str, sign: str = "") -> str:
    """``mean [low, high]`` of ``row``'s ``key_mean``, ``key_ci_low``, ``key_ci_high``."""
    mean, low, high = (format(row[f"{key}_{part}"], f"{sign}.1f") for part in ("mean", "ci_low", "ci_high"))
    return f"{mean} [{low}, {high}]"


def _pm(mean: float, sd: float) -> str:
    return f"{mean:.4f} ± {sd:.4f}"


# ---------------------------------------------------------------------------- HTML
def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
.picture { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; margin-bottom: 2em; }
.picture img { max-width: 60vw; border: 1px solid #ddd; }
.numbers { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 0.85em; margin-bottom: 1em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.note, .caption { color: #555; }
"""


def _page(sections: list[Section]) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>lifelong report</title>',
        f"<style>{STYLE}</style></head><body>",
        f"<h1>lifelong report</h1><p class='note'>written {html.escape(when)}</p>",
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2><p class='note'>{html.escape(section.note)}</p>")
        for picture in section.pictures:
            source = html.escape(picture.file, quote=True)
            parts += [
                f"<h3>{html.escape(picture.title)}</h3>",
                f"<p class='caption'>{html.escape(picture.caption)}</p>",
                "<div class='picture'>",
                f'<img src="{source}" alt="{html.escape(picture.title, quote=True)}">',
                f"<div class='numbers'>{''.join(picture.tables)}</div>",
                "</div>",
            ]
    if not sections:
        parts.append("<p>Nothing to show.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
