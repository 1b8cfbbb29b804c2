"""The main job's machinery (``lifelong demo``): a stream into the user's library, each judged
task beside its random-library control, the report written; resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import TINY_BUDGET, write_mnist_slice

from library_store import Library
from lifelong.demo import run_demo
from lifelong.history import contents_before
from lifelong.plans import ClassificationPlan
from lifelong.streams import parse_stream


@pytest.mark.slow
def test_demo_learns_the_stream_beside_random_controls_and_resumes(tmp_path: Path, data_dir: Path) -> None:
    library = Library.create(tmp_path / "library")
    stream = parse_stream("mnist:0v1@20pc | mnist:2v3@10pc mnist:4v5@10pc")
    plan = ClassificationPlan(TINY_BUDGET, 0.9)
    mnist = write_mnist_slice(tmp_path / "data", data_dir)
    demo = dict(seed=0, device=torch.device("cpu"), data_dir=mnist, out_dir=tmp_path / "report")
    result = run_demo(library, stream, plan, **demo)
    assert [row.task for row in result.rows] == [spec.text for spec in stream.specs]
    assert [row.judged for row in result.rows] == [False, True, True]
    first, *judged = result.rows
    assert first.random_library is None and first.phase == "grow" and first.new_modules >= 1
    for row in judged:  # solved from the library alone, and so is each control
        assert (row.phase, row.new_modules) == ("self_organize", 0)
        assert 0.4 < row.random_library <= 1 and 0.4 < row.test_acc <= 1
        assert 0 < row.own_params < 2000  # a binary readout and its scales
    mean = sum(r.test_acc - r.random_library for r in judged) / len(judged)
    assert result.gap_points == pytest.approx(100 * mean)
    assert result.report.name == "index.html" and result.report.is_file()
    facts = json.loads(result.result_file.read_text())
    assert facts["seed"] == 0 and facts["command"].startswith("lifelong") and "torch" in facts["versions"]
    assert [row["random_library"] for row in facts["tasks"]] == [row.random_library for row in result.rows]
    assert facts["gap_points"] == pytest.approx(result.gap_points)
    assert len(list(result.report.parent.glob("*.png"))) >= 3
    for row in result.rows:  # the random copy of each task's library: the first task's modules
        assert len(contents_before(library, row.task).modules) == (first.new_modules if row.judged else 0)
    state = library.state

    again = run_demo(library, stream, plan, **demo)  # resumes: nothing is learned twice
    library.refresh()
    assert library.state == state
    assert [(r.task, r.test_acc, r.own_params) for r in again.rows] == [
        (r.task, r.test_acc, r.own_params) for r in result.rows
    ]
    assert [r.random_library for r in again.rows] == [r.random_library for r in result.rows]  # seeded
