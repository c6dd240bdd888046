"""Private, verified copies of listed artifacts, for commands that open a graph many times.

`Manifest.check_integrity` hashes each file once, and a command that opens it right after
runs what was hashed. `bench --against` re-creates its ONNX Runtime sessions for every group
of rounds (`against.py`), so it opens each graph tens of times over a minute or more: whoever
can write into the artifacts directory could swap a graph after the check. Here each listed
file is read once, without following a link (`O_NOFOLLOW`; a FIFO or device is refused before
it can block), hashed as it is copied into a directory only this process writes (mode 0700),
and refused unless the bytes copied are the manifest's. Every later open reads the copy.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from vae_export.errors import CheckFailed
from vae_export.manifest import MANIFEST_NAME, ArtifactEntry, escaped

CHUNK = 1 << 20


def copy_verified(directory: Path, entries: Iterable[ArtifactEntry], into: Path, option: str) -> dict[str, Path]:
    """Each entry's file copied from `directory` into `into` (a private directory the caller
    made), checked against its size and sha256 as the bytes are read; returns file -> copy.
    CheckFailed names `option`, the directory and the file when a copy does not match."""
    copies: dict[str, Path] = {}
    for entry in entries:
        if entry.file in copies:
            continue
        target = into / entry.file
        problem = _copy_one(directory / entry.file, target, entry)
        if problem is not None:
            raise CheckFailed(f"{option} {directory}: integrity check failed: {escaped(entry.file)} {problem}, against "
                              f"{directory / MANIFEST_NAME}; nothing was run")
        copies[entry.file] = target
    return copies


def _copy_one(source: Path, target: Path, entry: ArtifactEntry) -> str | None:
    """Why the copy does not match, or None once `target` holds exactly the listed bytes."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        return "is a symlink; refused" if source.is_symlink() else f"cannot be read ({exc.strerror})"
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            return "is not a regular file"
        if info.st_size != entry.bytes:
            return "changed since it was listed (size)"
        digest, copied = hashlib.sha256(), 0
        with open(target, "xb") as out:
            # Read at most the listed size (+1 to notice growth): a file growing as it is read
            # cannot make the copy unbounded.
            while block := fh.read(min(CHUNK, entry.bytes + 1 - copied)):
                copied += len(block)
                digest.update(block)
                out.write(block)
    if copied != entry.bytes or digest.hexdigest() != entry.sha256:
        target.unlink()
        return "changed since it was listed (sha256 does not match the manifest)"
    return None
