"""Where the time goes in a conv graph under ONNX Runtime and under OpenVINO, by op type.

    python benchmarks/conv_profile.py ARTIFACTS [--graph encoder] [--batch 64] [--size 28x28]
    python benchmarks/conv_profile.py /tmp/w17/sd/artifacts --graph decoder --batch 1 --size 256x256 \
        --threads 2 --warmup 1 --runs 2 --diffusers /tmp/w17/sd/sd15-vae-random   # issue 17

ARTIFACTS holds a conv export (`vae-export export --dynamic-size` of `train --arch conv`). Both
engines run the same fp32 .onnx with one thread on the same input; ONNX Runtime's profiler
(`enable_profiling`) and OpenVINO's performance counters (`PERF_COUNT`) give per-node times,
summed here by op type over `--runs` calls after warm-up. Needs the `peers` extra (OpenVINO).
`--diffusers DIR` adds PyTorch's profiler on diffusers' own AutoencoderKL (`save_pretrained`
directory) decoding the same latent (self CPU time by aten op); `--threads` sets every engine's;
`--by-shape` splits ORT's and PyTorch's convolutions by shape, to compare them conv by conv.
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


def conv_key(x: list[int], w: list[int]) -> str:
    """One convolution's shape, the same from both profilers: in -> out channels, kernel, input size
    (ORT's NCHWc kernels report channel counts padded to their block of 16)."""
    return f"Conv {w[1]}->{w[0]} k{w[2]} at {x[2]}x{x[3]}"


def ort_profile(path: Path, x: np.ndarray, runs: int, threads: int = 1, warmup: int = 10,
                by_shape: bool = False) -> dict[str, float]:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_profiling = True
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    calls = warmup + runs
    for _ in range(calls):  # the warm-up calls' events are discarded below
        session.run(None, {name: x})
    totals: dict[str, float] = collections.Counter()
    profile = Path(session.end_profiling())
    events = json.loads(profile.read_text())
    profile.unlink()
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    per_run = len(kernels) // calls
    for event in kernels[-per_run * runs:]:
        # the provider's op type (a fused node keeps its own, e.g. NchwcConv's "Conv" in its domain)
        key = event["args"]["op_name"]
        if by_shape and key == "Conv":
            shapes = [next(iter(s.values())) for s in event["args"]["input_type_shape"]]
            key = conv_key(shapes[0], shapes[1])
        totals[key] += event["dur"] / 1000.0  # us -> ms
    return {k: v / runs for k, v in totals.items()}


def torch_profile(directory: Path, z: np.ndarray, runs: int, threads: int = 1, warmup: int = 1,
                  by_shape: bool = False) -> dict[str, float]:
    """diffusers' AutoencoderKL.decode on `z` under torch.profiler: self CPU time by aten op."""
    import torch
    from diffusers import AutoencoderKL

    torch.set_num_threads(threads)
    vae = AutoencoderKL.from_pretrained(directory).eval()
    latent = torch.from_numpy(z)
    with torch.inference_mode():
        for _ in range(warmup):
            vae.decode(latent)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=by_shape) as prof:
            for _ in range(runs):
                vae.decode(latent)
    totals: dict[str, float] = collections.Counter()
    for e in prof.key_averages(group_by_input_shape=by_shape):
        conv = by_shape and e.key == "aten::mkldnn_convolution"
        totals[conv_key(*e.input_shapes[:2]) if conv else e.key] += e.self_cpu_time_total / 1000.0 / runs
    return totals


def openvino_profile(path: Path, x: np.ndarray, runs: int, precision: str = "f32", threads: int = 1,
                     warmup: int = 10) -> dict[str, float]:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape({model.inputs[0].get_any_name(): ov.PartialShape(list(x.shape))})
    compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1",
                                                 "INFERENCE_NUM_THREADS": str(threads), "PERF_COUNT": "YES",
                                                 "INFERENCE_PRECISION_HINT": precision})
    request = compiled.create_infer_request()
    for _ in range(warmup):
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
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--engines", default="onnxruntime,openvino,openvino-bf16",
                        help="comma-separated: onnxruntime, openvino, openvino-bf16 (and torch with --diffusers)")
    parser.add_argument("--diffusers", type=Path, default=None, help="a diffusers AutoencoderKL save_pretrained directory")
    parser.add_argument("--by-shape", action="store_true", help="ORT and PyTorch: convolutions by shape, not summed")
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    g = Manifest.read(args.artifacts).model.geometry
    shape = g.image_at((h, w)) if args.graph == "encoder" else g.latent_at((h, w))
    x = np.random.default_rng(0).random((args.batch, *shape), dtype=np.float32)
    path = args.artifacts / f"{args.graph}.onnx"
    t, n = args.threads, args.warmup
    engines = {"onnxruntime": ("onnxruntime", lambda p, v, r: ort_profile(p, v, r, t, n, args.by_shape)),
               "openvino": ("openvino f32", lambda p, v, r: openvino_profile(p, v, r, "f32", t, n)),
               "openvino-bf16": ("openvino default precision (bf16 on AVX-512 BF16 CPUs)",
                                 lambda p, v, r: openvino_profile(p, v, r, "bf16", t, n))}
    if args.diffusers is not None:
        engines["torch"] = ("pytorch eager (diffusers, self CPU time)",
                            lambda p, v, r: torch_profile(args.diffusers, v, r, t, n, args.by_shape))
    for key in (k for k in args.engines.split(",") + (["torch"] if args.diffusers else []) if k):
        engine, profile = engines[key]
        times = profile(path, x, args.runs)
        print(f"{engine}: {sum(times.values()):.3f} ms per call in nodes ({args.graph}, batch {args.batch}, {h}x{w}, "
              f"{t} threads)", flush=True)
        for op, ms in sorted(times.items(), key=lambda kv: -kv[1])[:args.top]:
            print(f"  {ms:8.3f} ms  {op}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
