"""What an engine is: something that runs a graph of the contract, either from an artifact
file (ONNX Runtime, OpenVINO, ExecuTorch, ...) or from the PyTorch module itself (PyTorch
eager), behind one interface that verify and bench iterate over (after Polygraphy's
`BaseRunner`). `vae_export.engines` holds the registry.

A `Runner` is an engine opened on one graph: `run` returns outputs for verify, `timed_call`
returns the zero-argument call bench times (inputs already bound, outputs returned as the app
would get them).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vae_export.errors import UsageError
from vae_export_runtime.contract import FP32, GraphSpec
from vae_export_runtime.cpu import cpu_model, has_bf16

BF16 = "bf16"

GRAPH, MODEL = "graph", "model"  # engine kinds: runs artifact files, or the PyTorch module
Feeds = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Target:
    """One graph to run: its spec, and the artifact file (graph engines) or PyTorch module
    (model engines). `shapes` are the contract's shapes the manifest records, for the
    signature check of a file before it runs."""

    spec: GraphSpec
    variant: str = FP32
    path: Path | None = None
    module: Any = None  # torch.nn.Module (model engines); Any so this module needs no torch
    shapes: Mapping[str, tuple[int | None, ...]] | None = None
    sha256: str | None = None  # the manifest's, for engines whose loader checks the bytes (ExecuTorch)
    # the arithmetic the engine runs at: FP32 (as the graph says), or a reduced precision the
    # engine offers (`Engine.precisions`, e.g. "bf16"), verified on PSNR like a reduced variant
    precision: str = FP32


class Runner:
    """An engine opened on one target."""

    engine: str = ""
    provider: str = ""  # what the row's `provider` says: an ORT provider, "CPU", the torch device
    precision: str = FP32  # the arithmetic it runs at (reduced ones are verified on PSNR)

    def run(self, feeds: Feeds) -> list[np.ndarray]:
        """The outputs for `feeds` (by input name), in the spec's output order, as new arrays."""
        raise NotImplementedError

    def timed_call(self, feeds: Feeds) -> Callable[[], Any]:
        """A call that runs the graph on `feeds` (bound once), for bench to time."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the runner holds beyond its own lifetime (a module moved to a GPU)."""


class Engine:
    """An engine kind. Subclass it, set the attributes, implement `open` (and `accepts` for
    graph engines), and register an instance (`vae_export.engines.register`, or the entry
    point group `vae_export.engines`)."""

    name: str = ""
    kind: str = GRAPH
    package: str | None = None  # the import the engine needs (None: always there)
    install_hint: str = ""  # how to get `package`
    # bench also times it when installed, without being asked (CPU only): the strongest peers
    peer: bool = False
    devices: tuple[str, ...] = ("cpu",)
    # arithmetic it can run at; reduced ones only where the CPU computes them natively (bf16:
    # AVX-512 BF16 or AMX), so that a "bf16" row is never float32 under another name
    precisions: tuple[str, ...] = (FP32,)

    def missing(self) -> str | None:
        """Why the engine cannot run here (its package is absent), or None."""
        if self.package and importlib.util.find_spec(self.package) is None:
            return f"engine {self.name} needs the {self.package} package; {self.install_hint}".rstrip("; ")
        return None

    def check(self, device: str) -> None:
        """UsageError unless the engine can run on `device` here."""
        reason = self.missing()
        if reason is None and device not in self.devices:
            reason = f"engine {self.name} runs on {', '.join(self.devices)}, not {device}"
        if reason:
            raise UsageError(reason)

    def check_precision(self, precision: str) -> None:
        """UsageError unless the engine runs `precision` here."""
        if precision not in self.precisions:
            raise UsageError(f"--engine {self.name}:{precision}: {self.name} runs {', '.join(self.precisions)}")
        if precision == BF16 and not has_bf16():
            raise UsageError(f"--engine {self.name}:{precision}: this CPU ({cpu_model()}) has no native bfloat16 "
                             f"(AVX-512 BF16 or AMX); {self.name} would emulate it or fall back to float32")

    def usable_precisions(self) -> tuple[str, ...]:
        """The precisions the engine runs on this CPU."""
        return tuple(p for p in self.precisions if p == FP32 or (p == BF16 and has_bf16()))

    def accepts(self, variant: str, path: Path) -> bool:
        """Graph engines: whether this artifact (variant, file) is one it runs."""
        return False

    def open(self, target: Target, device: str = "cpu", threads: int | None = None) -> Runner:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<engine {self.name}>"
