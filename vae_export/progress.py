"""Progress lines for long work: on stderr, only for a person at a terminal."""

from __future__ import annotations

import sys


class Progress:
    """Prints progress unless quiet, or unless stderr is not a terminal (CI logs, pipes)."""

    def __init__(self, quiet: bool = False, force: bool | None = None) -> None:
        self.enabled = (not quiet and sys.stderr.isatty()) if force is None else force

    def __call__(self, message: str) -> None:
        if self.enabled:
            print(message, file=sys.stderr, flush=True)


SILENT = Progress(force=False)
