"""ONNX Runtime sessions configured one way for verify, bench and the runtime (no torch)."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from vae_export.contract import GraphSpec
from vae_export.errors import UsageError, VAEExportError, first_line

DEVICES = ("cpu", "cuda")
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
    path: Path, device: str = "cpu", threads: int | None = None, spec: GraphSpec | None = None
) -> ort.InferenceSession:
    """A session for an artifact, after refusing external data outside its directory and,
    with `spec`, checking its input and output names against the contract."""
    if path.suffix == ".onnx":
        from vae_export.onnxinfo import load_onnx

        load_onnx(path)
    providers = providers_for(device)
    try:
        session = ort.InferenceSession(str(path), sess_options=session_options(threads), providers=providers)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
        raise VAEExportError(f"{path}: ONNX Runtime cannot load it ({first_line(exc)})") from None
    if spec is not None:
        inputs = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        if inputs != [spec.input_name] or outputs != list(spec.output_names):
            raise VAEExportError(
                f"{path}: expected a {spec.role} graph {spec.input_name} -> {', '.join(spec.output_names)}, "
                f"found {', '.join(inputs) or '(no inputs)'} -> {', '.join(outputs)}"
            )
    return session
