"""The CLI through a real subprocess: output content, JSON, and every error path.

Each error must be one line on stderr, exit code 2, and leave the library byte-for-byte as it was.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, fingerprint, run_cli
from filelock import FileLock

from library_store import SCHEMA_VERSION, Library, TaskArrays, TaskRecord


def run(library: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, library=library, timeout=timeout)


@pytest.fixture()
def populated(tmp_path: Path) -> Path:
    """A library with two tasks sharing a module, each with its own α/β, and one snapshot."""
    path = tmp_path / "library"
    library = Library.create(path)
    rng = np.random.default_rng(0)
    with library.transaction("learn two tasks", kind="learn") as tx:
        shared = tx.add_module(
            "conv", {"weight": rng.standard_normal((4, 1, 3, 3), dtype=np.float32)}, created_by="a"
        )
        own = tx.add_module(
            "conv", {"weight": rng.standard_normal((4, 4, 3, 3), dtype=np.float32)}, created_by="b"
        )
        for name, alpha, layers in (("a", 1.25, [[shared.id]]), ("b", 0.5, [[shared.id], [own.id]])):
            uses = [
                [{"alpha": np.float32(alpha), "beta": np.float32(2.0)} for _ in layer] for layer in layers
            ]
            tx.add_task(
                TaskRecord(
                    name,
                    "classification",
                    f"spec:{name}",
                    layers,
                    metrics={"test_acc": 0.99},
                    seed=7,
                    details={"recall": {"task": "a"}} if name == "b" else {},  # b started from a's path
                ),
                TaskArrays(uses=uses, head={"weight": np.ones((2, 4), np.float32)}),
            )
    library.snapshot("start")
    return path


def test_init_info_and_json_agree(tmp_path: Path) -> None:
    path = tmp_path / "lib"
    assert run(path, "init").returncode == 0
    human = run(path, "info")
    data = json.loads(run(path, "--json", "info").stdout)
    assert human.returncode == 0
    assert data["modules"] == 0 and data["tasks"] == 0 and data["schema_version"] == SCHEMA_VERSION
    assert data["last_change"]["kind"] == "init"
    for key in ("schema_version", "modules", "tasks", "size_on_disk_bytes", "last_change"):
        assert key in human.stdout


def test_modules_of_a_task_show_its_own_alpha(populated: Path) -> None:
    rows_a = json.loads(run(populated, "--json", "modules", "--task", "a").stdout)
    rows_b = json.loads(run(populated, "--json", "modules", "--task", "b").stdout)
    assert [r["layer"] for r in rows_a] == [0]
    assert [r["layer"] for r in rows_b] == [0, 1]
    assert rows_a[0]["id"] == rows_b[0]["id"]  # the shared module ...
    assert rows_a[0]["task_params"]["alpha"] == 1.25  # ... with each task's own α
    assert rows_b[0]["task_params"]["alpha"] == 0.5
    assert rows_a[0]["created_by"] == "a" and rows_a[0]["weight_norm"] > 0
    human = run(populated, "modules", "--task", "b").stdout
    assert rows_b[1]["id"] in human and "alpha=0.5" in human
    assert [r["parameters"] for r in rows_b] == [36, 144]
    assert "180 library parameters, 12 its own (6.2%); started from a's path" in " ".join(human.split())
    assert "started from" not in run(populated, "modules", "--task", "a").stdout


def test_tasks_show_library_and_own_parameters(populated: Path) -> None:
    """A task's numbers split into the library modules it uses and its own α/β and head."""
    a, b = json.loads(run(populated, "--json", "tasks").stdout)
    assert (a["library_params"], a["own_params"]) == (36, 2 + 8)  # one 4×1×3×3 conv; α, β, 2×4 head
    assert (b["library_params"], b["own_params"]) == (36 + 144, 4 + 8)
    assert b["own_share"] == round(12 / 192, 4)
    assert (a["recalled"], b["recalled"]) == (None, "a")


def test_tasks_modules_log_snapshots_as_json(populated: Path) -> None:
    tasks = json.loads(run(populated, "--json", "tasks").stdout)
    assert [t["name"] for t in tasks] == ["a", "b"] and tasks[1]["depth"] == 2
    modules = json.loads(run(populated, "--json", "modules").stdout)
    assert sorted(len(m["used_by"]) for m in modules) == [1, 2]
    assert sorted(m["parameters"] for m in modules) == [36, 144]  # the same count as modules --task
    kinds = [entry["kind"] for entry in json.loads(run(populated, "--json", "log").stdout)]
    assert kinds == ["snapshot", "learn", "init"]
    snaps = json.loads(run(populated, "--json", "snapshot", "list").stdout)
    assert [s["name"] for s in snaps] == ["start"]


