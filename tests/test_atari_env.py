"""The real-ALE side of the Atari agent: game names, object substrates, action mapping and the
lock-step evaluation loop (short runs on real emulators; the whole file takes a few seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.atari.evaluate import evaluate, raw_ale, sticky_delays
from agents.atari.games import (
    ACTION_TABLE,
    N_ACTIONS,
    Game,
    GameError,
    action_names,
    actions_from_outputs,
    new_emulator,
    resolve_game,
)
from agents.atari.substrate import (
    CELLS,
    GAME_TABLES,
    GameTable,
    ObjectClass,
    Substrate,
    fallback_table,
    game_table,
    substrate_for,
)

PAPER_GAMES = ("Pong", "Breakout", "Asterix", "Bowling", "Freeway", "Boxing", "SpaceInvaders", "Seaquest")
ROLLOUT_STEPS = {"SpaceInvaders": 1200}  # the mothership is rare: first seen at step 960 of seed 0
BREAKOUT, PONG = resolve_game("Breakout"), resolve_game("Pong")


def random_screens(game: Game, steps: int, seed: int = 0) -> np.ndarray:
    """Palette screens of a seeded uniform-random rollout (one per agent step)."""
    ale = new_emulator(game)
    ale.reset_game()
    rng = np.random.default_rng(seed)
    screens = []
    for action in rng.integers(N_ACTIONS, size=steps).tolist():
        ale.act(action)
        if ale.game_over():
            ale.reset_game()
        screens.append(ale.getScreen().copy())
    return np.stack(screens)


# --------------------------------------------------------------------------------------------
# Game names


@pytest.mark.parametrize(
    ("name", "rom"),
    [
        ("Pong", "pong"),
        ("pong", "pong"),
        ("PONG", "pong"),
        ("space_invaders", "space_invaders"),
        ("SpaceInvaders", "space_invaders"),
        ("Space Invaders", "space_invaders"),
        ("space-invaders", "space_invaders"),
        ("ALE/SpaceInvaders-v5", "space_invaders"),
        ("MsPacman", "ms_pacman"),
        ("MontezumaRevenge", "montezuma_revenge"),
    ],
)
def test_resolve_game_normalises_names(name: str, rom: str) -> None:
    game = resolve_game(name)
    assert isinstance(game, Game) and game.rom == rom == str(game)


def test_unknown_game_lists_close_names_on_one_line() -> None:
    with pytest.raises(GameError) as err:
        resolve_game("Brekout")
    message = str(err.value)
    assert "\n" not in message
    assert "Brekout" in message and "breakout" in message
    assert isinstance(err.value, ValueError)
    with pytest.raises(GameError, match=r"spaceinvader.*space_invaders"):
        resolve_game("spaceinvader")


def test_missing_rom_is_a_clear_game_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ALE_ROMS_DIR", str(tmp_path))
    with pytest.raises(GameError, match="ROM of Atari game 'pong' is missing"):
        resolve_game("Pong")


# --------------------------------------------------------------------------------------------
# Substrates


@pytest.mark.parametrize("game", PAPER_GAMES)
def test_paper_game_substrate_has_nonempty_classes(game: str) -> None:
    resolved = resolve_game(game)
    table = game_table(resolved)
    assert table.source == "table" and 1 <= table.n_classes <= 5
    substrate = substrate_for(resolved)
    steps = ROLLOUT_STEPS.get(game, 300)
    screens = random_screens(resolved, steps)
    inputs = substrate(screens)
    assert inputs.shape == (steps, table.n_classes * CELLS) == (steps, substrate.n_inputs)
    assert inputs.dtype == np.float32 and set(np.unique(inputs)) <= {0.0, 1.0}
    per_class = inputs.reshape(steps, table.n_classes, 8, 10)
    seen = per_class.any(axis=(2, 3)).mean(axis=0)
    assert (seen > 0).all(), f"{game}: classes never seen {np.array(table.class_names)[seen == 0]}"
    # no class is on everywhere (that would be scenery, not an object)
    assert (per_class.mean(axis=(0, 2, 3)) < 0.5).all()
    # the fast kernel agrees with the per-pixel reference on real screens
    height = (table.bottom - table.top) // 8
    for screen, row in zip(screens[:: steps // 10], per_class[:: steps // 10], strict=True):
        reference = table.class_masks(screen).reshape(table.n_classes, 8, height, 10, 16).any(axis=(2, 4))
        assert np.array_equal(row > 0, reference)


def test_substrate_layout_and_fraction_mode() -> None:
    """Class-major, row-major cells; a block is 1/8 of the crop's rows by 16 columns."""
    table = GameTable("pong", 34, 194, (ObjectClass("a", (200,)), ObjectClass("b", (56,), exclude=True)))
    screen = np.full((1, 210, 160), 56, np.uint8)
    screen[0, 34 + 20 * 3 + 5, 16 * 7 + 2] = 200  # block row 3, column 7
    presence = Substrate(table)(screen).reshape(2, 8, 10)
    assert presence[0].sum() == 1 and presence[0, 3, 7] == 1
    assert presence[1].sum() == 1 and presence[1, 3, 7] == 1  # "not 56" is exactly that pixel
    fraction = Substrate(table, "fraction")(screen).reshape(2, 8, 10)
    assert fraction[0, 3, 7] == pytest.approx(1 / (20 * 16))
    assert table.lut[200] == 1 and table.lut[56] == 0 and table.lut[0] == 2
    with pytest.raises(ValueError, match="multiple of 8"):
        GameTable("pong", 0, 210, (ObjectClass("a", (2,)),))


