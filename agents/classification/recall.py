"""Recall: start self-organization from the stored task whose path suits the new task best.

A stored task's *path* is the modules it mixes in each layer and its α/β (MNTDP, Veniat et al.,
ICLR 2021, which starts a new task from the paths of its nearest past tasks). A fresh α/β mix of
every module blurs what each past task found; a task that comes again (CTrL's S⁻: the same task
with less data) or a close relative should start from that task's own assembly instead.

    for every stored path P and for the fresh mix M of the chosen modules (α = β = 1):
        features = P's (or M's) frozen top map, average-pooled as a readout would pool it
        score    = validation accuracy of a k-nearest-neighbour vote on the training features
                   (MNTDP's own prior; Budget.recall_score="ridge": of a ridge readout instead)
    the best path, if it scores at least M's, becomes self-organization's start

The score is closed form (no training): one forward pass per path over at most
``RECALL_EXAMPLES`` training and as many validation images: per stored task, about what three
training steps of batch 64 cost (a forward pass is about a third of a step). Self-organization
then trains the start's α/β and a fresh head as usual; the path's modules are the network's
modules.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from agents.classification.modules import Head, Member
from agents.classification.network import MixedLayer
from agents.classification.training import EVAL_BATCH, as_input
from agents.task import TaskData

RECALL_EXAMPLES = 256  # training images a score is fitted on; validation images it is scored on
RIDGE = 0.1  # ridge penalty per training example, on standardised features
NEIGHBOURS = 5  # k of the nearest-neighbour vote (MNTDP's prior; 5 in CTrL's S_long setting)


@dataclass(frozen=True)
class Path:
    """A stored task's assembly: per layer, the modules it mixes and their α/β."""

    task: str
    members: list[list[Member]]
    alpha: list[torch.Tensor]
    beta: list[torch.Tensor]

    @classmethod
    def of_layers(cls, task: str, layers: list[MixedLayer]) -> Path:
        return cls(
            task,
            [list(layer.members) for layer in layers],
            [layer.alpha.detach().clone() for layer in layers],
            [layer.beta.detach().clone() for layer in layers],
        )

    def layers(self) -> list[MixedLayer]:
        """Fresh mixed layers at the path's α/β (a copy: training them leaves the path as it is)."""
        return [MixedLayer(m, a, b) for m, a, b in zip(self.members, self.alpha, self.beta, strict=True)]


@dataclass(frozen=True)
class Recalled:
    """Recall's outcome: the path to start from (None: the fresh mix) and every score."""

    path: Path | None
    mix_score: float
    scores: dict[str, float]

    def to_json(self) -> dict[str, object]:
        return {
            "task": self.path.task if self.path else None,
            "mix_score": round(self.mix_score, 6),
            "scores": {task: round(score, 6) for task, score in self.scores.items()},
        }


def recall(
    paths: list[Path],
    chosen: list[list[Member]],
    data: TaskData,
    n_classes: int,
    device: torch.device,
    score: str,
) -> Recalled:
    """Score every path and the fresh mix of ``chosen`` (``score``, the budget's recall_score: a
    k-NN vote or a ridge readout); the best path wins if it scores at least the mix's (a path's
    α/β were learned, the mix's are not)."""
    mix = [MixedLayer(layer, *_ones(layer)) for layer in chosen]
    mix_score = probe_score(mix, data, n_classes, device, score)
    scores = {path.task: probe_score(path.layers(), data, n_classes, device, score) for path in paths}
    best = max(paths, key=lambda path: scores[path.task], default=None)
    if best is None or scores[best.task] < mix_score:
        best = None
    return Recalled(best, mix_score, scores)


@torch.no_grad()
def probe_score(
    layers: list[MixedLayer], data: TaskData, n_classes: int, device: torch.device, score: str
) -> float:
    """Validation accuracy of a classifier fitted on the frozen, pooled features of ``layers``:
    a ridge readout, or (``score="knn"``, MNTDP's task-driven prior) a k-nearest-neighbour vote."""
    trunk = nn.Sequential(*layers).to(device).eval()
    pool = Head(layers[-1].members[0].output_shape, n_classes).pool_to

    def features(images: torch.Tensor) -> torch.Tensor:
        batches = [
            nn.functional.adaptive_avg_pool2d(trunk(as_input(images[i : i + EVAL_BATCH], device)), pool)
            .flatten(1)
            .double()
            .cpu()
            for i in range(0, len(images), EVAL_BATCH)
        ]
        return torch.cat(batches)

    n = RECALL_EXAMPLES
    x, val = features(data.train_x[:n]), features(data.val_x[:n])
    if score == "knn":
        return knn_accuracy(x, data.train_y[:n], val, data.val_y[:n])
    mean, std = x.mean(0), x.std(0, correction=0) + 1e-6
    x, val = (x - mean) / std, (val - mean) / std
    x, val = _with_bias(x), _with_bias(val)
    targets = nn.functional.one_hot(data.train_y[:n], n_classes).double()
    gram = x.T @ x + RIDGE * len(x) * torch.eye(x.shape[1], dtype=x.dtype)
    weights = torch.linalg.solve(gram, x.T @ targets)
    return float(((val @ weights).argmax(1) == data.val_y[:n]).double().mean())


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    val_features: torch.Tensor,
    val_labels: torch.Tensor,
    k: int = NEIGHBOURS,
) -> float:
    """Accuracy on the validation points of a k-nearest-neighbour vote (Euclidean distance,
    ties to the lowest label) fitted on the training points: MNTDP's task-driven prior."""
    k = min(k, len(train_labels))
    nearest = torch.cdist(val_features, train_features).topk(k, largest=False).indices
    votes = nn.functional.one_hot(train_labels[nearest], int(train_labels.max()) + 1).sum(1)
    return float((votes.argmax(1) == val_labels).float().mean())


def _with_bias(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)


def _ones(layer: list[Member]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.ones(len(layer)), torch.ones(len(layer))
