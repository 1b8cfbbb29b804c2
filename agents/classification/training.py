"""Minibatch training with a validation learning curve, best-checkpoint keeping and early stop.

The data sit in memory as uint8 tensors; each step samples a batch with a seeded generator, so
the same seed replays the same run. Test data never enter here: every decision (keep the best
checkpoint, stop, accept) looks at the validation split only.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from agents import Progress, quiet
from agents.classification.budget import TrainConfig
from agents.errors import TrainingError
from agents.task import TaskData

# images per forward pass when evaluating: a batch's maps stay under glibc's 32 MB ceiling for
# reusing freed memory (1,000 MNIST images through a 16-channel 28×28 layer are 50 MB, mapped and
# faulted in afresh by every operation), about a quarter faster; logits do not depend on it
EVAL_BATCH = 128


def as_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 images → float in [0, 1] on ``device`` (the network's input convention)."""
    return images.to(device, non_blocking=True).float().div_(255)


@torch.no_grad()
def predict_logits(network: nn.Module, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Logits for all ``images`` in eval mode, in fixed-size batches (deterministic)."""
    was_training = network.training
    network.eval()
    logits = in_batches(lambda batch: network(as_input(batch, device)).cpu(), images)
    network.train(was_training)
    return logits


@torch.no_grad()
def in_batches(function: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
    """``function`` over ``inputs`` in batches of :data:`EVAL_BATCH`, concatenated: the batches
    every evaluation uses, so a sample's result is the same bits whichever evaluation computes it
    (``function``'s train or eval mode is the caller's to set)."""
    outputs = [function(inputs[i : i + EVAL_BATCH]) for i in range(0, len(inputs), EVAL_BATCH)]
    return torch.cat(outputs) if outputs else torch.empty(0)


def accuracy(network: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> float:
    return float((predict_logits(network, images, device).argmax(1) == labels).float().mean())


@dataclass
class Curve:
    """Validation accuracy against training step."""

    steps: list[int] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)

    def add(self, step: int, value: float) -> None:
        self.steps.append(step)
        self.accuracies.append(value)

    def points(self) -> list[tuple[int, float]]:
        return list(zip(self.steps, self.accuracies, strict=True))

    @property
    def best(self) -> float:
        return max(self.accuracies, default=0.0)


def train(
    network: nn.Module,
    parameters: list[nn.Parameter],
    data: TaskData,
    config: TrainConfig,
    *,
    generator: torch.Generator,
    device: torch.device,
    progress: Progress = quiet,
    label: str = "train",
) -> Curve:
    """Train ``parameters`` (only those) with Adam; leave ``network`` at its best validation
    checkpoint and return the validation curve. ``progress`` hears the phase (``phase``, one
    ``eval`` per validation point, ``phase_done``): what progress bars and the stream
    benchmark's example counts follow."""
    progress("phase", name=label, total=config.steps)
    started = time.perf_counter()
    optimizer = torch.optim.Adam(parameters, lr=config.lr)
    curve = Curve()
    # The starting point is a candidate too: training must never return something worse.
    best_acc = accuracy(network, data.val_x, data.val_y, device)
    best_state, since_best = copy.deepcopy(network.state_dict()), 0
    curve.add(0, best_acc)
    network.train()
    n = len(data.train_y)
    for step in range(1, config.steps + 1):
        batch = torch.randint(n, (min(config.batch_size, n),), generator=generator)
        loss = nn.functional.cross_entropy(
            network(as_input(data.train_x[batch], device)), data.train_y[batch].to(device)
        )
        if not math.isfinite(loss.item()):
            raise TrainingError(
                f"training diverged: loss is {loss.item()} at step {step} "
                f"(learning rate {config.lr:g} too high?)"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % config.eval_every == 0 or step == config.steps:
            value = accuracy(network, data.val_x, data.val_y, device)
            curve.add(step, value)
            progress("eval", step=step, val_acc=value)
            if value > best_acc:
                best_acc, best_state, since_best = value, copy.deepcopy(network.state_dict()), 0
            else:
                since_best += 1
            if best_acc >= config.target and since_best >= config.patience:
                break
            if best_acc >= 1.0:
                break
    network.load_state_dict(best_state)
    progress("phase_done", name=label, seconds=time.perf_counter() - started, val_acc=curve.best)
    return curve
