"""Calibration study of the latency gates: false alarms on identical artifacts (A/A) and
detections of a decoder made slower by a known amount with identical outputs (A/B).

    python benchmarks/gate_study.py --work DIR                      # the `bench --against` study: 20 A/A + 20 A/B
    python benchmarks/gate_study.py --work DIR --baseline-gates     # also plain bench runs: the --baseline gates
    python benchmarks/gate_study.py --work DIR2 --no-against --bench-rounds 30   # the baseline-file gates only

1. A: the reference VAE (784-400-32), briefly trained on the embedded digits, exported fp32
   (speed does not depend on the weights).
2. B: A with `--products` identity products inserted after the decoder's hidden ReLU, each on
   the hidden layer cut into `--parts` rows (`workloads.slow_decoder`; the default, 1 product
   in 2 parts, makes the decoder ~1.25x slower at batch 64 and ~1.16x at batch 1). x @ I is
   exact in float32, so B's outputs equal A's bit for bit (checked here), and only the
   decoder gets slower; B's encoder is A's file, so encoder rows are A/A rows inside every
   A/B comparison.
3. Each of `--comparisons` iterations runs, as separate processes, exactly what CI would run:
   `vae-export bench --artifacts A --against A` and `--artifacts B --against A`; with
   `--baseline-gates` also `vae-export bench` of A and of B (baselines from separate runs).
   The load average is read before and after every run (the study is meant to run on a
   shared machine under load, and its figures say how loaded).
4. Scores the `--against` gate (A/A: rows IMPROVED or REGRESSED, rows whose interval covers
   1.0; A/B: decoder rows detected), and with `--baseline-gates` the `--baseline` verdicts
   and the old p50 threshold at 1.2 and 1.5 on the same runs, and prints the markdown of
   benchmarks/RESULTS.md ("Latency gate").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


from vae_export.abtest import IMPROVED, REGRESSED, judge_baseline
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


def run_cli(args: list[str], loads: list[float] | None = None) -> float:
    """Runs one command; returns its wall time and appends the 1-minute load average seen
    before and after it to `loads`."""
    if loads is not None:
        loads.append(os.getloadavg()[0])
    start = time.perf_counter()
    # Exit 1 is expected (a regressed A/B); a missing JSON is not.
    subprocess.run([*CLI, *args, "--quiet"], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not Path(args[args.index("--json") + 1]).is_file():
        raise SystemExit(f"no report from: vae-export {' '.join(args)}")
    wall = time.perf_counter() - start
    if loads is not None:
        loads.append(os.getloadavg()[0])
    return wall


def against_study(reports_aa: list[dict[str, Any]], reports_ab: list[dict[str, Any]]) -> dict[str, Any]:
    """What the issue asks of the --against gate: A/A rows IMPROVED or REGRESSED (target none),
    A/A rows whose 95 % interval covers 1.0 (target >= 95 %), A/B decoder rows REGRESSED per
    batch (target 19/20 or better), and the interval widths."""
    aa_rows = [r for rep in reports_aa for r in rep["results"]]
    ab_rows = [r for rep in reports_ab for r in rep["results"]]
    flagged = [r for r in aa_rows if r["verdict"] in (IMPROVED, REGRESSED)]
    covers = [r for r in aa_rows if r["ratio_ci"][0] <= 1.0 <= r["ratio_ci"][1]]
    decoder_keys = sorted({key(r) for r in ab_rows if r["graph"] == "decoder"}, key=lambda k: int(k.split("b")[-1]))
    detected = {k: sum(r["verdict"] == REGRESSED for r in ab_rows if key(r) == k) for k in decoder_keys}
    both = sum(all(r["verdict"] == REGRESSED for r in rep["results"] if r["graph"] == "decoder") for rep in reports_ab)
    unchanged = [r for r in ab_rows if r["graph"] != "decoder"]
    widths = [r["ratio_ci"][1] / r["ratio_ci"][0] - 1 for r in aa_rows]
    return {
        "aa_rows": len(aa_rows), "aa_improved_or_regressed": len(flagged),
        "aa_verdicts": {v: sum(r["verdict"] == v for r in aa_rows) for v in ("ok", "inconclusive", IMPROVED, REGRESSED)},
        "aa_covering_1": len(covers), "aa_ratio_range": [min(r["ratio"] for r in aa_rows), max(r["ratio"] for r in aa_rows)],
        "aa_widest_interval": max((r["ratio_ci"] for r in aa_rows), key=lambda ci: ci[1] / ci[0]),
        "aa_median_width": statistics.median(widths),
        "ab_comparisons": len(reports_ab), "ab_detected": detected, "ab_both_detected": both,
        "ab_unchanged_rows_flagged": sum(r["verdict"] in (IMPROVED, REGRESSED) for r in unchanged),
        "ab_unchanged_rows": len(unchanged),
        "ab_lowest_lower_bound": {k: min(r["ratio_ci"][0] for r in ab_rows if key(r) == k) for k in decoder_keys},
        "slowdown_factors": {k: statistics.median(r["ratio"] for r in ab_rows if key(r) == k)
                             for k in dict.fromkeys(key(r) for r in ab_rows)},
    }


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
    parser.add_argument("--parts", type=int, default=2, help="rows the hidden layer is cut into for each product")
    parser.add_argument("--json", type=Path, default=None, help="default WORK/gate_study.json")
    parser.add_argument("--score-only", action="store_true", help="score the runs already in WORK/runs, time nothing")
    parser.add_argument("--no-against", action="store_true", help="plain bench runs only: score the --baseline gates")
    parser.add_argument("--baseline-gates", action="store_true", help="also plain bench runs: the --baseline gates")
    parser.add_argument("--bench-rounds", type=int, default=None, help="--rounds for the plain bench runs (default: bench's)")
    parser.add_argument("--against-args", default="", help="extra options for every bench --against run")
    args = parser.parse_args()
    a, b, runs = args.work / "A", args.work / "B", args.work / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    plain = args.no_against or args.baseline_gates
    walls: dict[str, list[float]] = {"bench": [], "against": [], "load": []}
    if args.score_only:
        walls = json.loads((runs / "walls.json").read_text())
    else:
        prepare_a(a)
        slowed_copy(a, b, args.products, args.parts)
    rounds = [] if args.bench_rounds is None else ["--rounds", str(args.bench_rounds)]
    extra = args.against_args.split()
    started = time.time()
    for i in range(0 if args.score_only else args.comparisons + (1 if plain else 0)):
        if plain:
            walls["bench"].append(run_cli(["bench", "--artifacts", str(a), "--batch-sizes", BATCHES, *rounds,
                                           "--json", str(runs / f"A{i}.json")], walls["load"]))
            if i == args.comparisons:
                break  # the last A run is only the baseline of A/A comparison i-1
            walls["bench"].append(run_cli(["bench", "--artifacts", str(b), "--batch-sizes", BATCHES, *rounds,
                                           "--json", str(runs / f"B{i}.json")], walls["load"]))
        for new, name in () if args.no_against else ((a, "AA"), (b, "AB")):
            walls["against"].append(run_cli(["bench", "--artifacts", str(new), "--against", str(a), "--batch-sizes",
                                             BATCHES, *extra, "--json", str(runs / f"{name}{i}.json")], walls["load"]))
        print(f"comparison {i + 1}/{args.comparisons} done ({time.time() - started:.0f} s)", file=sys.stderr, flush=True)
        (runs / "walls.json").write_text(json.dumps(walls))
    load = lambda name: json.loads((runs / f"{name}.json").read_text())  # noqa: E731
    n = args.comparisons
    env = load("AA0" if not args.no_against else "A0")["env"]
    out: dict[str, Any] = {"env": env, "comparisons": n, "products": args.products, "parts": args.parts,
                           "load_average_1min": {"median": statistics.median(walls["load"] or [math.nan]),
                                                 "min": min(walls["load"] or [math.nan]),
                                                 "max": max(walls["load"] or [math.nan])}}
    print(f"machine: {env['cpu']}, {env['cores']} cores; onnxruntime {env['onnxruntime']}; {n} A/A and {n} A/B "
          f"comparisons; B = A + {args.products} identity product(s) in {args.parts} part(s) in the decoder; "
          f"1-minute load average during the runs: median {out['load_average_1min']['median']:.1f} "
          f"(range {out['load_average_1min']['min']:.1f}-{out['load_average_1min']['max']:.1f}) on {env['cores']} cores")
    if not args.no_against:
        study = against_study([load(f"AA{i}") for i in range(n)], [load(f"AB{i}") for i in range(n)])
        out |= {"against": study, "against_wall_s": {"median": statistics.median(walls["against"]),
                                                    "max": max(walls["against"])},
                "example_lines": [load("AB0")["results"], load("AA0")["results"]]}
        det = study["ab_detected"]
        print("\nB's slow-down per row (median NEW/OLD of the A/B --against runs): "
              + ", ".join(f"{k} {v:.3f}x" for k, v in study["slowdown_factors"].items()))
        print("\n| gate | A/A rows IMPROVED or REGRESSED | A/A rows whose 95 % interval covers 1.0 | "
              + " | ".join(f"A/B {k} detected" for k in det) + " | A/B both detected | A/B unchanged rows flagged |")
        print("| --- | ---: | ---: | " + " | ".join("---:" for _ in det) + " | ---: | ---: |")
        print(f"| `bench --against`, R 1.10 | {study['aa_improved_or_regressed']} / {study['aa_rows']} | "
              f"{study['aa_covering_1']} / {study['aa_rows']} | " + " | ".join(f"{v} / {n}" for v in det.values())
              + f" | {study['ab_both_detected']} / {n} | {study['ab_unchanged_rows_flagged']} / {study['ab_unchanged_rows']} |")
        print(f"\nA/A verdicts: {study['aa_verdicts']}; ratios {study['aa_ratio_range'][0]:.3f}-{study['aa_ratio_range'][1]:.3f}; "
              f"widest interval {study['aa_widest_interval'][0]:.3f}-{study['aa_widest_interval'][1]:.3f}; median "
              f"width {100 * study['aa_median_width']:.1f} %; A/B lowest lower bounds: "
              + ", ".join(f"{k} {v:.3f}" for k, v in study["ab_lowest_lower_bound"].items()))
        print(f"--against wall time per comparison (whole command): median {out['against_wall_s']['median']:.1f} s, "
              f"max {out['against_wall_s']['max']:.1f} s")
    if plain:
        gates = {"bench --baseline, new verdicts (separate runs, calibrated), R 1.10": score(
            [(new_baseline_gate(load(f"A{i + 1}"), load(f"A{i}"), 1.10), "AA") for i in range(n)]
            + [(new_baseline_gate(load(f"B{i}"), load(f"A{i}"), 1.10), "AB") for i in range(n)])}
        for threshold in (1.2, 1.5):
            gates[f"p50 rule (separate runs), R {threshold}"] = score(
                [(old_gate(load(f"A{i + 1}"), load(f"A{i}"), threshold), "AA") for i in range(n)]
                + [(old_gate(load(f"B{i}"), load(f"A{i}"), threshold), "AB") for i in range(n)])
        cross = [load(f"A{i + 1}")["results"][j]["p50_ms"] / r["p50_ms"] for i in range(n)
                 for j, r in enumerate(load(f"A{i}")["results"])]
        cal = [load(f"A{i}")["calibration"]["matmul_gflops_1thread"] for i in range(n + 1)]
        out |= {"baseline_gates": gates, "bench_wall_s": {"median": statistics.median(walls["bench"]),
                                                          "max": max(walls["bench"])},
                "aa_cross_run_p50_ratio_range": [min(cross), max(cross)], "calibration_gflops_range": [min(cal), max(cal)]}
        print("\n| gate | A/A false alarms (comparisons with any row flagged) | A/A rows flagged | A/B decoder b1 detected | "
              "A/B decoder b64 detected | A/B both detected | A/B unchanged rows flagged |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, sc in gates.items():
            d = list(sc["ab_detected"].values())
            print(f"| {name} | {sc['aa_false_alarms']} / {sc['aa_comparisons']} | {sc['aa_rows_flagged']} / {sc['aa_rows']} | "
                  f"{d[0]} / {n} | {d[1]} / {n} | {sc['ab_all_detected']} / {n} | "
                  f"{sc['ab_unchanged_rows_flagged']} / {sc['ab_unchanged_rows']} |")
        print(f"\nA/A p50 ratios across separate runs: {min(cross):.3f}-{max(cross):.3f}; calibration matmul rate: "
              f"{min(cal):.1f}-{max(cal):.1f} GFLOP/s")
    (args.json or args.work / "gate_study.json").write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
