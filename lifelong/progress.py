"""Live progress on stderr: the agents' and benchmarks' events as rich progress bars.

Events, ``progress(event, **info)``: ``task`` (name), ``phase_done`` and ``candidate`` print a
line; ``phase`` (name, total) opens the bar of a training or evolution phase or of evaluation
episodes, which ``eval``, ``generation`` and ``episode`` (step, …) move; ``stage`` (name,
total) opens a benchmark's outer bar, which ``stage_step`` (step, status) moves. Bars show
elapsed and remaining time. They are transient and drawn only on a terminal, so piped output
and ``--json`` runs keep the printed lines alone.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class LiveProgress:
    """A :data:`agents.Progress` that draws rich progress bars; use it as a context manager."""

    def __init__(self) -> None:
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.phase: TaskID | None = None
        self.stage: TaskID | None = None

    def __enter__(self) -> LiveProgress:
        self.progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.progress.stop()

    def __call__(self, event: str, **info: Any) -> None:
        if event == "task":
            self.console.print(f"[bold]learning {info['name']}[/bold]")
        elif event == "phase":
            if self.phase is not None:
                self.progress.remove_task(self.phase)
            self.phase = self.progress.add_task(f"  {info['name']}", total=info["total"], status="")
        elif event == "episode" and self.phase is not None:
            self.progress.update(self.phase, completed=info["step"])
        elif event == "eval" and self.phase is not None:
            self.progress.update(self.phase, completed=info["step"], status=f"val {info['val_acc']:.4f}")
        elif event == "generation" and self.phase is not None:
            status = f"best {info['best']:.1f} mean {info['mean']:.1f} {info['outcome']}"
            self.progress.update(self.phase, completed=info["step"], status=status)
        elif event == "phase_done":
            self.console.print(f"  {info['name']}: val {info['val_acc']:.4f} in {info['seconds']:.1f} s")
        elif event == "candidate":
            self.console.print(
                f"  generation {info['generation']} candidate {info['index']}: {info['genome']} "
                f"→ val {info['val_acc']:.4f}"
            )
        elif event == "prune_task":
            self.console.print(
                f"[bold]pruning {info['name']}[/bold]: {info['dropped']} soft-pruned, {info['merged']} merged"
            )
        elif event == "pruned":
            self.console.print(f"after {info['after']}: {info['summary']}")
        elif event == "stage":
            self.stage = self.progress.add_task(info["name"], total=info["total"], status="")
        elif event == "stage_step" and self.stage is not None:
            self.progress.update(self.stage, completed=info["step"], status=info.get("status", ""))
