"""The Stable Diffusion-sized AutoencoderKL, end to end: export time, model size per variant,
parity (PSNR of fp16 / fp16-mixed / int8 against fp32 PyTorch), and decode latency at 256x256
and 512x512, batch 1: ONNX Runtime fp32 vs PyTorch eager vs OpenVINO (when installed), in one
run with the engines alternating (vae_export.bench).

The architecture is the public Stable Diffusion 1.5 VAE config (block_out_channels 128, 256,
512, 512; layers_per_block 2; 32 groups; latent 4 channels, stride 8). The WEIGHTS ARE RANDOM
(seeded): no weights can be downloaded here. Timings do not depend on weight values; parity
and PSNR figures of a trained VAE may differ.

    .venv/bin/python benchmarks/sd_vae_bench.py --work /tmp/sdvae --json sd_vae.json

Heavy: about 10-20 minutes on 2 cores; run one SD-sized job at a time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from vae_export.workloads import SD15_VAE_CONFIG, write_random_autoencoder

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/sd_vae_bench"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--sizes", default="256x256,512x512")
    parser.add_argument("--variants", default="fp16,fp16-mixed,int8")
    args = parser.parse_args()

    from vae_export import bench
    from vae_export.manifest import Manifest
    from vae_export.options import BenchOptions, ExportOptions, ModelSource, VerifyOptions
    from vae_export.pipeline import export_into, load_for_manifest, verify_artifacts

    model_dir = write_random_autoencoder(args.work / "sd15-vae-random")
    artifacts = args.work / "artifacts"
    variants = tuple(v for v in args.variants.split(",") if v)
    started = time.perf_counter()
    result = export_into(artifacts, ModelSource(checkpoint=model_dir, model_ref="diffusers:AutoencoderKL"),
                         ExportOptions(variants=variants))
    export_s = time.perf_counter() - started
    sizes = {e.file: e.bytes for e in result.manifest.artifacts}
    print(f"export {export_s:.1f} s; sizes: " + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in sizes.items()))

    report = verify_artifacts(artifacts, options=VerifyOptions(batch_sizes=(1, 2), sizes=((64, 64), (128, 128), (64, 96))))
    worst: dict[str, dict[str, float | None]] = {}
    for c in report.checks:
        key = f"{c.graph}.{c.variant}.{c.output}"
        w = worst.setdefault(key, {"max_abs": 0.0, "min_psnr_db": None, "nonfinite": 0, "failed": 0})
        w["max_abs"] = None if c.max_abs is None or w["max_abs"] is None else max(w["max_abs"], c.max_abs)
        if c.psnr_db is not None:
            w["min_psnr_db"] = c.psnr_db if w["min_psnr_db"] is None else min(w["min_psnr_db"], c.psnr_db)
        w["nonfinite"] += c.nonfinite  # type: ignore[operator]
        w["failed"] += 0 if c.passed else 1  # type: ignore[operator]
    for key, w in worst.items():
        print(f"verify {key:<32} max_abs {w['max_abs']}  min PSNR {w['min_psnr_db']}  nonfinite {w['nonfinite']}  "
              f"failed rows {w['failed']}")

    manifest = Manifest.read(artifacts)
    loaded = load_for_manifest(artifacts, manifest)
    size_list = tuple(tuple(int(v) for v in s.split("x")) for s in args.sizes.split(","))
    options = BenchOptions(batch_sizes=(1,), threads=args.threads, warmup=1, iterations=args.iterations,
                           sizes=size_list, rounds=1)  # type: ignore[arg-type]
    timing = bench.bench(artifacts, manifest, loaded, options, graphs=("decoder",), variants=("fp32",))
    rows = [r.to_json() for r in timing.results]
    for r in rows:
        print(f"decode {r['size'][0]}x{r['size'][1]} {r['engine']:<12} p50 {r['p50_ms'] / 1e3:7.2f} s  "
              f"speedup vs torch {r.get('speedup_vs_torch') or 1:.2f}x")
    out = {"model": "SD 1.5 VAE config, random weights (seed 0)", "config": SD15_VAE_CONFIG,
           "export_s": export_s, "bytes": sizes, "parity": worst, "verify_passed": report.passed,
           "bench": {"env": timing.env, "rows": rows}}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
