"""Peak RSS of the biggest input each bound lets through, per command (issue 28), and of the
first input past it (refused: what the refusal itself costs).

    python benchmarks/bounds_rss.py --work DIR [--json FILE]

Every case is one `vae-export` command in its own process under `/usr/bin/time -f %M`
(maximum resident set size of that process), on: the reference MLP (digits, 5 epochs), the
conv reference (`--arch conv`, 16 channels, 1 epoch, `--dynamic-size`), tiny diffusers
configs, and baseline files built at and past their bounds. Prints the markdown table of
benchmarks/RESULTS.md ("Bounds and peak memory"). Figures depend on the model and on the memory
available when the command runs (the size checks compare against it): the table says which.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "vae_export"]


def prepare(work: Path) -> dict[str, Path]:
    """The artifact sets and files the cases read (made once, reused)."""
    mlp, conv, tiny, deep = work / "mlp", work / "conv", work / "tiny256", work / "deep-kl"
    if not (mlp / "manifest.json").is_file():
        subprocess.run([*CLI, "train", "--artifacts", str(mlp), "--epochs", "5", "--quiet"], check=True)
        subprocess.run([*CLI, "export", "--artifacts", str(mlp)], check=True, stdout=subprocess.DEVNULL)
    if not (conv / "manifest.json").is_file():
        subprocess.run([*CLI, "train", "--artifacts", str(conv), "--arch", "conv", "--epochs", "1", "--quiet"], check=True)
        subprocess.run([*CLI, "export", "--artifacts", str(conv), "--dynamic-size"], check=True, stdout=subprocess.DEVNULL)
    if not (tiny / "config.json").is_file():
        import diffusers
        import torch

        torch.manual_seed(0)
        diffusers.AutoencoderTiny(encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8),
                                  num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1),
                                  latent_channels=4).save_pretrained(tiny)
        config = json.loads((tiny / "config.json").read_text())
        (tiny / "config.json").write_text(json.dumps({**config, "upsampling_scaling_factor": 256}))
        blocks = 10  # stride 512: export size 4096x4096, trial runs at 8192x8192
        diffusers.AutoencoderKL(block_out_channels=[8] * blocks, down_block_types=["DownEncoderBlock2D"] * blocks,
                                up_block_types=["UpDecoderBlock2D"] * blocks, layers_per_block=1, norm_num_groups=4,
                                latent_channels=4).save_pretrained(deep)
    baselines = work / "baselines"
    baselines.mkdir(exist_ok=True)
    report = work / "mlp-bench.json"
    if not report.is_file():
        subprocess.run([*CLI, "bench", "--artifacts", str(mlp), "--batch-sizes", "1", "--no-torch", "--no-peers",
                        "--rounds", "1000", "--iterations", "1000", "--warmup", "5", "--json", str(report), "--quiet"],
                       check=True, stdout=subprocess.DEVNULL)
    data = json.loads(report.read_text())
    rows = data["results"]
    # At the bound: 1,000 rows of 1,000 round medians (10^6 in all), the run's two rows among them.
    fillers = [dict(rows[0], batch=1000 + i) for i in range(998)]
    (baselines / "largest.json").write_text(json.dumps({**data, "results": rows + fillers}, separators=(",", ":")))
    # Past it: one row of 2 million medians (4 MB), what allocated 60 GB before.
    (baselines / "long-row.json").write_text(json.dumps({**data, "results": [dict(rows[0], round_p50_ms=[1] * 2_000_000)]},
                                                        separators=(",", ":")))
    return {"mlp": mlp, "conv": conv, "tiny": tiny, "deep": deep, "baselines": baselines}


def cases(p: dict[str, Path], out: Path) -> list[tuple[str, str, list[str]]]:
    """(bound, what, vae-export arguments)."""
    conv, mlp = str(p["conv"]), str(p["mlp"])
    return [
        ("MAX_BATCH 65,536", "verify MLP --batch-sizes 65536",
         ["verify", "--artifacts", mlp, "--batch-sizes", "65536", "--quiet"]),
        ("sample -n 4,096", "sample MLP -n 4096", ["sample", "--artifacts", mlp, "-n", "4096", "--output", str(out / "s1.png")]),
        ("MAX_PIXELS 8192x8192", "sample conv --size 8192x8192 -n 1",
         ["sample", "--artifacts", conv, "--size", "8192x8192", "-n", "1", "--output", str(out / "s2.png")]),
        ("MAX_PIXELS + memory", "sample conv --size 8192x8192 (64 images: refused)",
         ["sample", "--artifacts", conv, "--size", "8192x8192", "--output", str(out / "s3.png")]),
        ("MAX_PIXELS + memory", "verify conv --sizes 4096x4096 --batch-sizes 1",
         ["verify", "--artifacts", conv, "--sizes", "4096x4096", "--batch-sizes", "1", "--quiet"]),
        ("MAX_PIXELS + memory", "verify conv --sizes 8192x8192 (refused)",
         ["verify", "--artifacts", conv, "--sizes", "8192x8192", "--quiet"]),
        ("MAX_PIXELS + memory", "bench conv --sizes 2048x2048 --batch-sizes 1 (3 engines)",
         ["bench", "--artifacts", conv, "--sizes", "2048x2048", "--batch-sizes", "1", "--iterations", "3", "--warmup", "1",
          "--rounds", "1", "--quiet"]),
        ("MAX_PIXELS + memory", "bench conv --sizes 8192x8192 --batch-sizes 1 (refused)",
         ["bench", "--artifacts", conv, "--sizes", "8192x8192", "--batch-sizes", "1", "--quiet"]),
        ("baseline: 10^6 round medians", "bench MLP --baseline (1,000 rows x 1,000 rounds, 2 matched)",
         ["bench", "--artifacts", mlp, "--batch-sizes", "1", "--no-torch", "--no-peers", "--rounds", "1000",
          "--iterations", "1000", "--warmup", "5", "--baseline", str(p["baselines"] / "largest.json"), "--quiet"]),
        ("baseline: 1,000 a row", "bench MLP --baseline (one row of 2 million: refused)",
         ["bench", "--artifacts", mlp, "--batch-sizes", "1", "--no-torch", "--baseline",
          str(p["baselines"] / "long-row.json"), "--quiet"]),
        ("MAX_ROUNDS 1,000", "bench MLP --against MLP --rounds 1000 --sessions 10 --batch-sizes 1",
         ["bench", "--artifacts", mlp, "--against", mlp, "--rounds", "1000", "--sessions", "10", "--batch-sizes", "1",
          "--min-time", "0.2", "--quiet"]),
        ("diffusers trial memory", "export AutoencoderTiny, upsampling_scaling_factor 256 (refused)",
         ["export", "--model", "diffusers:AutoencoderTiny", "--checkpoint", str(p["tiny"]), "--artifacts", str(out / "t")]),
        ("diffusers trial memory", "export AutoencoderKL, 10 blocks (trial at 8192x8192: refused)",
         ["export", "--model", "diffusers:AutoencoderKL", "--checkpoint", str(p["deep"]), "--artifacts", str(out / "d")]),
    ]


def measure(args: list[str]) -> dict[str, Any]:
    """Peak RSS (MiB), wall time, exit code and the last line of one command."""
    start = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-f", "RSS_KB %M", *CLI, *args], capture_output=True, text=True)
    rss = [int(line.split()[1]) for line in result.stderr.splitlines() if line.startswith("RSS_KB ")]
    lines = [line for line in (result.stdout + result.stderr).splitlines()
             if line and not line.startswith(("RSS_KB ", "Command exited with non-zero status"))]
    return {"rss_mib": rss[-1] / 1024 if rss else None, "seconds": time.perf_counter() - start,
            "exit": result.returncode, "last": lines[-1][:300] if lines else ""}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bounds_rss"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--only", default="", help="run the cases whose description contains this text")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    paths = prepare(args.work)
    out = args.work / "out"
    rows = []
    for bound, what, cli in cases(paths, out):
        if args.only not in what:
            continue
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        with open("/proc/meminfo") as fh:
            available = next(int(line.split()[1]) for line in fh if line.startswith("MemAvailable:")) / 2**20
        row = {"bound": bound, "what": what, "command": "vae-export " + " ".join(cli), "available_gib": available,
               "load": os.getloadavg()[0], **measure(cli)}
        rows.append(row)
        print(f"{what}: exit {row['exit']}, {row['rss_mib']:.0f} MiB, {row['seconds']:.1f} s; {row['last']}",
              file=sys.stderr, flush=True)
    (args.json or args.work / "bounds_rss.json").write_text(json.dumps(rows, indent=2))
    print("| bound | command | exit | peak RSS | wall | memory available before |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['bound']} | {r['what']} | {r['exit']} | {r['rss_mib']:,.0f} MiB | {r['seconds']:.0f} s | "
              f"{r['available_gib']:.1f} GiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
