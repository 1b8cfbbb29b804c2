"""One image file read as uint8 pixels on the file's own scale: what ``predict`` labels and what an
``imagefolder:`` task learns from (:mod:`lifelong.task_data` turns them into a network's input).

:func:`read_image` gives a ``(C, H, W)`` uint8 tensor, one grey channel or three (RGB), by the mode
Pillow opens the file in:

* ``1``, ``L``, ``LA``, ``La``: one grey channel (``1``: 0 or 255).
* ``I;16``, ``I;16B``, ``I;16L``, ``I;16N`` (16-bit grey): 0..65535 read as 0..255,
  ``round(v · 255 / 65535)`` (an 8-bit image saved as 16-bit, ``v · 257``, reads back exactly).
* ``I`` (32-bit integer grey): read as 16-bit only where the file's samples are known to be 16-bit
  unsigned (a PNG or PGM/PPM, which Pillow puts on 0..65535, or a TIFF of 16-bit unsigned samples);
  anything else (32-bit or signed samples) is refused, as are values outside 0..65535.
* ``F`` (32-bit float grey): the npz rule of :mod:`lifelong.task_data`: all values within [0, 1] read
  as ``round(255 · v)``; otherwise all within 0..255 read as ``round(v)``; anything else, and
  NaN/±inf, refused.
* ``P``, ``PA``, ``RGB``, ``RGBA``, ``RGBX``, ``RGBa``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``: three
  channels, by Pillow's conversion to RGB (a 16-bit RGB PNG is already 8-bit when Pillow opens it).
* any other mode: refused.

Alpha is dropped (never composited over a background). Refused from the header, before any pixel is
decoded: an image of more than :data:`MAX_PIXELS` pixels, and one of several frames (an animated
GIF/PNG/WebP, a multi-page TIFF); an MPO (a JPEG carrying a second picture, such as a camera's
preview or depth map) is read as its first, main picture. Every refusal or failure is one
:class:`~lifelong.errors.TaskDataError` line naming the file; Pillow's warnings never reach stderr.
"""

from __future__ import annotations

import os
import re
import stat
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from lifelong.errors import TaskDataError

if TYPE_CHECKING:
    from PIL import Image

MAX_PIXELS = 50_000_000  # the most pixels (width × height) an image may have
GREY = ("1", "L", "LA", "La")
SIXTEEN = ("I;16", "I;16B", "I;16L", "I;16N")
COLOUR = ("P", "PA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV")
READABLE = (*GREY, *SIXTEEN, "I", "F", *COLOUR)


def check_image(file: str | Path) -> None:
    """Check an image file from its header (a file, a size within :data:`MAX_PIXELS`, one frame, a
    mode :func:`read_image` reads) without decoding its pixels."""
    with _open(file):
        pass


def read_image(file: str | Path) -> torch.Tensor:
    """The file's pixels as a uint8 tensor ``(C, H, W)``, C 1 (grey) or 3 (RGB), on the file's own
    scale (the rule of each mode is in the module docstring)."""
    with _open(file) as image:
        pixels = _pixels(file, image)
    # (H, W, C) in memory, seen as (C, H, W): the layout torchvision's pil_to_tensor gives
    return torch.from_numpy(np.array(pixels)).permute(2, 0, 1)  # a copy: Pillow's arrays are read-only


@contextmanager
def _open(file: str | Path) -> Iterator[Image.Image]:
    from PIL import Image

    try:
        if not stat.S_ISREG(os.stat(file).st_mode):  # a FIFO or a device would block or never end
            raise TaskDataError(f"{file} is not a file")
    except OSError as error:
        raise TaskDataError(f"cannot read {file}: {error.strerror or 'not a readable file'}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. Pillow's DecompressionBombWarning: one line or nothing
        try:
            with Image.open(file) as image:
                _check_header(file, image)
                yield image
        except (TaskDataError, MemoryError):
            raise
        except Image.DecompressionBombError as error:  # over Pillow's own limit, far above ours
            pixels = re.search(r"\((\d+) pixels\)", str(error))
            size = f"{int(pixels[1]):,} pixels" if pixels else "too many pixels"
            raise TaskDataError(_too_large(file, size)) from None
        except Exception:  # Pillow raises many kinds on a damaged file
            raise TaskDataError(
                f"{file} is not an image that can be read (damaged, or not an image)"
            ) from None


def _check_header(file: str | Path, image: Image.Image) -> None:
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise TaskDataError(_too_large(file, f"{width}x{height} = {width * height:,} pixels"))
    if image.format != "MPO" and getattr(image, "is_animated", False):
        raise TaskDataError(
            f"{file} holds several frames (an animation or a multi-page file); save the one picture"
            " to read as an image of one frame"
        )
    if image.mode not in READABLE:
        raise TaskDataError(f"{file} is an image of mode {image.mode!r}, which is not read; save it as RGB")
    if image.mode == "I" and not _sixteen_bit(image):
        raise TaskDataError(
            f"{file} holds 32-bit or signed integer pixels (mode 'I', samples {_rawmode(image)!r}),"
            " whose scale is unknown; save it as an 8- or 16-bit image"
        )


def _too_large(file: str | Path, size: str) -> str:
    return f"{file} is {size}, more than the {MAX_PIXELS:,} an image may have; make it smaller"


def _rawmode(image: Image.Image) -> str:
    """How the file stores its samples (e.g. ``I;16B``), from the first tile of its header."""
    args = image.tile[0].args if image.tile else None
    return args if isinstance(args, str) else str(args[0]) if isinstance(args, tuple) and args else "?"


def _sixteen_bit(image: Image.Image) -> bool:
    """Whether a mode-I image's samples are known to be 16-bit unsigned, on 0..65535."""
    return image.format in ("PNG", "PPM") or _rawmode(image) in SIXTEEN


def _pixels(file: str | Path, image: Image.Image) -> np.ndarray:
    """``(H, W, C)`` uint8 by the image's mode (see the module docstring)."""
    mode = image.mode
    if mode in COLOUR:
        return np.asarray(image.convert("RGB"))
    if mode in GREY:
        return np.asarray((image.convert("LA") if mode == "La" else image).convert("L"))[..., None]
    values = np.asarray(image)
    if mode == "F":
        return _floats(file, values)[..., None]
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise TaskDataError(
            f"{file} holds values from {values.min()} to {values.max()}; 16-bit images lie on 0..65535"
        )
    return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)[..., None]


def _floats(file: str | Path, values: np.ndarray) -> np.ndarray:
    """A float image's values on one scale: within [0, 1] (times 255) or 0..255, never clipped."""
    bad = int(np.count_nonzero(~np.isfinite(values)))
    if bad:
        raise TaskDataError(f"{file} holds {bad} NaN/inf values; clean the image first")
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if low < 0 or high > 255:
        raise TaskDataError(
            f"{file} holds float values from {low:g} to {high:g}; float images must lie in [0, 1] or 0..255"
        )
    scaled = values.astype(np.float32) * 255 if high <= 1 else values
    return np.rint(scaled).astype(np.uint8)
