"""Atari games on the real ALE: game names and ROMs, the emulator, and the joystick action mapping.

**Games.** :func:`resolve_game` turns what a user types (``Pong``, ``space_invaders``,
``SpaceInvaders``, ``ALE/Breakout-v5``) into a :class:`Game`, the ROM id ale-py knows
(``space_invaders``), and fails with one line of close names (or a missing-ROM message)
otherwise. It runs once, where a name is parsed (a task spec, a ``--game`` option, a game stored
in the library); everything below takes the :class:`Game`. :func:`new_emulator` loads a game's
ROM into an ALE emulator with the fixed settings every episode runs under.

**Actions.** The network has :data:`N_OUTPUTS` outputs: a 3×3 joystick substrate, row-major
(up-left, up, up-right, left, centre, right, down-left, down, down-right), and a fire node. The
action is the argmax joystick cell, with fire when the fire node is > 0, as one of ALE's 18
full-set actions (:func:`actions_from_outputs`).

What the network sees of the screen (object substrates) is :mod:`agents.atari.substrate`.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

SCREEN_HEIGHT = 210
SCREEN_WIDTH = 160
FRAMESKIP = 4
"""Emulator frames per agent step (``ALE/<Game>-v5``)."""

JOYSTICK = ("UPLEFT", "UP", "UPRIGHT", "LEFT", "NOOP", "RIGHT", "DOWNLEFT", "DOWN", "DOWNRIGHT")
"""The 3×3 joystick substrate, row-major; the centre is no direction."""
N_OUTPUTS = len(JOYSTICK) + 1
"""Outputs of every network, source or target: the 3×3 joystick substrate + one fire node (10).
The same for every game, so that any source's outputs can feed any target's outputs through a
10×10 ``T_out`` (:mod:`agents.atari.grusm`)."""
FIRE_NODE = len(JOYSTICK)
"""Index of the fire node among the outputs (after the joystick cells)."""
N_ACTIONS = 2 * len(JOYSTICK)
"""ALE's full action set (18): every joystick cell, without and with fire."""


class GameError(ValueError):
    """An Atari game that cannot be played: unknown name, or its ROM is missing or corrupt."""


# --------------------------------------------------------------------------------------------
# Game names and ROMs


def _rom_dir() -> Path:
    """Where ale-py looks for ROMs: ``$ALE_ROMS_DIR``, else the ROMs shipped inside the wheel."""
    from ale_py import roms

    env = os.environ.get("ALE_ROMS_DIR")
    return Path(env) if env else Path(roms.__file__).parent


@functools.cache
def _known_roms() -> tuple[str, ...]:
    from ale_py import roms

    return tuple(sorted(roms.get_all_rom_ids()))


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass(frozen=True)
class Game:
    """An Atari game, resolved: ``rom`` is the ROM id ale-py knows (``"space_invaders"``), what
    the library stores and results print. Made by :func:`resolve_game` only."""

    rom: str

    def __str__(self) -> str:
        return self.rom


def resolve_game(name: str) -> Game:
    """The game ``name`` means (``"SpaceInvaders"``, ``"space invaders"``,
    ``"ALE/SpaceInvaders-v5"`` → ``Game("space_invaders")``).

    Raises :class:`GameError` with one line listing close names for an unknown game, and for a
    known game whose ROM file is missing (checked here, so a CLI fails before doing any work).
    """
    raw = name.strip()
    raw = re.sub(r"^ALE/", "", raw, flags=re.IGNORECASE)
    raw = re.sub(r"-v\d+$", "", raw)
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", raw)  # CamelCase → camel_case
    by_key = {_squash(rom): rom for rom in _known_roms()}
    rom = by_key.get(_squash(snake))
    if rom is None:
        close = difflib.get_close_matches(snake.lower().replace(" ", "_"), _known_roms(), n=4, cutoff=0.6)
        close += difflib.get_close_matches(_squash(snake), by_key, n=4, cutoff=0.6)
        names = list(dict.fromkeys(by_key.get(c, c) for c in close))[:4]
        hint = f"close names: {', '.join(names)}" if names else f"{len(by_key)} games are known"
        raise GameError(f"unknown Atari game {name!r}; {hint}")
    path = _rom_dir() / f"{rom}.bin"
    if not path.is_file():
        raise GameError(
            f"the ROM of Atari game {rom!r} is missing ({path}); reinstall ale-py or fix ALE_ROMS_DIR"
        )
    return Game(rom)


