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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from vae_export import __version__
from vae_export.checkpoint import LoadedModel
from vae_export.contract import FP32, GraphSpec
from vae_export.inputs import bench_input, with_labels
from vae_export.manifest import Manifest
from vae_export.options import BenchOptions
from vae_export.errors import UsageError
from vae_export.ortsession import expected_shapes, make_session, providers_for, run_limited
from vae_export.peers import available_peers
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


def ort_call(session: ort.InferenceSession, spec: GraphSpec, inputs: np.ndarray | Mapping[str, np.ndarray],
             device: str) -> Callable[[], Any]:
    """A bound call: input and output buffers fixed once, so each call only runs the graph.
    `inputs`: the feeds by name, or the array of the graph's one input."""
    feeds = dict(inputs) if isinstance(inputs, Mapping) else {spec.input_name: inputs}
    binding = session.io_binding()
    if device == "cuda":
        on_device = {name: ort.OrtValue.ortvalue_from_numpy(value, "cuda", 0) for name, value in feeds.items()}
        for name, value in on_device.items():
            binding.bind_ortvalue_input(name, value)
        for name in spec.output_names:
            binding.bind_output(name, "cuda", 0)
        session.run_with_iobinding(binding)  # lets ORT allocate device outputs once
        outputs = binding.get_outputs()
        binding.clear_binding_outputs()
        for name, value in zip(spec.output_names, outputs):
            binding.bind_ortvalue_output(name, value)
    else:
        on_device = {}
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        # The first run is time-limited: a graph that never stops is reported before the timed loop.
        first = run_limited(session, spec.output_names, feeds, Path(getattr(session, "_model_path", None) or spec.role))
        outputs = [np.empty_like(out) for out in first]
        for name, buffer in zip(spec.output_names, outputs):
            binding.bind_output(name, "cpu", 0, buffer.dtype, list(buffer.shape), buffer.ctypes.data)
    run = session.run_with_iobinding

    def call() -> Any:
        # The closure holds the input and output buffers: ORT writes into raw pointers, so
        # they must live as long as the binding does.
        run(binding)
        return outputs

    call.keepalive = (feeds, on_device, outputs)  # type: ignore[attr-defined]
    return call


def torch_call(module: torch.nn.Module, inputs: np.ndarray | tuple[np.ndarray, ...], device: str) -> Callable[[], Any]:
    """PyTorch eager as an app would call it: the model's own encode/decode, not our
    export wrapper, under inference_mode. `inputs`: the graph's inputs in order."""
    eager = getattr(module, "eager", None)
    run = eager() if callable(eager) else module
    tensors = [torch.from_numpy(x).to(device) for x in (inputs if isinstance(inputs, tuple) else (inputs,))]
    if device == "cuda":
        def call() -> Any:
            with torch.inference_mode():
                out = run(*tensors)
            torch.cuda.synchronize()
            return out
        return call

    def call_cpu() -> Any:
        with torch.inference_mode():
            return run(*tensors)
    return call_cpu


