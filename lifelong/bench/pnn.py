"""Progressive Neural Networks (Rusu et al., 2016), the stream benchmark's peer.

Each task gets a new column: a fresh copy of a given layer stack and its own head. Layer ℓ of
column k reads the layer below in its own column and, through one adapter, the layer ℓ-1 outputs
of all earlier columns side by side (the paper's eq. 2):
``h_ℓ^k = f_ℓ^k(h_{ℓ-1}^k) + U_ℓ^k σ(V_ℓ^k α_ℓ^k [h_{ℓ-1}^1 … h_{ℓ-1}^{k-1}])``;
the head reads the last maps the same way, so even a one-layer column is joined to the others.
Earlier columns are frozen, so no task is ever forgotten; the price is a network that grows by a
column and an adapter whose input widens with every task, which the benchmark counts.

The adapter is the paper's convolutional one: a learned scalar α, a 1×1 convolution V that
projects the concatenated earlier maps onto as many channels as one of them has, a ReLU, and a
1×1 convolution U onto the layer's output channels; the earlier maps are average-pooled first
where the layer halves height and width. One adapter per layer, not one per earlier column: a
step of a k-column network runs 4k convolutions, not k², each over a wider input. Lateral inputs
join after a layer's own non-linearity (the layers are the library's module kinds, which end in one).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from agents.classification.modules import Head, Shape, freeze, initialise
from agents.classification.network import MixedLayer

ADAPTER_SCALE = 0.1  # α's initial value: a new column starts close to its own path


class Adapter(nn.Module):
    """From ``earlier`` columns' ``into``-shaped maps, concatenated (and pooled to ``out``'s
    height and width), to an ``out``-shaped map: ``U σ(V α h)``."""

    def __init__(self, into: Shape, out: Shape, earlier: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(ADAPTER_SCALE))
        self.project = nn.Conv2d(earlier * into[0], into[0], 1)  # V
        self.expand = nn.Conv2d(into[0], out[0], 1)  # U

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        v = self.project
        projected = nn.functional.conv2d(maps, v.weight * self.alpha, v.bias)  # V(α·maps)
        return self.expand(torch.relu(projected))


class Column(nn.Module):
    """One task's layers, its head, and, when there are ``earlier`` columns, an adapter into
    every layer but the first (which reads the image) and into the head."""

    def __init__(self, layers: list[MixedLayer], head: Head, earlier: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.head = head
        shapes = [(layer.members[0].input_shape, layer.members[0].output_shape) for layer in layers]
        shapes.append((shapes[-1][1], shapes[-1][1]))  # into the head
        self.adapters = nn.ModuleList(Adapter(into, out, earlier) for into, out in shapes[1:] if earlier)

    def joined(self, depth: int, own: torch.Tensor, earlier: list[torch.Tensor]) -> torch.Tensor:
        """``own`` plus the adapter of ``depth`` applied to the earlier columns' maps (already
        pooled to ``own``'s height and width); ``own`` alone when there are none."""
        if not earlier:
            return own
        return own + self.adapters[depth - 1](torch.cat(earlier, dim=1))


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
        initialise(column.adapters, generator)
        self.columns.append(column)
        return column

    def forward(self, x: torch.Tensor, task: int) -> torch.Tensor:
        columns = self.columns[: task + 1]
        layers = columns[0].layers
        hidden = [x] * len(columns)
        for depth, layer in enumerate(layers):
            earlier = _pooled(hidden[:-1], layer) if depth > 0 else []  # the adapters' input, pooled once
            hidden = [
                column.joined(depth, column.layers[depth](h), earlier[:k])
                for k, (column, h) in enumerate(zip(columns, hidden, strict=True))
            ]
        last = columns[task]
        return last.head(last.joined(len(layers), hidden[task], hidden[:task]))

    def view(self, task: int) -> nn.Module:
        """``task``'s network as a plain module ``x → logits`` (what training and evaluation take)."""
        return TaskView(self, task)


def _pooled(maps: list[torch.Tensor], layer: MixedLayer) -> list[torch.Tensor]:
    """``maps`` (a layer's inputs) average-pooled to its output's height and width, once each."""
    into, out = layer.members[0].input_shape, layer.members[0].output_shape
    factor = into[1] // out[1]
    return [nn.functional.avg_pool2d(h, factor) for h in maps] if factor > 1 else maps


class TaskView(nn.Module):
    def __init__(self, network: ProgressiveNetwork, task: int) -> None:
        super().__init__()
        self.network, self.task = network, task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x, self.task)
