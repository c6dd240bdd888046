"""Latency and throughput of every graph and variant under ONNX Runtime, against PyTorch eager.

The timed region is the call an app makes: the input already in memory (a numpy array, or a
device-resident tensor on the GPU), the output returned as an array or tensor.

What is tuned on the ONNX Runtime side, and why:
- IO binding with a pre-allocated output buffer bound once per shape: `session.run` builds
  a feed dict, allocates a fresh output and converts it on every call, which at batch 1 costs
  more than the decoder's arithmetic. With binding, a call is one `run_with_iobinding` that
  writes into the same numpy array (or device buffer) each time.
- The engines alternate in rounds within each row (`time_interleaved`), so a burst of load
  on a shared machine slows both rather than skewing the speed-up.
- Session options (`ortsession.session_options`): full graph optimisation, sequential
  execution (the graphs are chains), one inter-op thread, intra-op threads = `--threads`.
PyTorch runs under `torch.inference_mode()` with `torch.set_num_threads(--threads)`; on CUDA,
`torch.cuda.synchronize()` closes each timed call.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from vae_export import __version__
from vae_export.artifacts import load_manifest, read_json, update_manifest
from vae_export.checkpoint import LoadedModel
from vae_export.contract import FP32, GRAPHS, GraphSpec
from vae_export.errors import UsageError
from vae_export.ortsession import make_session, providers_for
from vae_export.progress import SILENT, Progress

DEFAULT_BATCH_SIZES = (1, 8, 64, 256)
DEFAULT_WARMUP = 20
DEFAULT_ITERATIONS = 200
DEFAULT_MAX_REGRESSION = 1.5
ROUNDS = 5  # engines alternate in this many rounds per row
MATCH_KEYS = ("graph", "engine", "variant", "provider", "batch", "threads")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(threads: int, device: str) -> dict[str, Any]:
    env = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "vae_export": __version__,
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "providers_available": ort.get_available_providers(),
        "device": device,
        "threads": threads,
        "flags": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE") if k in os.environ},
        "ort_tuning": "io_binding+preallocated_output, ORT_ENABLE_ALL, sequential, inter_op=1",
    }
    if device == "cuda" and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def time_interleaved(
    calls: list[Callable[[], Any]], warmup: int, iterations: int, rounds: int = ROUNDS, min_time_s: float = 0.0,
    round_counts: list[list[int]] | None = None,
) -> list[np.ndarray]:
    """Time several calls in alternating rounds, so that drift in the machine's load (other
    processes, frequency changes) falls on every engine alike and ratios stay fair.

    Each call is timed `iterations` times, or more when `min_time_s` asks for it: as many calls
    as it takes for that call's timed durations to add up to `min_time_s`. Fast rows then get
    many more samples (stable p99s) for the same wall time as a few slow ones. `round_counts`,
    when given, gets each round's (and top-up pass's) calls per call appended, in order."""
    round_counts = [] if round_counts is None else round_counts
    budget_ns = min_time_s * 1e9
    counts = [max(iterations, _calls_to_fill(call, warmup, budget_ns)) for call in calls]
    times: list[list[int]] = [[] for _ in calls]
    for r in range(rounds):
        round_counts.append([c // rounds + (1 if r < c % rounds else 0) for c in counts])
        _round(calls, times, round_counts[-1])
    # The warm-up estimate runs high (first calls are cold): rows still short of the budget get
    # more passes at their measured pace, spread so that they stay interleaved. Every pass runs
    # at least one call of each short row, so the loop ends.
    passes = 0
    while max(deficit := [budget_ns - sum(t) for t in times], default=0) > 0:
        left = max(rounds - passes, 1)
        round_counts.append([math.ceil(d / max(sum(t) / len(t), 1.0) / left) if d > 0 else 0
                             for d, t in zip(deficit, times)])
        _round(calls, times, round_counts[-1])
        passes += 1
    return [np.asarray(t, dtype=np.float64) / 1e6 for t in times]


def _round(calls: list[Callable[[], Any]], times: list[list[int]], shares: list[int]) -> None:
    for call, out, share in zip(calls, times, shares):
        for _ in range(share):
            start = time.perf_counter_ns()
            call()
            out.append(time.perf_counter_ns() - start)


def _calls_to_fill(call: Callable[[], Any], warmup: int, budget_ns: float) -> int:
    """Runs the warm-up (timed, at least one call when a budget needs an estimate) and
    returns how many calls fill `budget_ns` at the median warm-up time (0 without a budget)."""
    spent: list[int] = []
    _round([call], [spent], [max(warmup, 1 if budget_ns > 0 else 0)])
    if budget_ns <= 0:
        return 0
    return math.ceil(budget_ns / max(float(np.median(spent)), 1.0))


def stats(times_ms: np.ndarray, batch: int) -> dict[str, float]:
    p50, p90, p99 = np.percentile(times_ms, [50, 90, 99])
    return {
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "mean_ms": float(times_ms.mean()),
        "min_ms": float(times_ms.min()),
        "throughput_per_s": float(batch / (p50 / 1e3)),
        "iterations": int(len(times_ms)),
    }


def ort_call(session: ort.InferenceSession, spec: GraphSpec, x: np.ndarray, device: str) -> Callable[[], Any]:
    """A bound call: input and output buffers fixed once, so each call only runs the graph."""
    binding = session.io_binding()
    if device == "cuda":
        x_dev = ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
        binding.bind_ortvalue_input(spec.input_name, x_dev)
        for name in spec.output_names:
            binding.bind_output(name, "cuda", 0)
        session.run_with_iobinding(binding)  # lets ORT allocate device outputs once
        outputs = binding.get_outputs()
        binding.clear_binding_outputs()
        for name, value in zip(spec.output_names, outputs):
            binding.bind_ortvalue_output(name, value)
    else:
        binding.bind_cpu_input(spec.input_name, x)
        outputs = [np.empty_like(out) for out in session.run(list(spec.output_names), {spec.input_name: x})]
        for name, buffer in zip(spec.output_names, outputs):
            binding.bind_output(name, "cpu", 0, buffer.dtype, list(buffer.shape), buffer.ctypes.data)
    run = session.run_with_iobinding

    def call() -> Any:
        # The closure holds the input and output buffers: ORT writes into raw pointers, so
        # they must live as long as the binding does.
        run(binding)
        return outputs

    call.keepalive = (x, outputs)  # type: ignore[attr-defined]
    return call


def torch_call(module: torch.nn.Module, x: np.ndarray, device: str) -> Callable[[], Any]:
    """PyTorch eager as an app would call it: the model's own encode/decode, not our
    export wrapper, under inference_mode."""
    eager = getattr(module, "eager", None)
    run = eager() if callable(eager) else module
    tensor = torch.from_numpy(x).to(device)
    if device == "cuda":
        def call() -> Any:
            with torch.inference_mode():
                out = run(tensor)
            torch.cuda.synchronize()
            return out
        return call

    def call_cpu() -> Any:
        with torch.inference_mode():
            return run(tensor)
    return call_cpu


def bench(
    artifacts: Path,
    loaded: LoadedModel | None,
    device: str = "cpu",
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES,
    threads: int = 1,
    warmup: int = DEFAULT_WARMUP,
    iterations: int = DEFAULT_ITERATIONS,
    graphs: tuple[str, ...] = ("encoder", "decoder"),
    variants: tuple[str, ...] | None = None,
    progress: Progress = SILENT,
    min_time_s: float = 0.0,
    rounds: int = ROUNDS,
) -> dict[str, Any]:
    """The sweep; returns the DESIGN.md `bench --json` report. `loaded=None` skips PyTorch;
    `min_time_s` is the time budget of `time_interleaved`. Each row keeps its per-round
    medians (`round_p50_ms`) and the report a calibration figure, so that a later run can
    judge it as a baseline (`abtest.unpaired`)."""
    from vae_export.abtest import round_medians
    from vae_export.calibration import calibrate, matmul_gflops

    manifest = load_manifest(artifacts)
    provider = providers_for(device)[0]
    entries = [e for e in manifest["artifacts"] if e["graph"] in graphs and (variants is None or e["variant"] in variants)]
    if not entries:
        raise UsageError(f"{artifacts}: the manifest lists no graph matching the selection")
    results: list[dict[str, Any]] = []
    calibration_before = matmul_gflops()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for role in graphs:
            spec = GRAPHS[role]
            # Every variant of a graph and PyTorch are timed together, shape by shape, in
            # alternating rounds: the ratios between them come from the same minutes.
            sessions = [(e, make_session(artifacts / e["file"], device, threads, spec=spec)) for e in entries if e["graph"] == role]
            if not sessions:
                continue
            module = None
            if loaded is not None:
                module = (loaded.encoder if role == "encoder" else loaded.decoder).to(device)
            for batch in batch_sizes:
                x = _input(spec, batch, manifest)
                progress(f"bench {role} batch {batch:>4}: {', '.join(e['variant'] for e, _ in sessions)}"
                         + (" + torch" if module is not None else ""))
                calls = [ort_call(session, spec, x, device) for _, session in sessions]
                if module is not None:
                    calls.append(torch_call(module, x, device))
                counts: list[list[int]] = []
                timings = time_interleaved(calls, warmup, iterations, rounds, min_time_s, counts)
                per_round = [round_medians(t, [c[i] for c in counts]) for i, t in enumerate(timings)]
                base = {"graph": role, "batch": batch, "threads": threads}
                for (entry, _), times, medians in zip(sessions, timings, per_round):
                    results.append({**base, "variant": entry["variant"], "engine": "onnxruntime", "provider": provider,
                                    "file": entry["file"], **stats(times, batch), "round_p50_ms": medians})
                if module is not None:
                    results.append({**base, "variant": FP32, "engine": "torch", "provider": device, "file": None,
                                    **stats(timings[-1], batch), "round_p50_ms": per_round[-1]})
            if module is not None:
                module.to("cpu")
    finally:
        torch.set_num_threads(previous_threads)
    _add_speedups(results)
    return {"env": environment(threads, device), "warmup": warmup, "iterations": iterations,
            "min_time_s": min_time_s, "rounds": rounds, "calibration": calibrate(calibration_before, matmul_gflops()),
            "results": results}


def _input(spec: GraphSpec, batch: int, manifest: dict[str, Any]) -> np.ndarray:
    rng = np.random.default_rng(batch)
    if spec.role == "decoder":
        return rng.standard_normal((batch, manifest["model"]["latent_dim"])).astype(np.float32)
    return rng.random((batch, *manifest["model"]["image_shape"]), dtype=np.float32)


def _add_speedups(results: list[dict[str, Any]]) -> None:
    """speedup_vs_torch = PyTorch fp32 p50 / this row's p50, for ORT rows."""
    torch_p50 = {(r["graph"], r["batch"]): r["p50_ms"] for r in results if r["engine"] == "torch"}
    for row in results:
        ref = torch_p50.get((row["graph"], row["batch"]))
        row["speedup_vs_torch"] = (ref / row["p50_ms"]) if ref and row["engine"] == "onnxruntime" else None


