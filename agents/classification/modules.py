"""SMART's module kinds as torch modules, their round trip to library tensors, and
:class:`Member`: a module with what it is (kind, config, shapes, library id once stored).

Every module maps a ``(C, H, W)`` feature map to another and ends in BatchNorm + ReLU (or a
residual add), so modules of one layer can be mixed by per-task scales. BatchNorm keeps running
statistics; once a module is frozen it runs in eval mode forever, which makes it a fixed
function: an older task's outputs cannot drift when a newer task trains beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from library_store import ModuleRecord

Shape = tuple[int, int, int]  # (channels, height, width)
KINDS = ("conv", "res_fire", "dim_reduce")
LAYER = "layer"  # the key of a stored module's config that says which layer of the stack it is in
MIN_FIRE_CHANNELS = 4  # a Fire module needs channels to squeeze and split
MIN_REDUCE_SIZE = 4  # a smaller height or width is not halved any more
READOUT_FEATURES = 288  # at most this many pooled features reach a task's linear readout


class Conv(nn.Module):
    """3×3 convolution, BatchNorm, ReLU; may change the channel count, keeps H×W."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class ResFire(nn.Module):
    """SqueezeNet's Fire module (1×1 squeeze, parallel 1×1 and 3×3 expand) added to its input."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(channels, squeeze, 1)
        self.expand1 = nn.Conv2d(squeeze, channels // 2, 1, bias=False)
        self.expand3 = nn.Conv2d(squeeze, channels - channels // 2, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu(self.squeeze(x))
        return torch.relu(x + self.bn(torch.cat([self.expand1(s), self.expand3(s)], dim=1)))


class DimReduce(nn.Module):
    """Halves H and W: 2×2 max-pool plus a learned 2×2 stride-2 convolution, then BN + ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 2, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x) + max_pool_2x2(x)))


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``max_pool2d(x, 2)``, exactly. Without gradients it is the maximum of the four strided
    quarter-maps, about 15× faster on CPU, where ``max_pool2d`` computes argmax indices one
    element at a time even when nothing will use them (a third of the agent's time on a library
    of many halving modules, much of it evaluating); with gradients, ``max_pool2d`` itself."""
    if torch.is_grad_enabled() and x.requires_grad:
        return nn.functional.max_pool2d(x, 2)
    x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]  # an odd side loses its last row or column
    rows = torch.maximum(x[..., 0::2, :], x[..., 1::2, :])
    return torch.maximum(rows[..., 0::2], rows[..., 1::2])


def module_config(kind: str, input_shape: Shape, filters: int | None = None) -> dict[str, Any]:
    """The constructor arguments of a module of ``kind`` that reads ``input_shape``."""
    channels = input_shape[0]
    if kind == "conv":
        return {"in_channels": channels, "out_channels": filters or channels}
    if kind == "res_fire":
        return {"channels": channels, "squeeze": max(2, channels // 4)}
    if kind == "dim_reduce":
        if min(input_shape[1:]) < 2:
            raise ValueError(f"cannot reduce a {input_shape} feature map further")
        return {"channels": channels}
    raise ValueError(f"unknown module kind {kind!r}; kinds: {', '.join(KINDS)}")


def output_shape(kind: str, config: dict[str, Any], input_shape: Shape) -> Shape:
    _, height, width = input_shape
    if kind == "conv":
        return (config["out_channels"], height, width)
    if kind == "res_fire":
        return input_shape
    return (config["channels"], height // 2, width // 2)


def build(kind: str, config: dict[str, Any]) -> nn.Module:
    """A freshly initialised module."""
    if kind == "conv":
        return Conv(config["in_channels"], config["out_channels"])
    if kind == "res_fire":
        return ResFire(config["channels"], config["squeeze"])
    if kind == "dim_reduce":
        return DimReduce(config["channels"])
    raise ValueError(f"unknown module kind {kind!r}; kinds: {', '.join(KINDS)}")


def initialise(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Draw every convolution and linear weight and bias of ``module`` afresh from ``generator``,
    by torch's default rule (uniform in ±1/√fan-in), so its start depends on that generator only."""
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.Conv2d | nn.Linear):
                bound = 1 / math.sqrt(layer.weight[0].numel())
                for tensor in (layer.weight, layer.bias):
                    if tensor is not None:
                        tensor.uniform_(-bound, bound, generator=generator)
    return module


