"""`lifelong bench scaling` end to end at a tiny size: every condition runs on the real emulator
and real MNIST, the agent's scores agree however they were split, and the ratios are there."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error, run_cli

pytestmark = pytest.mark.slow


def test_bench_scaling_measures_every_condition(data_dir: Path, tmp_path: Path) -> None:
    result = run_cli(
        "--json", "bench", "scaling", "--game", "Boxing", "--networks", "4", "--max-frames", "200",
        "--rounds", "1", "--workers", "2", "--growth-task", "mnist:0v1@10pc", "--candidates", "2",
        "--candidate-steps", "10", "--results-dir", str(tmp_path),
        library=tmp_path / "unused", data_dir=data_dir, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "scaling.json").read_text())
    names = {
        "raw_ale_single",
        "agent_one_worker",
        "agent_all_workers",
        "growth_one_worker",
        "growth_all_workers",
    }
    assert names <= set(report["results"])
    assert report["results"]["agent_all_workers"]["frames"] == report["results"]["agent_one_worker"]["frames"]
    assert report["ratios"]["same_scores"] == 1.0
    assert report["results"]["growth_all_workers"]["candidates_per_s"] > 0
    assert report["ratios"]["growth_all_vs_one_wall"] > 0
    if importlib.util.find_spec("ray") is not None:
        assert {"agent_ray", "growth_ray"} <= set(report["results"]) and "ray_vs_local" in report["ratios"]


def test_bench_scaling_refuses_a_device_it_has_not(tmp_path: Path) -> None:
    assert_one_line_error(
        run_cli("bench", "scaling", "--device", "tpu", library=tmp_path / "unused"), "unknown device"
    )


@pytest.mark.parametrize("command", ["scaling", "atari-throughput"])
def test_an_unknown_game_is_refused_when_the_command_line_is_parsed(tmp_path: Path, command: str) -> None:
    results = tmp_path / "results"
    command_line = ("bench", command, "--game", "Pongg", "--results-dir", str(results))
    refused = run_cli(*command_line, library=tmp_path / "unused")
    assert_one_line_error(refused, "--game", "unknown Atari game 'Pongg'", "close names: pong")
    assert not results.exists()
