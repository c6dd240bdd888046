"""Peak memory (RSS) of a 1024x1024 decode with and without tiling, each in a fresh process.

    .venv/bin/python benchmarks/tiled_rss.py ARTIFACTS [--size 1024] [--tiles 0,64,32]

ARTIFACTS holds a decoder.onnx exported from a diffusers AutoencoderKL (benchmarks/
sd_vae_bench.py writes the SD-sized one). Each mode runs in its own subprocess that imports
only the torch-free runtime, decodes one latent of size/stride cells a side (tile 0: untiled;
64 cells = diffusers' default 512-pixel tiles), and reports resource.getrusage's ru_maxrss
(peak resident memory, KiB on Linux) and the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import numpy as np
from vae_export.runtime import VAEDecoder
path, size, tile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
decoder = VAEDecoder(path, threads=2)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
z = np.random.default_rng(0).standard_normal((1, 4, size // decoder.stride, size // decoder.stride)).astype(np.float32)
start = time.perf_counter()
x = decoder.decode(z, tile=tile or None)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"tile": tile, "size": size, "peak_rss_mib": peak / 1024, "after_load_rss_mib": base / 1024,
                  "seconds": seconds, "shape": list(x.shape)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifacts")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--tiles", default="0,64,32")
    args = parser.parse_args()
    for tile in args.tiles.split(","):
        # An untiled SD-sized 1024x1024 decode on 2 cores runs past the runtime's 60 s run limit.
        env = {**os.environ, "VAE_EXPORT_RUN_TIMEOUT": os.environ.get("VAE_EXPORT_RUN_TIMEOUT", "3600")}
        out = subprocess.run([sys.executable, "-c", CHILD, f"{args.artifacts}/decoder.onnx", str(args.size), tile],
                             capture_output=True, text=True, env=env)
        if out.returncode:
            print(f"tile {tile}: failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
            continue
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"tile {row['tile'] or 'none':>4}  {row['size']}x{row['size']}  peak RSS {row['peak_rss_mib']:8.0f} MiB "
              f"(after loading {row['after_load_rss_mib']:.0f})  {row['seconds']:.1f} s")


if __name__ == "__main__":
    main()
