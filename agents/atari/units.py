"""What a network's units do on a game's frames: whether a recruited source is a working part of
the target network or a noise generator (the diagnosis ``bench atari-transfer`` records).

:func:`unit_statistics` plays a network on episodes of its game and reads, after every step, the
hidden units' states and every recruited source's outputs. Per source it reports, for its hidden
units and for its outputs: the share of steps at which a unit is saturated (``|activation| >``
:data:`SATURATED`: a tanh unit there passes no gradient of its input, it is a sign), its spread
(the standard deviation over steps, mean over units), and how often it flips sign from one step to
the next; with the magnitudes of its transfer weights (mean ``|T_in|``, ``|T_out|``). For the
network: the entropy of the actions it took (bits; 0 = one action always, log2 18 ≈ 4.17 = all
equally often).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from agents.atari.evaluate import evaluate
from agents.atari.games import ACTION_TABLE, N_OUTPUTS, Game, actions_from_outputs
from agents.atari.grusm import split_transfer
from agents.atari.network import BatchedPolicy, Network, Networks
from agents.atari.substrate import Substrate

SATURATED = 0.95
"""A tanh unit counts as saturated above this magnitude (its slope is under 0.1 there)."""


@dataclass
class _Moments:
    """Running statistics of a block of units over steps: counts, sums, saturation and sign flips
    (the previous step's signs kept per episode slot)."""

    width: int
    steps: int = 0
    total: np.ndarray = field(init=False)
    squares: np.ndarray = field(init=False)
    saturated: np.ndarray = field(init=False)
    flips: np.ndarray = field(init=False)
    transitions: int = 0
    previous: dict[int, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.total, self.squares = np.zeros(self.width), np.zeros(self.width)
        self.saturated, self.flips = np.zeros(self.width), np.zeros(self.width)

    def add(self, values: np.ndarray, slots: np.ndarray) -> None:
        """One step of the episodes ``slots``: ``values (k, width)``."""
        self.steps += len(values)
        self.total += values.sum(0)
        self.squares += (values**2).sum(0)
        self.saturated += (np.abs(values) > SATURATED).sum(0)
        signs = values > 0
        for row, slot in enumerate(slots.tolist()):
            before = self.previous.get(slot)
            if before is not None:
                self.flips += before != signs[row]
                self.transitions += 1
            self.previous[slot] = signs[row]

    def summary(self) -> dict[str, float]:
        """Mean over units: ``saturated`` (share of steps), ``sd`` (over steps), ``flips`` (share of
        step-to-step transitions that change the sign)."""
        mean = self.total / max(self.steps, 1)
        variance = np.maximum(self.squares / max(self.steps, 1) - mean**2, 0.0)
        return {
            "saturated": float((self.saturated / max(self.steps, 1)).mean()),
            "sd": float(np.sqrt(variance).mean()),
            "flips": float((self.flips / max(self.transitions, 1)).mean()),
        }


class _Tap:
    """Wraps a one-network policy; after each step reads every source's hidden units and outputs."""

    def __init__(self, policy: BatchedPolicy, network: Network) -> None:
        self.policy, self.network = policy, network
        self.hidden, self.outputs, start = [], [], network.n_hidden
        for source in network.sources:
            self.hidden.append((slice(start, start + source.n_hidden), _Moments(source.n_hidden)))
            start += source.n_hidden
        for i, _ in enumerate(network.sources):
            columns = slice(network.n_hidden + N_OUTPUTS * i, network.n_hidden + N_OUTPUTS * (i + 1))
            self.outputs.append((columns, _Moments(N_OUTPUTS)))
        self.actions = np.zeros(ACTION_TABLE.numel(), np.int64)

    def reset(self, n_episodes: int) -> None:
        self.policy.reset(n_episodes)

    def __call__(self, observations: Tensor, slots: Tensor) -> Tensor:
        out = self.policy(observations, slots)
        units = self.policy.units(slots)
        read = self.policy.readout_inputs(units).cpu().numpy()
        units, where = units.cpu().numpy(), slots.cpu().numpy()
        for columns, moments in self.hidden:
            moments.add(units[:, columns], where)
        for columns, moments in self.outputs:
            moments.add(read[:, columns], where)
        self.actions += np.bincount(actions_from_outputs(out.cpu()), minlength=len(self.actions))
        return out


def action_entropy(counts: np.ndarray) -> float:
    """Entropy in bits of the actions taken ``counts`` times each."""
    p = counts[counts > 0] / max(int(counts.sum()), 1)
    return float(-(p * np.log2(p)).sum()) if len(p) else 0.0


def unit_statistics(
    network: Network,
    game: Game,
    episodes: int,
    *,
    max_frames: int,
    seed: int,
    substrate: Substrate | None = None,
    device: torch.device = torch.device("cpu"),
) -> dict[str, Any]:
    """``network`` played on ``episodes`` episodes of ``game`` (seeded as :func:`evaluate`'s):
    ``action_entropy`` (bits), ``steps``, emulator ``frames``, and per recruited source (in order) ``name``,
    ``hidden`` and ``outputs`` (each :meth:`_Moments.summary`), ``t_in_abs`` and ``t_out_abs``."""
    tap = _Tap(BatchedPolicy(Networks.stack([network]), device=device), network)
    run = evaluate(game, tap, episodes, max_frames=max_frames, seed=seed, device=device, substrate=substrate)
    sources = []
    for i, source in enumerate(network.sources):
        t_in, t_out = split_transfer(network.transfers[i], network.n_in, source.n_hidden)
        sources.append(
            {
                "name": source.name,
                "hidden": tap.hidden[i][1].summary(),
                "outputs": tap.outputs[i][1].summary(),
                "t_in_abs": float(t_in.abs().mean()),
                "t_out_abs": float(t_out.abs().mean()),
            }
        )
    return {
        "action_entropy": action_entropy(tap.actions),
        "steps": int(tap.actions.sum()),
        "frames": int(run.total_frames),
        "sources": sources,
    }
