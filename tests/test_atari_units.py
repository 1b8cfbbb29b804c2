"""The diagnosis of a network's units on real frames (:mod:`agents.atari.units`): saturation,
spread, sign flips and action entropy must tell a silent source from a saturated one."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from test_esp import make_network, make_source

from agents.atari.games import resolve_game
from agents.atari.substrate import substrate_for
from agents.atari.units import action_entropy, unit_statistics

FREEWAY = resolve_game("Freeway")


def test_action_entropy_counts_bits() -> None:
    assert action_entropy(np.array([5, 0, 0])) == 0.0
    assert action_entropy(np.array([3, 3, 0, 0])) == 1.0
    assert action_entropy(np.zeros(18, np.int64)) == 0.0


def test_a_silent_source_and_a_saturated_one_read_as_such() -> None:
    """A source whose units get no drive, no bias and no loop sits at 0 (nothing saturated, no
    spread, no flips); the same source driven ×1000 is saturated whenever an input is on."""
    rng = np.random.default_rng(0)
    n_in = substrate_for(FREEWAY).n_inputs
    source = make_source(rng, 4, 160, "x")
    quiet = make_network(rng, n_in, 0, [source])
    quiet.transfers[0][: n_in * 4] = 0.0
    source_still = replace(source, bias=np.zeros(4), loop=np.zeros(4))
    still = type(quiet)(quiet.n_in, quiet.neurons, quiet.out_bias, (source_still,), quiet.transfers)
    loud = still.clone()
    loud.transfers = (torch.cat([torch.full((n_in * 4,), 1000.0), still.transfers[0][n_in * 4 :]]),)
    a = unit_statistics(still, FREEWAY, 2, max_frames=200, seed=0)
    b = unit_statistics(loud, FREEWAY, 2, max_frames=200, seed=0)
    assert a["steps"] == b["steps"] == 2 * 50 and a["frames"] == 2 * 200
    (sa,), (sb,) = a["sources"], b["sources"]
    assert sa["hidden"] == {"saturated": 0.0, "sd": 0.0, "flips": 0.0} and sa["t_in_abs"] == 0.0
    assert sb["hidden"]["saturated"] > 0.9 and sb["t_in_abs"] == 1000.0
    assert 0 <= a["action_entropy"] <= np.log2(18) and len(sa["outputs"]) == 3
    assert sa["t_out_abs"] == float(still.transfers[0][n_in * 4 :].abs().mean())
