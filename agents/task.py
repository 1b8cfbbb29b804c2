"""What a task is to an agent: its parsed spec and, for an image task, its data.

Specs are parsed, and data loaded, by the driver (:mod:`lifelong.tasks`, :mod:`lifelong.task_data`);
an agent receives them typed and never reads a spec string or a file itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from agents.atari.games import Game

DEFAULT_INPUT_SHAPE = (1, 28, 28)  # what an empty library's first image task is resized to


@dataclass(frozen=True)
class TaskSpec:
    """A parsed spec string. ``classes`` are the source labels, in new-label order; ``game`` is
    an Atari game, resolved when the spec is parsed."""

    text: str
    source: str
    classes: tuple[int, ...] | None = None
    path: Path | None = None
    game: Game | None = None
    train_size: int | None = None
    per_class: bool = False  # train_size counts training examples per class (``@5pc``)
    transforms: tuple[str, ...] = ()  # applied in order to images or labels: ``invert``, ``permute=3``…

    @property
    def family(self) -> str:
        return "atari" if self.source == "atari" else "classification"


@dataclass
class TaskData:
    """A task's examples, as uint8 image tensors ``(N, C, H, W)`` and int64 labels."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    class_names: list[str]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])


# Loads a spec's data resized to an input shape, split with a seed: ``load(spec, shape, seed)``.
DataLoader = Callable[[TaskSpec, tuple[int, int, int], int], TaskData]
