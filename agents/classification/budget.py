"""How much compute a classification task may use (presets; every number can be overridden), and
what a prune may change. Light (no torch): the command line reads these fields as it starts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from agents import at_least, knob, override
from agents.classification.fitness import CRITERIA
from agents.errors import BudgetError

DEFAULT_TARGET = 0.97  # validation accuracy that counts as solved
ROUNDINGS = ("stochastic", "floor")
RECALL_SCORES = ("ridge", "knn")  # see agents.classification.recall
AT_LEAST_ONE = (
    "so_steps", "batch_size", "eval_every", "patience", "generations", "candidate_steps", "final_steps",
    "elite", "max_modules",
)  # fmt: skip


@dataclass(frozen=True)
class TrainConfig:
    """One training phase: at most ``steps`` Adam steps, validated every ``eval_every``."""

    steps: int
    batch_size: int
    lr: float
    eval_every: int
    target: float  # stop once validation reaches this and stops improving
    patience: int  # evaluations without improvement before stopping (once at target)


@dataclass(frozen=True)
class Budget:
    """Training and evolution budget of one task (steps are minibatch SGD steps). Fields made with
    :func:`~agents.knob` are ``learn``'s flags."""

    so_steps: int = knob("Self-organization: most steps training α, β and the head.")
    batch_size: int = knob("Examples per training step.")
    lr: float = knob("Adam learning rate.")
    eval_every: int = knob("Steps between validation points of the learning curve.")
    patience: int = knob("Evaluations without improvement before stopping, once at the target.")
    population: int = knob("Growth: genomes per generation (SMART: 6).")
    generations: int = knob("Growth: generations (SMART: 6).")
    candidate_steps: int = knob("Growth: steps each candidate trains before its fitness is read.")
    final_steps: int = knob("Growth: most steps the winner trains on (SMART: 15,000).")
    settle_steps: int = knob("Growth: steps re-fitting α, β and the head once the winner is frozen.")
    mutation_rate: float = knob("Growth: probability that a gene mutates (SMART).", 0.2)
    elite: int = knob("Growth: best genomes kept each generation (< population).", 2)
    fitness: str = knob("Growth: a candidate's fitness: acc+slope, max, mean, slope or fit.", "acc+slope")
    crossover: bool = knob("Growth: children also cross two parents.", False)
    # SMART's scalar rule v' = int(0.8 v + 0.2 u) truncates, so a count of 0 or 1 can never grow;
    # "stochastic" rounds up with probability equal to the fraction (same mean as the paper's rule).
    rounding: str = knob("Growth: scalar genes round stochastic or floor (SMART).", "stochastic")
    probe_size: int = 32  # stored validation inputs to verify a task never changes
    # New modules are kept only if they beat self-organization on validation by this much
    # (MNTDP, Mendez & Eaton: a new module must earn a clear validation gain); else the task
    # is solved by the library alone and nothing is added to it. Evolution asks the same of extra
    # compute: a costlier candidate must beat a cheaper one by this much (its parsimony tolerance).
    growth_margin: float = knob(
        "Growth: validation gain over self-organization that new modules must buy.", 0.005
    )
    # A library layer holding more modules than this is cut to its most relevant ones before
    # self-organization (a short scout run; the modules whose removal costs most validation loss),
    # so a task's cost stops growing with it.
    max_modules: int = knob("Self-organization: most modules per layer (the most relevant kept).", 4)
    # Self-organization starts from the stored task whose path (modules and α/β) best suits the
    # new task, when one beats a fresh mix (MNTDP's nearest past task; see recall.py).
    recall: bool = knob("Self-organization may start from the best-suited stored task.", True)
    recall_score: str = knob(
        "How recall scores a stored path: ridge (a ridge readout) or knn (MNTDP's prior).", "knn"
    )
    # True: growth also trains MNTDP's prefix-reuse candidates around the best-scored stored path
    # (see prefix.py); the best of them and evolution's winner go on to the margin test.
    prefix_reuse: bool = knob(
        "Growth also tries MNTDP's candidates: the recalled path's first layers, fresh ones above.", True
    )
    grow: bool = knob("--no-grow: solve from the library alone (self-organization).", True)
    # True: a task that meets a library counts as solved only once its validation accuracy leaves
    # less than growth_margin to win (1 - margin), so self-organization trains its whole budget and
    # growth runs unless it could not possibly pay. A first task (empty library: nothing to compete
    # with) searches as without it. False: the target decides.
    compete: bool = knob(
        "Growth competes with self-organization whatever --target: a task is solved only once "
        "growth could not win its --growth-margin (validation ≥ 1 − margin); --target labels the outcome.",
        False,
    )

    def __post_init__(self) -> None:
        at_least(self, settle_steps=0, population=2, **dict.fromkeys(AT_LEAST_ONE, 1))  # 2: elite + child
        at_least(self, flags=False, probe_size=1)
        if self.elite >= self.population:
            raise BudgetError(f"--elite ({self.elite}) must be smaller than --population ({self.population})")
        if self.fitness not in CRITERIA:
            raise BudgetError(f"unknown --fitness {self.fitness!r} (choose {', '.join(CRITERIA)})")
        if not 0 <= self.mutation_rate <= 1:
            raise BudgetError("--mutation-rate must lie in [0, 1]")
        if self.recall_score not in RECALL_SCORES:
            raise BudgetError(
                f"--recall-score must be {' or '.join(RECALL_SCORES)}, not {self.recall_score!r}"
            )
        if self.rounding not in ROUNDINGS:
            raise BudgetError(f"--rounding must be {' or '.join(ROUNDINGS)}, not {self.rounding!r}")
        if not 0 <= self.growth_margin <= 1:
            raise BudgetError("--growth-margin must lie in [0, 1] (validation accuracy)")
        if not 0 < self.lr < math.inf:  # also refuses nan
            raise BudgetError(f"--lr must be a positive finite number, not {self.lr:g}")

    def solved(self, target: float) -> float:
        """The validation accuracy at which a task needs nothing more: ``target``, or under
        ``compete`` the accuracy growth could no longer beat by its margin."""
        return max(target, 1 - self.growth_margin) if self.compete else target

    def train_config(self, steps: int, target: float) -> TrainConfig:
        """How one training phase of ``steps`` runs under this budget, stopping at ``target``."""
        return TrainConfig(steps, self.batch_size, self.lr, self.eval_every, target, self.patience)

    def override(self, **values: Any) -> Budget:
        """A copy with the given (non-None) fields replaced."""
        return override(self, **values)


