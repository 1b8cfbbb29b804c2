"""Object substrates: what a network sees of an Atari screen (the GRUSM-ESP paper's input).

The palette screen (``ale.getScreen()``: uint8 210×160, one NTSC palette index per pixel) is cut to
the game's play area (rows ``top..bottom``) and split into an 8×10 grid of blocks (8 block-rows top
to bottom, 10 block-columns left to right, each ``(bottom - top) / 8`` rows × 16 columns). Every
object class gets one such grid; a cell is **1.0 when at least one pixel of that class lies in the
block, else 0.0** (presence, as the paper's object substrate; ``mode="fraction"`` gives the
fraction of the block's pixels instead). Inputs are laid out class-major: input
``k * 80 + row * 10 + col``.

A class is a set of palette indices, optionally restricted to a rectangle of the screen
(:class:`ObjectClass`), because the same colour can mean different objects in different places:
Pong's white is the walls above and below the field and the ball inside it; Breakout's red is the
top brick row, the ball and the paddle. A class may also be *everything except* some colours
(``exclude=True``): Freeway's ten car colours or Asterix's per-level objects are "whatever is not
road, lane marks or the player". Several :class:`ObjectClass` entries with one name form one class.
:attr:`GameTable.lut` gives the plain 256-entry palette → class lookup table (regions ignored).

The per-game tables below were found with short random rollouts (seeded, 400 agent steps): a
census of palette indices (:func:`colour_census`: share of pixels, rows/columns where they occur,
share of their pixels that change between observations) plus rendered frames to name the objects;
see each table's comment. Any other game gets :func:`fallback_table`: the most frequent
non-background colours whose pixels *move* between observations (up to 4), so static scenery
(Freeway's lane marks, Asterix's lanes) does not become an object class.

**Why not a numpy LUT gather per step.** ``lut[screen]`` is numpy fancy indexing, which widens
every index to intp: about an emulator step's worth of time per screen. The :class:`Substrate`
instead compares the crop of the whole batch with one image of expected colours per (colour,
region) entry (one broadcast ``==``), views the boolean bytes as uint64 words (8 pixels a word),
sums each block's rows with one einsum and the byte lanes of each word with a multiply-shift, then
maps entry counts to classes with one small signed matrix, with no Python loop per class, colour
or emulator (timings: ``benchmarks/README.md``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import numpy as np

from agents.atari.games import (
    FRAMESKIP,
    N_ACTIONS,
    SCREEN_HEIGHT,
    SCREEN_WIDTH,
    Game,
    GameError,
    new_emulator,
)

GRID_ROWS = 8
GRID_COLS = 10
CELLS = GRID_ROWS * GRID_COLS
BLOCK_WIDTH = SCREEN_WIDTH // GRID_COLS  # 16 pixels = two uint64 words of the boolean screen
MAX_BLOCK_HEIGHT = 31  # the byte-lane sum holds 8 × rows per word below 256

FALLBACK_STEPS = 400
"""Agent steps of the seeded random rollout the generic fallback's colour census runs."""
FALLBACK_MOVING_MIN = 0.02
"""A colour is an object colour for the fallback when at least this share of its pixels change
between consecutive observations (Freeway's road: 0.021 but it is the background; its lane marks:
0.000; cars: 0.6–1.2; the chicken: 0.11)."""
FALLBACK_MAX_CLASSES = 4


# --------------------------------------------------------------------------------------------
# Colour-class tables


@dataclass(frozen=True)
class ObjectClass:
    """Palette indices that mean one kind of object, within a rectangle of the screen.

    ``rows``/``cols`` are half-open screen coordinates (clipped to the game's crop).
    ``exclude=True`` inverts the colours: every colour except ``colours`` belongs to the class.
    """

    name: str
    colours: tuple[int, ...]
    rows: tuple[int, int] = (0, SCREEN_HEIGHT)
    cols: tuple[int, int] = (0, SCREEN_WIDTH)
    exclude: bool = False