def test_restore_and_undo_through_the_cli(populated: Path) -> None:
    library = Library.open(populated)
    with library.transaction("extra", kind="learn") as tx:
        tx.add_module("conv", {"weight": np.zeros(3, np.float32)}, created_by="c")
    assert len(json.loads(run(populated, "--json", "modules").stdout)) == 3
    restored = json.loads(run(populated, "--json", "restore", "start").stdout)
    assert len(json.loads(run(populated, "--json", "modules").stdout)) == 2
    assert run(populated, "restore", restored["previous_state_saved_as"]).returncode == 0
    assert len(json.loads(run(populated, "--json", "modules").stdout)) == 3
    assert [e["kind"] for e in json.loads(run(populated, "--json", "log").stdout)][:2] == [
        "restore",
        "restore",
    ]
    assert run(populated, "check").returncode == 0


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("modules", "--task", "nope"), ("no task 'nope'",)),
        (("restore", "nope"), ("no snapshot 'nope'", "start")),
        (("snapshot", "create", "start"), ("already exists",)),
        (("snapshot", "create", "bad/name"), ("bad snapshot name",)),
        (("init",), ("already exists",)),
        (("no-such-command",), ("No such command",)),
    ],
)
def test_errors_are_one_line_and_change_nothing(
    populated: Path, args: tuple[str, ...], needles: tuple[str, ...]
) -> None:
    before = fingerprint(populated)
    assert_one_line_error(run(populated, *args), *needles)
    assert fingerprint(populated) == before


def test_no_library_at_path(tmp_path: Path) -> None:
    assert_one_line_error(run(tmp_path / "missing", "info"), "no library at")
    assert not (tmp_path / "missing").exists()
    (tmp_path / "plain").mkdir()
    assert_one_line_error(run(tmp_path / "plain", "tasks"), "not a lifelong library")


def test_locked_library(populated: Path) -> None:
    before = fingerprint(populated)
    with FileLock(populated / "writer.lock"):
        result = run(populated, "--lock-timeout", "0.5", "snapshot", "create", "later")
    assert_one_line_error(result, "locked by another writer")
    assert fingerprint(populated) == before
    assert run(populated, "snapshot", "create", "later").returncode == 0  # and free afterwards


def test_damaged_store(populated: Path) -> None:
    (populated / "repo" / "refs" / "branch.main" / "ref.json").write_text("{garbage")
    before = fingerprint(populated)
    for command in (("info",), ("tasks",), ("check",), ("snapshot", "create", "x")):
        assert_one_line_error(run(populated, *command), "cannot be read")
    assert fingerprint(populated) == before


def test_check_names_problems_and_exits_1(populated: Path) -> None:
    library = Library.open(populated)
    module = library.modules()[0]
    chunk_dir = populated / "repo" / "chunks"
    chunks = sorted(chunk_dir.rglob("*")) if chunk_dir.exists() else []
    assert run(populated, "check").returncode == 0
    if not [c for c in chunks if c.is_file()]:
        pytest.skip("all chunks are inlined in manifests")
    for chunk in (c for c in chunks if c.is_file()):
        data = bytearray(chunk.read_bytes())
        data[len(data) // 2] ^= 0xFF
        chunk.write_bytes(bytes(data))
    result = run(populated, "--json", "check")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert not report["clean"]
    assert any("checksum mismatch" in p["what"] for p in report["problems"])
    assert any(module.id in p["where"] or "module" in p["where"] for p in report["problems"])


def test_a_bench_result_names_the_code_it_started_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Versions (and the git commit) are read before the run, not after: a checkout that moves on
    while a long benchmark runs must not be credited with its numbers."""
    from lifelong import bench

    calls: list[str] = []
    monkeypatch.setattr(bench, "versions", lambda: calls.append("versions") or {"commit": "abc"})

    def body(progress: object) -> tuple[dict, dict]:
        calls.append("body")
        return {}, {}

    saved, _ = bench.run("probe", body, seeds=[0], device="cpu", out_dir=tmp_path)
    assert calls == ["versions", "body"] and saved["versions"] == {"commit": "abc"}


def test_bench_store_writes_json(tmp_path: Path) -> None:
    result = run(
        tmp_path / "unused",
        "--json",
        "bench",
        "store",
        "--sizes",
        "2,4",
        "--tasks",
        "2,5",
        "--results-dir",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert json.loads((tmp_path / "store.json").read_text()) == report
    assert set(report["results"]) == {"library_2", "library_4", "tasks_2", "tasks_5"}
    assert {"snapshot_4_vs_2", "restore_4_vs_2", "open_list_5_vs_2_tasks"} == set(report["ratios"])
    assert [report["results"][f"tasks_{n}"]["modules"] for n in (2, 5)] == [1, 2]  # one every third task
    for key in ("protocol", "command", "seeds", "versions", "device", "wall_s"):
        assert key in report
    root = Path(__file__).resolve().parent.parent
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # run from a checkout: the result names the commit it was measured with
        assert report["versions"]["commit"].split("+")[0] == head.stdout.strip()
