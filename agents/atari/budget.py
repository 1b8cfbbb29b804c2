"""How much emulation an Atari task may use. Presets; every number can be overridden."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agents import at_least, override
from agents.atari.esp import ESPConfig
from agents.atari.grusm import TRANSFER_INITS
from agents.errors import BudgetError


@dataclass(frozen=True)
class AtariBudget:
    """Neuroevolution budget of one game (one evaluation = one network played ``trials`` times)."""

    generations: int  # in all: self-organization, then growth
    evaluations: int  # networks assembled and played per generation (paper: 100)
    trials: int  # episodes per evaluation; its fitness is their mean raw score (paper: 5)
    max_frames: int  # emulator frames per episode (4 per agent step)
    frames: int = 0  # emulator frames to learn with in all: stop at the generation reaching them (0: none)
    self_organize_share: float = 0.5  # of the generations (and of the frames), for transfer-only evolution
    hidden: int = 8  # own neurons a game without sources starts with (the paper gives none; growth adapts it)
    members: int = ESPConfig.members  # members per subpopulation
    stagnation: int = ESPConfig.stagnation  # generations without a new best before a burst
    eval_episodes: int = 5  # episodes to score the committed network
    probe_steps: int = 64  # stored observations (and outputs) to verify the network later
    transfer_init: str = "random"  # where a recruited source's transfer genomes start (TRANSFER_INITS)
    screen: bool = False  # recruit only sources whose probe generation beats their random twin's
    lesion_trials: int = 0  # episodes each lesioned network is scored on (0: the budget's trials)

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
