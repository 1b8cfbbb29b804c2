"""Running the real `lifelong` console script and judging what it left behind (shared by CLI tests)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

LIFELONG = str(Path(sys.executable).parent / "lifelong")


def run_cli(
    *args: str, library: Path, data_dir: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``lifelong ARGS`` with the library (and data dir) given by environment, as a user would."""
    env = {**os.environ, "LIFELONG_LIBRARY": str(library)}
    if data_dir is not None:
        env["LIFELONG_DATA"] = str(data_dir)
    env.pop("LIFELONG_LOCK_TIMEOUT", None)
    return subprocess.run([LIFELONG, *args], capture_output=True, text=True, env=env, timeout=timeout)


def fingerprint(path: Path) -> dict[str, str]:
    """Every file under ``path`` with a hash of its bytes."""
    return {
        str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(path.rglob("*"))
        if f.is_file()
    }


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit code 2, stderr exactly one line ``error: …`` naming every needle; returns that line."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]
