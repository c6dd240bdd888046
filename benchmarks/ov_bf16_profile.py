"""Per-layer-type profile of OpenVINO CPU f32 vs bf16 inference precision on a VAE decoder.

Usage: python ov_bf16_profile.py DECODER_ONNX [--latent 32] [--threads 2] [--runs 5] [--warmup 2] [--json OUT] [--torch]

Compiles DECODER_ONNX reshaped to a static [1, 4, L, L] input twice (INFERENCE_PRECISION_HINT f32 and
bf16; PERF_COUNT YES, NUM_STREAMS 1, PERFORMANCE_HINT LATENCY, INFERENCE_NUM_THREADS as given), warms
each up, times `runs` calls alternating f32/bf16 (so both see the same load noise), then aggregates
request.profiling_info (of the last call) per node_type and per exec_type.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import defaultdict

import numpy as np
import openvino as ov


def compile_one(core, model, precision, threads):
    cfg = {
        "INFERENCE_PRECISION_HINT": precision,
        "PERF_COUNT": "YES",
        "INFERENCE_NUM_THREADS": threads,
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
    }
    t = time.perf_counter()
    compiled = core.compile_model(model, "CPU", cfg)
    return compiled, time.perf_counter() - t


def ms(td):
    return td.total_seconds() * 1e3


def aggregate(info):
    by_type = defaultdict(lambda: [0.0, 0])
    by_exec = defaultdict(lambda: [0.0, 0])
    by_type_exec = defaultdict(lambda: [0.0, 0])
    for p in info:
        if "NOT_RUN" in str(p.status) or "OPTIMIZED_OUT" in str(p.status):
            continue
        rt = ms(p.real_time)
        for d, k in ((by_type, p.node_type), (by_exec, p.exec_type), (by_type_exec, (p.node_type, p.exec_type))):
            d[k][0] += rt
            d[k][1] += 1
    return by_type, by_exec, by_type_exec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("onnx")
    ap.add_argument("--latent", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--json", default=None)
    ap.add_argument("--torch", action="store_true",
                    help="also time PyTorch eager fp32 (diffusers AutoencoderKL, SD 1.5 config, random weights) in the rounds")
    a = ap.parse_args()

    core = ov.Core()
    print("openvino", ov.__version__, "|", core.get_property("CPU", "FULL_DEVICE_NAME"),
          "|", core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    model = core.read_model(a.onnx)
    model.reshape({model.inputs[0].any_name: [1, 4, a.latent, a.latent]})
    x = np.random.default_rng(0).standard_normal((1, 4, a.latent, a.latent)).astype(np.float32)

    precs = ("f32", "bf16")
    reqs, walls, loads = {}, {p: [] for p in precs}, []
    torch_call = None
    if a.torch:
        import torch
        from diffusers import AutoencoderKL
        torch.set_num_threads(a.threads)
        torch.manual_seed(0)
        vae = AutoencoderKL(act_fn="silu", block_out_channels=[128, 256, 512, 512],
                            down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                            in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                            norm_num_groups=32, sample_size=512).eval()
        zt = torch.from_numpy(x)

        def torch_call():
            with torch.inference_mode():
                return vae.decode(zt).sample
        walls["torch"] = []
        for _ in range(a.warmup):
            torch_call()
    for p in precs:
        c, t = compile_one(core, model, p, a.threads)
        print(f"compiled {p} in {t:.1f}s; INFERENCE_PRECISION_HINT={c.get_property('INFERENCE_PRECISION_HINT')}"
              f" threads={c.get_property('INFERENCE_NUM_THREADS')}")
        reqs[p] = c.create_infer_request()
        for _ in range(a.warmup):
            reqs[p].infer({0: x})
    outs = {}
    for i in range(a.runs):
        for p in (precs if i % 2 == 0 else precs[::-1]):
            t = time.perf_counter()
            reqs[p].infer({0: x})
            walls[p].append((time.perf_counter() - t) * 1e3)
        if torch_call is not None:
            t = time.perf_counter()
            torch_call()
            walls["torch"].append((time.perf_counter() - t) * 1e3)
        loads.append(os.getloadavg()[0])
    for p in precs:
        outs[p] = reqs[p].get_output_tensor(0).data.copy()
    diff = np.abs(outs["f32"] - outs["bf16"])
    print(f"f32 vs bf16 output: max|d|={diff.max():.4g} mean|d|={diff.mean():.4g} (|f32| mean {np.abs(outs['f32']).mean():.4g})")

    p50 = {p: statistics.median(walls[p]) for p in precs}
    for p in precs:
        print(f"wall {p}: p50 {p50[p]:.1f} ms  runs {[round(v, 1) for v in walls[p]]}")
    print(f"wall speed-up bf16 vs f32 (p50): {p50['f32'] / p50['bf16']:.2f}x   load avg (1 min) during runs: "
          f"{min(loads):.2f}-{max(loads):.2f}")
    if torch_call is not None:
        pt = statistics.median(walls["torch"])
        print(f"wall torch eager fp32: p50 {pt:.1f} ms  runs {[round(v, 1) for v in walls['torch']]}; "
              f"OpenVINO f32 {pt / p50['f32']:.2f}x, bf16 {pt / p50['bf16']:.2f}x PyTorch")

    agg = {p: aggregate(reqs[p].profiling_info) for p in precs}
    tot = {p: sum(v[0] for v in agg[p][0].values()) for p in precs}
    print(f"\nprofiled sum (last call): f32 {tot['f32']:.1f} ms, bf16 {tot['bf16']:.1f} ms, ratio {tot['f32'] / tot['bf16']:.2f}x")

    print("\n| node type | n | f32 ms | bf16 ms | speed-up | share of bf16 total |")
    print("|---|---:|---:|---:|---:|---:|")
    types = sorted(set(agg["f32"][0]) | set(agg["bf16"][0]), key=lambda k: -agg["bf16"][0].get(k, [0])[0])
    rows = []
    for k in types:
        f, b = agg["f32"][0].get(k, [0.0, 0]), agg["bf16"][0].get(k, [0.0, 0])
        su = f[0] / b[0] if b[0] > 0 else float("nan")
        rows.append(dict(node_type=k, n_f32=f[1], n_bf16=b[1], f32_ms=f[0], bf16_ms=b[0]))
        print(f"| {k} | {f[1]}/{b[1]} | {f[0]:.1f} | {b[0]:.1f} | {su:.2f}x | {100 * b[0] / tot['bf16']:.1f}% |")

    for p in precs:
        print(f"\n{p}: per exec_type")
        print("| node type | exec_type | n | ms | share |")
        print("|---|---|---:|---:|---:|")
        for (nt, et), (t, n) in sorted(agg[p][2].items(), key=lambda kv: -kv[1][0]):
            print(f"| {nt} | {et} | {n} | {t:.1f} | {100 * t / tot[p]:.1f}% |")

    # Amdahl: convolutions (Convolution node types incl. fused ones) at 1.8x over f32, rest as measured in bf16
    conv_f = sum(v[0] for k, v in agg["f32"][0].items() if "Conv" in k)
    conv_b = sum(v[0] for k, v in agg["bf16"][0].items() if "Conv" in k)
    rest_b = tot["bf16"] - conv_b
    rest_f = tot["f32"] - conv_f
    ideal = conv_f / 1.8 + rest_b
    ideal_all = tot["f32"] / 1.8
    print(f"\nconv: f32 {conv_f:.1f} ms ({100 * conv_f / tot['f32']:.1f}% of f32) -> bf16 {conv_b:.1f} ms "
          f"({conv_f / conv_b:.2f}x); non-conv: f32 {rest_f:.1f} -> bf16 {rest_b:.1f} ms")
    print(f"Amdahl, conv at 1.8x, rest as measured in bf16: {ideal:.1f} ms -> {tot['f32'] / ideal:.2f}x over f32")
    print(f"Amdahl, conv at 1.8x, rest as f32: {conv_f / 1.8 + rest_f:.1f} ms -> {tot['f32'] / (conv_f / 1.8 + rest_f):.2f}x")
    print(f"every layer at 1.8x: {ideal_all:.1f} ms -> 1.80x")

    if a.json:
        with open(a.json, "w") as fh:
            json.dump(dict(latent=a.latent, p50_all={k: statistics.median(v) for k, v in walls.items()}, threads=a.threads, walls=walls, p50=p50, loads=loads, types=rows,
                           exec={p: [dict(node_type=k[0], exec_type=k[1], ms=v[0], n=v[1])
                                     for k, v in agg[p][2].items()] for p in precs},
                           per_node={p: [dict(name=q.node_name, type=q.node_type, exec=q.exec_type,
                                              ms=ms(q.real_time), status=str(q.status))
                                         for q in reqs[p].profiling_info] for p in precs}), fh, indent=1)


if __name__ == "__main__":
    main()