@dataclass(frozen=True)
class GameTable:
    """How one game's palette screen becomes object classes: the crop ``top..bottom`` (a
    multiple of 8 rows) and the classes, in input order."""

    game: str
    top: int
    bottom: int
    classes: tuple[ObjectClass, ...]
    source: str = "table"  # "table" (hand-made from a census) or "fallback" (moving colours)

    def __post_init__(self) -> None:
        height = self.bottom - self.top
        if not (0 <= self.top < self.bottom <= SCREEN_HEIGHT) or height % GRID_ROWS:
            raise ValueError(f"{self.game}: crop rows {self.top}..{self.bottom} must be a multiple of 8 rows")
        if height // GRID_ROWS > MAX_BLOCK_HEIGHT:
            raise ValueError(f"{self.game}: blocks of {height // GRID_ROWS} rows are too tall")
        if not self.classes:
            raise ValueError(f"{self.game}: no object classes")

    @property
    def class_names(self) -> tuple[str, ...]:
        """One name per class (entries sharing a name are one class), in input order."""
        return tuple(dict.fromkeys(c.name for c in self.classes))

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def lut(self) -> np.ndarray:
        """The 256-entry palette → class table (0 = background/ignored, 1..K), regions ignored:
        listed colours first, then ``exclude`` classes take every colour still unassigned."""
        lut = np.zeros(256, np.uint8)
        names = self.class_names
        excluded: set[int] = set()
        for cls in self.classes:
            if cls.exclude:
                excluded.update(cls.colours)
            else:
                for colour in cls.colours:
                    if lut[colour] == 0:
                        lut[colour] = names.index(cls.name) + 1
        for cls in self.classes:
            if cls.exclude:
                free = (lut == 0) & ~np.isin(np.arange(256), sorted(set(cls.colours) | excluded))
                lut[free] = names.index(cls.name) + 1
        return lut

    def class_masks(self, screen: np.ndarray) -> np.ndarray:
        """Reference per-pixel masks ``(K, bottom - top, 160)`` bool of one palette screen (slow;
        for tests, inspection and pictures, not for the per-step loop)."""
        crop = np.asarray(screen)[self.top : self.bottom]
        masks = np.zeros((self.n_classes, *crop.shape), bool)
        for cls in self.classes:
            k = self.class_names.index(cls.name)
            region = _region_mask(cls, self.top, self.bottom)
            masks[k] |= region & (np.isin(crop, cls.colours) != cls.exclude)
        return masks


def _region_mask(cls: ObjectClass, top: int, bottom: int) -> np.ndarray:
    """The class's rectangle in crop coordinates, as a (bottom - top, 160) boolean mask."""
    mask = np.zeros((bottom - top, SCREEN_WIDTH), bool)
    r0, r1 = max(cls.rows[0], top) - top, min(cls.rows[1], bottom) - top
    if r1 > r0:
        mask[r0:r1, cls.cols[0] : cls.cols[1]] = True
    return mask


def _c(name: str, *colours: int, **where: object) -> ObjectClass:
    return ObjectClass(name, tuple(colours), **where)  # type: ignore[arg-type]


