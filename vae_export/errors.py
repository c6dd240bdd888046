"""The exceptions users see. The CLI turns them into one `Error: ...` line in one place."""

from __future__ import annotations


class VAEExportError(Exception):
    """Something the user can fix: a failed check, a bad file, a broken checkpoint (exit 1)."""

    exit_code = 1


class UsageError(VAEExportError):
    """A bad option or a missing file named on the command line (exit 2)."""

    exit_code = 2


class CheckFailed(VAEExportError):
    """A parity, integrity or regression check ran and failed (exit 1)."""
