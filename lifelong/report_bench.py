"""The report's pictures of benchmark results: ``lifelong bench streams`` (accuracy, parameters,
accuracy matrices per condition), ``growth`` and ``atari-transfer``."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from lifelong.bench import mean_ci
from lifelong.bench.atari_transfer import summarize
from lifelong.pictures import (
    MARKERS,
    STYLES,
    Picture,
    Section,
    ci_text,
    colour,
    floats,
    html_table,
    matrix_axes,
    pm,
    save,
    slug,
    task_ticks,
    value_range,
)


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
    task_ticks(axes[-1], tasks)
    file = save(fig, out, f"{prefix}-growth.png")
    results = bench["results"]
    keys = sorted({k for values in results.values() for k in values})
    tables = [
        html_table(["condition", *keys], [[c, *(results[c].get(k) for k in keys)] for c in results]),
        html_table(["ratio", "value"], [[k, v] for k, v in bench.get("ratios", {}).items()]),
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
        file = save(fig, out, f"{prefix}-{slug(hop)}.png")
        rows = []
        for condition in conditions:
            row = results[f"{condition}:{hop}"]
            te = ratios.get(f"te_{condition}:{hop}")
            rows.append(
                [
                    condition,
                    ci_text(row, "score"),
                    ci_text(row, "champion"),
                    ci_text(row, "vs_scratch", "+"),
                    te,
                    row["frames_mean"],
                ]
            )
        header = ["condition", "score [95% CI]", "before the lesion", "vs scratch", "TE", "frames"]
        table = html_table(header, rows)
        caption = (
            "Faint steps: each seed's champion, re-evaluated when it changed; lines: mean over seeds "
            "at the paper's checkpoints (as shares of the frame budget); bands: 95% bootstrap CI. "
            "Table: the committed network's score, the champion's when the frames ran out (before "
            "the agent's lesion), the paired gain over scratch, all with 95% CIs; TE; learning frames."
        )
        section.pictures.append(Picture(file, f"(t) Transfer: {hop}", caption, [table]))
        if "units" in conditions["transfer"][next(iter(conditions["transfer"]))]:
            section.pictures.append(_diagnosis(out, prefix, hop, conditions, results))
    return section


DIAGNOSED = ("transfer", "random_library")
"""The conditions whose recruited sources the diagnosis picture compares."""
UNIT_MEASURES = (
    ("hidden_saturated", "source units\nsaturated"),
    ("hidden_flips", "source units\nflip sign"),
    ("outputs_saturated", "source outputs\nsaturated"),
    ("outputs_flips", "source outputs\nflip sign"),
    ("sources_removed_share", "lesion removed\nthe source"),
)

UNIT_TABLE = (
    ("action_entropy", "action entropy (bits)"),
    ("hidden_sd", "unit sd"),
    ("outputs_sd", "output sd"),
    ("t_in_abs", "|T_in|"),
    ("t_out_abs", "|T_out|"),
)


def _diagnosis(
    out: Path, prefix: str, hop: str, conditions: dict[str, Any], results: dict[str, Any]
) -> Picture:
    """A hop's diagnosis: what the learned and the random sources' units do on the target's fresh
    episodes (shares of steps, mean over seeds), and the champion's transfer weights over the
    generations (mean over seeds)."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    bars, lines = fig.subplots(1, 2, width_ratios=[3, 2])
    width = 0.8 / len(DIAGNOSED)
    for k, condition in enumerate(DIAGNOSED):
        row = results[f"{condition}:{hop}"]
        x = np.arange(len(UNIT_MEASURES)) + (k - (len(DIAGNOSED) - 1) / 2) * width
        bars.bar(x, [row.get(key, 0.0) for key, _ in UNIT_MEASURES], width, color=f"C{k}", label=condition)
        curves = [np.array(run["transfer"], dtype=float) for run in conditions[condition].values()]
        length = min(len(curve) for curve in curves)
        if length:
            mean = np.mean([curve[:length] for curve in curves], axis=0)
            lines.plot(mean[:, 0], mean[:, 1], color=f"C{k}", label=f"{condition} |T_in|")
            lines.plot(mean[:, 0], mean[:, 2], color=f"C{k}", linestyle="--", label=f"{condition} |T_out|")
    bars.set_xticks(np.arange(len(UNIT_MEASURES)), [label for _, label in UNIT_MEASURES], fontsize=8)
    bars.set_ylim(0, 1)
    bars.set_ylabel("share (steps, or runs for the lesion)")
    bars.legend(fontsize=8)
    bars.set_title(f"{hop}: the sources on the target's frames")
    lines.set_xlabel("generation")
    lines.set_ylabel("champion's mean |weight|")
    lines.set_title("transfer weights")
    lines.legend(fontsize=7)
    for ax in (bars, lines):
        ax.grid(alpha=0.3)
    file = save(fig, out, f"{prefix}-{slug(hop)}-units.png")
    rows = [
        [c, *(results[f"{c}:{hop}"].get(key) for key, _ in UNIT_TABLE)] for c in conditions if c != "peer"
    ]
    caption = (
        "Each condition's committed network played on the first fresh episodes: how often the "
        "recruited source's hidden units and outputs sit saturated (|tanh| > 0.95) or flip sign "
        "from one step to the next, and how often the lesion dropped the source; right: the "
        "champion's transfer weights over the generations. Table: the entropy of the actions "
        "taken (log2 18 = 4.17 for all equally often), the units' spread over steps, weights."
    )
    return Picture(
        file, f"(t) Diagnosis: {hop}", caption, [html_table(["condition", *dict(UNIT_TABLE).values()], rows)]
    )


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
        ax.bar(x + offset, mean, width, yerr=sd, capsize=2, label=condition, color=colour(condition))
        lowest = min(lowest, float(np.min(mean - sd)))
    ax.set_ylim(max(0.0, math.floor(lowest * 10) / 10 - 0.05), 1.0)
    ax.set_ylabel("test accuracy (mean ± sd over seeds)")
    task_ticks(ax, [f"{t} *" if i >= judged_from else t for i, t in enumerate(tasks)])
    ax.set_title("Test accuracy on each task when first learned (*: judged task)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(axis="y", alpha=0.3)
    file = save(fig, out, f"{prefix}-accuracy.png")
    rows = [
        [f"{t}{' *' if i >= judged_from else ''}", *(pm(m[i], s[i]) for m, s, _ in stats.values())]
        for i, t in enumerate(tasks)
    ]
    results = bench.get("results", {})
    keys = sorted({k for values in results.values() for k, v in values.items() if isinstance(v, int | float)})
    tables = [
        html_table(["task", *stats], rows),
        html_table(["condition", *keys], [[c, *(results[c].get(k) for k in keys)] for c in results]),
    ]
    if bench.get("ratios"):
        tables.append(html_table(["ratio", "value"], [[k, v] for k, v in bench["ratios"].items()]))
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
            color=colour(condition),
        )
        ax.fill_between(x, mean - sd, mean + sd, color=colour(condition), alpha=0.15)
    positive = [float(v) for mean, _, _ in stats.values() for v in mean if v > 0]
    log = bool(positive) and max(positive) / min(positive) > 10
    if log:
        ax.set_yscale("log")
    ax.set_ylabel("total parameters after the task" + (" (log scale)" if log else ""))
    task_ticks(ax, tasks)
    ax.set_title("Parameters: the learner's total after each task (mean over seeds)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(alpha=0.3)
    file = save(fig, out, f"{prefix}-params.png")
    rows = [[t, *(f"{m[i]:,.0f}" for m, _, _ in stats.values())] for i, t in enumerate(tasks)]
    return Picture(
        file, "(f) Parameters per task", "Band: ± sd over seeds.", [html_table(["task", *stats], rows)]
    )


def mean_matrix(runs: Iterable[dict[str, Any]]) -> list[list[float | None]]:
    """The element-wise mean of the runs' accuracy matrices (None stays None)."""
    stacked = np.array([floats(run["matrix"]) for run in runs], dtype=float)
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
    vmin, vmax = value_range(means.values())
    numbers = [str(i + 1) for i in range(len(tasks))]
    image = None
    for ax, (condition, matrix) in zip(axes, means.items(), strict=False):
        image = matrix_axes(
            ax, fig, np.array(floats(matrix)), numbers, numbers, vmin, vmax, annotate=len(tasks) <= 8
        )
        seeds = len(conditions[condition])
        ax.set_title(f"{condition} ({seeds} seed{'s' if seeds != 1 else ''})", fontsize=10)
        ax.set_xlabel("task j (tested)")
        ax.set_ylabel("after task i")
    for ax in axes[len(means) :]:
        ax.set_visible(False)
    fig.colorbar(image, ax=list(axes[: len(means)]), label="test accuracy (mean over seeds)", shrink=0.8)
    fig.suptitle("Mean accuracy matrix per condition (one colour scale for all)")
    file = save(fig, out, f"{prefix}-matrices.png")
    tables = [
        html_table([condition, *numbers], [[f"after {i + 1}", *row] for i, row in enumerate(matrix)])
        for condition, matrix in means.items()
    ]
    tasks_table = html_table(["#", "task"], [[i + 1, t] for i, t in enumerate(tasks)])
    caption = "Tasks are numbered in stream order; blank: not learned yet."
    return Picture(file, "(g) Accuracy matrices", caption, [tasks_table, *tables])