GAME_TABLES: dict[str, GameTable] = {
    # Pong: background 34 (86% of pixels); white 14 is the walls (rows 24–33, 194–209) and the
    # ball; the crop 34..194 keeps the field only, so 14 there is the ball. The agent is the right,
    # green paddle (200, cols 140–143); the opponent the orange one (56, cols 16–19). Scores (same
    # colours, rows 1–20) are cropped away.
    "pong": GameTable("pong", 34, 194, (_c("player", 200), _c("opponent", 56), _c("ball", 14))),
    # Breakout: black 0 background, grey 6 walls; brick rows 57–92 (red 70, 134, 198, 22, 38,
    # 54 from the top). Red 70 is also the ball (2×4 px) and the paddle (rows 189–194), and the
    # right wall's foot (cols 152–159, rows 189–194), hence regions. Bricks = anything not black
    # in the brick band (a ball inside the band counts as brick).
    "breakout": GameTable(
        "breakout",
        28,
        196,
        (
            _c("player", 70, rows=(189, 196), cols=(8, 152)),
            _c("ball", 70, rows=(93, 189), cols=(8, 152)),
            _c("ball", 70, rows=(28, 57), cols=(8, 152)),
            _c("bricks", 0, rows=(57, 93), cols=(8, 152), exclude=True),
        ),
    ),
    # Asterix: background 0, lane lines 136 (rows 23+16k, 2 rows each); the crop 23..151 is the 8
    # lanes, one per block-row. The player is yellow 24 (lives and score, also 24, are below the
    # crop). Objects (rewards and harmful lyres) change colour with the level (66, 68, 74 early;
    # the "50" bonus labels 8, 88, 120), so "objects" is everything but background, lane lines
    # and player, above the purple band 114 (rows 150–151). (Regions and colours are chosen so
    # that classes share entries: each distinct (colour, region) costs one comparison per step.)
    "asterix": GameTable(
        "asterix",
        23,
        151,
        (_c("player", 24, rows=(23, 150)), _c("objects", 0, 136, 24, rows=(23, 150), exclude=True)),
    ),
    # Bowling: background 38; lane borders 132 at rows 102–103 and 172–173 (cropped: 104..172 is
    # the lane, crop 100..180). The bowler is pink/blue 88 (head), 136 (body), 134 (legs); the ball
    # and the pins are blue 132, the ball rolling from the bowler (cols < 112) towards the pins
    # (cols ≥ 112, about 120–136).
    "bowling": GameTable(
        "bowling",
        100,
        180,
        (
            _c("player", 88, 134, 136, rows=(104, 172)),
            _c("ball", 132, rows=(104, 172), cols=(0, 112)),
            _c("pins", 132, rows=(104, 172), cols=(112, 160)),
        ),
    ),
    # Freeway: road 6, lane marks 12, sidewalks 8, black 0 (HMOVE bar, car outlines); the player
    # chicken is yellow 30 in a fixed column (cols 44–50; the idle second chicken sits at cols
    # 108–113), the yellow median is 30 too (rows 102, 104). Cars have one colour per lane (220,
    # 18, 66, 74, 130, 36, 136, 216, 68, 26), so "cars" is everything but road, lane marks,
    # black (HMOVE bar, road edges, wheels) and yellow, between the sidewalks (8, rows 15–22 and
    # 186–194).
    "freeway": GameTable(
        "freeway",
        22,
        198,
        (
            _c("player", 30, rows=(22, 102), cols=(32, 64)),
            _c("player", 30, rows=(105, 198), cols=(32, 64)),
            _c("cars", 0, 6, 12, 30, rows=(23, 186), exclude=True),
        ),
    ),
    # Boxing: ring 214 (green) inside ropes 40; the player is white 12, the opponent black 0.
    # Black is also the HMOVE bar (cols 0–7) and the scores (12 and 0, rows 5–23, cropped by
    # 28..188), hence the opponent's columns.
    "boxing": GameTable("boxing", 28, 188, (_c("player", 12), _c("opponent", 0, cols=(8, 160)))),
    # Space Invaders: background 0, ground 226 (rows 195–209). The cannon is green 196 at rows
    # 185–194 (196 and 246 are also the score digits, rows 10–19); invaders are 20 (rows 31–140
    # and creeping down); shots (player's and invaders') are 6; the mothership is 82 (rows 11–20;
    # rare under random play: first seen after ~960 steps in one of six 1,500-step rollouts).
    # Shields (52, rows 157–174) are left out: static and 4 classes are enough.
    "space_invaders": GameTable(
        "space_invaders",
        8,
        200,
        (
            _c("player", 196, rows=(180, 196)),
            _c("invaders", 20),
            _c("shots", 6),
            _c("mothership", 82, rows=(8, 30)),
        ),
    ),
    # Seaquest: water 144, surface waves 146 (rows 45–54), black 0 (HMOVE bar); the crop 45..157
    # is the sea down to the sea floor (bands 160, 176 at rows 153–156, then 192). The player's
    # submarine and its torpedoes are yellow 24; divers are 134 (also the Activision logo, below
    # the crop). Sharks and enemy submarines change colour by wave (200, 8, …), so "enemies" is
    # everything but water, waves, black (the HMOVE bar, gaps in the waves), player and divers,
    # above the floor bands.
    "seaquest": GameTable(
        "seaquest",
        45,
        157,
        (
            _c("player", 24, rows=(45, 153)),
            _c("divers", 134, rows=(45, 153)),
            _c("enemies", 0, 144, 146, 24, 134, rows=(45, 153), exclude=True),
        ),
    ),
}


