"""Where the time goes in a conv graph under ONNX Runtime and under OpenVINO, by op type.

    python benchmarks/conv_profile.py ARTIFACTS [--graph encoder] [--batch 64] [--size 28x28]

ARTIFACTS holds a conv export (`vae-export export --dynamic-size` of `train --arch conv`). Both
engines run the same fp32 .onnx with one thread on the same input; ONNX Runtime's profiler
(`enable_profiling`) and OpenVINO's performance counters (`PERF_COUNT`) give per-node times,
summed here by op type over `--runs` calls after warm-up. Needs the `peers` extra (OpenVINO).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

from vae_export.manifest import Manifest


def ort_profile(path: Path, x: np.ndarray, runs: int) -> dict[str, float]:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for _ in range(10):
        session.run(None, {name: x})
    options.enable_profiling = True
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(10):  # the profiled session's own warm-up is discarded below
        session.run(None, {name: x})
    totals: dict[str, float] = collections.Counter()
    profile = Path(session.end_profiling())
    events = json.loads(profile.read_text())
    profile.unlink()
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    per_run = len(kernels) // 10
    for event in kernels[-per_run * min(runs, 10):]:
        totals[event["args"]["op_name"]] += event["dur"] / 1000.0  # us -> ms
    return {k: v / min(runs, 10) for k, v in totals.items()}


def openvino_profile(path: Path, x: np.ndarray, runs: int, precision: str = "f32") -> dict[str, float]:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape({model.inputs[0].get_any_name(): ov.PartialShape(list(x.shape))})
    compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1",
                                                 "INFERENCE_NUM_THREADS": "1", "PERF_COUNT": "YES",
                                                 "INFERENCE_PRECISION_HINT": precision})
    request = compiled.create_infer_request()
    for _ in range(10):
        request.infer({0: x})
    totals: dict[str, float] = collections.Counter()
    for _ in range(runs):
        request.infer({0: x})
        for info in request.get_profiling_info():
            totals[f"{info.node_type} ({info.exec_type})"] += info.real_time.total_seconds() * 1000.0
    return {k: v / runs for k, v in totals.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", type=Path)
    parser.add_argument("--graph", default="encoder", choices=("encoder", "decoder"))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", default="28x28")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    g = Manifest.read(args.artifacts).model.geometry
    shape = g.image_at((h, w)) if args.graph == "encoder" else g.latent_at((h, w))
    x = np.random.default_rng(0).random((args.batch, *shape), dtype=np.float32)
    path = args.artifacts / f"{args.graph}.onnx"
    engines = (("onnxruntime", ort_profile), ("openvino f32", openvino_profile),
               ("openvino default precision (bf16 on AVX-512 BF16 CPUs)",
                lambda p, v, r: openvino_profile(p, v, r, precision="bf16")))
    for engine, profile in engines:
        times = profile(path, x, args.runs)
        print(f"{engine}: {sum(times.values()):.3f} ms per call in nodes ({args.graph}, batch {args.batch}, {h}x{w})")
        for op, ms in sorted(times.items(), key=lambda kv: -kv[1])[:8]:
            print(f"  {ms:8.3f} ms  {op}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
