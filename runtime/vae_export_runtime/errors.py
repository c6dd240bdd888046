"""The exceptions apps and the toolkit see (the toolkit's CLI turns them into one `Error: ...`
line, with the exit code each one carries)."""

from __future__ import annotations


def first_line(exc: BaseException, default: str | None = None) -> str:
    """The first line of an exception's message (third-party errors can run to pages), or
    `default` (else the exception's type name) when the message is empty."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else (type(exc).__name__ if default is None else default)


class VAEExportError(Exception):
    """Something the user can fix: a failed check, a bad file, a broken checkpoint (exit 1)."""

    exit_code = 1


class UsageError(VAEExportError):
    """A bad option or a missing file named on the command line (exit 2)."""

    exit_code = 2


class RuntimeInputError(VAEExportError, ValueError):
    """An argument or input that does not match the graph's contract (a wrong shape, a NaN, a
    label out of range, a count out of bounds): the message names the rule."""