def colour_census(game: Game, steps: int = FALLBACK_STEPS, seed: int = 0) -> dict[str, np.ndarray]:
    """Palette statistics of a seeded uniform-random rollout (4 frames a step, no stickiness):
    ``pixels`` (256,) pixel count over all observations, ``moving`` (256,) changed pixels that
    had or got the colour between consecutive observations, ``present`` (256,) observations in
    which the colour occurs. The tool behind the tables above and the fallback."""
    ale = new_emulator(game)
    ale.reset_game()
    rng = np.random.default_rng(seed)
    actions = rng.integers(N_ACTIONS, size=steps).tolist()
    pixels = np.zeros(256, np.int64)
    moving = np.zeros(256, np.int64)
    present = np.zeros(256, np.int64)
    prev = ale.getScreen().copy()
    screen = np.empty_like(prev)
    for action in actions:
        for _ in range(FRAMESKIP):
            ale.act(action)
        if ale.game_over():
            ale.reset_game()
        ale.getScreen(screen)
        counts = np.bincount(screen.ravel(), minlength=256)
        pixels += counts
        present += counts > 0
        changed = screen != prev
        moving += np.bincount(screen[changed], minlength=256) + np.bincount(prev[changed], minlength=256)
        prev, screen = screen, prev
    return {"pixels": pixels, "moving": moving, "present": present}