@functools.cache
def rom_path(game: Game) -> Path:
    """The checked (md5) ROM file of ``game``; :class:`GameError` if it is missing or corrupt."""
    import warnings

    from ale_py import roms

    rom = game.rom
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = roms.get_rom_path(rom)
    except OSError as exc:  # missing file, or md5 mismatch
        raise GameError(f"the ROM of Atari game {rom!r} cannot be used: {exc}".replace("\n", " ")) from exc
    if path is None:
        raise GameError(f"unknown Atari game {rom!r}; use resolve_game() first")
    return Path(path)


def new_emulator(game: Game):  # -> ale_py.ALEInterface (ale-py is imported lazily)
    """A fresh ALE emulator with ``game``'s ROM loaded (loading a ROM is slow: reuse emulators).

    Its settings are fixed so that any emulator can run any episode: no sticky actions and frame
    skip 1 inside ALE. :mod:`agents.atari.evaluate` repeats each action for 4 frames and applies
    sticky actions itself, per frame, exactly as ALE does, but from a per-episode seeded
    generator: ALE's own generator belongs to the emulator and can only be re-seeded by reloading
    the ROM, so episodes would depend on which emulator ran them and what it ran before. ALE is
    deterministic given the actions (its generator only drives sticky actions). ALE's internal
    frame skip is hardly faster than four one-frame ``act()`` calls (``benchmarks/README.md``).
    """
    from ale_py import ALEInterface, LoggerMode

    ALEInterface.setLoggerMode(LoggerMode.Error)
    ale = ALEInterface()
    ale.setInt("random_seed", 0)
    ale.setFloat("repeat_action_probability", 0.0)
    ale.setInt("frame_skip", 1)
    try:
        ale.loadROM(str(rom_path(game)))
    except RuntimeError as exc:
        raise GameError(f"ALE cannot load the ROM of {game.rom!r}: {exc}") from exc
    return ale


# --------------------------------------------------------------------------------------------
# Actions


def _action_table() -> torch.Tensor:
    """``(2, 9)`` ALE action ids: row 0 without fire, row 1 with fire, columns = :data:`JOYSTICK`."""
    from ale_py import Action

    names = [[j for j in JOYSTICK], [("FIRE" if j == "NOOP" else j + "FIRE") for j in JOYSTICK]]
    return torch.tensor([[Action.__members__[n].value for n in row] for row in names], dtype=torch.int64)


ACTION_TABLE = _action_table()
"""ALE action id by ``[fire, joystick cell]``: all 18 actions of the full action set."""
_ACTION_ARRAY = ACTION_TABLE.numpy()


def actions_from_outputs(outputs: torch.Tensor) -> np.ndarray:
    """ALE action ids ``(B,)`` int64 for network outputs ``(B, 10)``: argmax of the 9 joystick
    nodes (ties go to the first), with fire when node 9 is > 0. On the CPU this runs in numpy,
    cheaper than the same torch ops (paid every lock-step)."""
    if outputs.ndim != 2 or outputs.shape[1] != N_OUTPUTS:
        raise ValueError(f"expected outputs (B, {N_OUTPUTS}), got {tuple(outputs.shape)}")
    outputs = outputs.detach()
    if outputs.device.type != "cpu":
        joystick = outputs[:, :FIRE_NODE].argmax(dim=1)
        fire = (outputs[:, FIRE_NODE] > 0).long()
        return ACTION_TABLE.to(outputs.device)[fire, joystick].cpu().numpy()
    values = outputs.numpy() if outputs.dtype in (torch.float32, torch.float64) else outputs.float().numpy()
    fire = (values[:, FIRE_NODE] > 0).astype(np.intp)
    return _ACTION_ARRAY[fire, values[:, :FIRE_NODE].argmax(axis=1)]


def action_names(actions: Sequence[int] | np.ndarray) -> list[str]:
    """ALE action names of action ids (for reports and tests)."""
    from ale_py import Action

    return [Action(int(a)).name for a in actions]
