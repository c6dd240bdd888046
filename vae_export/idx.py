"""IDX files (MNIST's format), raw or gzipped, as numpy arrays: torch-free, so batch-job
workers (vae_export.scale) read them without importing torch."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from vae_export.errors import VAEExportError

_IDX_UBYTE = 0x08


def read_maybe_gzip(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise VAEExportError(f"{path}: not a valid gzip file ({exc})") from None


def parse_idx(data: bytes, source: str) -> np.ndarray:
    """Parse IDX bytes (unsigned-byte type only, as MNIST uses), validating the header."""
    if len(data) < 4:
        raise VAEExportError(f"{source}: expected an IDX file, found only {len(data)} bytes")
    if data[0] != 0 or data[1] != 0 or data[2] != _IDX_UBYTE or not 1 <= data[3] <= 4:
        raise VAEExportError(
            f"{source}: bad IDX magic number 0x{data[:4].hex()}; expected 0x000008NN "
            "(unsigned bytes, NN dimensions)"
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise VAEExportError(f"{source}: truncated IDX header ({len(data)} bytes, expected {header})")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise VAEExportError(
            f"{source}: header says {'x'.join(map(str, dims))} values ({expected} bytes), "
            f"file has {len(data)} bytes"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path: Path) -> np.ndarray:
    return parse_idx(read_maybe_gzip(path), str(path))
