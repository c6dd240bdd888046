"""Where a graph runs: the runtime's engines, behind the small interface `graphs.py` uses
(the inputs' and outputs' names, types and shapes as ONNX Runtime reports them, the graph's
metadata, and `run`). ONNX Runtime is built in; other engines register an opener here, imported
only when asked for (`engine=` of VAEDecoder and the rest), so this package keeps needing
nothing beyond numpy and onnxruntime.

Built in: ONNX Runtime (`onnxruntime`: .onnx and .ort) and ExecuTorch (`executorch`: .pte,
`pte.py`, imported when a .pte is opened; needs `pip install executorch`). Without `engine=`,
the file's suffix picks the engine (`engine_for`), so an app switches formats by switching
paths.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vae_export_runtime.contract import PTE_SUFFIX
from vae_export_runtime.errors import RuntimeInputError
from vae_export_runtime.session import make_session, run_limited

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

    def __init__(self, path: Path, providers: Sequence[str] | None = None, threads: int | None = None,
                 engine: str = DEFAULT_ENGINE) -> None:
        self.engine, self.path = engine, path
        self.session = make_session(path, threads=threads, providers=providers or ["CPUExecutionProvider"])

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
_OPENERS: dict[str, Opener | str] = {DEFAULT_ENGINE: OrtBackend, EXECUTORCH_ENGINE: "vae_export_runtime.pte:open_backend"}
# A file suffix that names its engine; every other file is ONNX Runtime's (.onnx, .ort).
_SUFFIX_ENGINES = {PTE_SUFFIX: EXECUTORCH_ENGINE}


def register_engine(name: str, opener: Opener | str) -> None:
    """Make `engine=name` open graphs with `opener(path, providers, threads)` (or the
    "module:function" that names it, imported when first asked for)."""
    _OPENERS[name] = opener


def engines() -> tuple[str, ...]:
    return tuple(_OPENERS)


def engine_for(path: Path) -> str:
    """The engine that runs a file of this kind: ExecuTorch for .pte, else ONNX Runtime."""
    return _SUFFIX_ENGINES.get(Path(path).suffix.lower(), DEFAULT_ENGINE)


def open_backend(path: Path, engine: str | None = None, providers: Sequence[str] | None = None,
                 threads: int | None = None) -> Backend:
    """The graph at `path` opened on `engine` (None: the one its suffix names, `engine_for`);
    RuntimeInputError for an unknown engine."""
    if engine is None:
        engine = engine_for(path)
    if not isinstance(engine, str) or engine not in _OPENERS:
        raise RuntimeInputError(f"engine: expected one of {', '.join(_OPENERS)}, found {engine!r}")
    opener = _OPENERS[engine]
    if isinstance(opener, str):
        module, _, attr = opener.partition(":")
        opener = getattr(importlib.import_module(module), attr)
        _OPENERS[engine] = opener
    return opener(path, providers, threads)
