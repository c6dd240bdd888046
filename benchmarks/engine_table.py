"""Issue 26's same-run engine table: verify each engine on this machine, then time every
engine and precision on the chosen graphs in one bench run, and print the table (p50, memory,
PSNR against PyTorch fp32, verified) with the recommendation per graph, size and batch.

    .venv/bin/python benchmarks/engine_table.py --artifacts A --graphs decoder --batch-sizes 1,64,256 \
        --verify-engines onnxruntime,openvino,openvino:bf16,torch:bf16 --json mlp.json --recommend

Everything goes through the library (`pipeline.verify_artifacts`, `bench.bench` with a graph
filter, which the CLI does not have), so the figures are those `vae-export bench` reports.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

from vae_export.options import BenchOptions, ModelSource, VerifyOptions


def sizes(text: str) -> tuple[tuple[int, int], ...] | None:
    return tuple(tuple(int(v) for v in s.split("x")) for s in text.split(",") if s) or None  # type: ignore[misc]


def table(report: dict) -> str:
    lines = [f"{report['env']['cpu']}, flags {' '.join(report['env'].get('cpu_flags', []))}; threads "
             f"{report['env']['threads']}; load average at the end {report['env'].get('load_average')}; run noise "
             f"+-{100 * (report.get('noise') or 0):.1f}% (median half-range of round p50s)", "",
             "| graph | size | batch | engine | variant | precision | p50 ms | x PyTorch fp32 | peak MiB | session MiB "
             "| PSNR dB | verified |", "| --- | --- | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in report["results"]:
        size = "x".join(map(str, r["size"])) if r.get("size") else "-"
        speed = f"{r['speedup_vs_torch']:.2f}x" if r.get("speedup_vs_torch") else "(baseline)" if (
            r["engine"], r.get("precision")) == ("torch", "fp32") else ""
        psnr = "" if r.get("psnr_db") is None else f"{min(r['psnr_db'], 999):.1f}"
        ok = "yes" if (r["engine"], r.get("precision")) == ("torch", "fp32") or (r.get("verified") and r.get(
            "check_passed")) else "no"
        lines.append(f"| {r['graph']} | {size} | {r['batch']} | {r['engine']} | {r['variant']} | {r.get('precision')} | "
                     f"{r['p50_ms']:.4g} | {speed} | {r.get('peak_mib', 0):.1f} | {r.get('session_mib', 0):.1f} | "
                     f"{psnr} | {ok} |")
    lines += ["", "| graph | size | batch | recommended | p50 ms | x runner-up | x PyTorch fp32 | fastest fp32 "
              "(x PyTorch) | faster but unverified |", "| --- | --- | ---: | --- | ---: | ---: | ---: | --- | --- |"]
    for e in report["recommendations"]:
        size = "x".join(map(str, e["size"])) if e.get("size") else "-"
        rec = e.get("recommended")
        if not rec:
            lines.append(f"| {e['graph']} | {size} | {e['batch']} | none ({e['reason']}) | | | | | |")
            continue
        up = f"{e['margin_over_runner_up']:.2f}x" + (" (within noise)" if e["within_noise"] else "") \
            if e.get("margin_over_runner_up") else "-"
        fp32 = e.get("fastest_fp32")
        fp32_text = f"{fp32['engine']} {e['fp32_speedup_vs_torch']:.2f}x" if fp32 and e.get("fp32_speedup_vs_torch") else "-"
        lines.append(f"| {e['graph']} | {size} | {e['batch']} | {rec['engine']} {rec['variant']} {rec['precision']} | "
                     f"{rec['p50_ms']:.4g} | {up} | {e['speedup_vs_torch']:.2f}x | {fp32_text} | "
                     f"{', '.join(e['faster_unverified']) or '-'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=Path, required=True)
    parser.add_argument("--graphs", default="decoder")
    parser.add_argument("--variants", default="", help="only these variants (default: all listed)")
    parser.add_argument("--sizes", default="")
    parser.add_argument("--batch-sizes", default="1")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-time", type=float, default=0.0)
    parser.add_argument("--verify-engines", default="onnxruntime,openvino,openvino:bf16,torch:bf16")
    parser.add_argument("--verify-sizes", default="")
    parser.add_argument("--verify-batch-sizes", default="1,2,7,64")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--recommend", action="store_true")
    args = parser.parse_args()

    from vae_export import bench
    from vae_export.manifest import Manifest, record_summary
    from vae_export.pipeline import load_for_manifest, verify_artifacts
    from vae_export.recommend import recorded

    started = time.perf_counter()
    for spec in [s for s in args.verify_engines.split(",") if s]:
        report = verify_artifacts(args.artifacts, ModelSource(), VerifyOptions(
            engines=(spec,), sizes=sizes(args.verify_sizes),
            batch_sizes=tuple(int(b) for b in args.verify_batch_sizes.split(","))))
        worst = min((c.psnr_db for c in report.checks if c.psnr_db is not None and c.input != "edge"), default=None)
        mu = max((c.max_abs or 0 for c in report.checks if c.output == "mu"), default=None)
        print(f"verify {spec}: {'passed' if report.passed else 'FAILED'} ({len(report.checks)} checks; worst decoder "
              f"PSNR {worst if worst is None else round(worst, 1)} dB, worst mu max abs {mu})", flush=True)
    print(f"verify took {time.perf_counter() - started:.0f} s", flush=True)
    manifest = Manifest.read(args.artifacts)
    loaded = load_for_manifest(args.artifacts, manifest, ModelSource())
    options = BenchOptions(batch_sizes=tuple(int(b) for b in args.batch_sizes.split(",")), threads=args.threads,
                           warmup=args.warmup, iterations=args.iterations, rounds=args.rounds,
                           min_time_s=args.min_time, sizes=sizes(args.sizes))
    started = time.perf_counter()
    report = bench.bench(args.artifacts, manifest, loaded, replace(options), print,
                         graphs=tuple(args.graphs.split(",")),
                         variants=tuple(args.variants.split(",")) if args.variants else None)
    print(f"bench took {time.perf_counter() - started:.0f} s; load average {os.getloadavg()}", flush=True)
    data = report.to_json()
    if args.recommend:
        record_summary(args.artifacts, "recommendation",
                       recorded(report.recommendations or [], report.env, report.noise).to_json())
    if args.json:
        args.json.write_text(json.dumps(data, indent=1))
    print(table(data))


if __name__ == "__main__":
    main()
