"""The full benchmark sweep, with this machine's own limit measured in the same run.

    python benchmarks/bench_sweep.py [--artifacts DIR] [--threads 1] [--iterations 300]

1. If DIR has no manifest: trains the reference VAE on the embedded digits and exports it
   with every variant (timing the fp32 export on its own first).
2. Times every graph x variant x batch size under ONNX Runtime and PyTorch eager (same
   threads), exactly as `vae-export bench` does.
3. Measures the machine limit: single-thread float32 matmul throughput (torch.mm on
   1024x1024 matrices, best of several runs), and reports the decoder's FLOP/s at batch 256
   as a fraction of it.
4. Measures what ONNX Runtime's kernels allow for the two decoder targets (`ceilings.py`):
   the decoder's big product alone, fp32 at batch 1 against PyTorch's decoder, and the bare
   int8 product against fp32 at batch 256.
5. Prints markdown tables for benchmarks/RESULTS.md and writes the raw report as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from vae_export.ceilings import measure as measure_ceilings
from vae_export import calibration
from vae_export.bench import bench, environment
from vae_export.engines import Target
from vae_export.engines import get as get_engine
from vae_export.families import load_model
from vae_export.families.reference import save_checkpoint
from vae_export.data import load_digits
from vae_export.export import export
from vae_export.manifest import Manifest
from vae_export.options import BenchOptions
from vae_export.train import train
from vae_export.training import TrainConfig
from vae_export.variants import REDUCED, VARIANTS



def matmul_gflops() -> float:
    """Best-of single-thread torch.mm throughput in GFLOP/s: the machine's ceiling for Gemms."""
    return calibration.matmul_gflops(n=1024, repeats=20, statistic=np.min)


def decoder_flops(latent: int, hidden: int, pixels: int, batch: int) -> int:
    """Multiply-adds of the two Gemms, counted as 2 flops each (bias, ReLU, Sigmoid ignored)."""
    return 2 * batch * (latent * hidden + hidden * pixels)


def prepare(artifacts: Path) -> dict[str, float]:
    timings: dict[str, float] = {}
    if (artifacts / "manifest.json").is_file():
        return timings
    artifacts.mkdir(parents=True, exist_ok=True)
    data = load_digits()
    model = train(data, config=TrainConfig(epochs=100)).model
    save_checkpoint(model, artifacts / "vae.safetensors")
    loaded = load_model(artifacts / "vae.safetensors")
    fp32 = export(loaded, artifacts)
    timings["export_fp32_pair_s"] = fp32.seconds
    full = export(loaded, artifacts, variants=VARIANTS, calibration=data.train.numpy())
    timings["export_with_all_variants_s"] = full.seconds
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--json", type=Path, default=Path("bench_sweep.json"))
    args = parser.parse_args()
    artifacts = args.artifacts or Path(tempfile.mkdtemp(prefix="vae-bench-"))
    timings = prepare(artifacts)
    manifest = Manifest.read(artifacts)
    loaded = load_model(manifest.checkpoint(artifacts))
    limit_before = matmul_gflops()
    report = bench(artifacts, manifest, loaded, BenchOptions(threads=args.threads, iterations=args.iterations, warmup=30))
    limit_after = matmul_gflops()
    limit = max(limit_before, limit_after)
    model = manifest.model
    pixels = math.prod(model.image_shape)
    hidden = model.config.get("hidden_dim", 400)
    rows = report.to_json()["results"]

    def p50(graph: str, variant: str, engine: str, batch: int) -> float:
        return next(r["p50_ms"] for r in rows if (r["graph"], r["variant"], r["engine"], r["batch"]) == (graph, variant, engine, batch))

    flops = decoder_flops(model.latent_dim, hidden, pixels, 256)
    decoder_gflops = flops / (p50("decoder", "fp32", "onnxruntime", 256) * 1e6)
    summary = {
        **timings,
        "matmul_gflops_1thread": limit,
        "decoder_b256_gflops": decoder_gflops,
        "decoder_b256_fraction_of_matmul": decoder_gflops / limit,
        "decoder_b1_speedup_vs_torch": p50("decoder", "fp32", "torch", 1) / p50("decoder", "fp32", "onnxruntime", 1),
    }
    torch.set_num_threads(args.threads)
    z1 = np.random.default_rng(1).standard_normal((1, model.latent_dim)).astype(np.float32)
    eager = get_engine("torch").open(Target(loaded.geometry.spec("decoder"), module=loaded.decoder)).timed_call({"z": z1})
    summary.update(measure_ceilings(hidden, pixels, eager, threads=args.threads))
    variants = {r["variant"] for r in rows}
    for v in REDUCED:
        if v in variants:
            for b in (1, 256):
                summary[f"decoder_{v}_b{b}_throughput_vs_fp32"] = p50("decoder", "fp32", "onnxruntime", b) / p50("decoder", v, "onnxruntime", b)
    args.json.write_text(json.dumps({"env": environment(args.threads, "cpu"), "summary": summary, "report": report.to_json(),
                                     "sizes": {e.file: e.bytes for e in manifest.artifacts}}, indent=2))
    env = report.env
    print(f"machine: {env['cpu']}, {env['cores']} cores; onnxruntime {env['onnxruntime']}, torch {env['torch']}, "
          f"threads {args.threads}, iterations {args.iterations}")
    print("\n| graph | variant | engine | batch | p50 ms | p90 ms | p99 ms | samples/s | speed-up vs torch |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        speed = "" if r["speedup_vs_torch"] is None else f"{r['speedup_vs_torch']:.2f}x"
        print(f"| {r['graph']} | {r['variant']} | {r['engine']} | {r['batch']} | {r['p50_ms']:.4f} | {r['p90_ms']:.4f} | "
              f"{r['p99_ms']:.4f} | {r['throughput_per_s']:,.0f} | {speed} |")
    print("\n| figure | value |\n| --- | ---: |")
    for key, value in summary.items():
        print(f"| {key} | {value:.3f} |")
    print("\n| file | bytes |\n| --- | ---: |")
    for e in manifest.artifacts:
        print(f"| {e.file} | {e.bytes:,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
