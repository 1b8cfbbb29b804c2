"""``lifelong bench atari-transfer``: does reusing an earlier game's network help on a new one?

For each source → target pair and seed: a fresh library learns the source game from scratch;
then the target is learned three times at the same budget (same frames per generation):
``scratch`` (no sources), ``random_library`` (frozen random networks with the source's parameter
count, the paper's control) and ``transfer`` (the source's frozen network). GRUSM-ESP's transfer
effectiveness: TE = (Σ mean best-so-far at generations 1, 10, 50, 100, 200 − the same for scratch)
/ the score range — the generations scaled to this budget, and the range taken as the highest
minus the lowest score any run of that target reached (the paper does not give per-game ranges).
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from agents import Report, quiet
from agents.atari.budget import AtariBudget
from agents.workers import shared
from library_store import Library, TaskRecord
from lifelong.atari import AtariPlan
from lifelong.bench import BenchResult, Stage
from lifelong.device import resolve_device
from lifelong.runner import Run, learn_specs
from lifelong.tasks import parse_spec

PAIRS = (("Freeway", "SpaceInvaders"), ("Boxing", "Seaquest"), ("Pong", "Breakout"))
CONDITIONS = {
    "scratch": ("scratch", "none"),
    "random_library": ("random", "auto"),
    "transfer": ("transfer", "auto"),
}
PAPER_GENERATIONS = (1, 10, 50, 100, 200)


def checkpoints(generations: int) -> list[int]:
    """The paper's generations 1, 10, 50, 100, 200 of 200, scaled to ``generations`` (1-based)."""
    return sorted({max(1, round(g * generations / 200)) for g in PAPER_GENERATIONS})


def learn_game(library: Library, game: str, plan: AtariPlan, run: Run, name: str | None = None) -> TaskRecord:
    library.refresh()
    spec = parse_spec(f"atari:{game}")
    (record,) = learn_specs(
        library,
        [spec],
        plans={plan.family: plan},
        names=name and [name],
        seed=run.seed,
        device=str(run.device),
        report=run.report,
        workers=run.workers,
    )
    return record


def run_pair(
    source: str, target: str, budget: AtariBudget, run: Run, root: Path, stage: Stage
) -> dict[str, list[float]]:
    """Best-so-far curve of the target under each condition, for one seed."""
    curves = {}
    library = Library.create(root / f"{source}-{target}-{run.seed}")
    learn_game(library, source, AtariPlan(budget), run)
    stage.advance(1, f"seed {run.seed}: {source} learned")
    for condition, (mode, sources) in CONDITIONS.items():
        plan = AtariPlan(budget, condition=mode, sources=sources)
        record = learn_game(library, target, plan, run, name=f"{target}-{condition}")
        curves[condition] = record.curves["best_so_far"]
        stage.advance(1, f"seed {run.seed}: {target} {condition}")
    return curves


def bench_atari_transfer(
    pairs: list[tuple[str, str]], seeds: list[int], budget: AtariBudget, device: str, report: Report = quiet
) -> BenchResult:
    results: dict[str, dict[str, float]] = {}
    ratios: dict[str, float] = {}
    marks = checkpoints(budget.generations)
    stage = Stage(
        report, "bench atari-transfer (games learned)", len(pairs) * len(seeds) * (1 + len(CONDITIONS))
    )
    with tempfile.TemporaryDirectory(prefix="lifelong-atari-") as tmp:
        for source, target in pairs:
            runs = [
                run_pair(
                    source,
                    target,
                    budget,
                    Run(seed, resolve_device(device), report=report, workers=shared(None)),
                    Path(tmp),
                    stage,
                )
                for seed in seeds
            ]
            every = [v for run in runs for curve in run.values() for v in curve]
            score_range = (max(every) - min(every)) or 1.0

            for condition in CONDITIONS:
                finals = [run[condition][-1] for run in runs]
                row = {
                    "best_final_mean": statistics.mean(finals),
                    "best_final_sd": statistics.stdev(finals) if len(finals) > 1 else 0.0,
                }
                for g in marks:
                    row[f"best_at_generation_{g}"] = statistics.mean(
                        run[condition][min(g, len(run[condition])) - 1] for run in runs
                    )
                results[f"{condition}:{source}->{target}"] = row
            summed = {
                c: sum(results[f"{c}:{source}->{target}"][f"best_at_generation_{g}"] for g in marks)
                for c in CONDITIONS
            }
            for condition in ("transfer", "random_library"):
                te = (summed[condition] - summed["scratch"]) / score_range
                ratios[f"te_{condition}_{source}_to_{target}"] = te
    return results, ratios
