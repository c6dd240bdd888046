"""The `vae-export` command group: library errors become one `Error: ...` line here, in one
place, with their exit code; command modules (`commands.py`, `scale.py`) add their commands to
`main`."""

from __future__ import annotations

import errno
import os
import warnings
from typing import Any

import click

from vae_export import __version__
from vae_export.errors import VAEExportError, first_line

DEBUG_ENV = "VAE_EXPORT_DEBUG"


def _debug(ctx: click.Context | None) -> bool:
    root = ctx.find_root() if ctx else None
    return bool(os.environ.get(DEBUG_ENV)) or bool(root and root.params.get("debug"))


class _Group(click.Group):
    """Turns our exceptions into `Error: ...` with their exit code; internal bugs (anything
    else) become one line too, unless --debug or VAE_EXPORT_DEBUG=1 asks for the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        # Third-party warnings (torch.load's pickle-protocol notice, numpy, ...) are held back
        # and shown after a command that succeeds; a failing command prints only its one
        # `Error:` line (all of them with --debug).
        failed = True
        try:
            with warnings.catch_warnings(record=True) as caught:
                result = self._invoke(ctx)
            failed = False
            return result
        finally:  # replayed outside the recording context (inside it, they would be recorded again)
            if not failed or _debug(ctx):
                _replay(caught)

    def _invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VAEExportError as exc:
            error = click.ClickException(str(exc))
            error.exit_code = exc.exit_code
            raise error from None
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:
            # The reader of our output went away (`inspect ... | head -2`): nothing to report.
            # click's main turns EPIPE into a quiet exit 1, as other CLIs stop on SIGPIPE.
            if _debug(ctx) or (isinstance(exc, OSError) and exc.errno == errno.EPIPE):
                raise
            raise click.ClickException(
                f"internal error: {type(exc).__name__}: {first_line(exc, '')} (rerun with --debug for the traceback)"
            ) from None


def _replay(caught: list[warnings.WarningMessage]) -> None:
    for w in caught:
        warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vae-export")
@click.option("--debug", is_flag=True, help=f"Show tracebacks (also {DEBUG_ENV}=1).")
def main(debug: bool) -> None:
    """Export a VAE to ONNX as encoder and decoder graphs, prove parity, benchmark, embed.

    \b
    Quick start (embedded digits, no network):
        vae-export run
    """
