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
from vae_export.checkpoint import LoadedModel
from vae_export.contract import FP32, GRAPHS, GraphSpec
from vae_export.inputs import bench_input
from vae_export.manifest import Manifest
from vae_export.options import BenchOptions
from vae_export.errors import UsageError
from vae_export.ortsession import expected_shapes, make_session, providers_for, run_limited
from vae_export.progress import SILENT, Progress
from vae_export.reports import BenchReport, BenchRow, GateResult, Regression

DEFAULT_BATCH_SIZES = BenchOptions.batch_sizes
DEFAULT_WARMUP = BenchOptions.warmup
DEFAULT_ITERATIONS = BenchOptions.iterations
DEFAULT_MAX_REGRESSION = BenchOptions.max_regression
ROUNDS = 5  # engines alternate in this many rounds per row


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
    calls: list[Callable[[], Any]], warmup: int, iterations: int, rounds: int = ROUNDS, min_time_s: float = 0.0
) -> list[np.ndarray]:
    """Time several calls in alternating rounds, so that drift in the machine's load (other
    processes, frequency changes) falls on every engine alike and ratios stay fair.

    Each call is timed `iterations` times, or more when `min_time_s` asks for it: as many calls
    as it takes for that call's timed durations to add up to `min_time_s`. Fast rows then get
    many more samples (stable p99s) for the same wall time as a few slow ones."""
    budget_ns = min_time_s * 1e9
    counts = [max(iterations, _calls_to_fill(call, warmup, budget_ns)) for call in calls]
    times: list[list[int]] = [[] for _ in calls]
    for r in range(rounds):
        _round(calls, times, [c // rounds + (1 if r < c % rounds else 0) for c in counts])
    # The warm-up estimate runs high (first calls are cold): rows still short of the budget get
    # more passes at their measured pace, spread so that they stay interleaved. Every pass runs
    # at least one call of each short row, so the loop ends.
    passes = 0
    while max(deficit := [budget_ns - sum(t) for t in times], default=0) > 0:
        left = max(rounds - passes, 1)
        _round(calls, times, [math.ceil(d / max(sum(t) / len(t), 1.0) / left) if d > 0 else 0
                             for d, t in zip(deficit, times)])
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
        # The first run is time-limited: a graph that never stops is reported before the timed loop.
        first = run_limited(session, spec.output_names, {spec.input_name: x}, Path(getattr(session, "_model_path", None) or spec.role))
        outputs = [np.empty_like(out) for out in first]
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
) -> BenchReport:
    """The sweep; returns the `bench --json` report (docs/contract.md). `loaded=None` skips PyTorch;
    `min_time_s` is the time budget of `time_interleaved`."""
    manifest = Manifest.read(artifacts)
    provider = providers_for(device)[0]
    entries = manifest.entries(graphs, variants)
    if not entries:
        raise UsageError(f"{artifacts}: the manifest lists no graph matching the selection")
    results: list[BenchRow] = []
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for role in graphs:
            spec = GRAPHS[role]
            # Every variant of a graph and PyTorch are timed together, shape by shape, in
            # alternating rounds: the ratios between them come from the same minutes.
            shapes = expected_shapes(spec, (manifest.model.latent_dim,), manifest.model.image_shape)
            sessions = [(e, make_session(artifacts / e.file, device, threads, spec=spec, shapes=shapes))
                        for e in entries if e.graph == role]
            if not sessions:
                continue
            module = None
            if loaded is not None:
                module = (loaded.encoder if role == "encoder" else loaded.decoder).to(device)
            for batch in batch_sizes:
                x = bench_input(role, batch, manifest.model.latent_dim, manifest.model.image_shape)
                progress(f"bench {role} batch {batch:>4}: {', '.join(e.variant for e, _ in sessions)}"
                         + (" + torch" if module is not None else ""))
                calls = [ort_call(session, spec, x, device) for _, session in sessions]
                if module is not None:
                    calls.append(torch_call(module, x, device))
                timings = time_interleaved(calls, warmup, iterations, min_time_s=min_time_s)
                base = {"graph": role, "batch": batch, "threads": threads}
                for (entry, _), times in zip(sessions, timings):
                    results.append(BenchRow(**base, variant=entry.variant, engine="onnxruntime", provider=provider,
                                            file=entry.file, **stats(times, batch)))
                if module is not None:
                    results.append(BenchRow(**base, variant=FP32, engine="torch", provider=device, file=None,
                                            **stats(timings[-1], batch)))
            if module is not None:
                module.to("cpu")
    finally:
        torch.set_num_threads(previous_threads)
    report = BenchReport(env=environment(threads, device), warmup=warmup, iterations=iterations,
                         min_time_s=min_time_s, results=results)
    report.add_speedups()
    return report


def compare_baseline(
    report: BenchReport, baseline_path: Path, max_regression: float = DEFAULT_MAX_REGRESSION
) -> GateResult:
    """Rows whose p50 exceeds max_regression x the matching baseline row's p50 regress.
    Rows without a match are reported, not failed."""
    baseline = BenchReport.read(baseline_path)
    index = {row.key(): row for row in baseline.results}
    regressions, unmatched, compared = [], [], 0
    for row in report.results:
        ref = index.get(row.key())
        if ref is None:
            unmatched.append(row)
            continue
        compared += 1
        ratio = row.p50_ms / ref.p50_ms if ref.p50_ms > 0 else float("inf")
        if ratio > max_regression:
            regressions.append(Regression(row, ref.p50_ms, ratio))
    return GateResult(str(baseline_path), max_regression, compared, regressions, unmatched)
