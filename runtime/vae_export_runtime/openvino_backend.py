"""Native OpenVINO (`pip install openvino`): the runtime's backend for `engine="openvino"`,
imported only when that engine is asked for.

As the toolkit's bench runs it: the model reshaped to each call's input shapes (one compiled
model per shape, kept), the LATENCY hint with one stream, and an explicit precision hint:
f32 unless bf16 is asked for, since OpenVINO's CPU plugin defaults to bfloat16 on CPUs with
AVX-512 BF16 or AMX. The graph's metadata_props come from OpenVINO's rt_info ("framework").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vae_export_runtime.errors import RuntimeInputError, VAEExportError, first_line

NAME = "openvino"
PRECISIONS = {"fp32": "f32", "bf16": "bf16"}
_TYPES = {"f32": "tensor(float)", "f16": "tensor(float16)", "i64": "tensor(int64)", "i32": "tensor(int32)"}


@dataclass(frozen=True)
class _Value:
    """An input or output as ONNX Runtime's NodeArg describes it (name, type, shape)."""

    name: str
    type: str
    shape: list[int | None]


CONTRACT_NAMES = ("x", "z", "y", "x_hat", "mu", "logvar", "logits")


def _value(port: Any) -> _Value:
    """A port as a NodeArg; of its tensor names (a port may have several: the last node's
    output and the graph's), the contract's name when it has one."""
    shape = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
    kind = port.get_element_type().get_type_name()
    names = port.get_names()
    name = next((n for n in CONTRACT_NAMES if n in names), port.get_any_name())
    return _Value(name, _TYPES.get(kind, f"tensor({kind})"), shape)


class OpenVinoBackend:
    def __init__(self, path: Path, threads: int | None = None, precision: str = "fp32") -> None:
        try:
            import openvino as ov
        except ImportError:
            raise RuntimeInputError("engine openvino needs the openvino package; pip install openvino") from None
        if precision not in PRECISIONS:
            raise RuntimeInputError(f"precision: engine {NAME} runs {', '.join(PRECISIONS)}, found {precision!r}")
        self.engine, self.path, self.precision, self.threads = NAME, path, precision, threads
        self.core = ov.Core()
        try:
            self.model = self.core.read_model(str(path))
        except Exception as exc:
            raise RuntimeInputError(f"{path}: OpenVINO cannot load it ({first_line(exc)})") from None
        self._compiled: dict[tuple[tuple[int, ...], ...], Any] = {}

    def get_inputs(self) -> Sequence[Any]:
        return [_value(p) for p in self.model.inputs]

    def get_outputs(self) -> Sequence[Any]:
        return [_value(p) for p in self.model.outputs]

    def metadata_map(self) -> Mapping[str, str]:
        info = self.model.get_rt_info()
        framework = info["framework"] if "framework" in info else {}
        if not isinstance(framework, dict):
            return {}
        return {str(k): v.astype(str) if hasattr(v, "astype") else str(v) for k, v in framework.items()}

    def _request(self, feeds: Mapping[str, np.ndarray]) -> Any:
        import openvino as ov

        names = [p.get_any_name() for p in self.model.inputs]
        key = tuple(tuple(feeds[n].shape) for n in names)
        if key not in self._compiled:
            model = self.model.clone()
            model.reshape({n: ov.PartialShape(list(feeds[n].shape)) for n in names})
            config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1",
                      "INFERENCE_PRECISION_HINT": PRECISIONS[self.precision]}
            if self.threads:
                config["INFERENCE_NUM_THREADS"] = str(self.threads)
            self._compiled[key] = self.core.compile_model(model, "CPU", config).create_infer_request()
        return self._compiled[key]

    def run(self, output_names: Sequence[str], feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        try:
            result = self._request(feeds).infer(dict(feeds))
        except Exception as exc:
            raise VAEExportError(f"{self.path}: OpenVINO failed to run it ({first_line(exc)})") from None
        by_name = {name: value for port, value in result.items() for name in port.get_names()}
        return [np.array(by_name[name]) for name in output_names]


def open_backend(path: Path, providers: Sequence[str] | None = None, threads: int | None = None,
                 precision: str = "fp32") -> OpenVinoBackend:
    return OpenVinoBackend(path, threads, precision)
