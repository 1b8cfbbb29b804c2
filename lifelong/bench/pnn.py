"""Progressive Neural Networks (Rusu et al., 2016), the stream benchmark's peer.

Each task gets a new column: a fresh copy of a given layer stack and its own head. Layer ℓ of
column k reads the layer below in its own column and, through one lateral adapter per earlier
column j, that column's layer ℓ-1 output: ``h_ℓ^k = f_ℓ^k(h_{ℓ-1}^k) + Σ_{j<k} a_ℓ^{kj}(h_{ℓ-1}^j)``;
the head reads the last map the same way, so even a one-layer column is joined to the others.
Earlier columns are frozen, so no task is ever forgotten; the price is a network that grows by
a column plus k adapters per task, which the benchmark counts.

The adapter is the paper's convolutional one: a learned scale, a 1×1 convolution and a ReLU,
average-pooled first where the layer halves height and width. Lateral inputs join after a
layer's own non-linearity (the layers are the library's module kinds, which end in one).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from agents.classification.modules import Head, Shape, freeze, initialise
from agents.classification.network import MixedLayer

ADAPTER_SCALE = 0.1  # the adapters' initial scale: a new column starts close to its own path


class Lateral(nn.Module):
    """From an earlier column's ``into``-shaped map to this layer's ``out``-shaped output."""

    def __init__(self, into: Shape, out: Shape) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(ADAPTER_SCALE))
        self.conv = nn.Conv2d(into[0], out[0], 1)
        self.pool = into[1] // out[1]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.pool > 1:
            h = nn.functional.avg_pool2d(h, self.pool)
        return torch.relu(self.conv(self.scale * h))


class Column(nn.Module):
    """One task's layers, its head, and its adapters from ``earlier`` columns: into every layer
    but the first (which reads the image), and into the head."""

    def __init__(self, layers: list[MixedLayer], head: Head, earlier: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.head = head
        shapes = [(layer.members[0].input_shape, layer.members[0].output_shape) for layer in layers]
        shapes.append((shapes[-1][1], shapes[-1][1]))  # into the head
        self.laterals = nn.ModuleList(
            nn.ModuleList(Lateral(into, out) for _ in range(earlier)) for into, out in shapes[1:]
        )

    def joined(self, depth: int, own: torch.Tensor, earlier: list[torch.Tensor]) -> torch.Tensor:
        """``own`` plus the adapters of ``depth`` (≥ 1) applied to the earlier columns' maps."""
        for adapter, h in zip(self.laterals[depth - 1], earlier, strict=True):
            own = own + adapter(h)
        return own


class ProgressiveNetwork(nn.Module):
    """Columns in task order; ``forward(x, task)`` runs columns ``0..task`` and returns the
    logits of ``task``'s head."""

    def __init__(self) -> None:
        super().__init__()
        self.columns = nn.ModuleList()

    def add_column(
        self,
        layers: Callable[[torch.Generator], list[MixedLayer]],
        n_classes: int,
        generator: torch.Generator,
    ) -> Column:
        """Freeze every column so far and add a trainable one built by ``layers(generator)``."""
        for column in self.columns:
            freeze(column)
        stack = layers(generator)
        head = initialise(Head(stack[-1].members[0].output_shape, n_classes), generator)
        column = Column(stack, head, len(self.columns))
        initialise(column.laterals, generator)
        self.columns.append(column)
        return column

    def forward(self, x: torch.Tensor, task: int) -> torch.Tensor:
        columns = self.columns[: task + 1]
        hidden = [x] * len(columns)
        depth = len(columns[0].layers)
        for layer in range(depth):
            below = hidden
            hidden = []
            for k, column in enumerate(columns):
                h = column.layers[layer](below[k])
                hidden.append(column.joined(layer, h, below[:k]) if layer > 0 else h)
        return columns[task].head(columns[task].joined(depth, hidden[task], hidden[:task]))

    def view(self, task: int) -> nn.Module:
        """``task``'s network as a plain module ``x → logits`` (what training and evaluation take)."""
        return TaskView(self, task)


class TaskView(nn.Module):
    def __init__(self, network: ProgressiveNetwork, task: int) -> None:
        super().__init__()
        self.network, self.task = network, task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x, self.task)
