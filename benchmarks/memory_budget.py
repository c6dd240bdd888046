"""Peak memory, wall time and fidelity of a large decode under a memory budget
(`VAEDecoder.decode(z, max_memory_mb=M)`), each mode in a fresh process.

    .venv/bin/python benchmarks/memory_budget.py ARTIFACTS --size 1024 --budget 488 [--reference]

ARTIFACTS holds a --dynamic-size decoder.onnx (the SD 1.5-sized one: see sd_vae_bench.py).
Every mode decodes the same seeded latent (size/stride cells a side) with 2 threads and reports:
the process's peak RSS over its whole life (ru_maxrss: loading included), the decode's own
peak (VmHWM reset after loading), the RSS after loading, the chosen tile and the wall time.
`--reference` also decodes untiled (about 4 GiB for SD at 1024x1024) and reports the PSNR of
each tiled output against it. `--tiles 32,24` adds fixed-tile modes (decode(tile=T)).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, time
import numpy as np
from vae_export_runtime import VAEDecoder, memory
path, size, mode, value, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5]
decoder = VAEDecoder(path, threads=2)
memory.trim()
loaded = memory.rss_mib()
cells = size // decoder.stride
z = np.random.default_rng(0).standard_normal((1, 4, cells, cells)).astype(np.float32)
memory.reset_peak()
start = time.perf_counter()
if mode == "budget":
    x = decoder.decode(z, max_memory_mb=value)
    tile = decoder.last_plan.tile
elif mode == "tile":
    x = decoder.decode(z, tile=int(value)); tile = int(value)
else:
    x = decoder.decode(z); tile = None
seconds = time.perf_counter() - start
np.save(out, x)
print(json.dumps({"mode": mode, "value": value, "tile": tile, "after_load_mib": loaded,
                  "decode_peak_mib": memory.peak_mib(),
                  "process_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds": seconds, "predicted_peak_mib": getattr(getattr(decoder, "last_plan", None),
                                                                    "predicted_peak_mib", None)}))
"""


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifacts", type=Path)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--budget", type=float, default=488.0, help="MiB (488 MiB = 512 MB)")
    parser.add_argument("--tiles", default="", help="fixed tiles to run too, e.g. 32,24")
    parser.add_argument("--reference", action="store_true", help="also decode untiled and report PSNR")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    modes = [("budget", args.budget)] + [("tile", float(t)) for t in args.tiles.split(",") if t]
    if args.reference:
        modes.append(("untiled", 0.0))
    # A 1024x1024 SD-sized decode on 2 shared cores runs past the runtime's 60 s run limit.
    env = {**os.environ, "VAE_EXPORT_RUN_TIMEOUT": os.environ.get("VAE_EXPORT_RUN_TIMEOUT", "3600")}
    rows, outputs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode, value in modes:
            out = Path(tmp) / f"{mode}-{value:g}.npy"
            run = subprocess.run([sys.executable, "-c", CHILD, str(args.artifacts / "decoder.onnx"), str(args.size),
                                  mode, str(value), str(out)], capture_output=True, text=True, env=env)
            if run.returncode:
                print(f"{mode} {value:g}: failed: {(run.stderr.strip().splitlines() or ['?'])[-1]}")
                continue
            row = json.loads(run.stdout.strip().splitlines()[-1])
            outputs[(mode, value)] = np.load(out)
            rows.append(row)
        reference = outputs.get(("untiled", 0.0))
        for row in rows:
            if reference is not None and row["mode"] != "untiled":
                row["psnr_vs_untiled_db"] = psnr(outputs[(row["mode"], row["value"])], reference)
            print(f"{row['mode']:>8} {row['value']:>6g}  tile {row['tile'] or 'none':>4}  process peak "
                  f"{row['process_peak_mib']:7.0f} MiB  decode peak {row['decode_peak_mib']:7.0f} MiB  (after load "
                  f"{row['after_load_mib']:.0f})  {row['seconds']:7.1f} s"
                  + (f"  PSNR vs untiled {row['psnr_vs_untiled_db']:.1f} dB" if "psnr_vs_untiled_db" in row else ""))
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "budget_mib": args.budget, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
