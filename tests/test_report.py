"""`lifelong report`: PNGs and index.html from a library and from `bench streams` results; and the
one-line errors of `lifelong report` / `lifelong metrics` through the real console script."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run_cli
from test_history import TASKS, build_library

from library_store import Library
from lifelong.bench.atari_transfer import CONDITIONS, summarize
from lifelong.errors import LifelongError
from lifelong.history import library_history
from lifelong.report import load_result, write_report
from lifelong.report_bench import mean_matrix

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPO_ROOT = Path(__file__).resolve().parent.parent


def fake_bench(
    tasks: list[str], conditions: list[str], seeds: tuple[int, ...] = (0, 1, 2), judged_from: int = 1
) -> dict[str, Any]:
    """A `lifelong bench streams` result as its schema says, with made-up numbers."""
    rng = np.random.default_rng(0)
    size = len(tasks)
    conditions_runs: dict[str, dict[str, Any]] = {}
    for c, condition in enumerate(conditions):
        conditions_runs[condition] = {}
        for seed in seeds:
            diagonal = 0.9 + 0.08 * rng.random(size) - 0.02 * c
            drop = 0.05 if condition == "finetune" else 0.0
            matrix = [
                [float(diagonal[j] - drop * (i - j)) if j <= i else None for j in range(size)]
                for i in range(size)
            ]
            total = np.cumsum(rng.integers(1000, 5000, size))
            conditions_runs[condition][str(seed)] = {
                "matrix": matrix,
                "test_acc": [float(d) for d in diagonal],
                "params_total": [int(t) for t in total],
                "params_task": [int(t) for t in np.diff(total, prepend=0)],
                "seconds": [1.5] * size,
                "examples_to_target": [320 if j % 2 else None for j in range(size)],
                "curves": [{"examples": [0, 320, 640], "val_acc": [0.5, 0.9, 0.97]} for _ in range(size)],
            }
    results = {
        condition: {
            "average_final_accuracy": 0.9 - 0.01 * c,
            "average_final_accuracy_sd": 0.01,
            "judged_test_acc": 0.91,
            "judged_test_acc_sd": 0.02,
        }
        for c, condition in enumerate(conditions)
    }
    return {
        "protocol": "streams",
        "command": "lifelong bench streams split-mnist",
        "seeds": list(seeds),
        "versions": {"lifelong": "0.1.0"},
        "device": "cpu",
        "wall_s": 12.0,
        "results": results,
        "ratios": {"lifelong_params_vs_independent": 0.42},
        "runs": {
            "stream": {"name": "split-mnist", "tasks": tasks, "judged_from": judged_from},
            "conditions": conditions_runs,
        },
    }


SPLIT = ["mnist:0v1", "mnist:2v3", "mnist:4v5", "mnist:6v7", "mnist:8v9"]


@pytest.fixture
def bench_file(tmp_path: Path) -> Path:
    path = tmp_path / "streams.json"
    path.write_text(json.dumps(fake_bench(SPLIT, ["finetune", "lifelong", "pnn", "independent"])))
    return path


def pictures(index: Path) -> list[str]:
    """The PNGs index.html shows."""
    return re.findall(r'<img src="([^"]+)"', index.read_text())


def assert_valid_pictures(index: Path) -> list[str]:
    shown = pictures(index)
    assert shown and len(set(shown)) == len(shown)
    for name in shown:
        data = (index.parent / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, name
    assert sorted(shown) == sorted(p.name for p in index.parent.glob("*.png"))  # no stray pictures
    return shown


def test_bench_pictures_and_numbers(tmp_path: Path, bench_file: Path) -> None:
    index = write_report(tmp_path / "out", bench_files=[bench_file])
    shown = assert_valid_pictures(index)
    assert len(shown) == 3 and all(name.startswith("bench1-streams-") for name in shown)
    page = index.read_text()
    bench = json.loads(bench_file.read_text())
    for condition in ("finetune", "lifelong", "pnn", "independent"):
        assert f"<th>{condition}</th>" in page
    runs = bench["runs"]["conditions"]["pnn"].values()
    first = [run["test_acc"][0] for run in runs]
    assert f"{np.mean(first):.4f} ± {np.std(first, ddof=1):.4f}" in page  # (e): mean ± sd over seeds
    last_total = np.mean([run["params_total"][-1] for run in runs])
    assert f"{last_total:,.0f}" in page  # (f)
    corner = mean_matrix(bench["runs"]["conditions"]["finetune"].values())[-1][0]
    assert corner is not None and f"{corner:.4f}" in page  # (g)
    assert "0.4200" in page  # the ratios
    assert "mnist:2v3 *" in page  # judged tasks are marked


def test_a_result_written_before_issue_27_reports_under_the_current_names(tmp_path: Path) -> None:
    """A `bench streams` file from benchmarks/results, written with the old figure names: its
    figures show under today's names, the duplicate ratio is gone, the values are the file's."""
    path = REPO_ROOT / "benchmarks" / "results" / "current" / "streams-few-shot-quick.json"
    raw = json.loads(path.read_text())
    assert {"forward_transfer", "transfer_last_task", "forgetting"} <= set(raw["results"]["lifelong"])
    loaded = load_result(path)
    for condition, old in raw["results"].items():
        new = loaded["results"][condition]
        assert new["transfer_vs_independent"] == old["forward_transfer"]
        assert new["transfer_vs_independent_last_task"] == old["transfer_last_task"]
        assert new["forgetting_chaudhry_sd"] == old["forgetting_sd"]
        assert {key: new[key] for key in old if key in new} == {key: old[key] for key in old if key in new}
    assert set(loaded["ratios"]) == {"lifelong_minus_random_library_points", "params_pnn_over_lifelong"}
    page = write_report(tmp_path / "out", bench_files=[path]).read_text()
    for name in ("transfer_vs_independent", "transfer_vs_independent_last_task", "forgetting_chaudhry"):
        assert f"<th>{name}</th>" in page
    for old_name in ("forward_transfer", "transfer_last_task", "<th>forgetting</th>", "minus_independent"):
        assert old_name not in page
    lifelong = loaded["results"]["lifelong"]["transfer_vs_independent"]
    assert f"{lifelong:.4f}" in page  # 0.0249: the README's 2.49 points


def test_any_subset_of_conditions_and_one_seed(tmp_path: Path) -> None:
    path = tmp_path / "two.json"
    path.write_text(json.dumps(fake_bench(SPLIT[:2], ["pnn"], seeds=(7,), judged_from=2)))
    index = write_report(tmp_path / "out", bench_files=[path, path])
    assert len(assert_valid_pictures(index)) == 6  # each file its own pictures


def test_text_from_files_is_escaped(tmp_path: Path) -> None:
    bench = fake_bench(SPLIT[:2], ["lifelong"])
    bench["runs"]["stream"]["name"] = "<script>alert(1)</script>"
    bench["runs"]["stream"]["tasks"] = ["a<b", "c&d"]
    path = tmp_path / "x.json"
    path.write_text(json.dumps(bench))
    page = write_report(tmp_path / "out", bench_files=[path]).read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "a&lt;b" in page and "c&amp;d" in page


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "is not JSON"),
        (json.dumps({"protocol": "smart-mnist"}), "protocol 'smart-mnist'"),
        (
            json.dumps([1, 2]),
            "not a `lifelong bench streams`, `lifelong bench growth` or `lifelong bench atari-transfer`",
        ),
        (json.dumps({"protocol": "streams"}), "malformed"),
    ],
)
def test_a_bad_bench_file_is_a_one_line_error(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(LifelongError) as raised:
        write_report(tmp_path / "out", bench_files=[path])
    assert needle in str(raised.value) and "\n" not in str(raised.value)
    assert not (tmp_path / "out").exists()  # checked before anything is written


def test_a_matrix_that_is_not_lower_triangular_is_refused(tmp_path: Path) -> None:
    bench = fake_bench(SPLIT[:2], ["lifelong"])
    bench["runs"]["conditions"]["lifelong"]["0"]["matrix"][0][1] = 0.5
    path = tmp_path / "x.json"
    path.write_text(json.dumps(bench))
    with pytest.raises(LifelongError, match="malformed: R\\[0\\]\\[1\\] must be None"):
        load_result(path)


def test_conditions_that_ran_other_seeds_are_refused(tmp_path: Path) -> None:
    bench = fake_bench(SPLIT[:2], ["lifelong", "pnn"])
    del bench["runs"]["conditions"]["pnn"]["2"]  # a merge would pair seed 2's agent with nothing
    path = tmp_path / "x.json"
    path.write_text(json.dumps(bench))
    with pytest.raises(LifelongError, match="malformed: condition 'pnn' ran other seeds than the rest"):
        load_result(path)


def fake_growth(tasks: int = 4, seeds: int = 3) -> dict:
    """A `bench growth` result: the pruned library loses a module every second task."""
    rng = np.random.default_rng(0)

    def run(pruned: bool) -> dict:
        after = [
            {"library_params": 1000 * (k + 1) - (300 * (k // 2) if pruned else 0),
             "library_modules": k + 1 - (k // 2 if pruned else 0), "macs_per_task": 5e5 + k}
            for k in range(tasks)
        ]  # fmt: skip
        return {"after": after, "test_acc": list(rng.uniform(0.9, 1.0, tasks)), "changed_tasks": []}

    conditions = {
        c: {str(s): run(c == "prune_auto") for s in range(seeds)} for c in ("no_prune", "prune_auto")
    }
    return {
        "protocol": "growth",
        "seeds": list(range(seeds)),
        "results": {c: {"library_params": 1.0} for c in conditions},
        "ratios": {"param_reduction": 0.3, "acc_loss_points": 0.1},
        "runs": {"stream": [f"mnist:{k}v9" for k in range(tasks)], "conditions": conditions},
    }


def test_a_growth_result_whose_conditions_ran_other_seeds_is_refused(tmp_path: Path) -> None:
    bench = fake_growth()
    del bench["runs"]["conditions"]["prune_auto"]["1"]
    path = tmp_path / "growth.json"
    path.write_text(json.dumps(bench))
    with pytest.raises(LifelongError, match="malformed: condition 'prune_auto' ran other seeds"):
        load_result(path)


def fake_atari_transfer(seeds: int = 3) -> dict:
    """A `bench atari-transfer` result of one hop: transfer's champion improves earliest."""
    marks = [900, 9000, 45000, 90000, 180000]

    def run(condition: str, seed: int) -> dict:
        start = {"scratch": 10.0, "random_library": 12.0, "transfer": 30.0, "peer": 5.0}[condition]
        at = [start + 5 * k + seed for k in range(len(marks))]
        curve = [[g, 18000 * g, at[min(g // 2, 4)]] for g in range(1, 11)]
        return {"score": at[-1], "scores": [at[-1]] * 3, "generations": 10, "frames": 190000,
                "curve": curve, "at_checkpoints": at}  # fmt: skip

    hop = {c: {str(s): run(c, s) for s in range(seeds)} for c in CONDITIONS}
    runs = {"hops": {"Freeway>SpaceInvaders": hop}, "paths": ["Freeway>SpaceInvaders"],
            "frames_per_run": 180000, "checkpoint_frames": marks, "episodes": 30, "peer": "snes"}  # fmt: skip
    # the report's figures come from the runs: results and ratios are left empty here
    return {"protocol": "atari-transfer", "seeds": list(range(seeds)), "results": {}, "ratios": {},
            "runs": runs}  # fmt: skip


@pytest.mark.parametrize(
    ("fake", "picture_name", "needles"),
    [
        (fake_growth, "growth", ["param_reduction", "no_prune", "prune_auto"]),
        (
            fake_atari_transfer,
            "Freeway_SpaceInvaders",
            [
                "Transfer: Freeway&gt;SpaceInvaders",
                "31.0 [30.0, 32.0]",  # scratch: 30, 31, 32 over the seeds
                "+20.0 [+20.0, +20.0]",  # transfer: 20 more for every seed
                "2.1277",  # TE: 5 checkpoints × 20 / the range 52 − 5
                "peer snes",
            ],
        ),
    ],
)
def test_a_growth_or_atari_transfer_result_draws_its_picture_beside_its_numbers(
    tmp_path: Path, fake: Any, picture_name: str, needles: list[str]
) -> None:
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(fake()))
    index = write_report(tmp_path / "out", bench_files=[path])
    (picture,) = assert_valid_pictures(index)
    assert picture_name in picture
    page = index.read_text()
    assert all(needle in page for needle in needles), [n for n in needles if n not in page]


def test_a_diagnosed_atari_transfer_result_draws_the_sources_units(tmp_path: Path) -> None:
    """With the diagnosis in the runs, each hop also gets a picture of the sources' units and a
    table of action entropy and transfer weights, from the runs (means over seeds)."""
    bench = fake_atari_transfer()
    for condition, by_seed in bench["runs"]["hops"]["Freeway>SpaceInvaders"].items():
        for seed, run in by_seed.items():
            if condition == "peer":
                continue
            saturated = 0.8 if condition == "random_library" else 0.2 + 0.1 * int(seed)
            sources = [] if condition == "scratch" else [
                {"name": "s", "hidden": {"saturated": saturated, "sd": 0.5, "flips": 0.1},
                 "outputs": {"saturated": 0.1, "sd": 0.4, "flips": 0.05}, "t_in_abs": 0.5, "t_out_abs": 0.25}
            ]  # fmt: skip
            run.update(units={"action_entropy": 1.5, "steps": 100, "sources": sources},
                       transfer=[[g, 0.5, 0.25] for g in range(1, 11)] if sources else [],
                       sources_recruited=len(sources), sources_removed=0)  # fmt: skip
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(bench))
    index = write_report(tmp_path / "out", bench_files=[path])
    pictures = assert_valid_pictures(index)
    assert len(pictures) == 2 and "units" in pictures[1]
    page = index.read_text()
    assert "Diagnosis: Freeway&gt;SpaceInvaders" in page and "action entropy (bits)" in page
    results, _ = summarize(bench["runs"]["hops"])
    assert results["transfer:Freeway>SpaceInvaders"]["hidden_saturated"] == pytest.approx(0.3)
    assert results["random_library:Freeway>SpaceInvaders"]["hidden_saturated"] == pytest.approx(0.8)
    assert "hidden_saturated" not in results["scratch:Freeway>SpaceInvaders"]
    assert "action_entropy" not in results["peer:Freeway>SpaceInvaders"]


def test_an_atari_transfer_result_missing_a_checkpoint_is_refused(tmp_path: Path) -> None:
    bench = fake_atari_transfer()
    bench["runs"]["hops"]["Freeway>SpaceInvaders"]["peer"]["1"]["at_checkpoints"].pop()
    path = tmp_path / "atari.json"
    path.write_text(json.dumps(bench))
    with pytest.raises(LifelongError, match="peer seed 1: not one score per checkpoint"):
        load_result(path)


# ---------------------------------------------------------------------------- with a library
@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    return build_library(tmp_path_factory.mktemp("report") / "library", data_dir)


@pytest.mark.slow
def test_library_pictures_show_the_history_numbers(tmp_path: Path, learned: Path, bench_file: Path) -> None:
    library = Library.open(learned)
    history = library_history(library, evaluate=False)
    index = write_report(tmp_path / "out", history=history, library=library, bench_files=[bench_file])
    shown = assert_valid_pictures(index)
    assert shown[:4] == ["library_size.png", "module_usage.png", "learning_curves.png", "accuracy_matrix.png"]
    assert len(shown) == 7
    page = index.read_text()
    for row in history["tasks"]:
        assert row["name"] in page
        assert f"{row['own_parameters']:,}" in page
        assert f"{row['library_parameters']:,}" in page
        assert f"{row['test_acc_stored']:.4f}" in page
        if row["examples_to_target"] is not None:
            assert f"<td>{row['examples_to_target']:,}</td>" in page
    assert f"{history['summary']['average_final_accuracy']:.4f}" in page
    for module in library.modules():  # module labels: kind + first 6 characters of the id's hash
        assert f"{module.kind} {module.id.removeprefix(module.kind + '-')[:6]}" in page
    assert "not re-evaluated" in page


@pytest.mark.slow
def test_cli_metrics_and_report_on_a_library(tmp_path: Path, learned: Path, data_dir: Path) -> None:
    result = run_cli("--json", "metrics", library=learned, data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    history = json.loads(result.stdout)
    assert [row["name"] for row in history["tasks"]] == list(TASKS)
    assert history["matrix"][0][1] is None and history["summary"]["backward_transfer"] == 0
    assert all(row["evaluated"] for row in history["tasks"])
    human = run_cli("metrics", "--no-eval", library=learned)
    assert human.returncode == 0, human.stderr
    assert "backward_transfer" in human.stdout and TASKS[0] in human.stdout
    report = run_cli("report", "--no-eval", "--out", str(tmp_path / "r"), library=learned)
    assert report.returncode == 0, report.stderr
    index = Path(report.stdout.strip())
    assert index == tmp_path / "r" / "index.html"
    assert len(assert_valid_pictures(index)) == 4


# ---------------------------------------------------------------------------- CLI errors
def test_cli_without_a_library_or_bench_file_is_a_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    assert_one_line_error(run_cli("report", "--out", str(tmp_path / "r"), library=missing), "no library")
    assert_one_line_error(run_cli("metrics", library=missing), "no library")
    assert not (tmp_path / "r").exists()


def test_cli_bench_only_needs_no_library(tmp_path: Path, bench_file: Path) -> None:
    out = tmp_path / "r"
    result = run_cli("report", "--out", str(out), "--bench", str(bench_file), library=tmp_path / "nowhere")
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == out / "index.html"
    assert len(assert_valid_pictures(out / "index.html")) == 3


@pytest.mark.parametrize(
    ("content", "needle"), [("[1, 2", "is not JSON"), ('{"protocol": "store"}', "protocol 'store'")]
)
def test_cli_bad_bench_file_is_a_one_line_error(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    result = run_cli("report", "--out", str(tmp_path / "r"), "--bench", str(path), library=tmp_path / "no")
    assert_one_line_error(result, needle, str(path))
    missing = run_cli("report", "--bench", str(tmp_path / "absent.json"), library=tmp_path / "no")
    assert_one_line_error(missing, "cannot read bench file", "No such file")


def test_mean_matrix_keeps_the_upper_triangle_empty() -> None:
    runs = [{"matrix": [[0.8, None], [0.6, 1.0]]}, {"matrix": [[1.0, None], [0.8, 0.9]]}]
    mean = mean_matrix(runs)
    assert mean[0][1] is None
    assert math.isclose(mean[0][0], 0.9) and math.isclose(mean[1][0], 0.7) and math.isclose(mean[1][1], 0.95)
