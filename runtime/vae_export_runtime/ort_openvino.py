"""ONNX Runtime with OpenVINO's execution provider, loaded as a plugin
(`pip install onnxruntime-ep-openvino`, beside the CPU `onnxruntime`): the engine
`onnxruntime-openvino`. Imported only when that engine is asked for.

How the plugin is used (ONNX Runtime 1.23+): `register_execution_provider_library` loads it
once per process; the provider offers the devices it supports (`get_ep_devices`), and
`SessionOptions.add_provider_for_devices` puts a session on them, CPU provider behind it for
any node OpenVINO leaves. Precision: OpenVINO's CPU plugin runs in bfloat16 by default where
the CPU has AVX-512 BF16 or AMX, and the provider's own `precision` option is not applied to
that plugin, so the hint goes through the provider's `load_config`:
{"CPU": {"INFERENCE_PRECISION_HINT": "f32"}} unless a reduced precision is asked for.

The plugin lists Intel devices only (its factory skips hardware whose vendor id is not
Intel's), so on an AMD CPU it offers no device: `unavailable()` says so, and the engine is
refused with that reason rather than silently running on ONNX Runtime's CPU provider.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


from vae_export_runtime.backends import OrtBackend
from vae_export_runtime.errors import RuntimeInputError, first_line

NAME = "onnxruntime-openvino"
EP_NAME = "OpenVINOExecutionProvider"
PACKAGE = "onnxruntime_ep_openvino"
INSTALL_HINT = "pip install onnxruntime-ep-openvino (beside onnxruntime 1.23 or newer)"
PRECISIONS = {"fp32": "f32", "bf16": "bf16"}  # ours -> OpenVINO's INFERENCE_PRECISION_HINT
_registered = False


def _register() -> None:
    global _registered
    if _registered:
        return
    import onnxruntime as ort
    import onnxruntime_ep_openvino as plugin

    ort.register_execution_provider_library(EP_NAME, plugin.get_library_path())
    _registered = True


def devices(kind: str = "CPU") -> list[Any]:
    """The OpenVINO provider's devices of `kind` (OrtEpDevice), after registering the plugin."""
    import onnxruntime as ort

    _register()
    return [d for d in ort.get_ep_devices() if d.ep_name == EP_NAME and d.device.type.name == kind]


def unavailable() -> str | None:
    """Why the engine cannot run here (package missing, no device offered), or None."""
    if importlib.util.find_spec(PACKAGE) is None:
        return f"engine {NAME} needs the {PACKAGE} package; {INSTALL_HINT}"
    try:
        found = devices()
    except Exception as exc:  # a plugin built for another onnxruntime fails to register
        return f"engine {NAME}: the OpenVINO plugin does not load ({first_line(exc)})"
    if not found:
        from vae_export_runtime.cpu import cpu_model

        return (f"engine {NAME}: the OpenVINO execution provider offers no CPU device on this machine "
                f"({cpu_model()}; the plugin lists Intel devices only)")
    return None


def session_options(threads: int | None, precision: str = "fp32", *, low_memory: bool = False) -> Any:
    """The project's session options (`session.session_options`) with the OpenVINO provider
    on the CPU, at `precision` through its load_config."""
    from vae_export_runtime.session import session_options as base

    if precision not in PRECISIONS:
        raise RuntimeInputError(f"precision: engine {NAME} runs {', '.join(PRECISIONS)}, found {precision!r}")
    reason = unavailable()
    if reason:
        raise RuntimeInputError(reason)
    options = base(threads, low_memory=low_memory)
    config = {"CPU": {"INFERENCE_PRECISION_HINT": PRECISIONS[precision], "PERFORMANCE_HINT": "LATENCY",
                      **({"INFERENCE_NUM_THREADS": str(threads)} if threads else {})}}
    options.add_provider_for_devices(devices(), {"device_type": "CPU", "load_config": json.dumps(config)})
    return options


def make_session(path: Path, threads: int | None = None, precision: str = "fp32") -> Any:
    """An InferenceSession of `path` on the OpenVINO provider (CPU provider as fallback)."""
    import onnxruntime as ort

    options = session_options(threads, precision)
    try:
        return ort.InferenceSession(str(path), sess_options=options)
    except Exception as exc:
        raise RuntimeInputError(f"{path}: ONNX Runtime with OpenVINO cannot load it ({first_line(exc)})") from None


class OrtOpenVinoBackend(OrtBackend):
    """The runtime's backend for `engine="onnxruntime-openvino"`: an ONNX Runtime session like
    `backends.OrtBackend`'s (the same inputs, outputs, metadata and time-limited run), made
    with OpenVINO's execution provider on its device."""

    def __init__(self, path: Path, threads: int | None = None, precision: str = "fp32") -> None:
        self.engine, self.path, self.precision, self.low_memory = NAME, path, precision, False
        self.session = make_session(path, threads, precision)


def open_backend(path: Path, providers: Sequence[str] | None = None, threads: int | None = None,
                 precision: str = "fp32") -> OrtOpenVinoBackend:
    """The opener `backends.py` registers for `onnxruntime-openvino` (providers: not used; the
    provider is OpenVINO's)."""
    return OrtOpenVinoBackend(path, threads, precision)
