"""The exceptions users see. The CLI turns them into one `Error: ...` line in one place.

The base classes are the runtime's (`vae_export_runtime.errors`), so an app catching
`VAEExportError` catches the toolkit's errors and the runtime's alike."""

from __future__ import annotations

from vae_export_runtime.errors import RuntimeInputError, UsageError, VAEExportError, first_line


class CheckFailed(VAEExportError):
    """A parity, integrity or regression check ran and failed (exit 1)."""


__all__ = ["CheckFailed", "RuntimeInputError", "UsageError", "VAEExportError", "first_line"]
