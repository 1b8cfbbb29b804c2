"""Pictures of a library's history and of ``lifelong bench streams``, ``growth`` and
``atari-transfer`` results: PNGs plus one ``index.html`` that shows each picture beside its
numbers (``lifelong report``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure  # figures drawn with Agg, never through pyplot's global state

from library_store import Library
from lifelong.bench import read_result
from lifelong.bench.atari_transfer import check_atari_transfer
from lifelong.bench.growth import check_growth
from lifelong.bench.streams import check_bench
from lifelong.history import learning_curve
from lifelong.pictures import (
    Picture,
    Section,
    annotate_cells,
    colormap,
    floats,
    html_table,
    matrix_axes,
    page,
    save,
    slug,
    task_ticks,
    value_range,
)
from lifelong.report_bench import bench_section


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
        sections.append(bench_section(out, f"bench{index + 1}-{slug(path.stem)}", path, bench))
    index = out / "index.html"
    index.write_text(page(sections), encoding="utf-8")
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
    task_ticks(bottom, names)
    file = save(fig, out, "library_size.png")
    table = html_table(
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
    cmap = colormap("viridis")
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
        annotate_cells(ax, values, image, "{:.2f}")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("module (layer, kind, id)")
    ax.set_ylabel("task (commit order)")
    ax.set_title("Module usage: |α·β| of each module a task uses\n(blank: not used)", fontsize=10)
    fig.colorbar(image, ax=ax, label="|α·β|", shrink=0.8)
    file = save(fig, out, "module_usage.png")
    rows = [
        [name, *("" if math.isnan(v) else f"{v:.3f}" for v in line)]
        for name, line in zip(names, values, strict=True)
    ]
    table = html_table(["task", *labels], rows)
    caption = "Module labels: layer, kind, first 6 characters of the module id's hash."
    return Picture(file, "(b) Module usage", caption, [table])


def _curves_picture(out: Path, tasks: list[dict[str, Any]], library: Library) -> Picture:
    fig = Figure(figsize=(9, 5), layout="constrained")
    ax = fig.subplots()
    colours = colormap("tab20" if len(tasks) > 10 else "tab10")
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
    file = save(fig, out, "learning_curves.png")
    table = html_table(["task", "phase", "target", "examples to target", "final val acc", "seconds"], rows)
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
    matrix_axes(ax, fig, np.array(floats(matrix)), names, rows, *value_range([matrix]), colorbar=True)
    s = history["summary"]
    fig.suptitle(  # over the whole figure: the row labels take much of its width
        f"Accuracy matrix R[i][j]: test accuracy on task j after task i, then now\n"
        f"average final {s['average_final_accuracy']:.4f}, backward transfer "
        f"{s['backward_transfer']:+.4f}, forgetting (Chaudhry) {s['forgetting_chaudhry']:.4f}, "
        f"(Avalanche) {s['forgetting_avalanche']:.4f}",
        fontsize=10,
    )
    file = save(fig, out, "accuracy_matrix.png")
    tables = [
        html_table(["", *names], [[label, *row] for label, row in zip(rows, matrix, strict=True)]),
        html_table(["metric", "value"], [[k, v] for k, v in s.items()]),
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
