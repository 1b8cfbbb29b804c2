"""The Atari agent end to end on the real emulator, kept small (a few generations, short episodes)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error, fingerprint, run_cli

from agents import Progress, quiet
from agents.atari.agent import choose_sources, load_network
from agents.atari.budget import ATARI_PRESETS, AtariBudget
from agents.atari.games import resolve_game
from agents.workers import Workers, shared
from library_store import Library, TaskRecord
from lifelong.atari import evaluate_atari
from lifelong.errors import Interrupted, LifelongError
from lifelong.plans import AtariPlan
from lifelong.runner import learn_specs
from lifelong.tasks import parse_spec

SMALL = ATARI_PRESETS["quick"].override(
    generations=6, evaluations=12, trials=1, max_frames=1000, stagnation=3
)
TINY = SMALL.override(generations=2, evaluations=8, max_frames=600)
CPU = torch.device("cpu")


def learn_game(
    library: Library,
    game: str,
    budget: AtariBudget,
    *,
    seed: int = 0,
    progress: Progress = quiet,
    workers: Workers | None = None,
    **options: Any,
) -> TaskRecord:
    """Learn one game through the driver, as `lifelong learn atari:GAME` does (its episodes
    played by one worker per core unless ``workers`` says otherwise)."""
    plan = AtariPlan(budget, **options)
    (record,) = learn_specs(
        library,
        [parse_spec(f"atari:{game}")],
        plans={"atari": plan},
        seed=seed,
        device=CPU,
        progress=progress,
        workers=workers or shared(None),
    )
    return record


@pytest.fixture(scope="module")
def two_games(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Freeway learned from scratch, then Boxing recruiting Freeway's frozen network."""
    path = tmp_path_factory.mktemp("atari") / "library"
    library = Library.create(path)
    freeway = learn_game(library, "Freeway", SMALL)
    source_id = freeway.layers[0][0]
    before = library.module_tensors(source_id)
    boxing = learn_game(library, "Boxing", TINY)
    return path, {"boxing": boxing, "freeway": freeway, "source": source_id, "before": before}


@pytest.mark.slow
def test_scratch_game_improves_over_generation_one_and_commits_a_network(
    two_games: tuple[Path, dict],
) -> None:
    _, learned = two_games
    freeway = learned["freeway"]
    best = freeway.curves["best_so_far"]
    assert len(best) == SMALL.generations
    assert best[-1] > best[0]  # evolution found something better than generation 1's best
    assert freeway.metrics["phase"] == "grow"  # an empty library: nothing to self-organize
    assert freeway.details["self_organize_generations"] == 0
    assert freeway.layers == [[learned["source"]]]
    assert freeway.metrics["hidden_neurons"] >= 1


@pytest.mark.slow
def test_self_organization_evolves_transfer_weights_over_the_frozen_source(
    two_games: tuple[Path, dict],
) -> None:
    """Boxing first self-organizes over Freeway's network: transfer genomes only, no neurons of its
    own. With TINY's 2 generations and stagnation 3 growth never adapts, so the committed network is
    exactly what transfer evolution made: the recruited source (a network keeps at least one unit,
    so the lesion cannot drop its only one) reached through evolved transfer weights."""
    path, learned = two_games
    library = Library.open(path)
    boxing = learned["boxing"]
    share = round(TINY.generations * TINY.self_organize_share)
    assert boxing.details["self_organize_generations"] == share == 1
    assert len(boxing.curves["best_so_far"]) == TINY.generations
    assert boxing.curves["hidden_neurons"] == [0.0, 0.0]  # no own neurons, in either phase
    own, *sources = boxing.layers[0]
    assert sources == [learned["source"]] and own != learned["source"]
    assert boxing.metrics["sources_used"] == 1 and boxing.metrics["hidden_neurons"] == 0
    assert boxing.details["removed_sources"] == 0 and boxing.details["removed_neurons"] == 0
    uses = library.task_arrays("atari:Boxing").uses[0]
    assert len(uses) == 2 and uses[0] == {}  # the task's own module has no per-task arrays
    transfer = uses[1]
    source_hidden = library.module(learned["source"]).config["hidden"]
    assert transfer["transfer_in"].shape == (source_hidden, boxing.details["n_inputs"])  # inputs → source
    assert transfer["transfer_out"].shape == (10, 10)  # source outputs → target outputs
    for weights in transfer.values():  # evolved genes, not the zeros of an unused recruit
        assert weights.dtype == np.float32 and np.isfinite(weights).all() and (weights != 0).mean() > 0.99
    after = library.module_tensors(learned["source"])
    assert after.keys() == learned["before"].keys()
    assert all(after[k].tobytes() == learned["before"][k].tobytes() for k in after)  # bit-identical
    assert library.module(learned["source"]).frozen
    assert library.check() == []


