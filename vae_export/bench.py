"""Latency and throughput of every graph and variant on every engine: ONNX Runtime, PyTorch
eager, and the installed peers (`vae_export.engines`).

The timed region is the call an app makes: the input already in memory (a numpy array, or a
device-resident tensor on the GPU), the output returned as an array or tensor (each engine's
`Runner.timed_call` says how it binds them). The engines alternate in rounds within each row
(`time_interleaved`), so a burst of load on a shared machine slows them all rather than
skewing the ratios. PyTorch runs with `torch.set_num_threads(--threads)`, the same count the
other engines get. Engines run at each precision they offer on this CPU (`torch:bf16`,
`openvino:bf16` where the CPU computes bfloat16 natively); rows carry `precision`.

Memory, per row, in MiB (`vae_export_runtime.memory`: /proc/self/status VmHWM, reset through
/proc/self/clear_refs before each measured call, so each figure is that call's own peak; a
process's ru_maxrss could only grow): `session_mib` is the RSS an engine's session added when
it was opened (weights, prepacked kernels); `peak_mib` is how far the row's first call (its
binding, and the call itself) took RSS above the loaded session, plus what the same session
kept from its earlier rows (arena blocks, compiled shapes), measured one engine at a time
before the timed rounds. glibc's freed pages are trimmed before each measurement so that a
call reusing another engine's freed heap is not under-counted.

Correctness, per row: each engine's first output is compared with PyTorch eager fp32's on the
same feeds, with verify's rules (`check_passed`, `psnr_db` for decoders); `verified` says
whether `verify` passed for that engine, precision and file on this CPU (the manifest's
record). `recommend.py` recommends among rows that are both.
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
from vae_export.engines import DEFAULT, GRAPH, MODEL, REFERENCE, Choice, Runner, Target, peers, resolve
from vae_export.engines import get as get_engine
from vae_export.errors import UsageError
from vae_export.families.base import LoadedModel
from vae_export.inputs import bench_input, with_labels
from vae_export.manifest import ArtifactEntry, Manifest
from vae_export.options import BenchOptions
from vae_export.progress import SILENT, Progress
from vae_export.reports import BenchReport, BenchRow, GateResult, Regression
from vae_export_runtime import memory
from vae_export_runtime.contract import FP32, graph_filename
from vae_export_runtime.cpu import cpu_flags, cpu_model
from vae_export_runtime.session import expected_shapes


def environment(threads: int, device: str) -> dict[str, Any]:
    env = {
        "cpu": cpu_model(),
        "cpu_flags": list(cpu_flags()),
        "cores": os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
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
    from vae_export.recommend import recommend, run_noise

    o = options
    g = manifest.model.geometry
    graphs = graphs or tuple(spec.role for spec in g.specs())
    graph_engines, model_engines = bench_engines(o, loaded is not None)
    entries = manifest.entries(graphs, variants)
    if not entries:
        raise UsageError(f"{artifacts}: the manifest lists no graph matching the selection")
    verified = verified_set(manifest)
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
            targets = [(choice, entry) for choice in graph_engines for entry in entries
                       if entry.graph == role and choice.engine.accepts(entry.variant, artifacts / entry.file)]
            if not targets:
                continue
            opened: list[Opened] = [
                _open(choice, Target(spec, entry.variant, artifacts / entry.file, shapes=shapes, sha256=entry.sha256,
                                     precision=choice.precision), o, entry, entry.variant)
                for choice, entry in targets]
            if loaded is not None:
                opened += [_open(choice, Target(spec, module=loaded.module(role), precision=choice.precision), o,
                                 None, FP32) for choice in model_engines]
            for run in opened:
                run.verified = _is_verified(run, verified, role, manifest)
            try:
                results += _sweep(role, spec, g, opened, o, progress, round_medians)
            finally:
                for run in opened:
                    run.runner.close()
    finally:
        torch.set_num_threads(previous_threads)
    env = {**environment(o.threads, o.device), "image_shape": list(g.image_shape)}  # for per-megapixel figures
    report = BenchReport(env=env, warmup=o.warmup, iterations=o.iterations, min_time_s=o.min_time_s, results=results,
                         rounds=o.rounds, calibration=calibrate(calibration_before, matmul_gflops()))
    report.add_speedups()
    report.noise = run_noise(results)
    report.recommendations = recommend(results, report.noise)
    return report


def bench_engines(options: BenchOptions, with_model: bool) -> tuple[list[Choice], list[Choice]]:
    """(graph engines, model engines) a sweep runs, each at a precision: `options.engines`
    when named ("NAME" or "NAME:PRECISION"), else ONNX Runtime, the installed peers (CPU;
    `options.peers`) and, with a model, PyTorch eager; with the peers, the peers and PyTorch
    at every precision they run on this CPU (fp32, and bf16 where the CPU computes it
    natively), so that `--no-peers` is the plain ONNX Runtime / PyTorch fp32 pair. Each must be
    able to run on the device (UsageError otherwise)."""
    if options.engines:
        chosen = [resolve(spec) for spec in options.engines]
    else:
        chosen = [Choice(get_engine(DEFAULT))]
        widen = options.peers and options.device == "cpu"
        if widen:
            chosen += [Choice(e, p) for e in peers() for p in e.usable_precisions()]
        if with_model:
            torch_engine = get_engine(REFERENCE)
            chosen += [Choice(torch_engine, p) for p in (torch_engine.usable_precisions() if widen else (FP32,))]
    for choice in chosen:
        choice.engine.check(options.device)
    graph = [c for c in chosen if c.engine.kind == GRAPH]
    model = [c for c in chosen if c.engine.kind == MODEL]
    if model and not with_model:
        raise UsageError(f"--engine {model[0].engine.name}: runs the PyTorch model, which --no-torch leaves out")
    return graph, model


class Opened:
    """An engine opened on one graph for a sweep, with what bench tracks about it."""

    def __init__(self, choice: Choice, runner: Runner, entry: ArtifactEntry | None, variant: str,
                 session_mib: float | None) -> None:
        self.choice, self.runner, self.entry, self.variant = choice, runner, entry, variant
        self.file = entry.file if entry is not None else None
        self.session_mib = session_mib
        self.kept_mib = 0.0  # what the session kept from earlier rows (arena blocks, compiled shapes)
        self.verified: bool = False

    @property
    def is_reference(self) -> bool:
        return self.choice.engine.name == REFERENCE and self.choice.precision == FP32


def _open(choice: Choice, target: Target, o: BenchOptions, entry: ArtifactEntry | None, variant: str) -> Opened:
    runner, peak = memory.measure(lambda: choice.engine.open(target, o.device, o.threads))
    runner.precision = choice.precision
    return Opened(choice, runner, entry, variant, None if peak is None else max(peak.retained_mib, 0.0))


def verified_set(manifest: Manifest) -> dict[str, dict[str, Any]]:
    """The manifest's record of passed verify runs ("ENGINE[:PRECISION]|FILE" -> entry)."""
    record = (manifest.parity or {}).get("verified")
    return record if isinstance(record, dict) else {}


