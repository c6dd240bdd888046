"""Atomic writes, sha256 and JSON files (the manifest itself is `vae_export.manifest`).

Torch-free on purpose: the runtime and `inspect` use it without torch installed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vae_export.errors import UsageError, VAEExportError

CHECKPOINT_NAME = "vae.safetensors"
TRAIN_METRICS_NAME = "train_metrics.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_dir() -> Path:
    """Where downloads go (datasets, onnxruntime-web): $VAE_EXPORT_DATA, else ~/.cache/vae-export."""
    root = os.environ.get("VAE_EXPORT_DATA")
    return Path(root) if root else Path.home() / ".cache" / "vae-export"


def ensure_dir(path: Path, option: str = "--artifacts") -> Path:
    """Create an output directory, or say in one line why it cannot be one."""
    for parent in (path, *path.parents):
        if parent.exists() and not parent.is_dir():
            raise UsageError(f"{option} {path}: {parent} is a regular file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot create directory ({exc.strerror})") from None
    return path


def output_target(path: Path) -> Path:
    """Where a write to `path` really goes: a symlink is written through (its target is
    replaced, never the link itself); anything but a regular file or nothing is refused, since
    a rename over a device node, FIFO or socket would replace it with a regular file."""
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        return target
    except OSError as exc:
        raise VAEExportError(f"{path}: cannot write ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "a special file (device, FIFO or socket)"
        raise VAEExportError(f"{path}: cannot write: {target} is {kind}, not a regular file; refused")
    return target


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename.

    On any error the temporary file is removed and `path` is left as it was. A symlink is
    written through and special files are refused (`output_target`).
    """
    path = output_target(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; artifacts are shared (web servers, CI caches), so apply the
    # umask like a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
    except OSError as exc:
        raise VAEExportError(f"{path}: cannot write ({exc.strerror or exc})") from None


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


MAX_JSON_BYTES = 16 << 20  # our JSON files are KiB; refuse to parse a huge one


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from a file that may have travelled: size-capped, and deep nesting,
    bad bytes and bad syntax are each one error naming the file."""
    try:
        if not path.is_file():
            raise FileNotFoundError(path)
        if path.stat().st_size > MAX_JSON_BYTES:
            raise VAEExportError(f"{path}: not a valid {what} (larger than {MAX_JSON_BYTES} bytes)")
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VAEExportError(f"{path}: not a valid {what} ({exc})") from None
    except RecursionError:
        raise VAEExportError(f"{path}: not a valid {what} (JSON nested too deeply)") from None
    if not isinstance(data, dict):
        raise VAEExportError(f"{path}: not a valid {what} (expected a JSON object)")
    return data


@contextlib.contextmanager
def directory_lock(directory: Path) -> Iterator[None]:
    """An advisory lock (flock) on the artifacts directory itself, held while a command
    rewrites what is in it (export, train, the manifest's summaries), so that two exports
    cannot interleave their files. Fails fast instead of waiting: a second export of the same
    directory is a mistake to report, not to queue behind the first. Locking the directory's
    own descriptor leaves no lock file behind."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise VAEExportError(f"--artifacts {directory}: cannot open ({exc.strerror or exc})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise VAEExportError(
                    f"--artifacts {directory}: another vae-export process is writing there (lock held); "
                    "wait for it to finish or use another directory"
                ) from None
            raise
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
