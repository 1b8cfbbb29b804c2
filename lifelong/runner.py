"""Learn a list of task specs in order, each with the agent of its family.

Everything that can be checked is checked before the first task trains: every spec's syntax,
its name, its data source and its family's options, and that the library can be written (its
folder is writable, no other writer holds the lock). A failure then costs seconds, not a
finished task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agents import Report
from library_store import Library, TaskRecord
from lifelong.errors import Interrupted
from lifelong.tasks import TaskSpec, check_names, check_source, parse_spec


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
    require_target: bool = False,
) -> list[TaskRecord]:
    """Check every spec, then learn and commit each task in turn. ``classification`` / ``atari``
    hold each family's keyword arguments. Ctrl-C raises :class:`Interrupted`, whose message says
    what this call committed; the task in progress is never committed half-way."""
    parsed = [parse_spec(text) for text in specs]
    names = check_names(library, parsed, names)
    _preflight(library, parsed, names, classification=classification, atari=atari, data_dir=data_dir)
    records = []
    try:
        for spec, name in zip(parsed, names, strict=True):
            library.refresh()
            common = {"seed": seed, "device": device, "report": report, "require_target": require_target}
            if spec.family == "atari":
                from lifelong.atari import learn_atari

                records.append(learn_atari(library, spec, name=name, **common, **atari))
            else:
                from lifelong.classification import learn_tasks

                records += learn_tasks(
                    library, [spec.text], names=[name], data_dir=data_dir, **common, **classification
                )
    except KeyboardInterrupt:
        raise Interrupted(_interrupted(library, names)) from None
    return records


def _preflight(
    library: Library,
    specs: list[TaskSpec],
    names: list[str],
    *,
    classification: dict[str, Any],
    atari: dict[str, Any],
    data_dir: Path | None,
) -> None:
    """Fail now, before any training, on anything that would fail later."""
    for index, spec in enumerate(specs):
        if spec.family == "atari":
            from lifelong.atari import check_atari_task

            check_atari_task(
                library,
                spec,
                sources=atari["sources"],
                condition=atari["condition"],
                checkpoint_every=atari["checkpoint_every"],
                learned_before=names[:index],
            )
        else:
            from lifelong.classification import check_target

            check_target(classification["target"])
            check_source(spec, data_dir)
    library.check_writable()


def _interrupted(library: Library, names: list[str]) -> str:
    """What an interrupted call leaves, read from the library itself (so it is true even when
    the interrupt landed right after a commit)."""
    library.refresh()
    stored = {task.name for task in library.tasks()}
    done = [name for name in names if name in stored]
    said = f"committed {', '.join(repr(n) for n in done)} in this call" if done else "nothing was committed"
    pending = next((name for name in names if name not in stored), None)
    unfinished = f"; {pending!r} was in progress and was not committed" if pending else ""
    return f"interrupted: {said}{unfinished}"
