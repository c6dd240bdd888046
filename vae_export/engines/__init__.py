"""The engine registry: what runs graphs in verify and bench, by name.

Built in: `onnxruntime` (every .onnx variant and .ort; CPU or CUDA), `torch` (PyTorch eager,
the reference; `torch:bf16` under CPU autocast), `openvino` (native OpenVINO on the fp32 graph,
a peer bench times when installed; `openvino:bf16`), `onnxruntime-openvino` (ONNX Runtime with
OpenVINO's execution provider plugin, a peer where the plugin offers a device), `executorch`
(the .pte programs of the executorch variants, XNNPACK on CPU; a peer when installed). An engine
is named "NAME" or "NAME:PRECISION" (`resolve`); reduced precisions run only on CPUs that compute
them natively and are verified on PSNR like reduced variants. Code outside the package adds an
engine with `register(MyEngine())`, or with an
entry point in the group `vae_export.engines` naming an `Engine` subclass or instance:

    [project.entry-points."vae_export.engines"]
    mine = "my_package.engine:MyEngine"
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vae_export.engines.base import BF16, GRAPH, MODEL, Engine, Runner, Target
from vae_export.errors import UsageError
from vae_export.registry import Registry
from vae_export_runtime.contract import FP32

ENTRY_POINT_GROUP = "vae_export.engines"
DEFAULT = "onnxruntime"  # what verify checks and the runtime uses unless told otherwise
REFERENCE = "torch"  # what every engine is verified against


def _builtins() -> list[Engine]:
    from vae_export.engines.executorch import ExecuTorchEngine
    from vae_export.engines.onnxruntime import OnnxRuntimeEngine
    from vae_export.engines.openvino import OpenVinoEngine
    from vae_export.engines.ort_openvino import OrtOpenVinoEngine
    from vae_export.engines.pytorch import TorchEngine

    return [OnnxRuntimeEngine(), TorchEngine(), OpenVinoEngine(), OrtOpenVinoEngine(), ExecuTorchEngine()]


_REGISTRY = Registry(Engine, ENTRY_POINT_GROUP, _builtins)
register, unregister = _REGISTRY.register, _REGISTRY.unregister


def engines() -> list[Engine]:
    """Every engine: registered ones (replacing a built-in of the same name), then the built-ins."""
    return _REGISTRY.entries()


def get(name: str) -> Engine:
    """The engine of that name, or a UsageError listing the known ones."""
    for engine in engines():
        if engine.name == name:
            return engine
    raise UsageError(f"--engine {name!r}: expected one of {', '.join(e.name for e in engines())}")


def for_artifact(variant: str, path: Path) -> Engine | None:
    """The engine that runs an artifact when none is named: ONNX Runtime when it accepts it
    (.onnx and .ort), else the first engine that does (ExecuTorch for .pte), installed or not."""
    ordered = sorted(engines(), key=lambda e: e.name != DEFAULT)  # stable: registry order after the default
    return next((e for e in ordered if e.kind == GRAPH and e.accepts(variant, path)), None)


@dataclass(frozen=True)
class Choice:
    """An engine at one precision: what a bench row or a verify run names."""

    engine: Engine
    precision: str = FP32

    @property
    def label(self) -> str:
        return self.engine.name if self.precision == FP32 else f"{self.engine.name}:{self.precision}"


def resolve(spec: str) -> Choice:
    """The engine and precision "NAME" or "NAME:PRECISION" names (UsageError otherwise, or
    when the CPU does not compute that precision natively)."""
    name, _, precision = spec.partition(":")
    engine = get(name)
    if precision:
        engine.check_precision(precision)
    return Choice(engine, precision or FP32)


def peers() -> list[Engine]:
    """The peer engines installed here (bench times them beside ONNX Runtime on CPU)."""
    return [e for e in engines() if e.peer and e.missing() is None]


__all__ = ["BF16", "DEFAULT", "ENTRY_POINT_GROUP", "FP32", "GRAPH", "MODEL", "REFERENCE", "Choice", "Engine", "Runner",
           "Target", "engines", "for_artifact", "get", "peers", "register", "resolve", "unregister"]