def _is_verified(run: Opened, verified: dict[str, dict[str, Any]], role: str, manifest: Manifest) -> bool:
    """PyTorch eager fp32 is the reference; every other engine, precision and file must have
    passed `verify` on this CPU, for this very file (sha256)."""
    from vae_export_runtime.cpu import fingerprint

    if run.is_reference:
        return True
    file = run.file or graph_filename(role)  # a model engine was verified on the fp32 graph's feeds
    entry = verified.get(f"{run.choice.label}|{file}")
    sha = {e.file: e.sha256 for e in manifest.artifacts}.get(file)
    return isinstance(entry, dict) and entry.get("sha256") == sha and entry.get("fingerprint") == fingerprint()


def _sweep(role: str, spec: Any, g: Any, opened: list[Opened], o: BenchOptions, progress: Progress,
           round_medians: Callable[..., list[float]]) -> list[BenchRow]:
    """The rows of one graph: every size and batch, every engine in the same rounds."""
    rows = []
    every = opened
    for size in o.sizes or g.default_sizes():
        # A file with recorded bounds (a .pte) is timed at the sizes within them only.
        opened = [r for r in every if r.entry is None or r.entry.admits(g.input_shapes(spec, size))]
        for batch in o.batch_sizes:
            feeds = with_labels(spec.input_names, bench_input(role, batch, g.latent_at(size), g.image_at(size)),
                                g.num_classes)
            progress(f"bench {role} {size[0]}x{size[1]} batch {batch:>4}: "
                     + ", ".join(f"{r.choice.label} {r.variant}" if r.file else r.choice.label for r in opened))
            # One engine at a time, before any timing: its call's memory, and its first outputs.
            prepared = [_prepare(run, feeds, spec) for run in opened]
            calls = [item[0] for item in prepared]
            reference = next((item[2] for run, item in zip(opened, prepared) if run.is_reference), None)
            counts: list[list[int]] = []
            times = time_interleaved(calls, o.warmup, o.iterations, o.rounds, o.min_time_s, counts)
            extra = {"size": list(size)} if g.dynamic_size else {}
            for i, (run, t) in enumerate(zip(opened, times)):
                medians = round_medians(t, [c[i] for c in counts])
                check = _check(run, role, spec, prepared[i][2], reference)
                rows.append(BenchRow(graph=role, batch=batch, threads=o.threads, variant=run.variant,
                                     engine=run.runner.engine, provider=run.runner.provider, file=run.file,
                                     **_timed((t, medians), batch), **extra, precision=run.choice.precision,
                                     peak_mib=prepared[i][1], session_mib=run.session_mib, **check,
                                     verified=run.verified))
            del calls
            for run, item in zip(opened, prepared):  # what each session keeps beyond the row
                _release(run, item)
    return rows


