"""How much emulation an Atari task may use. Presets; every number can be overridden."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agents import at_least, knob, override
from agents.errors import BudgetError

# How a recruited source's transfer genomes start (GRUSM; each is described in agents.atari.grusm).
TRANSFER_INITS = ("random", "silent", "inherit", "inherit-in")
CONDITIONS = ("transfer", "scratch", "random")  # what an Atari task recruits: learned, no or random sources
MEMBERS = 20  # ESP's members per subpopulation (Gomez's M); ESPConfig's default
STAGNATION = 20  # ESP's generations without a new best before a burst (the paper's b); ESPConfig's default


@dataclass(frozen=True)
class AtariBudget:
    """Neuroevolution budget of one game (one evaluation = one network played ``trials`` times).
    Fields made with :func:`~agents.knob` are ``learn``'s flags."""

    generations: int = knob("Generations in all: self-organization, then growth.")
    evaluations: int = knob("Networks assembled and played per generation (paper: 100).")
    trials: int = knob("Episodes per evaluation; its fitness is their mean raw score (paper: 5).")
    max_frames: int = knob("Emulator frames per episode (4 per agent step).")
    frames: int = knob(
        "Emulator frames to learn with: stop at the generation reaching them (0: every generation's "
        "episodes at the frame cap).",
        0,
    )
    self_organize_share: float = 0.5  # of the generations (and of the frames), for transfer-only evolution
    hidden: int = 8  # own neurons a game without sources starts with (the paper gives none; growth adapts it)
    members: int = MEMBERS  # members per subpopulation
    stagnation: int = STAGNATION  # generations without a new best before a burst
    eval_episodes: int = 5  # episodes to score the committed network
    probe_steps: int = 64  # stored observations (and outputs) to verify the network later
    transfer_init: str = knob(
        "Where a recruited source's transfer weights start: random (the paper), silent (its readout "
        "near zero), inherit (its own wiring read onto this game's inputs) or inherit-in (that wiring "
        "kept in every member, only the readout evolved).",
        "random",
    )
    screen: bool = knob("Recruit only sources whose probe generation beats a random twin's.", False)
    lesion_trials: int = knob("Episodes each lesioned network is scored on (0: --trials).", 0)

    def __post_init__(self) -> None:
        at_least(self, generations=1, evaluations=1, trials=1, max_frames=1, frames=0)
        at_least(self, flags=False, members=1, stagnation=1, eval_episodes=1, probe_steps=1, hidden=0)
        at_least(self, lesion_trials=0)
        if not 0 <= self.self_organize_share <= 1:
            share = self.self_organize_share
            raise BudgetError(f"budget field self_organize_share must lie in [0, 1], not {share:g}")
        if self.transfer_init not in TRANSFER_INITS:
            choices = ", ".join(TRANSFER_INITS)
            raise BudgetError(f"--transfer-init must be one of {choices}, not {self.transfer_init!r}")

    def override(self, **values: Any) -> AtariBudget:
        """A copy with the given (non-None) fields replaced."""
        return override(self, **values)


# fmt: off
ATARI_PRESETS: dict[str, AtariBudget] = {
    # a first try: a few thousand short episodes
    "quick": AtariBudget(generations=10, evaluations=16, trials=1, max_frames=2000, stagnation=3,
                         eval_episodes=3),
    "standard": AtariBudget(generations=50, evaluations=50, trials=3, max_frames=10000, stagnation=10),
    # GRUSM-ESP's protocol: 200 generations × 100 evaluations × 5 trials
    "paper": AtariBudget(generations=200, evaluations=100, trials=5, max_frames=18000, stagnation=20),
}
# fmt: on