@pytest.mark.parametrize("game", ["MsPacman", "Tennis"])
def test_fallback_finds_moving_colours_for_other_games(game: str) -> None:
    resolved = resolve_game(game)
    table = game_table(resolved)
    assert resolved.rom not in GAME_TABLES and table.source == "fallback"
    assert 1 <= table.n_classes <= 4
    assert table == fallback_table(resolved)  # deterministic and cached
    inputs = substrate_for(resolved)(random_screens(resolved, 100))
    assert inputs.shape == (100, table.n_classes * CELLS)
    assert inputs.reshape(100, table.n_classes, 80).any(axis=2).any(axis=0).all()


def test_fallback_skips_static_scenery() -> None:
    """Freeway's lane marks (12) never move; its cars and chicken do."""
    colours = {c for cls in fallback_table(resolve_game("freeway")).classes for c in cls.colours}
    assert 12 not in colours and 6 not in colours  # lane marks, road (background)
    assert colours & {30, 74, 220, 18}


# --------------------------------------------------------------------------------------------
# Actions


def test_action_mapping_covers_the_full_action_set() -> None:
    outputs = -torch.ones(18, 10)
    for i in range(18):
        outputs[i, i % 9] = 1.0
        outputs[i, 9] = 0.5 if i >= 9 else -0.5
    actions = actions_from_outputs(outputs)
    assert sorted(actions.tolist()) == list(range(18))
    assert action_names(actions[:9]) == [
        "UPLEFT", "UP", "UPRIGHT", "LEFT", "NOOP", "RIGHT", "DOWNLEFT", "DOWN", "DOWNRIGHT",
    ]  # fmt: skip
    assert action_names(actions[9:]) == [
        "UPLEFTFIRE", "UPFIRE", "UPRIGHTFIRE", "LEFTFIRE", "FIRE",
        "RIGHTFIRE", "DOWNLEFTFIRE", "DOWNFIRE", "DOWNRIGHTFIRE",
    ]  # fmt: skip
    assert ACTION_TABLE.shape == (2, 9) and N_ACTIONS == 18


def test_fire_threshold_is_strictly_positive() -> None:
    outputs = torch.zeros(3, 10)
    outputs[:, 1] = 1.0  # UP
    outputs[:, 9] = torch.tensor([0.0, 1e-6, -1e-6])
    assert action_names(actions_from_outputs(outputs)) == ["UP", "UPFIRE", "UP"]
    with pytest.raises(ValueError, match=r"\(B, 10\)"):
        actions_from_outputs(torch.zeros(2, 9))


# --------------------------------------------------------------------------------------------
# Evaluation


