"""Where a recruited source's transfer genomes start (``--transfer-init``): the class map, the
inherited genome of a plain source and of one that used sources, and what each choice does to
ESP's first transfer subpopulation (no emulator)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from test_esp import make_network, make_source

from agents.atari.agent import new_esp
from agents.atari.budget import ATARI_PRESETS
from agents.atari.games import N_OUTPUTS
from agents.atari.grusm import (
    SILENT_SCALE,
    class_map,
    inherited_transfer,
    random_source,
    split_transfer,
)
from agents.atari.substrate import CELLS
from agents.errors import BudgetError

QUICK = ATARI_PRESETS["quick"]


def test_class_map_matches_names_and_spreads_the_rest() -> None:
    """player reads player; the target's other classes read the mean of the source classes no
    target class is named after; without names, classes match by position."""
    weights = class_map(("player", "cars"), ("player", "invaders", "shots"))
    np.testing.assert_array_equal(weights, [[1, 0], [0, 1], [0, 1]])
    weights = class_map(("player", "divers", "enemies"), ("opponent", "player"))
    np.testing.assert_array_equal(weights, [[0, 0.5, 0.5], [1, 0, 0]])
    weights = class_map(("ball",), ("ball", "paddle"))  # every source class is matched: all of them
    np.testing.assert_array_equal(weights, [[1], [1]])
    with pytest.raises(ValueError, match="classes"):
        class_map((), ("player",))


def test_inherited_genome_reads_the_sources_wiring_onto_the_targets_substrate() -> None:
    rng = np.random.default_rng(0)
    source = make_source(rng, 3, 2 * CELLS, "freeway")
    named = replace(source, classes=("player", "cars"))
    genes = inherited_transfer(named, ("player", "invaders", "shots"))
    t_in, t_out = split_transfer(genes, 3 * CELLS, 3)
    cells = source.w_in.reshape(3, 2, CELLS)
    np.testing.assert_array_equal(t_in[:, :CELLS], cells[:, 0])  # player ← player
    np.testing.assert_array_equal(t_in[:, CELLS : 2 * CELLS], cells[:, 1])  # invaders ← cars
    np.testing.assert_array_equal(t_in[:, 2 * CELLS :], cells[:, 1])  # shots ← cars
    np.testing.assert_array_equal(t_out, np.eye(N_OUTPUTS))
    positional = inherited_transfer(source, ("a", "b", "c"))  # no names: by position
    np.testing.assert_array_equal(
        split_transfer(positional, 3 * CELLS, 3)[0][:, CELLS : 2 * CELLS], cells[:, 1]
    )


def test_a_source_that_used_sources_inherits_how_it_drove_them() -> None:
    """The inner source's units start with the T_in the network drove them with in its own game,
    read onto the target; the network's own units with its own w_in."""
    rng = np.random.default_rng(1)
    inner = make_source(rng, 2, 1 * CELLS, "pong")
    network = make_network(rng, 2 * CELLS, 3, [inner])
    source = network.as_source("boxing", classes=("player", "opponent"))
    np.testing.assert_array_equal(source.inner_in[0], network.to_arrays()["transfer_in_0"])
    genes = inherited_transfer(source, ("opponent", "player"))
    t_in, _ = split_transfer(genes, 2 * CELLS, source.n_hidden)
    own = network.to_arrays()["w_in"].reshape(3, 2, CELLS)
    driven = source.inner_in[0].reshape(2, 2, CELLS)
    np.testing.assert_array_equal(t_in[:3].reshape(3, 2, CELLS), own[:, ::-1])  # classes swapped
    np.testing.assert_array_equal(t_in[3:].reshape(2, 2, CELLS), driven[:, ::-1])
    control = random_source(source, np.random.default_rng(0))
    assert control.classes == source.classes and control.inner_in[0].shape == source.inner_in[0].shape
    assert not np.array_equal(control.inner_in[0], source.inner_in[0])
    with pytest.raises(ValueError, match="input classes"):
        network.as_source("boxing", classes=("player",))


def test_each_init_starts_the_transfer_subpopulation_as_it_says() -> None:
    rng = np.random.default_rng(2)
    n_in, classes = 2 * CELLS, ("player", "enemies")
    source = make_source(rng, 4, CELLS, "freeway")
    paper = new_esp(QUICK, n_in, 7, [source], classes).transfers[0].genes
    again = new_esp(QUICK.override(transfer_init="random"), n_in, 7, [source], classes).transfers[0].genes
    assert torch.equal(paper, again)  # the default draws exactly what it always drew
    silent = new_esp(QUICK.override(transfer_init="silent"), n_in, 7, [source], classes).transfers[0].genes
    split = n_in * source.n_hidden
    assert torch.equal(silent[..., :split], paper[..., :split])
    assert torch.allclose(silent[..., split:], paper[..., split:] * SILENT_SCALE)
    inherit = new_esp(QUICK.override(transfer_init="inherit"), n_in, 7, [source], classes).transfers[0].genes
    centre = torch.from_numpy(inherited_transfer(source, classes))
    assert torch.equal(inherit[0, 0], centre)  # member 0 is the inherited genome itself
    assert not torch.equal(inherit[0, 1], centre) and inherit.shape == paper.shape
    with pytest.raises(BudgetError, match="--transfer-init"):
        QUICK.override(transfer_init="sideways")