def _prepare(run: Opened, feeds: Any, spec: Any) -> list[Any]:
    """[the timed call, its peak MiB above the loaded session, its first outputs as arrays]."""
    def first() -> tuple[Callable[[], Any], Any]:
        call = run.runner.timed_call(feeds)
        return call, call()

    (call, out), peak = memory.measure(first)
    # A model engine's timed call is the model's own method (its outputs may not be in the
    # contract's form: diffusers' decode returns [-1, 1]); its outputs for the check come from
    # the graph wrapper, as verify's do. A graph engine's timed outputs are the graph's.
    outputs = run.runner.run(feeds) if run.choice.engine.kind == MODEL else _arrays(out, len(spec.output_names))
    del out
    if peak is None:
        return [call, None, outputs, None]
    return [call, run.kept_mib + peak.growth_mib, outputs, peak]


def _release(run: Opened, item: list[Any]) -> None:
    """After a row: drop its call (bound buffers), and add to the session's `kept_mib` what
    its first call retained beyond them."""
    peak = item[3]
    item[0] = None
    if peak is None:
        return
    memory.trim()
    before = memory.rss_mib()
    del item[:]
    memory.trim()
    after = memory.rss_mib()
    released = (before - after) if before is not None and after is not None else 0.0
    run.kept_mib = max(run.kept_mib + peak.retained_mib - max(released, 0.0), 0.0)


def _arrays(out: Any, count: int) -> list[np.ndarray]:
    """An engine's call result as float32 arrays (copies: bound buffers are reused)."""
    if hasattr(out, "to_tuple"):  # OpenVINO's OVDict
        out = out.to_tuple()
    if not isinstance(out, (list, tuple)):
        out = (out,)
    arrays = []
    for value in list(out)[:count]:
        if hasattr(value, "detach"):  # a torch tensor (bf16 under autocast)
            value = value.detach().float().cpu().numpy()
        arrays.append(np.array(value, dtype=np.float32, copy=True))
    return arrays


# The in-run check's fp32 tolerance: 10x verify's. It runs at every benchmarked size, where
# float32 rounding accumulated over a large decode (SD-sized at 512x512: PSNR 108-115 dB against
# PyTorch, max abs a few 1e-5) exceeds verify's 1e-5, which verify applies at its smaller sizes.
# It is there to catch a wrong engine (a wrong result is off by far more), not to certify
# precision: that is verify's record. Reduced precisions get verify's own rules (PSNR, mu bounds).
CHECK_ATOL, CHECK_RTOL = 1e-4, 1e-3


def _check(run: Opened, role: str, spec: Any, outputs: list[np.ndarray],
           reference: list[np.ndarray] | None) -> dict[str, Any]:
    """The row's in-run check against PyTorch eager fp32 on the same feeds (verify's rules,
    CHECK_ATOL/CHECK_RTOL for fp32)."""
    from vae_export.parity import _check_row

    if reference is None:
        return {"psnr_db": None, "check_passed": None}
    if run.is_reference:
        return {"psnr_db": None, "check_passed": True}
    rows = [_check_row(run.variant, role, run.file or "", name, len(a), "random", a, e, CHECK_ATOL, CHECK_RTOL, None,
                       None, run.choice.precision)
            for name, a, e in zip(spec.output_names, outputs, reference)]
    psnr = next((r.psnr_db for r in rows if r.psnr_db is not None), None)
    return {"psnr_db": psnr, "check_passed": all(r.passed for r in rows)}


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
