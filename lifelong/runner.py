"""Learn a list of task specs in order, each with the agent of its family."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agents import Report
from library_store import Library, TaskRecord
from lifelong.tasks import check_names, parse_spec


def learn_specs(
    library: Library,
    specs: list[str],
    *,
    names: list[str] | None = None,
    classification: dict[str, Any],
    atari: dict[str, Any],
    seed: int = 0,
    device: str = "auto",
    data_dir: Path | None = None,
    report: Report | None = None,
) -> list[TaskRecord]:
    """Every spec is parsed and named before any learning starts; then each task is learned and
    committed in turn. ``classification`` / ``atari`` hold each family's keyword arguments."""
    parsed = [parse_spec(text) for text in specs]
    names = check_names(library, parsed, names)
    records = []
    for spec, name in zip(parsed, names, strict=True):
        library.refresh()
        if spec.family == "atari":
            from lifelong.atari import learn_atari

            records.append(
                learn_atari(library, spec, name=name, seed=seed, device=device, report=report, **atari)
            )
        else:
            from lifelong.classification import learn_tasks

            records += learn_tasks(
                library,
                [spec.text],
                names=[name],
                seed=seed,
                device=device,
                data_dir=data_dir,
                report=report,
                **classification,
            )
    return records
