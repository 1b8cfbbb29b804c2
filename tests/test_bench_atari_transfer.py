"""`lifelong bench atari-transfer`: champions re-evaluated on fresh episodes, every condition and
the peer at one frame budget, a chain, confidence intervals and TE (real emulator, tiny budget)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run_cli

from agents.atari.budget import ATARI_PRESETS
from agents.atari.network import Network
from agents.atari.problem import SEED_STREAMS, stream_seed
from lifelong.bench import mean_ci
from lifelong.bench.atari_transfer import CONDITIONS, Protocol, Watch, frame_marks, parse_paths, summarize
from lifelong.errors import LifelongError

TINY = ("--generations", "2", "--evaluations", "4", "--trials", "1", "--max-frames", "200")


def test_the_confidence_interval_holds_the_mean_and_narrows_with_less_spread() -> None:
    mean, low, high = mean_ci([1.0, 2.0, 3.0, 4.0, 10.0])
    assert mean == 4.0 and 1.0 <= low < mean < high <= 10.0
    _, tight_low, tight_high = mean_ci([3.9, 4.0, 4.1, 4.0, 4.0])
    assert tight_high - tight_low < (high - low) / 10
    assert mean_ci([5.0]) == (5.0, 5.0, 5.0)
    assert mean_ci([1.0, 2.0, 3.0, 4.0, 10.0]) == (mean, low, high)  # a fixed resampling seed


def test_fresh_episodes_are_a_stream_of_their_own() -> None:
    seeds = {stream_seed(seed, stream) for seed in range(5) for stream in SEED_STREAMS}
    assert len(seeds) == 5 * len(SEED_STREAMS)


def test_the_watch_re_evaluates_a_changed_champion_every_k_generations_and_at_each_checkpoint() -> None:
    champions = [Network(3, np.zeros((1, 15)), np.zeros(10)) for _ in range(3)]
    scored: list[Network] = []

    def score(network: Network) -> float:
        scored.append(network)
        return float(champions.index(network))

    marks = frame_marks(1000)
    assert marks == [5, 50, 250, 500, 1000]
    watch = Watch(score, marks, every=3)
    # generation, frames spent, champion: it changes at generations 2 and 5
    for generation, champion in [(1, 0), (2, 1), (3, 1), (4, 1), (5, 2), (6, 2)]:
        watch(generation, 200 * generation, champions[champion])
    watch.finish()
    assert [g for g, _, _ in watch.curve] == [1, 2, 3, 5, 6]  # checkpoints at 1, 2, 3, 5; every 3rd: 3, 6
    assert watch.at_marks == [0.0, 0.0, 1.0, 1.0, 2.0]  # 5 and 50 by gen 1, 250 by 2, 500 by 3, 1000 by 5
    assert scored == champions  # each champion scored once, however often it was seen
    short = Watch(score, marks, every=10)
    short(1, 200, champions[0])
    short.finish()  # the run ended before the last checkpoints: they take its last champion's score
    assert short.at_marks == [0.0] * 5 and short.curve == [[1, 200, 0.0]]


@pytest.mark.parametrize(
    ("paths", "needle"),
    [("Freeway", "--pairs"), ("Freeway>freeway", "--pairs"), ("Freeway>Pongg", "Pong")],
)
def test_a_path_is_two_or_more_different_games(paths: str, needle: str) -> None:
    with pytest.raises(LifelongError, match=needle):
        parse_paths(paths)
    assert parse_paths("Freeway>SpaceInvaders>Seaquest,Boxing>Seaquest") == [
        ["Freeway", "SpaceInvaders", "Seaquest"],
        ["Boxing", "Seaquest"],
    ]


@pytest.mark.parametrize(
    ("options", "needle"), [({"peer": "pso"}, "--peer"), ({"episodes": 0}, "--episodes")]
)
def test_a_protocol_checks_itself(options: dict[str, object], needle: str) -> None:
    with pytest.raises(LifelongError, match=needle):
        Protocol(ATARI_PRESETS["quick"], **options)  # type: ignore[arg-type]


def test_bad_bench_input_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    results = tmp_path / "results"
    command = ("bench", "atari-transfer", "--pairs", "Freeway>Pongg", "--results-dir", str(results))
    assert_one_line_error(run_cli(*command, library=tmp_path / "unused"), "Pong")
    for option, needle in ((("--budget", "medium"), "choose mid"), (("--set", "screen=maybe"), "screen")):
        command = ("bench", "atari-transfer", *option, "--results-dir", str(results))
        assert_one_line_error(run_cli(*command, library=tmp_path / "unused"), needle)
    assert not results.exists()


@pytest.mark.slow
def test_a_chain_with_every_condition_and_the_peer_on_one_frame_budget(tmp_path: Path) -> None:
    result = run_cli(
        "--json",
        "bench",
        "atari-transfer",
        "--pairs",
        "Boxing>Pong>Freeway",
        *TINY,
        "--episodes",
        "3",
        "--seeds",
        "0,1",
        "--results-dir",
        str(tmp_path),
        library=tmp_path / "unused",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    bench = json.loads((tmp_path / "atari-transfer.json").read_text())
    assert bench["seeds"] == [0, 1] and "atari-transfer" in bench["command"]
    runs = bench["runs"]
    frames = runs["frames_per_run"]
    assert frames == 2 * 4 * 1 * 200 and runs["checkpoint_frames"][-1] == frames
    assert list(runs["hops"]) == ["Boxing>Pong", "Boxing>Pong>Freeway"]  # the second hop: a chain
    for hop, conditions in runs["hops"].items():
        assert list(conditions) == list(CONDITIONS)
        for condition, by_seed in conditions.items():
            assert list(by_seed) == ["0", "1"]
            for run in by_seed.values():
                assert len(run["scores"]) == 3 and run["score"] == pytest.approx(np.mean(run["scores"]))
                assert len(run["at_checkpoints"]) == 5
                curve_frames = [f for _, f, _ in run["curve"]]
                assert curve_frames == sorted(curve_frames) and curve_frames[-1] >= frames
                # one budget: the generations stop in the one that reaches it (4 episodes ≤ 800 frames)
                assert frames <= curve_frames[-1] < frames + 4 * 200
                assert run["frames"] >= curve_frames[-1]  # the agent's lesion comes on top
            row = bench["results"][f"{condition}:{hop}"]
            scores = [run["score"] for run in by_seed.values()]
            assert row["score_mean"] == pytest.approx(np.mean(scores))
            assert row["score_ci_low"] <= row["score_mean"] <= row["score_ci_high"]
            if condition != "scratch":
                assert f"te_{condition}:{hop}" in bench["ratios"]
            # the diagnosis: every agent run's network on fresh episodes; the sources' units too
            assert ("action_entropy" in row) == (condition != "peer")
            if condition in ("transfer", "random_library"):
                assert 0 <= row["action_entropy"] <= np.log2(18) + 1e-9
                assert 0 <= row["hidden_saturated"] <= 1 and 0 <= row["outputs_flips"] <= 1
                assert row["t_in_abs"] > 0 and 0 <= row["sources_removed_share"] <= 1
                for run in by_seed.values():
                    assert [g for g, *_ in run["transfer"]] == list(range(1, len(run["transfer"]) + 1))
            else:
                assert "hidden_saturated" not in row


def fake_result(seeds: list[int], budget: dict | None = None) -> dict:
    """A well-formed atari-transfer result of one hop over ``seeds`` (scores depend on the seed)."""
    marks = [900, 9000, 45000, 90000, 180000]

    def run(k: int, seed: int) -> dict:
        at = [10.0 * k + seed + m for m in range(len(marks))]
        return {"score": at[-1], "scores": [at[-1]] * 3, "generations": 10, "frames": 190000,
                "curve": [[10, 180000, at[-1]]], "at_checkpoints": at}  # fmt: skip

    hops = {"Freeway>Pong": {c: {str(s): run(k, s) for s in seeds} for k, c in enumerate(CONDITIONS)}}
    runs = {"hops": hops, "paths": ["Freeway>Pong"], "budget": budget or {"generations": 10},
            "frames_per_run": 180000, "checkpoint_frames": marks, "episodes": 3, "curve_every": 2,
            "peer": "snes", "reevaluation_frames": 1000}  # fmt: skip
    results, ratios = summarize(hops)
    return {"protocol": "atari-transfer", "seeds": seeds, "device": "cpu", "command": "lifelong bench",
            "results": results, "ratios": ratios, "runs": runs}  # fmt: skip


def test_results_over_disjoint_seeds_merge_into_one(tmp_path: Path) -> None:
    """`bench merge` of atari-transfer results run seed by seed gives the figures of one run with
    all the seeds; results of another budget, overlapping seeds or another benchmark are refused."""
    files = []
    for seeds in ([0, 1], [2]):
        files.append(tmp_path / f"seeds{seeds[0]}" / "atari-transfer-mid.json")
        files[-1].parent.mkdir()
        files[-1].write_text(json.dumps(fake_result(seeds)))
    result = run_cli("--json", "bench", "merge", *map(str, files), "--results-dir", str(tmp_path / "out"),
                     library=tmp_path / "unused")  # fmt: skip
    assert result.returncode == 0, result.stderr
    merged = json.loads((tmp_path / "out" / "atari-transfer-mid.json").read_text())
    whole = fake_result([0, 1, 2])
    assert merged["protocol"] == "atari-transfer" and merged["seeds"] == [0, 1, 2]
    assert merged["results"].keys() == whole["results"].keys()
    assert all(merged["results"][key] == pytest.approx(row) for key, row in whole["results"].items())
    assert merged["ratios"] == pytest.approx(whole["ratios"])
    assert merged["runs"]["reevaluation_frames"] == 2000 and len(merged["sources"]) == 2

    other = tmp_path / "other.json"
    other.write_text(json.dumps(fake_result([3], budget={"generations": 50})))
    refused = run_cli("bench", "merge", str(files[0]), str(other), "--results-dir", str(tmp_path / "o2"),
                      library=tmp_path / "unused")  # fmt: skip
    assert_one_line_error(refused, "differ in budget")
    again = run_cli("bench", "merge", str(files[0]), str(files[0]), "--results-dir", str(tmp_path / "o3"),
                    library=tmp_path / "unused")  # fmt: skip
    assert_one_line_error(again, "seed 0 is in both")
    streams = tmp_path / "streams.json"
    streams.write_text(json.dumps({"protocol": "streams"}))
    mixed = run_cli("bench", "merge", str(files[0]), str(streams), library=tmp_path / "unused")
    assert_one_line_error(mixed, "streams")
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()
