"""Image files, as ``predict`` and ``imagefolder:`` tasks read them (issue 26).

Every Pillow mode is read on the image's own scale (a 16-bit PNG is not an 8-bit one with values up
to 65535), ``predict`` reads a file exactly as an image-folder task reads its images, animations and
over-large images are refused from their header, and listing an image folder never walks forever
(``imagefolder:/``, link loops). The reading rules are tested directly; the guarantees a user sees
run the real console script: an error is one line on stderr, exit code 2, no traceback, no source
path, and the library byte-for-byte as it was.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import assert_one_line_error, fingerprint, noisy_halves, run_cli
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
from torchvision.transforms.functional import pil_to_tensor, resize

from lifelong import task_data
from lifelong.errors import TaskDataError
from lifelong.images import MAX_PIXELS, check_image, read_image

TASK = "halves"


# ---------------------------------------------------------------------------- helpers
def picture(seed: int) -> np.ndarray:
    """A 28×28 grey picture of the ``halves`` task (one half bright), using all of 0..255."""
    image = noisy_halves(np.random.default_rng(seed), 1, 28, 1)[0][0, ..., 0]
    image[0, :2] = 0, 255
    return image


def save_variants(folder: Path, stem: str, grey: np.ndarray) -> dict[str, Path]:
    """The same grey picture saved in every mode Pillow opens a file in: {expected mode: file}."""
    folder.mkdir(parents=True, exist_ok=True)
    sixteen, alpha = grey.astype(np.uint16) * 257, np.random.default_rng(0).integers(0, 256, grey.shape)
    rgb = np.stack([grey] * 3, axis=-1)
    images = {
        "L": (Image.fromarray(grey), "png"),
        "1": (Image.fromarray(grey).point(lambda v: 255 * (v > 127)).convert("1"), "png"),
        "LA": (Image.fromarray(np.stack([grey, alpha.astype(np.uint8)], -1), mode="LA"), "png"),
        "I;16": (Image.fromarray(sixteen), "png"),
        "I;16B": (Image.fromarray(sixteen.astype(">u2")), "tif"),
        "I": (Image.fromarray(sixteen), "pgm"),  # Pillow opens a 16-bit PGM in mode I
        "F": (Image.fromarray(grey.astype(np.float32) / 255), "tif"),
        "F-255": (Image.fromarray(grey.astype(np.float32)), "tif"),
        "P": (Image.fromarray(grey).convert("P"), "png"),
        "RGB": (Image.fromarray(rgb), "png"),
        "RGBA": (Image.fromarray(np.dstack([rgb, alpha.astype(np.uint8)])), "png"),
        "CMYK": (Image.fromarray(rgb).convert("CMYK"), "tif"),
        "YCbCr": (Image.fromarray(rgb).convert("YCbCr"), "tif"),
        "I;16-tif": (Image.fromarray(sixteen), "tif"),
    }
    files = {}
    for mode, (image, ext) in images.items():
        files[mode] = folder / f"{stem}-{mode.replace(';', '')}.{ext}"
        image.save(files[mode])
    return files


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that only declares its size: no pixel data at all (decoding it fails)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


def refused(file: Path, *needles: str) -> str:
    with pytest.raises(TaskDataError) as error:
        read_image(file)
    message = str(error.value)
    assert "\n" not in message and str(file) in message, message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


# ---------------------------------------------------------------------------- reading, directly
@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return save_variants(tmp_path_factory.mktemp("variants"), "left", picture(1))


def test_every_mode_reads_on_the_images_own_scale(variants: dict[str, Path]) -> None:
    grey = torch.from_numpy(picture(1))
    for name, file in variants.items():
        with Image.open(file) as image:
            assert image.mode == name.split("-")[0], (name, image.mode)
        pixels = read_image(file)
        assert pixels.dtype == torch.uint8 and pixels.shape[1:] == grey.shape, name
        assert pixels.shape[0] == (3 if name in ("P", "RGB", "RGBA", "CMYK", "YCbCr") else 1), name
        expected = (grey > 127).to(torch.uint8) * 255 if name == "1" else grey
        difference = (pixels.int() - expected.int()).abs().max()
        assert difference <= (1 if name == "YCbCr" else 0), (name, difference)  # alpha dropped, not mixed


def test_sixteen_bit_values_are_rounded_to_eight(tmp_path: Path) -> None:
    values = np.random.default_rng(2).integers(0, 65536, (30, 40), dtype=np.uint16)
    values[0, :4] = 0, 128, 129, 65535
    Image.fromarray(values).save(tmp_path / "random.png")
    pixels = read_image(tmp_path / "random.png")[0].numpy()
    assert np.array_equal(pixels, np.rint(values / 257).astype(np.uint8))
    assert pixels[0, :4].tolist() == [0, 0, 1, 255]


def test_floats_follow_the_npz_rule(tmp_path: Path) -> None:
    unit = np.random.default_rng(3).random((10, 12), dtype=np.float32)
    Image.fromarray(unit).save(tmp_path / "unit.tif")
    assert np.array_equal(read_image(tmp_path / "unit.tif")[0].numpy(), np.rint(unit * 255).astype(np.uint8))
    for name, values, needles in (
        ("above", unit * 300, ("float values from", "to 29", "[0, 1] or 0..255")),
        ("negative", unit - 0.5, ("float values from -0.",)),
        ("nan", np.where(unit > 0.5, np.nan, unit).astype(np.float32), ("NaN/inf",)),
    ):
        Image.fromarray(values).save(tmp_path / f"{name}.tif")
        refused(tmp_path / f"{name}.tif", *needles)


def test_integers_of_unknown_scale_are_refused(tmp_path: Path) -> None:
    for name, values in (("small", np.arange(100)), ("large", np.arange(100) * 10_000)):
        Image.fromarray(values.reshape(10, 10).astype(np.int32)).save(tmp_path / f"{name}.tif")
        refused(tmp_path / f"{name}.tif", "32-bit or signed integer pixels", "mode 'I'", "8- or 16-bit")


def test_several_frames_are_refused(tmp_path: Path) -> None:
    frames = [Image.fromarray(picture(1)), Image.fromarray(picture(2))]
    for ext in ("gif", "tif", "png", "webp"):
        frames[0].save(tmp_path / f"two.{ext}", save_all=True, append_images=frames[1:])
        refused(tmp_path / f"two.{ext}", "holds several frames")
    frames[0].save(tmp_path / "one.gif")
    assert torch.equal(read_image(tmp_path / "one.gif")[0], torch.from_numpy(picture(1)))


def test_size_is_checked_from_the_header(tmp_path: Path) -> None:
    """No pixel data at all: a size message proves nothing was decoded; past Pillow's own limit its
    DecompressionBombError is the same size message, not 'damaged'."""
    width = MAX_PIXELS // 8000 + 1
    over = png_header(tmp_path / "over.png", width, 8000)
    refused(over, f"{width}x8000 = {width * 8000:,} pixels", f"more than the {MAX_PIXELS:,}")
    refused(png_header(tmp_path / "bomb.png", 20_000, 20_000), "is 400,000,000 pixels", f"{MAX_PIXELS:,}")
    check_image(png_header(tmp_path / "fits.png", 1000, 1000))  # the header is fine ...
    refused(tmp_path / "fits.png", "is not an image that can be read")  # ... its pixels are missing


def test_what_is_not_an_image_file(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("not an image\n")
    refused(tmp_path / "notes.png", "is not an image that can be read")
    os.mkfifo(tmp_path / "pipe.png")  # opening it would wait for a writer forever
    refused(tmp_path / "pipe.png", "is not a file")
    refused(tmp_path / "missing.png", "No such file")


def test_eight_bit_image_folders_read_as_before(tmp_path: Path) -> None:
    """_decode once converted with Pillow to RGB, then resized: the same tensors, bit for bit."""
    rng = np.random.default_rng(4)
    samples = []
    for mode, ext in (("L", "png"), ("RGB", "png"), ("P", "gif"), ("1", "png"), ("LA", "png")) * 2 + (
        ("RGBA", "png"),
        ("CMYK", "jpg"),
        ("RGB", "jpg"),
    ):
        width, height = rng.integers(5, 90, 2)
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert(mode)
        samples.append((str(tmp_path / f"{len(samples)}.{ext}"), 0))
        image.save(samples[-1][0])
    images, _ = task_data._decode(samples, (28, 28))
    for (file, _), decoded in zip(samples, images, strict=True):
        with Image.open(file) as image:
            assert torch.equal(decoded, resize(pil_to_tensor(image.convert("RGB")), [28, 28], antialias=True))


# ---------------------------------------------------------------------------- listing folders
def test_listing_keeps_torchvisions_order(tmp_path: Path) -> None:
    for name in ("b", "a", "C", "a b"):
        for sub in ("", "x", "x/y", "Z", "z_"):
            (tmp_path / name / sub).mkdir(parents=True, exist_ok=True)
            for file in ("1.png", "10.PNG", "2.jpeg", "notes.txt", "Q.Tif", ".png", "a.webp"):
                (tmp_path / name / sub / file).touch()
    (tmp_path / "b" / "link.png").symlink_to(tmp_path / "a" / "1.png")  # a link to a file counts
    names, index = find_classes(tmp_path)
    expected = (make_dataset(tmp_path, index, extensions=IMG_EXTENSIONS), names)
    assert task_data._list_images(tmp_path) == expected


def test_listing_does_not_follow_links_to_folders(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "0.png").touch()
    (tmp_path / "a" / "up").symlink_to(tmp_path)  # a loop: torchvision lists a/0.png 41 times
    (tmp_path / "c").symlink_to(tmp_path / "b")  # a linked class folder is still a class
    samples, names = task_data._list_images(tmp_path)
    assert names == ["a", "b", "c"]
    assert samples == [(str(tmp_path / n / "0.png"), i) for i, n in enumerate(names)]


def test_listing_is_bounded_and_says_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    with pytest.raises(TaskDataError, match=r"no valid file for the classes a, b \(image files end in \.jpg"):
        task_data._list_images(tmp_path)
    for i in range(6):
        (tmp_path / "a" / f"{i}.png").touch()
    monkeypatch.setattr(task_data, "MAX_ENTRIES", 7)
    with pytest.raises(TaskDataError, match=f"^{tmp_path} holds more than 7 files and folders;"):
        task_data._list_images(tmp_path)


# ---------------------------------------------------------------------------- the console script
# Smaller than cli_helpers.TINY: the task only has to exist (it still learns the easy halves).
FAST = (
    "--so-steps", "10", "--candidate-steps", "5", "--population", "2", "--generations", "1",
    "--final-steps", "10", "--settle-steps", "2", "--eval-every", "5", "--batch-size", "16", "--workers", "0",
)  # fmt: skip


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A library holding ``halves`` (28×28 grey, left or right half bright), learned on a tiny budget."""
    root = tmp_path_factory.mktemp("learned")
    rng = np.random.default_rng(3)
    arrays = {}
    for split, n in (("train", 100), ("test", 20)):
        x, y = noisy_halves(rng, n, 28, 1)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x[..., 0], y
    np.savez(root / "halves.npz", **arrays)
    library = root / "library"
    assert run_cli("init", library=library).returncode == 0
    result = run_cli("--json", "learn", f"npz:{root / 'halves.npz'}", "--name", TASK, *FAST, library=library)
    assert result.returncode == 0, result.stderr
    return library


