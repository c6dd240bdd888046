"""The outputs of batch jobs: a parquet file, or a folder of PNGs (generate).

Both are written so that a job that fails, is interrupted or terminated part-way leaves
nothing half-written and no temporary file: the parquet file goes to a temporary file beside
it and is renamed at the end (`artifacts.atomic_path`); the PNGs go to a fresh staging
folder inside the output folder and are moved in at the end, never through a link planted
there. A directory that takes no files is refused before any work, and the writers' own I/O
errors are one line naming the output.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from vae_export.artifacts import atomic_path
from vae_export.errors import CheckFailed, UsageError, VAEExportError, first_line


def check_writable(directory: Path, output: Path) -> None:
    """Create and remove a temporary file in the output's directory before any work: a
    directory that exists but takes no files (/proc, a read-only mount) is one line now, not
    an internal error after the job ran."""
    try:
        fd, name = tempfile.mkstemp(dir=directory, prefix=".vae-export-probe.")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise UsageError(f"--output {output}: cannot write there ({exc.strerror or exc})") from None


@contextlib.contextmanager
def _writing(output: Path) -> Iterator[None]:
    """OSError of the writer itself (disk full, I/O error) as one line naming the output."""
    try:
        yield
    except OSError as exc:
        raise VAEExportError(f"--output {output}: cannot write ({exc.strerror or first_line(exc)})") from None


def parquet_writer(path: Path, schema: pa.Schema, fail_fast: bool = False) -> Callable[[Iterator[pa.Table]], int]:
    """Write the tables to `path` atomically (temporary file, then rename); returns the count
    of rows with an error. `fail_fast`: the first error row stops the job, nothing written."""
    check_writable(path.parent, path)

    def write(tables: Iterator[pa.Table]) -> int:
        errors = 0
        with _writing(path), atomic_path(path) as tmp:
            with pq.ParquetWriter(tmp, schema) as writer:
                for table in _unwrapped(tables):
                    bad = table.num_rows - table.column("error").null_count if "error" in table.column_names else 0
                    if bad and fail_fast:
                        raise CheckFailed(_first_error(table) + " (--fail-fast: stopped at the first bad row; "
                                          f"nothing written to {path})")
                    errors += bad
                    writer.write_table(table)
        return errors

    return write


def _unwrapped(tables: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """The tables, with an OSError raised while computing one (a Ray ConnectionError, a worker's
    read) kept apart from the writer's own: re-raised as it is, not as "cannot write"."""
    while True:
        try:
            table = next(tables)
        except StopIteration:
            return
        except OSError as exc:
            raise VAEExportError(f"the job failed: {type(exc).__name__}: {first_line(exc, '')}") from None
        yield table


def _first_error(table: pa.Table) -> str:
    errors = table.column("error").to_pylist()
    row = next(i for i, e in enumerate(errors) if e is not None)
    return f"row {table.column('id')[row].as_py()}: {errors[row]}"


def png_writer(directory: Path, image_shape: tuple[int, ...]) -> Callable[[Iterator[pa.Table]], int]:
    """generate into a folder (created if missing): one PNG per sample, NNNNNN.png. They are
    written into a fresh staging folder inside `directory` (0700, ours alone) and moved in at
    the end, after every target was checked: nothing is written through a link planted in the
    folder, and a job that fails or is stopped part-way leaves the folder as it was (or, when
    the job created it, no folder)."""
    from vae_export.artifacts import ensure_dir
    from vae_export.images import grid

    created = not directory.exists()
    ensure_dir(directory, "--output")  # checked now, before any work...
    check_writable(directory, directory)
    if created:
        directory.rmdir()  # ...and made again when the first sample is ready

    def write(tables: Iterator[pa.Table]) -> int:
        with _writing(directory):
            directory.mkdir(parents=True, exist_ok=True)
            stage = Path(tempfile.mkdtemp(dir=directory, prefix=".generate."))
        moved = False
        try:
            names = []
            for table in _unwrapped(tables):
                x_hat = table.column("x_hat").combine_chunks().flatten().to_numpy().reshape(-1, *image_shape)
                for i, image in zip(table.column("id").to_pylist(), x_hat):
                    names.append(f"{i:06d}.png")
                    with _writing(directory):
                        _write_new(stage / names[-1], grid(image[None], columns=1, scale=1, pad=0))
            _move_in(stage, directory, names)
            moved = True
        finally:
            shutil.rmtree(stage, ignore_errors=True)
            if created and not moved:
                with contextlib.suppress(OSError):  # only if still empty: never anyone else's files
                    directory.rmdir()
        return 0

    return write


def _write_new(path: Path, image: Any) -> None:
    """A new file only (O_EXCL, O_NOFOLLOW): never an existing file or a link's target."""
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    with os.fdopen(fd, "wb") as fh:
        fh.write(buffer.getvalue())


def _move_in(stage: Path, directory: Path, names: list[str]) -> None:
    """Every target checked first (a link or anything but a regular file is refused, and then
    nothing is moved), then one rename each; os.replace never follows a link at the target."""
    for name in names:
        target = directory / name
        try:
            mode = os.lstat(target).st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(mode):
            raise VAEExportError(f"--output {target}: is a symbolic link; refused (generate never writes "
                                 "through a link in its folder)")
        if not stat.S_ISREG(mode):
            raise VAEExportError(f"--output {target}: exists and is not a regular file; refused")
    with _writing(directory):
        for name in names:
            os.replace(stage / name, directory / name)
