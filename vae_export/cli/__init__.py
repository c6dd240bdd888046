"""The `vae-export` command line: parses options, calls one library function per command,
formats the result. `group.py` turns library errors into one `Error: ...` line; `options.py`
holds the options commands share; `commands.py` (train, export, verify, bench, sample, inspect,
web, run) and `scale.py` (encode, score, generate, serve, triton) add their commands to the
group. Importing it stays light (no torch, onnx, onnxruntime or Ray): `--help` is instant.
"""

from vae_export.cli import commands, scale  # noqa: F401  (registers their commands on `main`)
from vae_export.cli.group import main

__all__ = ["main"]