MEASURES = ("l2", "js")


@dataclass(frozen=True)
class PruneSettings:
    """What a prune may change. Accuracies in points (0–100)."""

    tolerance: float = knob("Points of val or test accuracy a changed task may lose.", 0.5)
    similarity: float = knob("Merge modules at least this alike: 1 − ‖a−b‖/(‖a‖+‖b‖).", 0.95)
    share: float = knob("Soft pruning: a module below this |α·β| share of its layer leaves a task.", 0.05)
    refit_steps: int = knob("Steps re-fitting a changed task's α/β and readout (0: none).", 200)
    measure: str = knob(
        "What alike means: l2 (outputs' normalised L2) or js (|γ|-weighted JS divergence of BN outputs).",
        "l2",
    )

    def __post_init__(self) -> None:
        if not 0 <= self.tolerance <= 100:
            raise ValueError(f"--tolerance must lie in [0, 100] points, got {self.tolerance:g}")
        if not 0 <= self.similarity <= 1:
            raise ValueError(f"--similarity must lie in [0, 1], got {self.similarity:g}")
        if not 0 <= self.share < 1:
            raise ValueError(f"--share must lie in [0, 1), got {self.share:g}")
        if self.measure not in MEASURES:
            raise ValueError(f"--measure must be one of {', '.join(MEASURES)}, not {self.measure!r}")
        if self.refit_steps < 0:
            raise ValueError(f"--refit-steps must be at least 0, got {self.refit_steps}")


# fmt: off
PRESETS: dict[str, Budget] = {
    # CPU minutes: a first task grows in about a minute, later ones self-organize in seconds.
    "quick": Budget(
        so_steps=600, batch_size=64, lr=5e-3, eval_every=50, patience=3,
        population=4, generations=2, candidate_steps=150, final_steps=1500, settle_steps=200,
    ),
    "standard": Budget(
        so_steps=1500, batch_size=128, lr=3e-3, eval_every=100, patience=4,
        population=6, generations=6, candidate_steps=300, final_steps=4000, settle_steps=300,
    ),
    # SMART's published protocol: 6×6 candidates × 1000 steps of batch 256, 15,000 final steps.
    "paper": Budget(
        so_steps=3000, batch_size=256, lr=1e-3, eval_every=100, patience=10,
        population=6, generations=6, candidate_steps=1000, final_steps=15000, settle_steps=500,
    ),
}
# fmt: on
