"""How the Atari agent recruits sources, each choice against its random twin (no emulator): where
a transfer genome starts (``--transfer-init``: the class map, the inherited genome of a plain
source and of one that used sources, what each choice does to ESP's first transfer
subpopulation), the screen that keeps only sources beating their twin, and the episodes a
lesion judges by."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_esp import make_network, make_source

import agents.atari.problem as atari_problem
from agents.atari.agent import AtariAgent, Problem, new_esp
from agents.atari.budget import ATARI_PRESETS, AtariBudget
from agents.atari.games import N_OUTPUTS, resolve_game
from agents.atari.grusm import (
    SILENT_SCALE,
    Source,
    class_map,
    inherited_transfer,
    random_source,
    split_transfer,
)
from agents.atari.substrate import CELLS, substrate_for
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
    exact_in = (
        new_esp(QUICK.override(transfer_init="inherit-in"), n_in, 7, [source], classes).transfers[0].genes
    )
    assert torch.equal(exact_in[0, :, :split], centre[:split].expand(exact_in.shape[1], -1))  # every member
    assert torch.equal(exact_in[0, 0], centre) and not torch.equal(exact_in[0, 1, split:], centre[split:])
    with pytest.raises(BudgetError, match="--transfer-init"):
        QUICK.override(transfer_init="sideways")


def scripted_agent(
    monkeypatch: pytest.MonkeyPatch, budget: AtariBudget, score: Callable[[tuple[Source, ...]], float]
) -> tuple[AtariAgent, list[tuple[int, int]]]:
    """An agent whose episodes are not played: each network scores ``score(network sources)``;
    every call's (trials, seed) is logged."""
    calls: list[tuple[int, int]] = []

    def fake_evaluate_split(workers, game, networks, trials, *, max_frames, seed, device, substrate):
        calls.append((trials, seed))
        episodes = len(networks) * trials
        return SimpleNamespace(scores=np.full(episodes, score(networks.sources)), total_frames=100 * episodes)

    monkeypatch.setattr(atari_problem, "evaluate_split", fake_evaluate_split)
    return AtariAgent(budget), calls


def problem_with(source: Source) -> Problem:
    freeway = resolve_game("Freeway")
    return Problem("atari:Freeway", "atari:Freeway", freeway, substrate_for(freeway), [source], None)


@pytest.mark.parametrize("twin_wins", [False, True])
def test_the_screen_keeps_a_source_only_if_it_beats_its_twin(
    monkeypatch: pytest.MonkeyPatch, twin_wins: bool
) -> None:
    """One probe generation with the source, one with its random twin, on the same episodes; the
    winner is recruited, else the game starts from scratch with the probe's frames spent."""
    source = make_source(np.random.default_rng(3), 4, 2 * CELLS, "freeway-net")
    budget = QUICK.override(screen=True, generations=2)
    learned_wins = lambda sources: float((sources[0].name == "freeway-net") != twin_wins)  # noqa: E731
    agent, calls = scripted_agent(
        monkeypatch, budget, lambda sources: learned_wins(sources) if sources else 0.0
    )
    attempt = agent.self_organize(problem_with(source))
    assert attempt is not None
    (verdict,) = attempt.details["screen"]
    assert verdict == {"source": "freeway-net", "score": float(not twin_wins), "twin": float(twin_wins),
                       "kept": not twin_wins}  # fmt: skip
    assert calls[0] == calls[1]  # source and twin: the same episodes
    probe_frames = 2 * 100 * budget.evaluations
    if twin_wins:
        assert attempt.phase == "grow" and attempt.esp.sources == [] and attempt.esp.n_hidden == budget.hidden
        assert attempt.frames == probe_frames and len(calls) == 2
    else:
        assert attempt.esp.sources == [source] and attempt.frames > probe_frames
        assert calls[2][1] != calls[0][1]  # self-organization goes on with fresh episodes


def test_a_lesion_judges_by_lesion_trials_episodes(monkeypatch: pytest.MonkeyPatch) -> None:
    source = make_source(np.random.default_rng(4), 3, 2 * CELLS, "s")
    for lesion_trials, expected in ((0, QUICK.trials), (5, 5)):
        agent, calls = scripted_agent(monkeypatch, QUICK.override(generations=1, lesion_trials=lesion_trials),
                                      lambda sources: 1.0)  # fmt: skip
        attempt = agent.self_organize(problem_with(source))
        assert attempt is not None
        before = len(calls)
        agent.prune(problem_with(source), attempt)
        assert {trials for trials, _ in calls[:before]} == {QUICK.trials}  # learning: the budget's trials
        assert {trials for trials, _ in calls[before:]} == {expected}
