"""ONNX Runtime sessions configured one way for verify, bench and the runtime (no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort

from vae_export.contract import GraphSpec
from vae_export.errors import UsageError, VAEExportError, first_line
from vae_export.options import DEVICES

GPU_INSTALL_HINT = (
    "install the GPU build of ONNX Runtime instead of the CPU one: "
    "pip uninstall -y onnxruntime && pip install onnxruntime-gpu (see README, 'GPU')"
)


def providers_for(device: str) -> list[str]:
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise UsageError(f"--device cuda: ONNX Runtime has no CUDA execution provider; {GPU_INSTALL_HINT}")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise UsageError(f"--device {device!r}: expected one of {', '.join(DEVICES)}")


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """Latency-tuned options: full graph optimisation; a fixed intra-op pool when asked
    (the same count PyTorch gets); sequential execution, since these graphs are chains
    with no branches to run in parallel; no spinning inter-op pool."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: ORT's warnings here are about its own graph rewrites
    return options


def make_session(
    path: Path,
    device: str = "cpu",
    threads: int | None = None,
    spec: GraphSpec | None = None,
    *,
    providers: Sequence[str] | None = None,
    validate: bool = True,
) -> ort.InferenceSession:
    """The one way this project opens a graph in ONNX Runtime (verify, bench, export's checks,
    inspect, the runtime): `session_options`, the device's providers (or `providers` as
    given), and, with `spec`, the input and output names checked against the contract.

    `validate` first loads an .onnx with the onnx package and refuses external data outside
    its directory; the torch-free runtime passes False (it has no onnx package), and ONNX
    Runtime's own path check (1.20+) then refuses such data."""
    if validate and path.suffix == ".onnx":
        from vae_export.onnxinfo import load_onnx

        load_onnx(path)
    chosen = list(providers) if providers is not None else providers_for(device)
    try:
        session = ort.InferenceSession(str(path), sess_options=session_options(threads), providers=chosen)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
        raise VAEExportError(f"{path}: ONNX Runtime cannot load it ({first_line(exc)})") from None
    if spec is not None:
        check_names(session, spec, path)
    return session


def check_names(session: ort.InferenceSession, spec: GraphSpec, path: Path) -> None:
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    if inputs != [spec.input_name] or outputs != list(spec.output_names):
        raise VAEExportError(
            f"{path}: expected a {spec.role} graph {spec.input_name} -> {', '.join(spec.output_names)}, "
            f"found {', '.join(inputs) or '(no inputs)'} -> {', '.join(outputs)}"
        )