def compare_baseline(
    report: dict[str, Any], baseline_path: Path, max_regression: float = DEFAULT_MAX_REGRESSION
) -> dict[str, Any]:
    """Rows whose p50 exceeds max_regression x the matching baseline row's p50 regress; when
    both runs carry per-round samples, rows whose calibrated interval lies above it
    (`abtest.judge_baseline`). Rows without a match are reported, not failed."""
    from vae_export.abtest import REGRESSED, judge_baseline

    baseline = read_json(baseline_path, "baseline")
    if not isinstance(baseline.get("results"), list):
        raise UsageError(f"--baseline {baseline_path}: not a bench report (no 'results' list)")
    index = {tuple(r.get(k) for k in MATCH_KEYS): r for r in baseline["results"]}
    regressions, unmatched, matched = [], [], []
    for row in report["results"]:
        ref = index.get(tuple(row[k] for k in MATCH_KEYS))
        if ref is None:
            unmatched.append({k: row[k] for k in MATCH_KEYS})
            continue
        matched.append((row, ref))
    # Both runs with per-round samples: statistical verdicts on calibrated time (abtest);
    # an older baseline file: the p50 threshold alone, as before.
    judged = judge_baseline(report, baseline, matched, max_regression)
    for i, (row, ref) in enumerate(matched):
        ratio = row["p50_ms"] / ref["p50_ms"] if ref["p50_ms"] > 0 else float("inf")
        if (judged["rows"][i]["verdict"] == REGRESSED) if judged else ratio > max_regression:
            regressions.append({**{k: row[k] for k in MATCH_KEYS}, "p50_ms": row["p50_ms"],
                                "baseline_p50_ms": ref["p50_ms"], "ratio": ratio})
    return {"baseline": str(baseline_path), "max_regression": max_regression, "compared": len(matched),
            "regressions": regressions, "unmatched": unmatched, "passed": not regressions,
            "machines": judged and judged["machines"], "rows": judged and judged["rows"]}


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """What the manifest keeps: p50 per row and the environment's essentials."""
    env = report["env"]
    return {
        "cpu": env["cpu"], "device": env["device"], "threads": env["threads"],
        "onnxruntime": env["onnxruntime"], "torch": env["torch"],
        "p50_ms": {f"{r['graph']}.{r['variant']}.{r['engine']}.b{r['batch']}": round(r["p50_ms"], 5) for r in report["results"]},
    }


def record(artifacts: Path, report: dict[str, Any]) -> None:
    update_manifest(artifacts, "bench", summary(report))
