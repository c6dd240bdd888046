"""The inputs of batch jobs, read row by row wherever a worker runs.

A `Source` is small and picklable: it names the input and how many rows it has. Workers
call `load(rows)` for the rows of their batch, so the data itself is read in the workers as
the job streams (an image folder file by file, a .npy file memory-mapped, a parquet file by
row group), never gathered on the driver.

Kinds: a folder of images (PNG/JPEG, recursive; id = the path relative to the folder), a
.npy array, an IDX file (raw or .gz, as MNIST ships), a parquet file with an image column
(encoded image bytes, or a list of pixel values); ids of the last three are row indices.
A row that cannot become an image of the model's shape (a corrupt file, a wrong-size row,
NaN) is returned as an error message for that row, not raised: the job goes on. What a whole
file claims (its row count, a .npy's or IDX file's row shape) is checked on the driver before
any work (`open_source`, `Source.check_rows`). Image files are read with a size cap and decoded
only as PNG or JPEG, and only once their header shows the model's size (no decompression bomb
is ever decoded; no other Pillow plugin, such as EPS's Ghostscript, ever runs).
"""

from __future__ import annotations

import functools
import io
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vae_export.errors import UsageError, VAEExportError, first_line
from vae_export.limits import MAX_IMAGE_FILE_BYTES, MAX_JOB_ROWS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGE_FORMATS = ["PNG", "JPEG"]  # Pillow plugins allowed to read a file; none runs another program
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Source:
    kind: str  # "folder", "npy", "idx" or "parquet"
    path: str
    count: int
    files: tuple[str, ...] = ()  # folder: the image paths relative to `path`, sorted
    column: str = "image"  # parquet: the image column

    def __len__(self) -> int:
        return self.count

    def ids(self, rows: np.ndarray) -> list[Any]:
        return [self.files[i] for i in rows] if self.kind == "folder" else [int(i) for i in rows]

    def check_rows(self, image_shape: tuple[int, ...]) -> None:
        """A .npy or IDX file holds one row shape for every row: one that is not an image of the
        model's size is refused here (exit 2), before any work, not as N error rows."""
        if self.kind not in ("npy", "idx"):
            return  # image files and parquet cells differ row by row: checked per row
        shape = (_npy(self.path) if self.kind == "npy" else _idx(self.path)).shape[1:]
        values, want = math.prod(shape), math.prod(image_shape)
        if values != want:
            raise UsageError(f"INPUT {self.path}: rows of {values} values (shape {list(shape)}); the model takes "
                             f"{'x'.join(map(str, image_shape))} = {want}")

    def load(self, rows: np.ndarray, image_shape: tuple[int, ...]) -> list[np.ndarray | str]:
        """Per row: a float32 image [C, H, W] in [0, 1], or a one-line error message."""
        if self.kind == "folder":
            raw: list[Any] = [_read_bytes(Path(self.path) / self.files[i]) for i in rows]
        elif self.kind == "parquet":
            raw = _parquet_rows(self.path, self.column, rows)
        else:
            array = _npy(self.path) if self.kind == "npy" else _idx(self.path)
            raw = [array[i] for i in rows]
        return [_to_image(value, image_shape) for value in raw]


