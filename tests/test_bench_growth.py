"""`lifelong bench growth` end to end on real MNIST at a tiny budget: both libraries learn the
stream task by task, the pruned one differs only where a prune committed, and the result reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import TINY_BUDGET, assert_one_line_error, run_cli

from agents.classification.budget import PruneSettings
from lifelong import bench
from lifelong.bench import growth
from lifelong.report import load_result

pytestmark = pytest.mark.slow


def test_both_libraries_learn_the_stream_and_differ_only_where_a_prune_committed(
    data_dir: Path, tmp_path: Path
) -> None:
    stream = ["mnist:0v1@20pc", "mnist:2v3@20pc", "mnist:4v5@20pc"]  # instead of the quick stream
    settings = PruneSettings(similarity=0.0, share=0.4, refit_steps=5)  # prunes whatever it may

    def body(progress):
        return growth.bench_growth(
            [0], TINY_BUDGET, settings, data_dir, quick=True, workers=0, progress=progress, stream=stream
        )

    result, path = bench.run("growth", body, seeds=[0], device="cpu", out_dir=tmp_path)
    assert load_result(path)["protocol"] == "growth"
    runs = result["runs"]["conditions"]
    plain, pruned = runs["no_prune"]["0"], runs["prune_auto"]["0"]
    assert [a["task"] for a in plain["after"]] == result["runs"]["stream"] == stream
    assert all(a["prunes"] == 0 for a in plain["after"])
    params = [a["library_params"] for a in plain["after"]]
    assert params == sorted(params) and params[0] > 0, "without pruning the library only grows"
    assert all(0 < acc <= 1 for acc in plain["test_acc"] + pruned["test_acc"])
    first_prune = next((i for i, a in enumerate(pruned["after"]) if a["prunes"]), len(pruned["after"]))
    assert all(a["open_list_s"] > 0 for a in plain["after"] + pruned["after"])
    assert result["results"]["no_prune"]["library_cost_growth"] is None, "3 tasks: no task 10 to compare"
    strip = lambda a: {k: v for k, v in a.items() if k not in ("seconds", "open_list_s")}  # noqa: E731
    assert [strip(a) for a in pruned["after"][:first_prune]] == [
        strip(a) for a in plain["after"][:first_prune]
    ]
    if first_prune < len(pruned["after"]):
        assert pruned["after"][first_prune]["library_params"] <= plain["after"][first_prune]["library_params"]
    assert set(result["ratios"]) >= {"param_reduction", "acc_loss_points"}
    assert json.loads(path.read_text())["runs"]["prune"]["share"] == 0.4


def test_a_bad_stream_is_one_line_before_any_work(tmp_path: Path) -> None:
    done = run_cli(
        "bench",
        "growth",
        "--stream",
        "mnist:0v1 nope:1",
        "--results-dir",
        str(tmp_path),
        library=tmp_path / "x",
    )
    assert_one_line_error(done, "nope")
    assert list(tmp_path.iterdir()) == []


def test_the_library_cost_growth_compares_the_last_five_tasks_with_tasks_six_to_ten() -> None:
    after = [{"open_list_s": 0.01}] * 10 + [{"open_list_s": 0.02}] * 5 + [{"open_list_s": 0.03}] * 5
    assert growth.library_cost_growth(after) == pytest.approx(3.0)
    after[-1] = after[-2] = {"open_list_s": 9.0}  # two slow timings in a window of five move nothing
    assert growth.library_cost_growth(after) == pytest.approx(3.0)
    assert growth.library_cost_growth(after[:19]) is None
