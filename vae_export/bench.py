"""Latency and throughput of every graph and variant on every engine: ONNX Runtime, PyTorch
eager, and the installed peers (`vae_export.engines`).

The timed region is the call an app makes: the input already in memory (a numpy array, or a
device-resident tensor on the GPU), the output returned as an array or tensor (each engine's
`Runner.timed_call` says how it binds them). The engines alternate in rounds within each row
(`time_interleaved`), so a burst of load on a shared machine slows them all rather than
skewing the ratios. PyTorch runs with `torch.set_num_threads(--threads)`, the same count the
other engines get.
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from vae_export import __version__
from vae_export.engines import DEFAULT, REFERENCE, Engine, Runner, Target, peers
from vae_export.engines import get as get_engine
from vae_export.errors import UsageError
from vae_export.families.base import LoadedModel
from vae_export.inputs import bench_input, with_labels
from vae_export.manifest import ArtifactEntry, Manifest
from vae_export.options import BenchOptions
from vae_export.progress import SILENT, Progress
from vae_export.reports import BenchReport, BenchRow, GateResult, Regression
from vae_export_runtime.contract import FP32
from vae_export_runtime.session import expected_shapes


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
    if "executorch" in sys.modules:  # an ExecuTorch runner is (or was) open: its version times the .pte rows
        from executorch.version import __version__ as et_version

        env["executorch"] = et_version
    return env


def time_interleaved(
    calls: list[Callable[[], Any]], warmup: int, iterations: int, rounds: int = BenchOptions.rounds,
    min_time_s: float = 0.0, round_counts: list[list[int]] | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> list[np.ndarray]:
    """Time several calls in alternating rounds, so that drift in the machine's load (other
    processes, frequency changes) falls on every engine alike and ratios stay fair.

    Each call is timed `iterations` times, or more when `min_time_s` asks for it: as many calls
    as it takes for that call's timed durations to add up to `min_time_s`. Fast rows then get
    many more samples (stable p99s) for the same wall time as a few slow ones. `round_counts`,
    when given, gets each round's (and top-up pass's) calls per call appended, in order.
    `clock` (nanoseconds) is for tests, which must not depend on real durations."""
    round_counts = [] if round_counts is None else round_counts
    budget_ns = min_time_s * 1e9
    counts = [max(iterations, calls_to_fill(call, warmup, budget_ns, clock)) for call in calls]
    times: list[list[int]] = [[] for _ in calls]
    for r in range(rounds):
        round_counts.append([c // rounds + (1 if r < c % rounds else 0) for c in counts])
        timed_round(calls, times, round_counts[-1], clock)
    # The warm-up estimate runs high (first calls are cold): rows still short of the budget get
    # more passes at their measured pace, spread so that they stay interleaved. Every pass runs
    # at least one call of each short row, so the loop ends.
    passes = 0
    while max(deficit := [budget_ns - sum(t) for t in times], default=0) > 0:
        left = max(rounds - passes, 1)
        round_counts.append([math.ceil(d / max(sum(t) / len(t), 1.0) / left) if d > 0 else 0
                             for d, t in zip(deficit, times)])
        timed_round(calls, times, round_counts[-1], clock)
        passes += 1
    return [np.asarray(t, dtype=np.float64) / 1e6 for t in times]


def timed_round(calls: list[Callable[[], Any]], times: list[list[int]], shares: list[int],
                clock: Callable[[], int] = time.perf_counter_ns) -> None:
    """Each call `share` times in a row, its durations (ns) appended to its list."""
    for call, out, share in zip(calls, times, shares):
        for _ in range(share):
            start = clock()
            call()
            out.append(clock() - start)


def calls_to_fill(call: Callable[[], Any], warmup: int, budget_ns: float,
                  clock: Callable[[], int] = time.perf_counter_ns) -> int:
    """Runs the warm-up (timed, at least one call when a budget needs an estimate) and
    returns how many calls fill `budget_ns` at the median warm-up time (0 without a budget)."""
    spent: list[int] = []
    timed_round([call], [spent], [max(warmup, 1 if budget_ns > 0 else 0)], clock)
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


def bench(
    artifacts: Path,
    manifest: Manifest,
    loaded: LoadedModel | None,
    options: BenchOptions = BenchOptions(),
    progress: Progress = SILENT,
    graphs: tuple[str, ...] | None = None,
    variants: tuple[str, ...] | None = None,
) -> BenchReport:
    """The sweep; returns the `bench --json` report (docs/contract.md). Every graph x variant
    the engines run, at each batch size (and each of `options.sizes` for a symbolic-size graph,
    default `Geometry.default_sizes`; rows then carry `size` and `ms_per_megapixel`), all the
    engines of a shape alternating in the same rounds. Engines: `options.engines` when given,
    else ONNX Runtime, the installed peers (on CPU, unless `options.peers` is off) and PyTorch
    eager (`loaded` given). Each row keeps its per-round medians (`round_p50_ms`) and the
    report a calibration figure, so that a later run can judge it as a baseline
    (`abtest.unpaired`). `graphs`: roles to time (default: every graph the model has)."""
    from vae_export.abtest import round_medians
    from vae_export.calibration import calibrate, matmul_gflops

    o = options
    g = manifest.model.geometry
    graphs = graphs or tuple(spec.role for spec in g.specs())
    graph_engines, model_engines = bench_engines(o, loaded is not None)
    entries = manifest.entries(graphs, variants)
    if not entries:
        raise UsageError(f"{artifacts}: the manifest lists no graph matching the selection")
    results: list[BenchRow] = []
    calibration_before = matmul_gflops()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(o.threads)
    try:
        for role in graphs:
            spec = g.spec(role)
            # Every variant of a graph, on every engine, is timed together, shape by shape, in
            # alternating rounds: the ratios between them come from the same minutes.
            shapes = expected_shapes(spec, g.latent_dims(), g.image_dims(), g.num_classes)
            targets = [(engine, entry) for engine in graph_engines for entry in entries
                       if entry.graph == role and engine.accepts(entry.variant, artifacts / entry.file)]
            if not targets:
                continue
            runners: list[tuple[Runner, ArtifactEntry | None]] = [
                (engine.open(Target(spec, entry.variant, artifacts / entry.file, shapes=shapes, sha256=entry.sha256),
                             o.device, o.threads), entry) for engine, entry in targets]
            if loaded is not None:
                runners += [(engine.open(Target(spec, module=loaded.module(role)), o.device, o.threads), None)
                            for engine in model_engines]
            try:
                results += _sweep(role, spec, g, runners, o, progress, round_medians)
            finally:
                for runner, _ in runners:
                    runner.close()
    finally:
        torch.set_num_threads(previous_threads)
    env = {**environment(o.threads, o.device), "image_shape": list(g.image_shape)}  # for per-megapixel figures
    report = BenchReport(env=env, warmup=o.warmup, iterations=o.iterations, min_time_s=o.min_time_s, results=results,
                         rounds=o.rounds, calibration=calibrate(calibration_before, matmul_gflops()))
    report.add_speedups()
    return report


def bench_engines(options: BenchOptions, with_model: bool) -> tuple[list[Engine], list[Engine]]:
    """(graph engines, model engines) a sweep runs: `options.engines` when named, else ONNX
    Runtime, the installed peers (CPU; `options.peers`) and, with a model, PyTorch eager. Each
    must be able to run on the device (UsageError otherwise)."""
    if options.engines:
        chosen = [get_engine(name) for name in options.engines]
    else:
        chosen = [get_engine(DEFAULT)] + (peers() if options.peers and options.device == "cpu" else [])
        chosen += [get_engine(REFERENCE)] if with_model else []
    for engine in chosen:
        engine.check(options.device)
    graph = [e for e in chosen if e.kind == "graph"]
    model = [e for e in chosen if e.kind == "model"]
    if model and not with_model:
        raise UsageError(f"--engine {model[0].name}: runs the PyTorch model, which --no-torch leaves out")
    return graph, model


def _sweep(role: str, spec: Any, g: Any, runners: list[tuple[Runner, ArtifactEntry | None]], o: BenchOptions,
           progress: Progress, round_medians: Callable[..., list[float]]) -> list[BenchRow]:
    """The rows of one graph: every size and batch, every runner in the same rounds."""
    rows = []
    all_runners = runners
    for size in o.sizes or g.default_sizes():
        # A file with recorded bounds (a .pte) is timed at the sizes within them only.
        runners = [(r, e) for r, e in all_runners if e is None or e.admits(g.input_shapes(spec, size))]
        for batch in o.batch_sizes:
            feeds = with_labels(spec.input_names, bench_input(role, batch, g.latent_at(size), g.image_at(size)),
                                g.num_classes)
            calls = [runner.timed_call(feeds) for runner, _ in runners]
            progress(f"bench {role} {size[0]}x{size[1]} batch {batch:>4}: "
                     + ", ".join(f"{r.engine} {e.variant}" if e is not None else r.engine for r, e in runners))
            counts: list[list[int]] = []
            times = time_interleaved(calls, o.warmup, o.iterations, o.rounds, o.min_time_s, counts)
            extra = {"size": list(size)} if g.dynamic_size else {}
            for i, ((runner, entry), t) in enumerate(zip(runners, times)):
                medians = round_medians(t, [c[i] for c in counts])
                rows.append(BenchRow(graph=role, batch=batch, threads=o.threads,
                                     variant=entry.variant if entry is not None else FP32, engine=runner.engine,
                                     provider=runner.provider, file=entry.file if entry is not None else None,
                                     **_timed((t, medians), batch), **extra))
    return rows


def _timed(timing: tuple[np.ndarray, list[float]], batch: int) -> dict[str, Any]:
    times, medians = timing
    return {**stats(times, batch), "round_p50_ms": medians}


def compare_baseline(
    report: BenchReport, baseline_path: Path, max_regression: float = BenchOptions.max_regression
) -> GateResult:
    """Rows whose p50 exceeds max_regression x the matching baseline row's p50 regress; when
    both runs carry per-round samples, rows whose calibrated interval lies above it
    (`abtest.judge_baseline`). Rows without a match are reported, not failed."""
    from vae_export.abtest import REGRESSED, judge_baseline

    baseline = BenchReport.read(baseline_path)
    index = {row.key(): row for row in baseline.results}
    matched = [(row, index[row.key()]) for row in report.results if row.key() in index]
    unmatched = [row for row in report.results if row.key() not in index]
    # Both runs with per-round samples: statistical verdicts on calibrated time (abtest);
    # an older baseline file: the p50 threshold alone, as before.
    judged = judge_baseline(report.to_json(), baseline.to_json(), [(r.to_json(), b.to_json()) for r, b in matched],
                            max_regression)
    regressions = []
    for i, (row, ref) in enumerate(matched):
        ratio = row.p50_ms / ref.p50_ms if ref.p50_ms > 0 else float("inf")
        if (judged["rows"][i]["verdict"] == REGRESSED) if judged else ratio > max_regression:
            regressions.append(Regression(row, ref.p50_ms, ratio))
    return GateResult(str(baseline_path), max_regression, len(matched), regressions, unmatched,
                      machines=judged and judged["machines"], rows=judged and judged["rows"])
