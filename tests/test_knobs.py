"""Flags derived from the option dataclasses: a knob is written once, as a field."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, fields

import pytest
import typer
from typer.testing import CliRunner

from agents import KNOB, knob
from agents.atari.budget import AtariBudget
from agents.classification.budget import Budget, PruneSettings
from lifelong.commands.knobs import Given, knobs_of, parse_settings, with_knobs
from lifelong.commands.learning import LEARN_KNOBS, PRUNE_KNOBS
from lifelong.plans import AtariPlan


@dataclass(frozen=True)
class Toy:
    steps: int = knob("Steps.")
    rate: float = knob("A rate.", 0.5)
    grow: bool = knob("Grow.", True)
    hidden: int = 3  # not a knob: no flag


@dataclass(frozen=True)
class Game:
    steps: int = knob("Frames.")
    name: str = knob("Which.", "pong")


def toy_app(seen: list[Given]) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @with_knobs({"classification": [Toy], "atari": [Game]})
    def run(label: str = "x", knobs: Given | None = None) -> None:
        seen.append(knobs)
        typer.echo(label)

    return app


def test_each_knob_field_is_a_flag_of_its_type_and_only_given_ones_reach_the_command() -> None:
    seen: list[Given] = []
    result = CliRunner().invoke(toy_app(seen), ["--rate", "0.25", "--no-grow", "--label", "y"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "y"  # the command's own parameters still reach it
    assert seen[0].values == {"rate": 0.25, "grow": False}  # nothing left out appears, not even None
    assert seen[0].of(Toy) == {"rate": 0.25, "grow": False}
    assert seen[0].of(Game) == {}
    bad = CliRunner().invoke(toy_app(seen), ["--rate", "fast"])
    assert bad.exit_code == 2 and "Invalid value for '--rate'" in bad.output  # read as the field's type
    assert CliRunner().invoke(toy_app(seen), ["--hidden", "4"]).exit_code != 0  # not a knob: no flag


def test_a_name_two_families_share_is_one_flag_setting_both() -> None:
    knobs = knobs_of({"classification": [Toy], "atari": [Game]})
    assert knobs["steps"].families == ("classification", "atari")
    assert "Image tasks: Steps." in knobs["steps"].help and "Atari tasks: Frames." in knobs["steps"].help
    assert knobs["rate"].help == "A rate. (default: 0.5)"
    assert knobs["grow"].flag == "--grow/--no-grow" and "(default: --grow)" in knobs["grow"].help
    seen: list[Given] = []
    CliRunner().invoke(toy_app(seen), ["--steps", "7"])
    assert seen[0].of(Toy) == {"steps": 7} and seen[0].of(Game) == {"steps": 7}


def test_a_flag_for_a_family_no_task_belongs_to_is_refused() -> None:
    given = Given(
        {"rate": 0.25, "name": "qbert", "steps": 3}, knobs_of({"classification": [Toy], "atari": [Game]})
    )
    given.refuse_other_families({"classification", "atari"})
    given.refuse_other_families({"atari", "classification"})
    with pytest.raises(typer.BadParameter, match=r"--name: for Atari tasks only"):
        given.refuse_other_families({"classification"})  # steps is both families': never refused
    with pytest.raises(typer.BadParameter, match=r"--rate: for image tasks only"):
        given.refuse_other_families({"atari"})


def test_a_knob_of_another_type_than_a_flag_can_take_is_refused_at_once() -> None:
    @dataclass
    class Odd:
        shape: tuple[int, int] = knob("A shape.", (1, 2))

    with pytest.raises(TypeError, match=r"Odd\.shape"):
        knobs_of({"classification": [Odd]})


def test_learn_and_prune_take_every_knob_of_their_dataclasses() -> None:
    learn = knobs_of(LEARN_KNOBS)
    for options in (Budget, AtariBudget, AtariPlan):
        assert {f.name for f in fields(options) if KNOB in f.metadata} <= set(learn)
    assert {"so_steps", "grow", "compete", "trials", "transfer_init", "sources", "resume"} <= set(learn)
    assert "probe_size" not in learn and "members" not in learn  # fields that are not knobs
    assert set(knobs_of(PRUNE_KNOBS)) == {f.name for f in fields(PruneSettings)}


def test_the_commands_that_take_knobs_do_not_write_them_themselves() -> None:
    """A knob is written once (its field): the commands that take its dataclass neither declare
    its flag nor pass it on by name."""
    from lifelong.commands import benchmarks, learning

    commands = [learning.learn, learning.prune, benchmarks.bench_growth, benchmarks.bench_atari_transfer]
    names = set(knobs_of({**LEARN_KNOBS, **PRUNE_KNOBS}))
    for command in commands:
        source = inspect.getsource(command.__wrapped__)
        for name in names:
            flag = "--" + name.replace("_", "-")
            declared = rf"['\"]{flag}\b|^\s+{name}: |\b{name}={name}\b"  # a flag, a parameter, passed on
            assert not re.search(declared, source, re.M), (command.__name__, name)


def test_set_reads_every_budget_field_by_its_type() -> None:
    assert parse_settings(["growth-margin=0.02", "recall=false", "probe_size=8"], Budget(**_quick())) == {
        "growth_margin": 0.02,
        "recall": False,
        "probe_size": 8,
    }


def _quick() -> dict[str, int | float]:
    from agents.classification.budget import PRESETS

    quick = PRESETS["quick"]
    return {f.name: getattr(quick, f.name) for f in fields(quick)}
