"""Why the int8 MLP decoder is (or is not) faster than fp32 at batch 1: ONNX Runtime's profiler
per op type, for the fp32, int8 (dynamic) and int8-static decoders, at each batch.

    .venv/bin/python benchmarks/int8_profile.py ARTIFACTS [--batches 1,256] [--runs 2000]

ARTIFACTS: an MLP export with --variant int8 --variant int8-static. One thread, the same z;
per-node kernel times from `enable_profiling`, averaged over --runs calls after warm-up (the
profiler's own cost per node is included, so compare shares, not totals with bench's p50).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from conv_profile import ort_profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifacts", type=Path)
    parser.add_argument("--batches", default="1,256")
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    from vae_export.manifest import Manifest

    latent = Manifest.read(args.artifacts).model.geometry.latent_shape
    for batch in (int(b) for b in args.batches.split(",")):
        z = np.random.default_rng(0).standard_normal((batch, *latent)).astype(np.float32)
        runs = max(args.runs // max(batch // 16, 1), 20)
        for name in ("decoder.onnx", "decoder.int8.onnx", "decoder.int8-static.onnx"):
            times = ort_profile(args.artifacts / name, z, runs, threads=1, warmup=max(runs // 10, 5))
            total = sum(times.values())
            ops = ", ".join(f"{op} {1000 * ms:.1f}" for op, ms in sorted(times.items(), key=lambda kv: -kv[1]))
            print(f"batch {batch:>4} {name:<26} {1000 * total:8.1f} us in nodes: {ops} (us)", flush=True)


if __name__ == "__main__":
    main()
