"""ONNX Runtime with OpenVINO's execution provider plugin (`pip install vae-export[peers]`,
which brings `onnxruntime-ep-openvino`): an engine of its own, `onnxruntime-openvino`.

The session is the runtime's (`vae_export_runtime.ort_openvino`: the plugin registered once,
the provider put on its CPU device with `add_provider_for_devices`, the precision pinned to f32
through the provider's load_config unless `bf16` is asked for), timed with the same IO binding
as ONNX Runtime's CPU provider. The plugin offers Intel devices only; elsewhere `missing()`
gives that reason and bench leaves the engine out.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vae_export.engines.base import BF16, GRAPH, Engine, Feeds, Runner, Target
from vae_export.engines.onnxruntime import bound_call
from vae_export_runtime import ort_openvino as plugin
from vae_export_runtime.contract import FP32
from vae_export_runtime.session import check_names, check_signature, run_limited

NAME = plugin.NAME


class OrtOpenVinoRunner(Runner):
    engine = NAME
    provider = plugin.EP_NAME

    def __init__(self, target: Target, threads: int | None) -> None:
        assert target.path is not None
        self.spec, self.path, self.precision = target.spec, target.path, target.precision
        self.session = plugin.make_session(target.path, threads, target.precision)
        check_names(self.session, target.spec, target.path)
        if target.shapes is not None:
            check_signature(self.session, target.spec, target.path, target.shapes)

    def run(self, feeds: Feeds) -> list[np.ndarray]:
        return run_limited(self.session, self.spec.output_names, feeds, self.path)

    def timed_call(self, feeds: Feeds) -> Callable[[], Any]:
        return bound_call(self.session, self.spec, feeds, "cpu", self.path)


class OrtOpenVinoEngine(Engine):
    name = NAME
    kind = GRAPH
    package = plugin.PACKAGE
    install_hint = "pip install 'vae-export[peers]'"
    peer = True
    precisions = (FP32, BF16)

    def missing(self) -> str | None:
        return plugin.unavailable()

    def accepts(self, variant: str, path: Path) -> bool:
        return variant == FP32 and path.suffix == ".onnx"

    def open(self, target: Target, device: str = "cpu", threads: int | None = None) -> Runner:
        return OrtOpenVinoRunner(target, threads)