@functools.cache
def fallback_table(game: Game) -> GameTable:
    """The generic table for a game without one: up to :data:`FALLBACK_MAX_CLASSES` classes, one
    colour each, the most frequent colours (background = the most frequent colour excluded) whose
    pixels move between observations, over the whole screen (rows 0..208), from
    :func:`colour_census`'s seeded rollout. Deterministic for a game, cached per process."""
    census = colour_census(game)
    pixels, moving = census["pixels"], census["moving"]
    background = int(np.argmax(pixels))
    share = np.divide(moving, pixels, out=np.zeros(256), where=pixels > 0)
    candidates = [c for c in np.argsort(-pixels, kind="stable").tolist() if pixels[c] > 0 and c != background]
    chosen = [c for c in candidates if share[c] >= FALLBACK_MOVING_MIN][:FALLBACK_MAX_CLASSES]
    if not chosen:  # nothing moves (a title screen?): fall back to the most frequent colours
        chosen = candidates[:1]
    if not chosen:
        raise GameError(f"Atari game {game.rom!r} shows a single colour; no object classes can be found")
    classes = tuple(ObjectClass(f"colour_{c}", (c,)) for c in chosen)
    return GameTable(game.rom, 0, GRID_ROWS * (SCREEN_HEIGHT // GRID_ROWS), classes, source="fallback")


def game_table(game: Game) -> GameTable:
    """The colour-class table of ``game``: the hand-made one for the paper's eight games, else
    :func:`fallback_table`."""
    return GAME_TABLES.get(game.rom) or fallback_table(game)


# --------------------------------------------------------------------------------------------
# The substrate kernel

NEVER = 1
"""A palette index no ALE screen holds (odd): the expected colour outside an entry's mask."""
_LANES = np.uint64(0x0101010101010101)
_TOP_BYTE = np.uint64(56)


class Substrate:
    """Turns a batch of palette screens ``(B, 210, 160) uint8`` into object-substrate inputs
    ``(B, K * 80) float32`` (layout and cell meaning: see the module docstring).

    Compiled once from a :class:`GameTable` into *entries*, one per distinct (colour, pixel mask),
    where a class's regions listing the same colour are merged into one mask, and a signed entry
    → class matrix: a listed colour adds its pixels to its class, an ``exclude`` class starts from
    its regions' pixel count per block and subtracts each excluded colour's pixels there.

    Each entry compares the crop with an *expected-colour image*: its colour inside its mask and
    :data:`NEVER` (an odd palette index) outside. ALE palette screens only hold even indices (the
    TIA ignores bit 0 of colour registers; checked on 16 games), so pixels outside the mask never
    match. This costs the same as comparing with a scalar (measured), where masking afterwards
    would cost a second pass over the comparison.
    """

    def __init__(self, table: GameTable, mode: Literal["presence", "fraction"] = "presence") -> None:
        if mode not in ("presence", "fraction"):
            raise ValueError(f"mode must be 'presence' or 'fraction', got {mode!r}")
        self.table = table
        self.mode = mode
        self.top, self.bottom = table.top, table.bottom
        height = self.bottom - self.top
        self._block_height = height // GRID_ROWS
        names = table.class_names
        # (class, colour, sign) → union of the class's regions listing that colour
        terms: dict[tuple[int, int, int], np.ndarray] = {}
        const = np.zeros((len(names), GRID_ROWS, GRID_COLS), np.int64)
        excluded_area = np.zeros((len(names), height, SCREEN_WIDTH), bool)
        for cls in table.classes:
            k = names.index(cls.name)
            region = _region_mask(cls, self.top, self.bottom)
            if cls.exclude:
                excluded_area[k] |= region
            for colour in cls.colours:
                if not 0 <= colour <= 255 or colour % 2:
                    raise ValueError(f"{table.game}: {colour} is not an (even) ALE palette index")
                key = (k, colour, -1 if cls.exclude else 1)
                terms[key] = terms[key] | region if key in terms else region
        for k in range(len(names)):
            const[k] = self._block_sums(excluded_area[k])
        entries: dict[tuple[int, bytes], int] = {}  # (colour, packed mask) → entry index
        masks: list[np.ndarray] = []
        weights: list[tuple[int, int, int]] = []  # (entry, class, sign)
        for (k, colour, sign), mask in terms.items():
            key = (colour, np.packbits(mask).tobytes())
            if key not in entries:
                entries[key] = len(entries)
                masks.append(np.where(mask, np.uint8(colour), np.uint8(NEVER)))
            weights.append((entries[key], k, sign))
        self.n_entries = len(entries)
        self._expected = np.stack(masks)[None]  # (1, E, H, 160) uint8
        self._matrix = np.zeros((self.n_entries, len(names)), np.int64)
        for entry, k, sign in weights:
            self._matrix[entry, k] += sign
        self._const = const

    @staticmethod
    def _block_sums(mask: np.ndarray) -> np.ndarray:
        rows = mask.shape[0] // GRID_ROWS
        return mask.reshape(GRID_ROWS, rows, GRID_COLS, BLOCK_WIDTH).sum(axis=(1, 3)).astype(np.int64)

    @property
    def n_classes(self) -> int:
        return self.table.n_classes

    @property
    def n_inputs(self) -> int:
        return self.n_classes * CELLS

    def counts(self, screens: np.ndarray) -> np.ndarray:
        """Pixels of each class per block, ``(B, K, 8, 10)`` int64."""
        if screens.shape[1:] != (SCREEN_HEIGHT, SCREEN_WIDTH) or screens.dtype != np.uint8:
            raise ValueError(
                f"expected palette screens (B, 210, 160) uint8, got {screens.shape}, {screens.dtype}"
            )
        batch = screens.shape[0]
        crop = screens[:, None, self.top : self.bottom]  # (B, 1, H, 160) view
        words = (crop == self._expected).view(np.uint64)  # (B, E, H, 20): 8 pixels a word, a byte each
        blocks = words.reshape(batch, self.n_entries, GRID_ROWS, self._block_height, SCREEN_WIDTH // 8)
        lanes = np.einsum("berhw->berw", blocks)  # sum the rows of each block (einsum: fast here)
        per_word = (lanes * _LANES) >> _TOP_BYTE  # sum of the 8 byte lanes of each word
        per_block = (per_word[..., 0::2] + per_word[..., 1::2]).view(np.int64)  # (B, E, 8, 10)
        return np.einsum("berc,ek->bkrc", per_block, self._matrix) + self._const

    def __call__(self, screens: np.ndarray) -> np.ndarray:
        counts = self.counts(screens)
        block_pixels = float(self._block_height * BLOCK_WIDTH)
        cells = counts > 0 if self.mode == "presence" else counts / block_pixels
        return cells.reshape(screens.shape[0], self.n_inputs).astype(np.float32)


@functools.cache
def substrate_for(game: Game, mode: Literal["presence", "fraction"] = "presence") -> Substrate:
    """The (cached) substrate of a game."""
    return Substrate(game_table(game), mode)