@pytest.mark.slow
def test_eval_reproduces_the_committed_network(two_games: tuple[Path, dict]) -> None:
    path, learned = two_games
    library = Library.open(path)
    for name in ("atari:Freeway", "atari:Boxing"):
        report = evaluate_atari(library, name, episodes=SMALL.eval_episodes)
        assert report["probe_outputs_identical"] is True
        assert report["score_mean"] == pytest.approx(
            learned[name.split(":")[1].lower()].metrics["eval_score_mean"]
        )
    shared_out = run_cli("--json", "eval", "atari:Boxing", "--episodes", "4", "--workers", "2", library=path)
    assert shared_out.returncode == 0, shared_out.stderr
    assert (
        json.loads(shared_out.stdout)["scores"]
        == evaluate_atari(library, "atari:Boxing", episodes=4)["scores"]
    )


@pytest.mark.slow
def test_modules_of_a_game_name_its_sources(two_games: tuple[Path, dict]) -> None:
    path, _ = two_games
    rows = json.loads(run_cli("--json", "modules", "--task", "atari:Boxing", library=path).stdout)
    assert rows[0]["kind"] == "esp_network" and rows[0]["created_by"] == "atari:Boxing"
    assert "hidden" in rows[0]["config"]
    for row in rows[1:]:
        assert row["created_by"] == "atari:Freeway"
        assert set(row["task_params"]) == {"transfer_in", "transfer_out"}


@pytest.mark.slow
def test_a_game_recruits_a_network_that_used_sources(two_games: tuple[Path, dict], tmp_path: Path) -> None:
    """Pong recruits Boxing's network, which recruited Freeway's: it arrives whole (its hidden
    layer is its own neurons then Freeway's, which Pong's transfer drives; Freeway's outputs reach
    Boxing's through Boxing's frozen transfer_out), is stored by reference and rebuilt whole; its
    random control has its shapes and is stored whole with the task."""
    path, learned = two_games
    shutil.copytree(path, tmp_path / "library")
    library = Library.open(tmp_path / "library")
    boxing_id = learned["boxing"].layers[0][0]
    assert set(choose_sources(library, "auto", resolve_game("Pong"))) == {boxing_id, learned["source"]}
    pong = learn_game(library, "Pong", TINY, sources="atari:Boxing")
    assert pong.layers[0][1:] == [boxing_id]
    network, _ = load_network(library, "atari:Pong")
    boxing, _ = load_network(library, "atari:Boxing")
    freeway, _ = load_network(library, "atari:Freeway")
    (source,) = network.sources
    (inner,) = source.inner
    assert source.name == boxing_id and inner.name == learned["source"]
    assert source.n_own == boxing.n_hidden == 0 and source.n_hidden == freeway.n_hidden
    np.testing.assert_array_equal(inner.w_out, freeway.to_arrays()["w_out"])
    np.testing.assert_array_equal(source.inner_out[0], boxing.to_arrays()["transfer_out_0"])
    # what --transfer-init inherit reads: each game's input classes, how Boxing drove Freeway's units
    assert (source.classes, inner.classes) == (("player", "opponent"), ("player", "cars"))
    np.testing.assert_array_equal(source.inner_in[0], boxing.to_arrays()["transfer_in_0"])
    transfer = library.task_arrays("atari:Pong").uses[0][1]
    assert transfer["transfer_in"].shape == (source.n_hidden, pong.details["n_inputs"])
    report = evaluate_atari(library, "atari:Pong", episodes=TINY.eval_episodes)
    assert report["probe_outputs_identical"] is True
    assert report["score_mean"] == pytest.approx(pong.metrics["eval_score_mean"])

    plan = AtariPlan(TINY, condition="random", sources="atari:Boxing")
    spec = [parse_spec("atari:Pong")]
    learn_specs(library, spec, plans={"atari": plan}, names=["pong-random"], seed=0, device=CPU)
    random_network, _ = load_network(library, "pong-random")
    (control,) = random_network.sources
    assert control.n_params == source.n_params and control.n_hidden == source.n_hidden
    assert len(control.inner) == 1 and not np.array_equal(control.inner_out[0], source.inner_out[0])
    assert evaluate_atari(library, "pong-random", episodes=1)["probe_outputs_identical"] is True

    inherit = AtariPlan(TINY.override(transfer_init="inherit"), sources="atari:Boxing")
    learn_specs(library, spec, plans={"atari": inherit}, names=["pong-inherit"], seed=0, device=CPU)
    assert library.task("pong-inherit").details["budget"]["transfer_init"] == "inherit"
    assert evaluate_atari(library, "pong-inherit", episodes=1)["probe_outputs_identical"] is True
    assert library.check() == []


