"""vae_export/ceilings.py: the one-node kernel graphs behind the sweep's ceiling figures
compute what they claim, through the same bound call the bench uses."""


import numpy as np
import onnxruntime as ort
from onnx import load_from_string, numpy_helper

from vae_export import ceilings
from vae_export.engines.onnxruntime import bound_call
from vae_export_runtime.session import session_options



def _session(model: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(model, sess_options=session_options(1), providers=["CPUExecutionProvider"])


def _initializers(model: bytes) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in load_from_string(model).graph.initializer}


def test_integer_kernel_binds_an_int32_output_and_matches_numpy():
    rng = np.random.default_rng(3)
    model = ceilings.matmul_u8s8(40, 24, rng)
    session = _session(model)
    x = rng.integers(0, 256, (5, 40), dtype=np.uint8)
    (out,) = bound_call(session, ceilings.KERNEL, {"x": x})()
    w = _initializers(model)["w"].astype(np.int64)
    assert out.dtype == np.int32 and out.shape == (5, 24)
    np.testing.assert_array_equal(out, (x.astype(np.int64) - 128) @ w)


def test_gemm_kernel_is_the_exporters_linear_layer():
    rng = np.random.default_rng(4)
    model = ceilings.gemm_fp32(16, 8, rng)
    inits = _initializers(model)
    x = rng.standard_normal((3, 16)).astype(np.float32)
    (out,) = bound_call(_session(model), ceilings.KERNEL, {"x": x})()
    np.testing.assert_allclose(out, x @ inits["w"].T + inits["b"], rtol=1e-5, atol=1e-6)


def test_measure_reports_positive_times_and_consistent_ceilings():
    calls = []
    figures = ceilings.measure(16, 8, lambda: calls.append(1), warmup=1, iterations=10)
    assert len(calls) == 11  # the PyTorch stand-in ran in the batch-1 rounds: warm-up + timed
    assert all(v > 0 for v in figures.values())
    assert figures["ceiling_decoder_b1_speedup_vs_torch"] == (
        figures["kernel_torch_decoder_b1_p50_ms"] / figures["kernel_gemm_fp32_b1_p50_ms"])
    assert figures["ceiling_decoder_int8_b256_vs_fp32"] == (
        figures["kernel_gemm_fp32_b256_p50_ms"] / figures["kernel_matmul_u8s8_b256_p50_ms"])
