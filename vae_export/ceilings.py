"""What ONNX Runtime's own kernels allow on this machine, for the decoder's two speed targets.

The decoder's time is dominated by one product, hidden x pixels (400 x 784 for the reference
model). Timing that product alone, in a one-node graph called exactly as `vae-export bench`
calls a decoder (IO binding, pre-allocated output, same session options and threads), bounds
what any decoder graph can reach with these kernels:

- batch 1: PyTorch's decoder p50 over the p50 of the one-node fp32 Gemm is the speed-up a
  fp32 decoder graph would show if every other node were free. An Identity graph of the same
  output size gives ORT's fixed cost per bound call.
- batch 256: the one-node fp32 Gemm's p50 over the p50 of the bare u8 x s8 integer product
  (MatMulInteger on an input already quantised, int32 out: no activation quantisation, no
  bias, no rescale to float, no Sigmoid) bounds the int8/fp32 speed-up of a decoder graph.

The weights are random: these kernels' speed does not depend on the values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from vae_export.bench import time_interleaved
from vae_export.engines.onnxruntime import bound_call
from vae_export_runtime.contract import GraphSpec
from vae_export_runtime.session import session_options

KERNEL = GraphSpec("kernel", "x", ("y",))
OPSET = 17


def _model(node: Any, initializers: list[Any], in_type: int, out_type: int, k: int, n: int) -> bytes:
    graph = helper.make_graph(
        [node], "kernel",
        [helper.make_tensor_value_info("x", in_type, ["batch", k])],
        [helper.make_tensor_value_info("y", out_type, ["batch", n])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # what onnxruntime reads for opset 17
    return model.SerializeToString()


def gemm_fp32(k: int, n: int, rng: np.random.Generator) -> bytes:
    """The fp32 layer as the exporter writes it: Gemm with a [n, k] weight (transB) and bias."""
    weight = (rng.standard_normal((n, k)) * 0.05).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    node = helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)
    inits = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")]
    return _model(node, inits, TensorProto.FLOAT, TensorProto.FLOAT, k, n)


def matmul_u8s8(k: int, n: int, rng: np.random.Generator) -> bytes:
    """The integer product alone: u8 activations (zero point 128) x s8 weights -> int32, the
    kernel ONNX Runtime's dynamic int8 graphs run on x86. The weights are 7-bit (as
    `reduce_range` makes them) so that the product is exact: without VNNI the kernel sums
    pairs of u8 x s8 products in int16 (`vpmaddubsw`), which saturates for full-range
    weights. The speed is the same either way."""
    weight = rng.integers(-64, 64, (k, n), dtype=np.int8)
    node = helper.make_node("MatMulInteger", ["x", "w", "x_zero"], ["y"])
    inits = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(np.array(128, np.uint8), "x_zero")]
    return _model(node, inits, TensorProto.UINT8, TensorProto.INT32, k, n)


def identity(n: int) -> bytes:
    return _model(helper.make_node("Identity", ["x"], ["y"]), [], TensorProto.FLOAT, TensorProto.FLOAT, n, n)


def _bound(model: bytes, x: np.ndarray, threads: int) -> Callable[[], Any]:
    session = ort.InferenceSession(model, sess_options=session_options(threads), providers=["CPUExecutionProvider"])
    return bound_call(session, KERNEL, {"x": x})


def measure(
    hidden: int, pixels: int, torch_decoder_b1: Callable[[], Any], threads: int = 1,
    warmup: int = 30, iterations: int = 600,
) -> dict[str, float]:
    """p50s (ms) of the kernels, and the two ceilings; `torch_decoder_b1` is PyTorch's decoder
    call at batch 1, timed in the same rounds."""
    rng = np.random.default_rng(0)
    h1 = rng.random((1, hidden), dtype=np.float32)
    b1 = time_interleaved(
        [_bound(gemm_fp32(hidden, pixels, rng), h1, threads),
         _bound(identity(pixels), rng.random((1, pixels), dtype=np.float32), threads),
         torch_decoder_b1],
        warmup, iterations,
    )
    gemm_b1, call_b1, torch_b1 = (float(np.median(t)) for t in b1)
    h256 = rng.random((256, hidden), dtype=np.float32)
    q256 = rng.integers(0, 256, (256, hidden), dtype=np.uint8)
    b256 = time_interleaved(
        [_bound(gemm_fp32(hidden, pixels, rng), h256, threads),
         _bound(matmul_u8s8(hidden, pixels, rng), q256, threads)],
        warmup, max(iterations // 4, 20),  # ~1-2 ms a call: fewer calls give as stable a p50
    )
    gemm_b256, int8_b256 = (float(np.median(t)) for t in b256)
    return {
        "kernel_gemm_fp32_b1_p50_ms": gemm_b1,
        "kernel_bound_call_b1_p50_ms": call_b1,
        "kernel_torch_decoder_b1_p50_ms": torch_b1,
        "ceiling_decoder_b1_speedup_vs_torch": torch_b1 / gemm_b1,
        "kernel_gemm_fp32_b256_p50_ms": gemm_b256,
        "kernel_matmul_u8s8_b256_p50_ms": int8_b256,
        "ceiling_decoder_int8_b256_vs_fp32": gemm_b256 / int8_b256,
    }
