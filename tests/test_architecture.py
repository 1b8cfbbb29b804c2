"""The project's rooms and doors: imports point down only, ``cli → lifelong → agents → library_store``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("cli", "lifelong", "agents", "library_store")  # each may import only those after it
CLI_CEILING = 250  # lines of cli.py
FILE_CEILING = 600  # lines of any other source file


def imported_packages(path: Path) -> set[str]:
    """Top-level names of everything ``path`` imports (at module level or inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def sources(layer: str) -> list[Path]:
    return [ROOT / "cli.py"] if layer == "cli" else sorted((ROOT / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", LAYERS)
def test_imports_point_down_only(layer: str) -> None:
    above = set(LAYERS[: LAYERS.index(layer)])
    wrong = {str(path.relative_to(ROOT)): sorted(imported_packages(path) & above) for path in sources(layer)}
    assert {path: names for path, names in wrong.items() if names} == {}


def test_library_store_knows_nothing_of_torch() -> None:
    assert all("torch" not in imported_packages(path) for path in sources("library_store"))


def test_the_cli_knows_nothing_of_zarr_or_icechunk() -> None:
    """cli.py and its command groups (lifelong/commands/) reach the store only through lifelong."""
    front_door = [ROOT / "cli.py", *sorted((ROOT / "lifelong" / "commands").rglob("*.py"))]
    assert len(front_door) > 2  # the command groups were found
    wrong = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & {"zarr", "icechunk", "library_store"})
        for path in front_door
    }
    assert {path: names for path, names in wrong.items() if names} == {}


def lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def calls(path: Path) -> list[ast.Call]:
    return [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)]


def callers(name: str) -> set[str]:
    """The source files that call ``name``, as ``name(…)`` or ``something.name(…)``."""
    return {
        str(path.relative_to(ROOT))
        for layer in LAYERS
        for path in sources(layer)
        for call in calls(path)
        if getattr(call.func, "id", None) == name or getattr(call.func, "attr", None) == name
    }


def test_device_and_game_names_are_resolved_only_where_they_are_parsed() -> None:
    """A ``--device`` becomes a torch.device in the CLI's option parser; a game name becomes a
    Game where a task spec, a ``--game`` option or a game stored in the library is read.
    Everything below takes the typed value and never resolves (or coerces) a name again."""
    assert callers("resolve_device") == {"lifelong/commands/options.py"}
    parsed_at = {"lifelong/tasks.py", "lifelong/commands/benchmarks.py", "agents/atari/agent.py"}
    assert callers("resolve_game") == parsed_at
    assert callers("Game") == {"agents/atari/games.py"}  # only resolve_game makes one
    coerced = {
        str(path.relative_to(ROOT))
        for layer in LAYERS
        for path in sources(layer)
        for call in calls(path)
        if ast.unparse(call.func) == "torch.device" and call.args and isinstance(call.args[0], ast.Name)
    }
    assert coerced == set()


def test_the_front_door_is_thin() -> None:
    """cli.py keeps the app, the global options, the entry point and the groups' registration."""
    assert lines(ROOT / "cli.py") <= CLI_CEILING


def test_no_source_file_over_the_ceiling() -> None:
    too_long = {
        str(path.relative_to(ROOT)): lines(path)
        for layer in LAYERS
        for path in sources(layer)
        if lines(path) > FILE_CEILING
    }
    assert too_long == {}


def test_the_cli_starts_without_torch() -> None:
    """Commands that only read the library (and --help, and every usage error) start in a fraction
    of a second: torch is imported by the commands that learn or evaluate, when they run."""
    code = "import sys, cli; print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"