@pytest.fixture(scope="module")
def runs(learned: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """``predict`` on the same two pictures in every mode, and each command that must be refused,
    run through the console script two at a time (most of a run is importing torch); the
    library's fingerprint before and after them."""
    root = tmp_path_factory.mktemp("images")
    variants = {stem: save_variants(root, stem, picture(seed)) for stem, seed in (("left", 1), ("right", 12))}
    for files in variants.values():
        del files["1"], files["YCbCr"]  # thresholded; ±1 from RGB (test_every_mode_reads_on_...)
    frames = [Image.fromarray(picture(1)), Image.fromarray(picture(2))]
    frames[0].save(root / "animated.gif", save_all=True, append_images=frames[1:])
    Image.new("L", (8000, 8000)).save(root / "large.png")  # 64 megapixels of zeros, 62 kB on disk
    png_header(root / "bomb.png", 20_000, 20_000)
    (root / "notes.png").write_text("this is not an image\n")
    loop = root / "loop"
    for name in ("a", "b"):
        (loop / name).mkdir(parents=True)
        Image.fromarray(picture(1)).save(loop / name / "0.png")
    (loop / "a" / "up").symlink_to(loop)
    predict = [str(file) for files in variants.values() for file in files.values()]
    commands = {
        "predict": ("--json", "predict", TASK, *predict),
        "animated": ("predict", TASK, str(root / "animated.gif")),
        "large": ("predict", TASK, str(root / "large.png")),
        "bomb": ("predict", TASK, str(root / "bomb.png")),
        "text": ("predict", TASK, str(root / "notes.png")),
        "root": ("learn", "imagefolder:/", *FAST),
        "loop": ("learn", f"imagefolder:{loop}", *FAST),
    }
    before = fingerprint(learned)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = pool.map(lambda args: run_cli(*args, library=learned, timeout=30), commands.values())
        done: dict[str, object] = dict(zip(commands, results, strict=True))
    return {**done, "variants": variants, "same": fingerprint(learned) == before}


def test_predict_reads_every_mode_on_its_own_scale(runs: dict[str, object]) -> None:
    """The same picture in 12 modes (8- and 16-bit, float in [0, 1] and 0..255, colour, alpha ...)
    gets the same prediction; a 16-bit PNG used to be read as 8-bit values up to 65535."""
    result = runs["predict"]
    assert isinstance(result, subprocess.CompletedProcess)
    assert result.returncode == 0, result.stderr
    rows = {row.pop("file"): row for row in json.loads(result.stdout)}
    for files in runs["variants"].values():
        assert len(files) == 12
        for file in files.values():
            assert rows[str(file)] == rows[str(files["L"])], file
    assert runs["same"], "a command changed the library"


@pytest.mark.parametrize(
    ("case", "needles"),
    [
        ("animated", ("animated.gif holds several frames",)),
        ("large", ("large.png is 8000x8000 = 64,000,000 pixels", f"more than the {MAX_PIXELS:,}")),
        ("bomb", ("bomb.png is 400,000,000 pixels", f"more than the {MAX_PIXELS:,}")),
        ("text", ("notes.png is not an image that can be read",)),
        ("root", ("/ holds more than 100,000 files and folders",)),  # within 30 s; it used to walk /proc
        ("loop", ("1 training example(s) is too few",)),  # listed once, not 41 times through the loop
    ],
)
def test_refusals_are_one_line_and_change_nothing(
    runs: dict[str, object], case: str, needles: tuple[str, ...]
) -> None:
    result = runs[case]
    assert isinstance(result, subprocess.CompletedProcess)
    line = assert_one_line_error(result, *needles)
    assert ".cpp" not in line and "site-packages" not in line, line  # no source path of any library
    assert runs["same"], "a command changed the library"
