"""Where a graph runs: the runtime's engines, behind the small interface `graphs.py` uses
(the inputs' and outputs' names, types and shapes as ONNX Runtime reports them, the graph's
metadata, and `run`). ONNX Runtime is built in; other engines register an opener here, imported
only when asked for (`engine=` of VAEDecoder and the rest), so this package keeps needing
nothing beyond numpy and onnxruntime.

Built in: ONNX Runtime (`onnxruntime`: .onnx and .ort); opened on first use: ExecuTorch
(`executorch`: .pte, `pte.py`; needs `pip install executorch`), OpenVINO (`openvino`) and ONNX
Runtime with OpenVINO's execution provider plugin (`onnxruntime-openvino`). Without `engine=`,
the file's suffix picks the engine (`engine_for`), so an app switches formats by switching
paths.

An engine is named "NAME" or "NAME:PRECISION" ("openvino:bf16"); an opener that runs reduced
precisions takes `precision=` (float32 openers are called without it). "auto" opens the engine
recorded by `vae-export bench --recommend` for this graph on this CPU (`recommend.py`), at
float32 arithmetic; "auto:any" also takes a recorded reduced precision.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vae_export_runtime.contract import PTE_SUFFIX
from vae_export_runtime.errors import RuntimeInputError
from vae_export_runtime.session import make_session, run_limited, session_options

DEFAULT_ENGINE = "onnxruntime"
EXECUTORCH_ENGINE = "executorch"


class Backend(Protocol):
    """A graph opened on one engine."""

    engine: str
    path: Path

    def get_inputs(self) -> Sequence[Any]:
        """Values with `.name`, `.type` ("tensor(float)") and `.shape` (ints; names or None
        for symbolic dimensions), as ONNX Runtime's NodeArg has them."""

    def get_outputs(self) -> Sequence[Any]: ...

    def metadata_map(self) -> Mapping[str, str]:
        """The graph's metadata_props."""

    def run(self, output_names: Sequence[str], feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]: ...


class OrtBackend:
    """ONNX Runtime (its CPU provider, or the providers given: CUDA with onnxruntime-gpu)."""

    precision = "fp32"

    def __init__(self, path: Path, providers: Sequence[str] | None = None, threads: int | None = None,
                 engine: str = DEFAULT_ENGINE, *, low_memory: bool = False) -> None:
        self.engine, self.path, self.low_memory = engine, path, low_memory
        self.session = make_session(path, threads=threads, providers=providers or ["CPUExecutionProvider"],
                                    options=session_options(threads, low_memory=low_memory))

    def get_inputs(self) -> Sequence[Any]:
        return self.session.get_inputs()  # type: ignore[no-any-return]

    def get_outputs(self) -> Sequence[Any]:
        return self.session.get_outputs()  # type: ignore[no-any-return]

    def metadata_map(self) -> Mapping[str, str]:
        return self.session.get_modelmeta().custom_metadata_map  # type: ignore[no-any-return]

    def run(self, output_names: Sequence[str], feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return run_limited(self.session, output_names, feeds, self.path)


Opener = Callable[[Path, "Sequence[str] | None", "int | None"], Backend]
# engine name -> "module:function" of an opener, imported on first use (their packages are optional)
_OPENERS: dict[str, Opener | str] = {
    DEFAULT_ENGINE: OrtBackend,
    EXECUTORCH_ENGINE: "vae_export_runtime.pte:open_backend",
    "onnxruntime-openvino": "vae_export_runtime.ort_openvino:open_backend",
    "openvino": "vae_export_runtime.openvino_backend:open_backend",
}
# A file suffix that names its engine; every other file is ONNX Runtime's (.onnx, .ort).
_SUFFIX_ENGINES = {PTE_SUFFIX: EXECUTORCH_ENGINE}
AUTO = "auto"


def register_engine(name: str, opener: Opener | str) -> None:
    """Make `engine=name` open graphs with `opener(path, providers, threads)` (or the
    "module:function" that names it, imported when first asked for)."""
    _OPENERS[name] = opener


def engines() -> tuple[str, ...]:
    return tuple(_OPENERS)


def engine_for(path: Path) -> str:
    """The engine that runs a file of this kind: ExecuTorch for .pte, else ONNX Runtime."""
    return _SUFFIX_ENGINES.get(Path(path).suffix.lower(), DEFAULT_ENGINE)


def parse_engine(engine: Any) -> tuple[str, str | None]:
    """("NAME", precision or None) of an engine name "NAME" or "NAME:PRECISION"
    (RuntimeInputError for anything else, or a name no opener is registered under)."""
    known = ", ".join([*_OPENERS, AUTO, AUTO + ":any"])
    if not isinstance(engine, str) or engine.count(":") > 1:
        raise RuntimeInputError(f"engine: expected one of {known} (optionally NAME:PRECISION), found {engine!r}")
    name, _, precision = engine.partition(":")
    if name != AUTO and name not in _OPENERS:
        raise RuntimeInputError(f"engine: expected one of {known} (optionally NAME:PRECISION), found {engine!r}")
    if name == AUTO and precision not in ("", "any"):
        raise RuntimeInputError(f"engine: expected auto or auto:any, found {engine!r}")
    return name, precision or None


def open_backend(path: Path, engine: str | None = None, providers: Sequence[str] | None = None,
                 threads: int | None = None, role: str | None = None) -> Backend:
    """The graph at `path` opened on `engine` (None: the one its suffix names, `engine_for`;
    RuntimeInputError for an unknown engine, or one whose package is missing). "auto" consults
    the recommendation beside the graph for a graph of `role`; the backend's `engine_reason`
    then says what was chosen and why."""
    name, precision = parse_engine(engine_for(path) if engine is None else engine)
    reason = None
    if name == AUTO:
        from vae_export_runtime.recommend import choose

        choice = choose(path, role or "", any_precision=precision == "any")
        if choice.fallback and "another CPU" in choice.reason:
            import warnings

            warnings.warn(choice.reason, EngineFallbackWarning, stacklevel=3)
        name, precision, reason = choice.engine, (None if choice.precision == "fp32" else choice.precision), choice.reason
    opener = _OPENERS[name]
    if isinstance(opener, str):
        module, _, attr = opener.partition(":")
        try:
            opener = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            raise RuntimeInputError(f"engine {name} needs a package that is not installed "
                                    f"({exc.name or module})") from None
        _OPENERS[name] = opener
    backend = opener(path, providers, threads) if precision is None else opener(path, providers, threads,
                                                                                  precision=precision)
    backend.engine_reason = reason or (f"engine={engine!r} as asked" if engine is not None  # type: ignore[attr-defined]
                                       else f"{name}, for a {Path(path).suffix} file")
    return backend


class EngineFallbackWarning(UserWarning):
    """engine="auto" did not use the recorded recommendation (it was measured on another CPU)."""