def freeze(module: nn.Module) -> nn.Module:
    """Make ``module`` a fixed function: no gradients, BatchNorm on its running statistics."""
    module.requires_grad_(False)
    return module.eval()


def is_frozen(module: nn.Module) -> bool:
    """Whether ``module`` is a fixed function (see :func:`freeze`): none of its parameters learns."""
    return not any(p.requires_grad for p in module.parameters())


def to_tensors(module: nn.Module) -> dict[str, np.ndarray]:
    """The module's parameters and buffers (BN running statistics included) as numpy arrays."""
    return {name: value.detach().cpu().numpy().copy() for name, value in module.state_dict().items()}


def from_tensors(kind: str, config: dict[str, Any], tensors: dict[str, np.ndarray]) -> nn.Module:
    """Rebuild a stored module, exactly, and freeze it."""
    module = build(kind, config)
    module.load_state_dict({name: torch.from_numpy(np.array(value)) for name, value in tensors.items()})
    return freeze(module)


@dataclass(frozen=True, eq=False)
class Member:
    """A module of a task network and what it is: kind, constructor ``config``, ``signature``
    (``{"input": [C, H, W], "output": [C, H, W]}``) and, when it comes from the library, its id
    (``None``: grown for this task, not stored yet)."""

    module: nn.Module
    kind: str
    config: dict[str, Any]
    signature: dict[str, Any]
    library_id: str | None = None

    @property
    def input_shape(self) -> Shape:
        return tuple(self.signature["input"])

    @property
    def output_shape(self) -> Shape:
        return tuple(self.signature["output"])

    @classmethod
    def new(cls, kind: str, input_shape: Shape, filters: int, generator: torch.Generator) -> Member:
        """A fresh trainable module of ``kind`` reading ``input_shape``, initialised from ``generator``."""
        config = module_config(kind, input_shape, filters)
        shapes = {"input": list(input_shape), "output": list(output_shape(kind, config, input_shape))}
        return cls(initialise(build(kind, config), generator), kind, config, shapes)

    @classmethod
    def stored(cls, record: ModuleRecord, tensors: dict[str, np.ndarray]) -> Member:
        """A library module, rebuilt exactly and frozen."""
        config = {k: v for k, v in record.config.items() if k != LAYER}
        module = from_tensors(record.kind, config, tensors)
        return cls(module, record.kind, config, record.signature, record.id)


class Head(nn.Module):
    """A task's own output layer: the top feature map average-pooled to p×p, then linear class
    scores (a *readout*). p is the largest side with at most READOUT_FEATURES pooled features
    (and no larger than the map), so a binary task owns a few hundred parameters and the
    library's modules, not the head, have to do the work. ``hidden`` > 0 puts a fully connected
    layer of that width before the scores (tasks stored before readouts were the rule: pool 7,
    hidden 64)."""

    def __init__(self, input_shape: Shape, n_classes: int, hidden: int = 0, pool: int | None = None) -> None:
        super().__init__()
        channels, height, width = input_shape
        side = pool if pool is not None else max(1, math.isqrt(READOUT_FEATURES // channels))
        self.pool_to = (min(height, side), min(width, side))
        features = channels * self.pool_to[0] * self.pool_to[1]
        self.hidden = nn.Linear(features, hidden) if hidden else None
        self.out = nn.Linear(hidden or features, n_classes)

    @property
    def config(self) -> dict[str, Any]:
        """What rebuilds this head (stored with the task)."""
        return {"hidden": self.hidden.out_features if self.hidden else 0, "pool": max(self.pool_to)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(x, self.pool_to).flatten(1)
        if self.hidden is not None:
            x = torch.relu(self.hidden(x))
        return self.out(x)


def layer_shapes(layers: list[list[Member]], input_shape: Shape) -> list[tuple[Shape, Shape]]:
    """(input, output) shape of every library layer."""
    shapes = []
    for layer in layers:
        shapes.append((input_shape, layer[0].output_shape))
        input_shape = layer[0].output_shape
    return shapes
