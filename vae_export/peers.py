"""Peer engines timed beside ONNX Runtime in `bench`, when installed (`pip install
vae-export[peers]`): today OpenVINO, the strongest CPU runtime for convolutions.

Each peer takes the same fp32 .onnx file and input as ONNX Runtime, and is timed on the call an
app makes: input in memory, output returned as an array. Imported only when bench runs.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

PeerFactory = Callable[[Path, dict[str, np.ndarray], int], Callable[[], Any]]


def openvino_call(path: Path, feeds: dict[str, np.ndarray], threads: int) -> Callable[[], Any]:
    """OpenVINO as its documentation recommends for latency: the model reshaped to the static
    input shapes (one compiled model per shape), the LATENCY hint with one stream and `threads`
    inference threads, f32 precision, one infer request reused, input and output memory shared
    with numpy. `feeds`: the graph's inputs by name."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape({name: ov.PartialShape(list(x.shape)) for name, x in feeds.items()})
    # f32 inference precision: on CPUs with AVX-512 BF16 or AMX, OpenVINO's default runs
    # convolutions in bfloat16, which would make this "fp32" row a reduced-precision one.
    compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1",
                                                 "INFERENCE_NUM_THREADS": str(threads),
                                                 "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    request.infer(feeds)  # compiles kernels for this shape outside the timed calls

    def call() -> Any:
        return request.infer(feeds, share_inputs=True, share_outputs=True)

    call.keepalive = (feeds, compiled)  # type: ignore[attr-defined]
    return call


PEERS: dict[str, tuple[str, PeerFactory]] = {"openvino": ("openvino", openvino_call)}


def available_peers() -> dict[str, PeerFactory]:
    """The peers whose package is installed, by engine name."""
    return {name: factory for name, (module, factory) in PEERS.items() if importlib.util.find_spec(module)}
