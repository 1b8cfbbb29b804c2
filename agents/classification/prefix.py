"""Prefix-reuse candidates in growth (MNTDP's candidates, Veniat et al., ICLR 2021).

SMART's growth adds modules beside the library's layers or on top of them; it never replaces the
upper part of a stored path. MNTDP does: around the past task whose path suits the new task
best, it trains one network per depth k, the path's first k layers reused and fresh modules
above. With ``Budget.prefix_reuse`` growth adds those candidates beside evolution's winner:

    path  = the stored path recall scores best on the new task
    for k = 1 … L − 1:
        network = path's layers 1 … k (frozen modules, their α/β trainable)
                + fresh modules of the path's kinds and shapes for layers k + 1 … L
                + a fresh head
        train it for the budget's final steps; score it on validation
    the best of these and evolution's winner goes on to the growth margin test

(k = L is self-organization from the path, which already ran; k = 0 is a network from scratch.)
A fresh module of layer j has the shapes of library layer j, so it joins the library there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from agents import Progress
from agents.classification.budget import Budget
from agents.classification.modules import Member
from agents.classification.network import MixedLayer, TaskNetwork
from agents.classification.recall import Path
from agents.classification.training import Curve, accuracy, train
from agents.task import TaskData


@dataclass
class PrefixCandidate:
    """A trained prefix-reuse network: ``reused`` layers of ``path``, fresh modules above."""

    path: str
    reused: int
    network: TaskNetwork
    val_acc: float
    curve: Curve


def prefix_network(path: Path, reused: int, n_classes: int, generator: torch.Generator) -> TaskNetwork:
    """The path's first ``reused`` layers at its α/β, fresh modules like the path's first module of
    each layer above, a fresh head; all fresh weights drawn from ``generator``."""
    layers = path.layers()[:reused]
    for members in path.members[reused:]:
        like = members[0]
        fresh = Member.new(like.kind, like.input_shape, like.output_shape[0], generator)
        layers.append(MixedLayer([fresh], generator=generator))
    return TaskNetwork.with_fresh_head(layers, n_classes, generator)


def train_prefixes(
    path: Path,
    data: TaskData,
    budget: Budget,
    target: float,
    generator: torch.Generator,
    device: torch.device,
    progress: Progress,
) -> list[PrefixCandidate]:
    """Every prefix candidate of ``path`` (k = 1 … L − 1), trained for the budget's final steps."""
    trained = []
    for reused in range(1, len(path.members)):
        network = prefix_network(path, reused, data.n_classes, generator).to(device)
        curve = train(
            network,
            network.trainable_parameters(),
            data,
            budget.train_config(budget.final_steps, target),
            generator=generator,
            device=device,
            progress=progress,
            label=f"prefix {reused}/{len(path.members)} of {path.task}",
        )
        val = accuracy(network, data.val_x, data.val_y, device)
        trained.append(PrefixCandidate(path.task, reused, network, val, curve))
    return trained
