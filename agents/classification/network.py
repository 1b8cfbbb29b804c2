"""A task's network: a stack of mixed layers over library modules, then the task's own head.

Layer ℓ computes ``y = (1/|M|) Σ_i α_i · m_i(β_i · x)`` over the modules ``M`` the task uses in
that layer (SMART). α (output scale) and β (input scale) are scalars per (task, module),
initialised N(1, 0.1); they belong to the task, never to the shared module.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from agents.classification.modules import Head, Member, initialise, is_frozen


class MixedLayer(nn.Module):
    """One layer of a task network: the scaled mean of its members' outputs. α and β are given
    (a stored task) or drawn from ``generator``."""

    def __init__(
        self,
        members: list[Member],
        alpha: torch.Tensor | None = None,
        beta: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if not members:
            raise ValueError("a layer needs at least one module")
        self.members = list(members)
        self.units = nn.ModuleList(member.module for member in members)  # registers their parameters

        def scales(given: torch.Tensor | None) -> nn.Parameter:
            if given is not None:
                return nn.Parameter(given.clone())
            if generator is None:
                raise ValueError("fresh α and β need a generator to draw them from")
            return nn.Parameter(1 + 0.1 * torch.randn(len(members), generator=generator))

        self.alpha = scales(alpha)
        self.beta = scales(beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = self.alpha[0] * self.units[0](self.beta[0] * x)
        for i in range(1, len(self.units)):
            total = total + self.alpha[i] * self.units[i](self.beta[i] * x)
        return total / len(self.units)

    def train(self, mode: bool = True) -> MixedLayer:
        super().train(mode)
        for unit in self.units:  # frozen modules stay fixed functions (BN running stats)
            if is_frozen(unit):
                unit.eval()
        return self

    def without(self, index: int) -> MixedLayer:
        """This layer minus module ``index``, with α rescaled so the others' sum is unchanged."""
        keep = [i for i in range(len(self.members)) if i != index]
        n, m = len(self.members), len(keep)
        with torch.no_grad():
            alpha = self.alpha[keep] * (m / n)
            beta = self.beta[keep]
        return MixedLayer([self.members[i] for i in keep], alpha, beta)


class TaskNetwork(nn.Module):
    """Mixed layers over the library, then the task head. Input: float images in [0, 1]."""

    def __init__(self, layers: list[MixedLayer], head: Head) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.head = head

    @classmethod
    def fresh(cls, layers: list[list[Member]], n_classes: int, generator: torch.Generator) -> TaskNetwork:
        """``layers`` mixed by fresh α/β under a fresh head, all drawn from ``generator``."""
        return cls.with_fresh_head(
            [MixedLayer(members, generator=generator) for members in layers], n_classes, generator
        )

    @classmethod
    def with_fresh_head(
        cls, layers: list[MixedLayer], n_classes: int, generator: torch.Generator
    ) -> TaskNetwork:
        """``layers`` under a fresh head drawn from ``generator``."""
        return cls(layers, initialise(Head(layers[-1].members[0].output_shape, n_classes), generator))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def flops(self, input_shape: tuple[int, ...]) -> int:
        """Floating-point operations of one forward pass on one input (torch's flop counter:
        convolutions and matrix products): what a candidate costs every time it runs. Counted in
        eval mode, so no BatchNorm statistic moves."""
        training = self.training
        self.eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            self(torch.zeros(1, *input_shape, device=next(self.parameters()).device))
        self.train(training)
        return counter.get_total_flops()

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What growth trains: everything not frozen (new modules, α/β, head)."""
        return [p for p in self.parameters() if p.requires_grad]

    def scale_parameters(self) -> list[nn.Parameter]:
        return [p for layer in self.layers for p in (layer.alpha, layer.beta)]

    def trainable_modules(self) -> list[nn.Module]:
        return [unit for layer in self.layers for unit in layer.units if not is_frozen(unit)]
