"""A user's own model class, `--model package.module:ClassOrFactory`: imported and called (the
user named it, so it is trusted code, like any Python they run), then held to the API the
graphs need."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from torch import nn

from vae_export.errors import UsageError


def import_model_ref(ref: str) -> nn.Module:
    """`package.module:ClassOrFactory` -> an instance, called with no arguments."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"--model {ref!r}: expected package.module:ClassOrFactory")
    # Like `python -m`, resolve modules from the working directory first.
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"--model {ref!r}: cannot import {module_name} ({exc})") from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise UsageError(f"--model {ref!r}: {module_name} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise UsageError(f"--model {ref!r}: {attr} is not a class or factory")
    instance = target()
    if not isinstance(instance, nn.Module):
        raise UsageError(f"--model {ref!r}: {attr}() returned {type(instance).__name__}, not an nn.Module")
    has_api = callable(getattr(instance, "encode", None)) and callable(getattr(instance, "decode", None))
    has_seed = all(hasattr(instance, a) for a in ("encoder", "fc_mu", "fc_logvar", "decoder"))
    if not (has_api or has_seed):
        raise UsageError(
            f"--model {ref!r}: the module needs encode(x) -> (mu, logvar) and decode(z) -> x_hat, "
            "or the attributes encoder, fc_mu, fc_logvar, decoder"
        )
    return instance