def bench(
    artifacts: Path,
    loaded: LoadedModel | None,
    device: str = "cpu",
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES,
    threads: int = 1,
    warmup: int = DEFAULT_WARMUP,
    iterations: int = DEFAULT_ITERATIONS,
    graphs: tuple[str, ...] | None = None,
    variants: tuple[str, ...] | None = None,
    progress: Progress = SILENT,
    min_time_s: float = 0.0,
    sizes: tuple[tuple[int, int], ...] | None = None,
    peers: bool = True,
    rounds: int = ROUNDS,
) -> BenchReport:
    """The sweep; returns the `bench --json` report (docs/contract.md). `loaded=None` skips PyTorch;
    `min_time_s` is the time budget of `time_interleaved`. Graphs with a symbolic size are timed
    at each of `sizes` (default `Geometry.default_sizes`); their rows carry `size` and
    `ms_per_megapixel`. With `peers`, installed peer engines (OpenVINO, on CPU) run the fp32
    graph in the same rounds. Each row keeps its per-round medians (`round_p50_ms`) and the
    report a calibration figure, so that a later run can judge it as a baseline
    (`abtest.unpaired`). `graphs`: roles to time (default: every graph the model has)."""
    from vae_export.abtest import round_medians
    from vae_export.calibration import calibrate, matmul_gflops

    manifest = Manifest.read(artifacts)
    g = manifest.model.geometry
    graphs = graphs or tuple(spec.role for spec in g.specs())
    provider = providers_for(device)[0]
    entries = manifest.entries(graphs, variants)
    if not entries:
        raise UsageError(f"{artifacts}: the manifest lists no graph matching the selection")
    peer_engines = available_peers() if peers and device == "cpu" else {}
    results: list[BenchRow] = []
    calibration_before = matmul_gflops()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for role in graphs:
            spec = g.spec(role)
            # Every variant of a graph, the peers and PyTorch are timed together, shape by shape,
            # in alternating rounds: the ratios between them come from the same minutes.
            shapes = expected_shapes(spec, g.latent_dims(), g.image_dims(), g.num_classes)
            sessions = [(e, make_session(artifacts / e.file, device, threads, spec=spec, shapes=shapes))
                        for e in entries if e.graph == role]
            if not sessions:
                continue
            module = None
            if loaded is not None:
                module = loaded.module(role).to(device)
            fp32 = next((e for e, _ in sessions if e.variant == FP32), None)
            for size in sizes or g.default_sizes():
                for batch in batch_sizes:
                    feeds = with_labels(spec.input_names, bench_input(role, batch, g.latent_at(size), g.image_at(size)),
                                        g.num_classes)
                    calls = [ort_call(session, spec, feeds, device) for _, session in sessions]
                    peer_rows = [(name, make(artifacts / fp32.file, feeds, threads)) for name, make in peer_engines.items()
                                 if fp32 is not None]
                    calls += [call for _, call in peer_rows]
                    if module is not None:
                        calls.append(torch_call(module, tuple(feeds[n] for n in spec.input_names), device))
                    progress(f"bench {role} {size[0]}x{size[1]} batch {batch:>4}: "
                             f"{', '.join(e.variant for e, _ in sessions)}"
                             + "".join(f" + {name}" for name, _ in peer_rows) + (" + torch" if module is not None else ""))
                    counts: list[list[int]] = []
                    times = time_interleaved(calls, warmup, iterations, rounds, min_time_s, counts)
                    medians = [round_medians(t, [c[i] for c in counts]) for i, t in enumerate(times)]
                    timings = iter(zip(times, medians))
                    base: dict[str, Any] = {"graph": role, "batch": batch, "threads": threads}
                    extra = {"size": list(size)} if g.dynamic_size else {}
                    for entry, _ in sessions:
                        results.append(BenchRow(**base, variant=entry.variant, engine="onnxruntime", provider=provider,
                                                file=entry.file, **_timed(next(timings), batch), **extra))
                    for name, _ in peer_rows:
                        results.append(BenchRow(**base, variant=FP32, engine=name, provider="CPU",  # type: ignore[union-attr]
                                                file=fp32.file, **_timed(next(timings), batch), **extra))
                    if module is not None:
                        results.append(BenchRow(**base, variant=FP32, engine="torch", provider=device, file=None,
                                                **_timed(next(timings), batch), **extra))
            if module is not None:
                module.to("cpu")
    finally:
        torch.set_num_threads(previous_threads)
    env = {**environment(threads, device), "image_shape": list(g.image_shape)}  # for per-megapixel figures
    report = BenchReport(env=env, warmup=warmup, iterations=iterations, min_time_s=min_time_s, results=results,
                         rounds=rounds, calibration=calibrate(calibration_before, matmul_gflops()))
    report.add_speedups()
    return report


def _timed(timing: tuple[np.ndarray, list[float]], batch: int) -> dict[str, Any]:
    times, medians = timing
    return {**stats(times, batch), "round_p50_ms": medians}


def compare_baseline(
    report: BenchReport, baseline_path: Path, max_regression: float = DEFAULT_MAX_REGRESSION
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
