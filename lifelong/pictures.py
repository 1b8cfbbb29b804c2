"""What the report is made of: pictures (PNG, drawn with Agg) with their numbers beside them in
HTML tables, grouped in sections, and the page that shows them; shared by the library's and the
benchmarks' sections (:mod:`lifelong.report`, :mod:`lifelong.report_bench`)."""

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

from lifelong.bench.streams import CONDITIONS

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


# ---------------------------------------------------------------------------- drawing helpers
def matrix_axes(
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
    cmap = colormap("viridis")
    cmap.set_bad("white")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax)
    if annotate and values.size <= 400:
        annotate_cells(ax, values, image, "{:.3f}")
    turn = len(columns[0]) > 3
    ax.set_xticks(range(len(columns)), columns, rotation=45 if turn else 0, ha="right" if turn else "center")
    ax.set_yticks(range(len(rows)), rows)
    ax.tick_params(labelsize=8)
    if colorbar:
        fig.colorbar(image, ax=ax, label="test accuracy", shrink=0.8)
    return image


def annotate_cells(ax: Any, values: np.ndarray, image: Any, form: str) -> None:
    """Each finite cell's value, in black or white, whichever reads on its colour."""
    for (i, j), value in np.ndenumerate(values):
        if math.isfinite(value):
            red, green, blue, _ = image.cmap(image.norm(value))
            dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
            colour = "white" if dark else "black"
            ax.text(j, i, form.format(value), ha="center", va="center", fontsize=7, color=colour)


def value_range(matrices: Iterable[Sequence[Sequence[float | None]]]) -> tuple[float, float]:
    """A colour range for accuracies: from a round number at or below the lowest up to 1."""
    values = [v for matrix in matrices for row in matrix for v in row if v is not None]
    low = min(values, default=0.0)
    return max(0.0, math.floor(low * 20) / 20 - 0.05 if low < 1 else 0.9), 1.0


def task_ticks(ax: Any, names: list[str]) -> None:
    turn = len(names) > 2
    ax.set_xticks(
        range(len(names)), names, rotation=45 if turn else 0, ha="right" if turn else "center", fontsize=8
    )
    ax.set_xlabel("task (learning order)")
    ax.set_xlim(-0.6, len(names) - 0.4)


def colour(condition: str) -> Any:
    tab = colormap("tab10")
    return tab(CONDITIONS.index(condition) if condition in CONDITIONS else 6 + sum(map(ord, condition)) % 4)


def colormap(name: str) -> Colormap:
    return colormaps[name].copy()


def floats(matrix: Sequence[Sequence[float | None]]) -> list[list[float]]:
    return [[math.nan if v is None else float(v) for v in row] for row in matrix]


def save(fig: Figure, out: Path, name: str) -> str:
    fig.savefig(out / name, dpi=DPI)
    return name


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:40] or "bench"


def ci_text(row: dict[str, float], key: str, sign: str = "") -> str:
    """``mean [low, high]`` of ``row``'s ``key_mean``, ``key_ci_low``, ``key_ci_high``."""
    mean, low, high = (format(row[f"{key}_{part}"], f"{sign}.1f") for part in ("mean", "ci_low", "ci_high"))
    return f"{mean} [{low}, {high}]"


def pm(mean: float, sd: float) -> str:
    return f"{mean:.4f} ± {sd:.4f}"


# ---------------------------------------------------------------------------- HTML
def html_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def html_table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(html_cell(v))}</td>" for v in row) + "</tr>" for row in rows
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


def page(sections: list[Section]) -> str:
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
