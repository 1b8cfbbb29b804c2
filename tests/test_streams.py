"""Streams: the task-sequence language (``|`` splits building from judged tasks) and the presets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error, run_cli

from lifelong.data import fetch
from lifelong.errors import TaskSpecError
from lifelong.streams import PRESETS, parse_stream
from lifelong.task_data import check_source

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_a_split_stream_judges_what_follows_the_bar() -> None:
    stream = parse_stream("mnist:0v1 mnist:2v3 | mnist:6v8@20 fashion:5v7@20pc")
    assert [s.text for s in stream.specs] == ["mnist:0v1", "mnist:2v3", "mnist:6v8@20", "fashion:5v7@20pc"]
    assert [s.text for s in stream.judged] == ["mnist:6v8@20", "fashion:5v7@20pc"]
    assert stream.name == "custom" and stream.text == "mnist:0v1 mnist:2v3 | mnist:6v8@20 fashion:5v7@20pc"


def test_without_a_bar_every_task_after_the_first_is_judged() -> None:
    stream = parse_stream("split-mnist")
    assert stream.name == "split-mnist" and stream.judged_from == 1
    assert [s.text for s in stream.judged] == ["mnist:2v3", "mnist:4v5", "mnist:6v7", "mnist:8v9"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty stream"),
        ("mnist:0v1 | mnist:2v3 | mnist:4v5", "at most one '|'"),
        ("| mnist:2v3", "no tasks before '|'"),
        ("mnist:0v1 |", "no tasks after '|'"),
        ("mnist:0v1 mnist:0v1", "'mnist:0v1' comes twice"),
        ("mnist:0v1 atari:Pong", "not an image task"),
        ("mnist:0v1", "at least 2 tasks"),
        ("mnist:0v1 mnist:2v3~invrt", "unknown transform"),
        ("split-minst", "unknown dataset 'split-minst'"),
    ],
)
def test_bad_streams_are_one_line(text: str, needle: str) -> None:
    with pytest.raises(TaskSpecError) as error:
        parse_stream(text)
    assert needle in str(error.value) and "\n" not in str(error.value)


def test_ctrl_streams_have_their_shape() -> None:
    minus, plus = parse_stream("s-minus"), parse_stream("s-plus")
    assert minus.judged[0].classes == minus.specs[0].classes == (3, 8)
    assert (minus.specs[0].train_size, minus.judged[0].train_size) == (500, 50)  # then a tenth
    assert (plus.specs[0].train_size, plus.judged[0].train_size) == (50, 500)
    assert parse_stream("s-in").judged[0].transforms == ("invert",)
    out = parse_stream("s-out")
    assert out.judged[0].transforms == ("labels=1",) and out.judged[0].classes == out.specs[0].classes
    long = parse_stream("s-long")
    assert len(long.specs) >= 30 and {s.source for s in long.specs} == {"mnist", "fashion"}
    sizes = {s.train_size for s in long.specs}
    assert {None, 500, 50, 10} <= sizes and any(s.transforms for s in long.specs)
    assert parse_stream("s-long") == long  # the same stream every time


def test_s_long100_follows_ctrl_s_recipe() -> None:
    """100 five-way tasks over both data sets and their transforms; per third, the share of tasks
    with 1,000 examples per class is 1/2, 1/4, 0; the others have 5."""
    stream = parse_stream("s-long100")
    assert len(stream.specs) == 100 and stream.judged_from == 1
    assert all(len(s.classes) == 5 and s.per_class for s in stream.specs)
    assert {s.train_size for s in stream.specs} == {1000, 5}
    thirds = (stream.specs[:33], stream.specs[33:66], stream.specs[66:])
    assert [sum(s.train_size == 1000 for s in third) for third in thirds] == [16, 8, 0]
    assert {s.source for s in stream.specs} == {"mnist", "fashion"}
    assert {s.transforms for s in stream.specs} == {(), ("invert",), ("rot90",), ("permute=1",)}
    assert parse_stream("s-long100") == stream


@pytest.mark.slow
def test_every_preset_has_its_data() -> None:
    """Every task of every preset passes the checks `learn` makes before any work."""
    data_dir = REPO_ROOT / "data"
    for name in ("mnist", "fashion-mnist"):
        fetch(name, data_dir)
    for name in PRESETS:
        for spec in parse_stream(name).specs:
            check_source(spec, data_dir)


def test_the_streams_command(tmp_path: Path) -> None:
    listed = run_cli("--json", "streams", library=tmp_path / "none")
    assert listed.returncode == 0, listed.stderr
    rows = {row["stream"]: row for row in json.loads(listed.stdout)}
    assert set(rows) == set(PRESETS) and rows["pairs"]["judged"] == 5
    shown = json.loads(run_cli("--json", "streams", "s-out", library=tmp_path / "none").stdout)
    assert [row["role"] for row in shown] == ["builds"] * 4 + ["judged"]
    assert_one_line_error(run_cli("streams", "mnist:0v1 |", library=tmp_path / "none"), "no tasks after '|'")
