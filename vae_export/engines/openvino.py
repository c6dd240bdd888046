"""OpenVINO, native (`pip install vae-export[peers]`): the strongest CPU runtime for
convolutions, on the same fp32 .onnx file ONNX Runtime runs.

As OpenVINO's documentation recommends for latency: the model reshaped to the static input
shapes (one compiled model per shape), the LATENCY hint with one stream and `threads`
inference threads, one infer request reused, input and output memory shared with numpy, and
an explicit inference precision: f32 unless `openvino:bf16` asks for bfloat16. On CPUs with
AVX-512 BF16 or AMX, OpenVINO's default runs in bfloat16, which would make an "fp32" row a
reduced-precision one; `bf16` rows say what they are and are verified on PSNR.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vae_export.engines.base import BF16, GRAPH, Engine, Feeds, Runner, Target
from vae_export_runtime.contract import FP32

NAME = "openvino"
HINTS = {FP32: "f32", BF16: "bf16"}  # our precision -> OpenVINO's INFERENCE_PRECISION_HINT


class OpenVinoRunner(Runner):
    engine = NAME
    provider = "CPU"

    def __init__(self, target: Target, threads: int | None) -> None:
        import openvino as ov

        assert target.path is not None
        self.spec, self.threads, self.precision = target.spec, threads, target.precision
        self.core = ov.Core()
        self.model = self.core.read_model(str(target.path))
        self._requests: dict[tuple[tuple[int, ...], ...], Any] = {}

    def _request(self, feeds: Feeds) -> Any:
        """The infer request compiled for these input shapes (kept: one compile per shape)."""
        import openvino as ov

        key = tuple(tuple(feeds[n].shape) for n in self.spec.input_names)
        if key not in self._requests:
            model = self.model.clone()
            model.reshape({name: ov.PartialShape(list(feeds[name].shape)) for name in self.spec.input_names})
            config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", "INFERENCE_PRECISION_HINT": HINTS[self.precision]}
            if self.threads:
                config["INFERENCE_NUM_THREADS"] = str(self.threads)
            compiled = self.core.compile_model(model, "CPU", config)
            self._requests[key] = compiled.create_infer_request()
        return self._requests[key]

    def run(self, feeds: Feeds) -> list[np.ndarray]:
        request = self._request(feeds)
        result = request.infer({n: feeds[n] for n in self.spec.input_names})
        # an output port may carry several tensor names (the graph's last node's and ours)
        by_name = {name: value for output, value in result.items() for name in output.get_names()}
        return [np.array(by_name[name]) for name in self.spec.output_names]

    def timed_call(self, feeds: Feeds) -> Callable[[], Any]:
        bound = {n: feeds[n] for n in self.spec.input_names}
        request = self._request(feeds)
        request.infer(bound)  # compiles kernels for this shape outside the timed calls

        def call() -> Any:
            return request.infer(bound, share_inputs=True, share_outputs=True)

        call.keepalive = (bound, request)  # type: ignore[attr-defined]
        return call


class OpenVinoEngine(Engine):
    name = NAME
    kind = GRAPH
    package = "openvino"
    install_hint = "pip install 'vae-export[peers]'"
    peer = True
    precisions = (FP32, BF16)

    def accepts(self, variant: str, path: Path) -> bool:
        return variant == FP32 and path.suffix == ".onnx"

    def open(self, target: Target, device: str = "cpu", threads: int | None = None) -> Runner:
        return OpenVinoRunner(target, threads)