def open_source(path: Path, column: str = "image") -> Source:
    """Look at INPUT once on the driver: its kind and row count. Unusable inputs are usage
    errors (exit 2) naming the file. Paths are made absolute: Ray workers may run elsewhere."""
    path = path.resolve()
    if path.is_dir():
        files = tuple(sorted(p.relative_to(path).as_posix() for p in path.rglob("*")
                             if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        if not files:
            raise UsageError(f"INPUT {path}: expected PNG or JPEG images in the folder, found none")
        return _bounded(Source("folder", str(path), len(files), files=files))
    if not path.is_file():
        raise UsageError(f"INPUT {path}: no such file or folder")
    if path.suffix.lower() == ".npy":
        array = _npy(str(path))
        if array.ndim < 2 or array.dtype.kind not in "uif" or len(array) == 0:
            raise UsageError(f"INPUT {path}: expected a non-empty numeric array [N, C, H, W] (or [N, H, W]), "
                             f"found dtype {array.dtype} shape {list(array.shape)}")
        return _bounded(Source("npy", str(path), len(array)))
    if path.suffix.lower() == ".parquet":
        return _open_parquet(path, column)
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head[:2] == _GZIP_MAGIC or head[:3] == b"\x00\x00\x08":
        from vae_export.idx import idx_dims

        try:
            dims = idx_dims(path)  # the whole file checked in a stream, nothing kept
        except VAEExportError as exc:
            raise UsageError(f"INPUT {exc}") from None
        if len(dims) < 2:
            raise UsageError(f"INPUT {path}: expected IDX images [N, H, W], found shape {list(dims)}")
        return _bounded(Source("idx", str(path), dims[0]))
    raise UsageError(f"INPUT {path}: expected an image folder, a .npy, an IDX (raw or .gz) or a .parquet file")


def _open_parquet(path: Path, column: str) -> Source:
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
        raise UsageError(f"INPUT {path}: not a readable parquet file ({first_line(exc)})") from None
    names = meta.schema_arrow.names
    if column not in names:
        raise UsageError(f"--column {column}: {path} has no such column (it has {', '.join(names)})")
    return _bounded(Source("parquet", str(path), meta.metadata.num_rows, column=column))


def _bounded(source: Source) -> Source:
    if source.count > MAX_JOB_ROWS:
        raise UsageError(f"INPUT {source.path}: {source.count} rows; a job takes at most {MAX_JOB_ROWS}")
    return source


# ---- per-process caches: each worker opens a file once, however many batches it runs -------

@functools.lru_cache(maxsize=4)
def _npy(path: str) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise UsageError(f"INPUT {path}: not a readable .npy array ({first_line(exc)})") from None


@functools.lru_cache(maxsize=4)
def _idx(path: str) -> np.ndarray:
    from vae_export.idx import read_idx

    return read_idx(Path(path))


@functools.lru_cache(maxsize=4)
def _row_groups(path: str) -> tuple[Any, np.ndarray]:
    import pyarrow.parquet as pq

    reader = pq.ParquetFile(path)
    sizes = [reader.metadata.row_group(g).num_rows for g in range(reader.num_row_groups)]
    return reader, np.cumsum([0, *sizes])


def _parquet_rows(path: str, column: str, rows: np.ndarray) -> list[Any]:
    reader, starts = _row_groups(path)
    groups = np.searchsorted(starts, rows, side="right") - 1
    values: list[Any] = [None] * len(rows)
    for group in np.unique(groups):
        table = reader.read_row_group(int(group), columns=[column]).column(0)
        for k in np.flatnonzero(groups == group):
            values[k] = table[int(rows[k] - starts[group])].as_py()
    return values


def _read_bytes(path: Path) -> bytes | str:
    """The file's bytes, or why not: larger than MAX_IMAGE_FILE_BYTES is refused from its size
    (a sparse file), and the read stops at the cap whatever the size said (/proc files say 0)."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_IMAGE_FILE_BYTES:
                return f"file of {size} bytes; at most {MAX_IMAGE_FILE_BYTES}"
            data = fh.read(MAX_IMAGE_FILE_BYTES + 1)
    except OSError as exc:
        return f"{path}: cannot read ({exc.strerror or exc})"
    if len(data) > MAX_IMAGE_FILE_BYTES:
        return f"file of more than {MAX_IMAGE_FILE_BYTES} bytes; at most {MAX_IMAGE_FILE_BYTES}"
    return data


# ---- one value -> one image -----------------------------------------------------------------

def _to_image(value: Any, shape: tuple[int, ...]) -> np.ndarray | str:
    if isinstance(value, str):  # already an error message
        return value
    if isinstance(value, dict) and "bytes" in value:  # Hugging Face datasets' image struct
        value = value["bytes"]
    if value is None:
        return "expected an image, found null"
    if isinstance(value, (bytes, bytearray)):
        return _decode_image(bytes(value), shape)
    array = np.asarray(value)
    if array.dtype.kind not in "uif":
        return f"expected numbers, found dtype {array.dtype}"
    if array.size != int(np.prod(shape)):
        return f"expected {'x'.join(map(str, shape))} = {int(np.prod(shape))} values, found shape {list(array.shape)}"
    pixels = array.astype(np.float32).reshape(shape)
    if array.dtype.kind in "ui":  # 8-bit pixels, as images, IDX files and uint8 arrays hold them
        pixels /= 255.0
    if not np.all(np.isfinite(pixels)):
        return "contains NaN or Inf"
    return pixels


def _decode_image(data: bytes, shape: tuple[int, ...]) -> np.ndarray | str:
    """Decode one image of exactly the model's size. Image.open reads the header only, so the
    size is checked before a single pixel is decoded."""
    from PIL import Image, UnidentifiedImageError

    channels, height, width = shape
    try:
        with warnings.catch_warnings():
            # Pillow warns of sizes past MAX_IMAGE_PIXELS, then would decode them: the size
            # check below refuses them first, so the warning says nothing the row does not.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
                if image.size != (width, height):
                    return f"expected a {width}x{height} image, found {image.size[0]}x{image.size[1]}"
                image = image.convert("L" if channels == 1 else "RGB")
    except UnidentifiedImageError:
        return "not a readable image (not a PNG or JPEG image)"
    except Image.DecompressionBombError:  # raised by Image.open itself, past twice its limit
        return f"expected a {width}x{height} image, found one of more than {2 * (Image.MAX_IMAGE_PIXELS or 0)} pixels"
    except Exception as exc:  # noqa: BLE001 - Pillow's decoders raise many types on hostile bytes
        # (OSError for truncated data, SyntaxError, struct.error, ValueError...): every one of
        # them is this row's error, never the job's.
        return f"not a readable image ({type(exc).__name__}: {first_line(exc, '')})"
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    return pixels[None] if channels == 1 else np.transpose(pixels, (2, 0, 1))
