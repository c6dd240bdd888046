"""Calibration study of the latency gates: false alarms on identical artifacts (A/A) and
detections of a decoder made slower by a known amount with identical outputs (A/B).

    python benchmarks/gate_study.py [--work DIR] [--comparisons 20] [--products 1] [--json FILE] [--score-only]
    python benchmarks/gate_study.py --work DIR2 --no-against --bench-rounds 30   # the baseline-file gates only

1. A: the reference VAE (784-400-32), briefly trained on the embedded digits, exported fp32
   (speed does not depend on the weights).
2. B: A with `--products` identity products (400 x 400) inserted after the decoder's hidden
   ReLU. x @ I is exact in float32, so B's outputs equal A's bit for bit (checked here), and
   only the decoder gets slower; B's encoder is A's file, so encoder rows are A/A rows inside
   every A/B comparison.
3. Each of `--comparisons` iterations runs, as separate processes, exactly what CI would run:
   `vae-export bench` of A and of B (today's gate: baselines from separate runs), then
   `vae-export bench --artifacts A --against A` and `--artifacts B --against A` (the new gate).
4. Scores the new gate (paired, one run), the new `--baseline` verdicts (separate runs,
   calibrated, widened) and today's p50 threshold at 1.2 and 1.5 on the same runs, and prints
   the markdown tables of benchmarks/RESULTS.md ("Latency gate").
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


from vae_export.abtest import REGRESSED, judge_baseline
from vae_export.reports import MATCH_KEYS
from vae_export.workloads import slowed_copy

BATCHES = "1,64"
CLI = [sys.executable, "-m", "vae_export"]


def prepare_a(directory: Path) -> None:
    if (directory / "manifest.json").is_file():
        return
    from vae_export.data import load_digits
    from vae_export.export import export
    from vae_export.families import load_model
    from vae_export.families.reference import save_checkpoint
    from vae_export.train import train
    from vae_export.training import TrainConfig

    directory.mkdir(parents=True, exist_ok=True)
    save_checkpoint(train(load_digits(), config=TrainConfig(epochs=5, seed=0)).model, directory / "vae.safetensors")
    export(load_model(directory / "vae.safetensors"), directory)


def run_cli(args: list[str]) -> float:
    start = time.perf_counter()
    # Exit 1 is expected (a regressed A/B); a missing JSON is not.
    subprocess.run([*CLI, *args, "--quiet"], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not Path(args[args.index("--json") + 1]).is_file():
        raise SystemExit(f"no report from: vae-export {' '.join(args)}")
    return time.perf_counter() - start


def key(row: dict[str, Any]) -> str:
    return f"{row['graph']} {row['engine']} b{row['batch']}"


def old_gate(new: dict[str, Any], old: dict[str, Any], threshold: float) -> dict[str, bool]:
    """Today's rule: p50 over the matching baseline row's p50 above the threshold."""
    index = {tuple(r.get(k) for k in MATCH_KEYS): r for r in old["results"]}
    return {key(r): r["p50_ms"] / index[tuple(r.get(k) for k in MATCH_KEYS)]["p50_ms"] > threshold for r in new["results"]}


def new_baseline_gate(new: dict[str, Any], old: dict[str, Any], threshold: float) -> dict[str, bool]:
    index = {tuple(r.get(k) for k in MATCH_KEYS): r for r in old["results"]}
    matched = [(r, index[tuple(r.get(k) for k in MATCH_KEYS)]) for r in new["results"]]
    judged = judge_baseline(new, old, matched, threshold)
    return {key(r): j["verdict"] == REGRESSED for (r, _), j in zip(matched, judged["rows"])}


def against_gate(report: dict[str, Any]) -> dict[str, bool]:
    return {key(r): r["verdict"] == REGRESSED for r in report["results"]}


def score(pairs: list[tuple[dict[str, bool], str]]) -> dict[str, Any]:
    """pairs: (flags per row, 'AA' or 'AB'). A/A: any flag is a false alarm. A/B: decoder
    rows should be flagged, encoder (and PyTorch) rows should not."""
    aa = [f for f, kind in pairs if kind == "AA"]
    ab = [f for f, kind in pairs if kind == "AB"]
    slowed = [k for k in ab[0] if k.startswith("decoder onnxruntime")] if ab else []
    return {
        "aa_comparisons": len(aa),
        "aa_false_alarms": sum(any(f.values()) for f in aa),
        "aa_rows_flagged": sum(sum(f.values()) for f in aa), "aa_rows": sum(len(f) for f in aa),
        "ab_comparisons": len(ab),
        "ab_detected": {k: sum(f[k] for f in ab) for k in slowed},
        "ab_all_detected": sum(all(f[k] for k in slowed) for f in ab),
        "ab_unchanged_rows_flagged": sum(sum(v for k, v in f.items() if k not in slowed) for f in ab),
        "ab_unchanged_rows": sum(len(f) - len(slowed) for f in ab),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("gate_study"))
    parser.add_argument("--comparisons", type=int, default=20)
    parser.add_argument("--products", type=int, default=1, help="identity products added to B's decoder")
    parser.add_argument("--json", type=Path, default=None, help="default WORK/gate_study.json")
    parser.add_argument("--score-only", action="store_true", help="score the runs already in WORK/runs, time nothing")
    parser.add_argument("--no-against", action="store_true", help="plain bench runs only: score the --baseline gates")
    parser.add_argument("--bench-rounds", type=int, default=None, help="--rounds for the plain bench runs (default: bench's)")
    args = parser.parse_args()
    a, b, runs = args.work / "A", args.work / "B", args.work / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    walls: dict[str, list[float]] = {"bench": [], "against": []}
    if args.score_only:
        walls = json.loads((runs / "walls.json").read_text())
    else:
        prepare_a(a)
        slowed_copy(a, b, args.products)
    rounds = [] if args.bench_rounds is None else ["--rounds", str(args.bench_rounds)]
    for i in range(0 if args.score_only else args.comparisons + 1):
        walls["bench"].append(run_cli(["bench", "--artifacts", str(a), "--batch-sizes", BATCHES, *rounds,
                                       "--json", str(runs / f"A{i}.json")]))
        if i == args.comparisons:
            break  # the last A run is only the baseline of A/A comparison i-1
        walls["bench"].append(run_cli(["bench", "--artifacts", str(b), "--batch-sizes", BATCHES, *rounds,
                                       "--json", str(runs / f"B{i}.json")]))
        for new, name in () if args.no_against else ((a, "AA"), (b, "AB")):
            walls["against"].append(run_cli(["bench", "--artifacts", str(new), "--against", str(a), "--batch-sizes", BATCHES,
                                             "--json", str(runs / f"{name}{i}.json")]))
        print(f"comparison {i + 1}/{args.comparisons} done", file=sys.stderr, flush=True)
        (runs / "walls.json").write_text(json.dumps(walls))
    load = lambda name: json.loads((runs / f"{name}.json").read_text())  # noqa: E731
    n = args.comparisons
    gates = {} if args.no_against else {
        "bench --against (one run, paired rounds), R 1.10": score(
            [(against_gate(load(f"AA{i}")), "AA") for i in range(n)] + [(against_gate(load(f"AB{i}")), "AB") for i in range(n)])}
    gates |= {
        "bench --baseline, new verdicts (separate runs, calibrated), R 1.10": score(
            [(new_baseline_gate(load(f"A{i + 1}"), load(f"A{i}"), 1.10), "AA") for i in range(n)]
            + [(new_baseline_gate(load(f"B{i}"), load(f"A{i}"), 1.10), "AB") for i in range(n)]),
    }
    for threshold in (1.2, 1.5):
        gates[f"today's --baseline p50 rule (separate runs), R {threshold}"] = score(
            [(old_gate(load(f"A{i + 1}"), load(f"A{i}"), threshold), "AA") for i in range(n)]
            + [(old_gate(load(f"B{i}"), load(f"A{i}"), threshold), "AB") for i in range(n)])
    # What B's slow-down really is, measured in one run (the A/B --against ratios).
    factors = {} if args.no_against else {key(r): statistics.median(load(f"AB{i}")["results"][j]["ratio"] for i in range(n))
                                          for j, r in enumerate(load("AB0")["results"])}
    aa_ratios = [r["ratio"] for i in range(n) for r in load(f"AA{i}")["results"]] if factors else [math.nan]
    cross = [load(f"A{i + 1}")["results"][j]["p50_ms"] / r["p50_ms"] for i in range(n) for j, r in enumerate(load(f"A{i}")["results"])]
    cal = [load(f"A{i}")["calibration"]["matmul_gflops_1thread"] for i in range(n + 1)]
    env = load("A0")["env"]
    out = {"env": env, "comparisons": n, "products": args.products, "gates": gates, "slowdown_factors": factors,
           "against_wall_s": {"median": statistics.median(walls["against"] or [math.nan]), "max": max(walls["against"] or [math.nan])},
           "bench_wall_s": {"median": statistics.median(walls["bench"]), "max": max(walls["bench"])},
           "aa_against_ratio_range": [min(aa_ratios), max(aa_ratios)],
           "aa_cross_run_p50_ratio_range": [min(cross), max(cross)],
           "calibration_gflops_range": [min(cal), max(cal)],
           "example_lines": [load("AB0")["results"], load("AA0")["results"]] if factors else []}
    (args.json or args.work / "gate_study.json").write_text(json.dumps(out, indent=2))
    print(f"machine: {env['cpu']}, {env['cores']} cores; onnxruntime {env['onnxruntime']}; {n} A/A and {n} A/B "
          f"comparisons; B = A + {args.products} identity product(s) in the decoder")
    print("\nB's slow-down per row (median NEW/OLD of the A/B --against runs): "
          + ", ".join(f"{k} {v:.2f}x" for k, v in factors.items()))
    print("\n| gate | A/A false alarms (comparisons with any row flagged) | A/A rows flagged | A/B decoder b1 detected | "
          "A/B decoder b64 detected | A/B both detected | A/B unchanged rows flagged |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, s in gates.items():
        det = list(s["ab_detected"].values())
        print(f"| {name} | {s['aa_false_alarms']} / {s['aa_comparisons']} | {s['aa_rows_flagged']} / {s['aa_rows']} | "
              f"{det[0]} / {n} | {det[1]} / {n} | {s['ab_all_detected']} / {n} | "
              f"{s['ab_unchanged_rows_flagged']} / {s['ab_unchanged_rows']} |")
    print(f"\n--against wall time per comparison: median {out['against_wall_s']['median']:.1f} s, max "
          f"{out['against_wall_s']['max']:.1f} s; plain bench run: median {out['bench_wall_s']['median']:.1f} s")
    print(f"A/A --against ratios: {min(aa_ratios):.3f}-{max(aa_ratios):.3f}; A/A p50 ratios across separate runs: "
          f"{min(cross):.3f}-{max(cross):.3f}; calibration matmul rate: {min(cal):.1f}-{max(cal):.1f} GFLOP/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
