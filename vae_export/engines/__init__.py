"""The engine registry: what runs graphs in verify and bench, by name.

Built in: `onnxruntime` (every .onnx variant and .ort; CPU or CUDA), `torch` (PyTorch eager,
the reference; `torch:bf16` under CPU autocast), `openvino` (native OpenVINO on the fp32 graph,
a peer bench times when installed; `openvino:bf16`), `onnxruntime-openvino` (ONNX Runtime with
OpenVINO's execution provider plugin, a peer where the plugin offers a device). An engine is
named "NAME" or "NAME:PRECISION" (`resolve`); reduced precisions run only on CPUs that compute
them natively and are verified on PSNR like reduced variants. Code outside the package adds an engine with `register(MyEngine())`, or with an
entry point in the group `vae_export.engines` naming an `Engine` subclass or instance:

    [project.entry-points."vae_export.engines"]
    mine = "my_package.engine:MyEngine"
"""

from __future__ import annotations

from importlib.metadata import entry_points

from dataclasses import dataclass

from vae_export.engines.base import BF16, GRAPH, MODEL, Engine, Runner, Target
from vae_export_runtime.contract import FP32
from vae_export.errors import UsageError

ENTRY_POINT_GROUP = "vae_export.engines"
DEFAULT = "onnxruntime"  # what verify checks and the runtime uses unless told otherwise
REFERENCE = "torch"  # what every engine is verified against
_registered: list[Engine] = []
_loaded_plugins = False


def register(engine: Engine) -> Engine:
    """Add an engine (or replace the one of the same name); returns it."""
    if not isinstance(engine, Engine) or not engine.name:
        raise TypeError(f"register: expected a named vae_export.engines.Engine, found {engine!r}")
    _registered[:] = [e for e in _registered if e.name != engine.name]
    _registered.append(engine)
    return engine


def unregister(name: str) -> None:
    _registered[:] = [e for e in _registered if e.name != name]


def _builtins() -> list[Engine]:
    from vae_export.engines.onnxruntime import OnnxRuntimeEngine
    from vae_export.engines.openvino import OpenVinoEngine
    from vae_export.engines.ort_openvino import OrtOpenVinoEngine
    from vae_export.engines.pytorch import TorchEngine

    return [OnnxRuntimeEngine(), TorchEngine(), OpenVinoEngine(), OrtOpenVinoEngine()]


def _plugins() -> None:
    global _loaded_plugins
    if _loaded_plugins:
        return
    _loaded_plugins = True
    for point in entry_points(group=ENTRY_POINT_GROUP):
        found = point.load()
        engine = found() if isinstance(found, type) else found
        if isinstance(engine, Engine) and engine.name not in {e.name for e in _registered}:
            register(engine)


def engines() -> list[Engine]:
    """Every engine: the built-ins, then registered ones (a registered engine replaces a
    built-in of the same name)."""
    _plugins()
    names = {e.name for e in _registered}
    return [e for e in _builtins() if e.name not in names] + list(_registered)


def get(name: str) -> Engine:
    """The engine of that name, or a UsageError listing the known ones."""
    for engine in engines():
        if engine.name == name:
            return engine
    raise UsageError(f"--engine {name!r}: expected one of {', '.join(e.name for e in engines())}")


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


__all__ = ["BF16", "FP32", "Choice", "resolve", "DEFAULT", "ENTRY_POINT_GROUP", "GRAPH", "MODEL", "REFERENCE", "Engine", "Runner", "Target", "engines",
           "get", "peers", "register", "unregister"]