@pytest.mark.slow
def test_a_frame_budget_stops_learning_and_the_watcher_sees_each_champion(tmp_path: Path) -> None:
    """Freeway's episodes all run to the frame cap (600 frames): 8 of them make 4,800 frames a
    generation, so a 10,000-frame budget stops after generation 3 of 50."""
    seen: list[tuple[int, int, int]] = []
    budget = TINY.override(generations=50, frames=10_000)
    watch = lambda generation, frames, champion: seen.append((generation, frames, champion.n_in))  # noqa: E731
    record = learn_game(Library.create(tmp_path / "library"), "Freeway", budget, on_generation=watch)
    assert [(g, f) for g, f, _ in seen] == [(1, 4_800), (2, 9_600), (3, 14_400)]
    assert {n_in for _, _, n_in in seen} == {record.details["n_inputs"]}
    assert len(record.curves["best_so_far"]) == 3


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("learn", "atari:Pongg"), "Pong"),
        (("learn", "atari:Boxing", "--generations", "-1"), "--generations"),
        (("learn", "atari:Boxing", "--max-frames", "0"), "--max-frames"),
        (("learn", "atari:Boxing", "--frames", "-1"), "--frames"),
        (("learn", "atari:Boxing", "--condition", "sideways"), "--condition"),
        (("learn", "atari:Boxing", "--transfer-init", "sideways"), "--transfer-init"),
        (("learn", "mnist:0v1", "--transfer-init", "inherit"), "--transfer-init"),
        (("learn", "atari:Boxing", "--lesion-trials", "-1"), "--lesion-trials"),
        (("learn", "mnist:0v1", "--screen"), "--screen"),
        (("learn", "atari:Boxing", "--sources", "atari:Nope"), "--sources"),
        (("eval", "atari:Nope"), "no task"),
    ],
)
def test_bad_atari_input_is_one_line_and_changes_nothing(
    tmp_path: Path, args: tuple[str, ...], needle: str
) -> None:
    path = tmp_path / "library"
    Library.create(path)
    before = fingerprint(path)
    assert_one_line_error(run_cli(*args, library=path), needle)
    assert fingerprint(path) == before


@pytest.mark.slow
def test_resume_continues_an_interrupted_run_exactly(tmp_path: Path) -> None:
    budget = TINY.override(generations=3, evaluations=6, max_frames=400)
    whole = learn_game(Library.create(tmp_path / "a"), "Freeway", budget, seed=5)

    library = Library.create(tmp_path / "b")

    def interrupt_after_two(event: str, **info: object) -> None:
        if event == "generation" and info["step"] == 2:
            raise KeyboardInterrupt  # Ctrl-C after generation 2 was checkpointed

    with pytest.raises(Interrupted):
        learn_game(library, "Freeway", budget, seed=5, checkpoint_every=1, progress=interrupt_after_two)
    assert library.tasks() == []  # nothing was committed
    assert list((tmp_path / "b" / "checkpoints").glob("*.pt"))
    resumed = learn_game(library, "Freeway", budget, seed=5, resume=True)
    assert resumed.curves["best_so_far"] == whole.curves["best_so_far"]
    assert resumed.curves["mean_score"] == whole.curves["mean_score"]
    assert not list((tmp_path / "b" / "checkpoints").glob("*.pt"))  # cleaned up after the commit
    with pytest.raises(LifelongError, match="no checkpoint"):
        learn_game(library, "Boxing", budget, seed=5, resume=True)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_play_records_a_video(two_games: tuple[Path, dict], tmp_path: Path, suffix: str) -> None:
    path, _ = two_games
    video = tmp_path / f"freeway{suffix}"
    result = run_cli(
        "--json", "play", "atari:Freeway", "--video", str(video), "--max-frames", "200", library=path
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["frames"] == 200
    if suffix == ".mp4":
        import av

        with av.open(str(video)) as container:
            assert sum(1 for _ in container.decode(video=0)) == 51  # the first screen + 50 steps
    else:
        from PIL import Image

        assert Image.open(video).n_frames == 51
