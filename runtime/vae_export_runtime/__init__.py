"""vae-export-runtime: run the graphs vae-export exports, with numpy and onnxruntime only.

    from vae_export_runtime import VAEDecoder
    images = VAEDecoder("artifacts/decoder.onnx").sample(16, seed=0)   # (16, 1, 28, 28) in [0, 1]

Nothing here imports torch, onnx or anything platform-specific; docs/contract.md is the
contract the graphs meet and this package reads (`codec.py`).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
# The graphs (numpy, onnxruntime) load on first use: `vae_export_runtime.limits` and the other
# light modules stay importable without them (the toolkit's CLI starts without onnxruntime).
_LAZY = {"VAE": "graphs", "VAEClassifier": "graphs", "VAEDecoder": "graphs", "VAEEncoder": "graphs",
         "RuntimeInputError": "errors", "UsageError": "errors", "VAEExportError": "errors"}
__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'vae_export_runtime' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"vae_export_runtime.{_LAZY[name]}"), name)
