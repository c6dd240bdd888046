"""IDX files (MNIST's format), raw or gzipped, as numpy arrays: torch-free, so batch-job
workers (vae_export.scale) read them without importing torch.

The header is read and checked first, against bounds and against the file's real size,
before any data: a raw file must be exactly header + data bytes (and is then memory-mapped,
read on demand); a .gz file may hold at most `MAX_IDX_GZ_BYTES` of data and no more than
deflate can compress into its size, and is decompressed in a stream into an array of the
size the header claims. So a 3 MB file claiming 6 GB is refused from its first bytes.
"""

from __future__ import annotations

import gzip
import io
import math
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from vae_export.errors import VAEExportError
from vae_export.limits import DEFLATE_MAX_RATIO, MAX_IDX_GZ_BYTES

_IDX_UBYTE = 0x08
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
# gzip's own header and trailer, and deflate's block headers, on top of the ratio bound
_GZIP_SLACK_BYTES = 64 * 1024


def _read_exact(fh: BinaryIO, n: int) -> bytes:
    data = fh.read(n)
    while len(data) < n:
        more = fh.read(n - len(data))
        if not more:
            break
        data += more
    return data


def _header(fh: BinaryIO, source: str) -> tuple[tuple[int, ...], int]:
    """(dims, header length) from the start of an IDX stream (unsigned-byte type only, as MNIST uses)."""
    magic = _read_exact(fh, 4)
    if len(magic) < 4:
        raise VAEExportError(f"{source}: expected an IDX file, found only {len(magic)} bytes")
    if magic[0] != 0 or magic[1] != 0 or magic[2] != _IDX_UBYTE or not 1 <= magic[3] <= 4:
        raise VAEExportError(
            f"{source}: bad IDX magic number 0x{magic.hex()}; expected 0x000008NN "
            "(unsigned bytes, NN dimensions)"
        )
    header = 4 + 4 * magic[3]
    raw = _read_exact(fh, header - 4)
    if len(raw) < header - 4:
        raise VAEExportError(f"{source}: truncated IDX header ({4 + len(raw)} bytes, expected {header})")
    return tuple(int.from_bytes(raw[i : i + 4], "big") for i in range(0, len(raw), 4)), header


def _claims(dims: tuple[int, ...], header: int) -> str:
    # math.prod on Python ints: four 32-bit dimensions cannot overflow it (np.prod wraps at 2^63)
    return f"header says {'x'.join(map(str, dims))} values ({header + math.prod(dims)} bytes)"


def _check_size(dims: tuple[int, ...], header: int, file_bytes: int, gz: bool, source: str) -> None:
    """The header's claim against the bounds and the file's real size, before reading data."""
    values = math.prod(dims)
    if not gz:
        if header + values != file_bytes:
            raise VAEExportError(f"{source}: {_claims(dims, header)}, file has {file_bytes} bytes")
        return
    if values > MAX_IDX_GZ_BYTES:
        raise VAEExportError(f"{source}: {_claims(dims, header)}; a gzipped IDX file is read into memory, "
                             f"so it may hold at most {MAX_IDX_GZ_BYTES} bytes (use the raw file)")
    if header + values > DEFLATE_MAX_RATIO * file_bytes + _GZIP_SLACK_BYTES:
        raise VAEExportError(f"{source}: {_claims(dims, header)}, more than a {file_bytes}-byte gzip file "
                             f"can hold (deflate compresses at most {DEFLATE_MAX_RATIO}:1)")


def _open(path: Path) -> tuple[BinaryIO, bool, int]:
    fh: BinaryIO = open(path, "rb")
    gz = _read_exact(fh, 2) == _GZIP_MAGIC
    fh.seek(0)
    size = path.stat().st_size
    return (gzip.GzipFile(fileobj=fh, mode="rb") if gz else fh), gz, size  # type: ignore[return-value]


def _chunks(fh: BinaryIO, total: int, source: str, dims: tuple[int, ...], header: int) -> Iterator[bytes]:
    """Exactly `total` data bytes in chunks, then the end of the stream (where gzip checks its
    CRC); fewer or more bytes than the header claims is one error."""
    left = total
    while left:
        block = fh.read(min(left, _CHUNK))
        if not block:
            raise VAEExportError(f"{source}: {_claims(dims, header)}, the data ends after {total - left} bytes")
        left -= len(block)
        yield block
    if fh.read(1):
        raise VAEExportError(f"{source}: {_claims(dims, header)}, the file holds more")


def _stream(path: Path, keep: bool) -> tuple[tuple[int, ...], np.ndarray | None]:
    """Check the header, then stream the data (into an array when `keep`); gzip errors
    (a corrupt deflate stream, a bad CRC, a truncated member) are one error naming the file."""
    source = str(path)
    try:
        fh, gz, size = _open(path)
        with fh:
            dims, header = _header(fh, source)
            _check_size(dims, header, size, gz, source)
            if not gz:
                return dims, (_memmap(path, dims, header) if keep else None)
            out = np.empty(math.prod(dims) if keep else 0, dtype=np.uint8)
            filled = 0
            for block in _chunks(fh, math.prod(dims), source, dims, header):
                if keep:
                    out[filled : filled + len(block)] = np.frombuffer(block, dtype=np.uint8)
                filled += len(block)
            return dims, (out.reshape(dims) if keep else None)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise VAEExportError(f"{source}: not a valid gzip file ({exc})") from None
    except OSError as exc:
        raise VAEExportError(f"{source}: cannot read ({exc.strerror or exc})") from None


def _memmap(path: Path, dims: tuple[int, ...], header: int) -> np.ndarray:
    if math.prod(dims) == 0:  # mmap refuses an empty range
        return np.zeros(dims, dtype=np.uint8)
    return np.memmap(path, dtype=np.uint8, mode="r", offset=header, shape=dims)


def read_idx(path: Path) -> np.ndarray:
    """The array of an IDX file: memory-mapped when raw, decompressed in a stream when gzipped."""
    array = _stream(Path(path), keep=True)[1]
    assert array is not None
    return array


def idx_dims(path: Path) -> tuple[int, ...]:
    """The dimensions of an IDX file, the whole file checked (a .gz file decompressed in a stream
    and thrown away, so its CRC and length are checked in constant memory)."""
    return _stream(Path(path), keep=False)[0]


def parse_idx(data: bytes, source: str) -> np.ndarray:
    """Parse IDX bytes already in memory (unsigned-byte type only), validating the header."""
    dims, header = _header(io.BytesIO(data), source)
    _check_size(dims, header, len(data), False, source)
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)