class CountingPolicy:
    """A policy whose actions depend on the observation and on how often each slot was called
    (so sticky actions matter), counting calls per slot."""

    def __init__(self, n_inputs: int) -> None:
        self.weights = torch.randn(n_inputs, 10, generator=torch.Generator().manual_seed(1))
        self.calls: torch.Tensor | None = None
        self.batch_sizes: list[int] = []

    def reset(self, n_episodes: int) -> None:
        self.calls = torch.zeros(n_episodes, dtype=torch.int64)
        self.batch_sizes = []

    def __call__(self, observations: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        assert self.calls is not None and observations.dtype == torch.float32
        assert len(set(slots.tolist())) == len(slots)
        self.batch_sizes.append(len(slots))
        step = self.calls[slots]
        self.calls[slots] += 1
        cycle = torch.nn.functional.one_hot((step * 5 + slots) % 10, 10).float()
        return torch.tanh(observations @ self.weights) * 0.1 + cycle


def test_evaluate_is_reproducible_and_respects_the_frame_cap() -> None:
    policy = CountingPolicy(substrate_for(BREAKOUT).n_inputs)
    first = evaluate(BREAKOUT, policy, 6, max_frames=600, seed=3)
    calls = policy.calls.clone()
    again = evaluate(BREAKOUT, policy, 6, max_frames=600, seed=3, emulators=2)  # other emulators
    other = evaluate(BREAKOUT, policy, 6, max_frames=600, seed=4)
    assert np.array_equal(first.scores, again.scores) and np.array_equal(first.frames, again.frames)
    assert not (np.array_equal(first.scores, other.scores) and np.array_equal(first.frames, other.frames))
    assert (first.frames <= 600).all() and (first.frames % 4 == 0).all()
    assert first.total_frames == first.frames.sum() and first.steps_per_s > 0
    assert np.array_equal(calls.numpy() * 4, first.frames)  # one call per agent step


def test_finished_episodes_drop_out_of_the_batch() -> None:
    """Breakout with this policy loses its 5 lives well before 20,000 frames, at different times."""
    policy = CountingPolicy(substrate_for(BREAKOUT).n_inputs)
    result = evaluate(BREAKOUT, policy, 4, max_frames=20_000, seed=0)
    assert policy.calls is not None
    assert np.array_equal(policy.calls.numpy() * 4, result.frames)
    assert (result.frames < 20_000).all() and len(set(result.frames.tolist())) > 1
    sizes = policy.batch_sizes
    assert sizes[0] == 4 and sizes[-1] == 1 and sizes == sorted(sizes, reverse=True)
    assert len(sizes) == result.frames.max() // 4


def test_more_episodes_than_emulators_queue_up() -> None:
    policy = CountingPolicy(substrate_for(PONG).n_inputs)
    result = evaluate(PONG, policy, 5, max_frames=80, seed=1, emulators=2)
    assert result.emulators == 2 and (result.frames == 80).all()
    assert max(policy.batch_sizes) == 2 and (policy.calls == 20).all()


def test_sticky_delays_follow_ale_per_frame_semantics() -> None:
    """The previous action persists for the frames before ALE's first switch: P(d >= k) = p^k."""
    delays = sticky_delays(np.random.default_rng(0), 200_000, 0.25)
    assert delays.min() == 0 and delays.max() == 4
    for k in range(1, 5):
        assert (delays >= k).mean() == pytest.approx(0.25**k, rel=0.05 if k < 4 else 0.3)
    assert not sticky_delays(np.random.default_rng(0), 100, 0.0).any()
    assert (sticky_delays(np.random.default_rng(0), 100, 1.0) == 4).all()


def test_sticky_actions_make_episodes_differ_only_by_seed() -> None:
    """Without stickiness a deterministic policy replays the same game; with it seeds matter, and
    an emulator's history does not (the pool hands out emulators that ran other episodes)."""
    policy = CountingPolicy(substrate_for(BREAKOUT).n_inputs)
    plain = evaluate(BREAKOUT, policy, 3, max_frames=400, seed=0, sticky=0.0)
    plain_other_seed = evaluate(BREAKOUT, policy, 3, max_frames=400, seed=9, sticky=0.0)
    assert np.array_equal(plain.frames, plain_other_seed.frames)
    assert np.array_equal(plain.scores, plain_other_seed.scores)
    a = evaluate(BREAKOUT, policy, 3, max_frames=400, seed=0, emulators=1)
    b = evaluate(BREAKOUT, policy, 3, max_frames=400, seed=0, emulators=3)
    assert np.array_equal(a.scores, b.scores) and np.array_equal(a.frames, b.frames)


def test_raw_ale_and_bad_arguments() -> None:
    result = raw_ale(PONG, 2, max_frames=40, seed=0)
    assert (result.frames == 40).all() and result.steps_per_s > 0 and result.game == PONG
    policy = CountingPolicy(substrate_for(PONG).n_inputs)
    with pytest.raises(ValueError, match="n_episodes"):
        evaluate(PONG, policy, 0, max_frames=40, seed=0)
    with pytest.raises(ValueError, match="max_frames"):
        evaluate(PONG, policy, 1, max_frames=3, seed=0)
    with pytest.raises(ValueError, match="sticky"):
        evaluate(PONG, policy, 1, max_frames=40, seed=0, sticky=1.5)
