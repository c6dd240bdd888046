"""`bench --against OLD`: time two artifact sets in one process, row by row, in paired rounds,
and give each row a NEW/OLD ratio with its interval and a verdict (`abtest.paired`).

Why in one process: separate runs of identical artifacts differ by 10-20 % on a shared
runner (benchmarks/RESULTS.md), more than the regressions a gate should catch. Here every
round runs a block of NEW calls and a block of OLD calls of the same row back to back, so
load bursts and frequency changes fall on both sides of the ratio; the block order flips
every round (NEW first, then OLD first) so that neither side always runs on the cache the
other left behind. Only ONNX Runtime rows are compared: PyTorch's row times the checkpoint,
not the artifacts under test.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vae_export import abtest
from vae_export.bench import calls_to_fill, environment, stats, timed_round
from vae_export.engines import DEFAULT, Target
from vae_export.engines import get as get_engine
from vae_export.errors import UsageError
from vae_export.inputs import bench_input, with_labels
from vae_export.manifest import ArtifactEntry, Manifest
from vae_export.options import AgainstOptions
from vae_export.progress import SILENT, Progress
from vae_export.reports import AgainstReport
from vae_export_runtime.session import expected_shapes


def time_paired_rounds(calls: list[Callable[[], Any]], warmup: int, iterations: int, rounds: int,
                       min_time_s: float) -> list[list[np.ndarray]]:
    """Times calls[0::2] (NEW) against calls[1::2] (OLD) in `rounds` rounds; returns, per call,
    one array of durations (ms) per round. Both sides of a pair get the same number of calls
    a round: the larger of their shares of max(iterations, calls filling min_time_s, rounds)."""
    budget_ns = min_time_s * 1e9
    counts = [max(iterations, rounds, calls_to_fill(call, warmup, budget_ns)) for call in calls]
    shares = [math.ceil(max(counts[i - i % 2], counts[i - i % 2 + 1]) / rounds) for i in range(len(calls))]
    times: list[list[list[int]]] = [[[] for _ in range(rounds)] for _ in calls]
    for r in range(rounds):
        order = range(len(calls)) if r % 2 == 0 else range(len(calls) - 1, -1, -1)
        for i in order:
            timed_round([calls[i]], [times[i][r]], [shares[i]])
    return [[np.asarray(t, dtype=np.float64) / 1e6 for t in per_call] for per_call in times]


def _matching(new: Manifest, old: Manifest, graphs: tuple[str, ...],
              variants: tuple[str, ...] | None) -> tuple[list[tuple[ArtifactEntry, ArtifactEntry]], list[str]]:
    """(NEW entry, OLD entry) pairs with the same graph and variant, and the unmatched names."""
    def index(manifest: Manifest) -> dict[tuple[str, str], ArtifactEntry]:
        return {(e.graph, e.variant): e for e in manifest.entries(graphs, variants)}

    new_index, old_index = index(new), index(old)
    pairs = [(new_index[k], old_index[k]) for k in new_index if k in old_index]
    unmatched = [f"{g}.{v} (only in {'NEW' if (g, v) in new_index else 'OLD'})"
                 for g, v in sorted(set(new_index) ^ set(old_index))]
    return pairs, unmatched


def against(new_dir: Path, old_dir: Path, options: AgainstOptions = AgainstOptions(), progress: Progress = SILENT,
            graphs: tuple[str, ...] | None = None, variants: tuple[str, ...] | None = None) -> AgainstReport:
    """The A/B report: bench rows of NEW (p50_ms, ...) with the OLD side and the verdict.
    Both artifact sets pass the same integrity checks as `bench` before anything is loaded.
    `graphs`: roles to time (default: every graph NEW's model has)."""
    o = options
    if o.rounds < abtest.MIN_ROUNDS:
        raise UsageError(f"--rounds: expected at least {abtest.MIN_ROUNDS} for a 95 % interval, found {o.rounds}")
    new_manifest, old_manifest = Manifest.read(new_dir), Manifest.read(old_dir)
    new_manifest.check_integrity(new_dir)
    old_manifest.check_integrity(old_dir)
    g = new_manifest.model.geometry
    graphs = graphs or tuple(spec.role for spec in g.specs())
    for key in ("latent_shape", "image_shape", "num_classes"):
        new_value, old_value = getattr(new_manifest.model.geometry, key), getattr(old_manifest.model.geometry, key)
        if new_value != old_value:
            shown = [list(v) if isinstance(v, tuple) else v for v in (old_value, new_value)]
            raise UsageError(f"--against {old_dir}: model {key} is {shown[0]}, but "
                             f"{new_dir} has {shown[1]}; the rows cannot be compared")
    pairs, unmatched = _matching(new_manifest, old_manifest, graphs, variants)
    engine = get_engine(DEFAULT)
    # Files ONNX Runtime does not run (ExecuTorch's .pte) are listed as not compared.
    unmatched += [f"{n.graph}.{n.variant} (not an ONNX Runtime file)" for n, _ in pairs
                  if not engine.accepts(n.variant, new_dir / n.file)]
    pairs = [(n, old_e) for n, old_e in pairs if engine.accepts(n.variant, new_dir / n.file)]
    if not pairs:
        raise UsageError(f"--against {old_dir}: no graph and variant in common with {new_dir}")
    engine.check(o.device)
    results: list[dict[str, Any]] = []
    for role in graphs:
        spec = g.spec(role)
        shapes = expected_shapes(spec, g.latent_dims(), g.image_dims(), g.num_classes)
        runners = [(new_e, old_e, engine.open(Target(spec, new_e.variant, new_dir / new_e.file, shapes=shapes), o.device,
                                              o.threads),
                    engine.open(Target(spec, old_e.variant, old_dir / old_e.file, shapes=shapes), o.device, o.threads))
                   for new_e, old_e in pairs if new_e.graph == role]
        for batch in o.batch_sizes:
            if not runners:
                break
            # One input for both sides, at the size the graphs were exported at.
            x = with_labels(spec.input_names, bench_input(role, batch, g.latent_shape, g.image_shape), g.num_classes)
            progress(f"against {role} batch {batch:>4}: {', '.join(n.variant for n, *_ in runners)}, {o.rounds} rounds")
            calls = [r.timed_call(x) for _, _, new_r, old_r in runners for r in (new_r, old_r)]
            timings = time_paired_rounds(calls, o.warmup, o.iterations, o.rounds, o.min_time_s)
            for k, (new_e, old_e, new_runner, _) in enumerate(runners):
                new_t, old_t = timings[2 * k], timings[2 * k + 1]
                new_r = [float(np.median(t)) for t in new_t]
                old_r = [float(np.median(t)) for t in old_t]
                comparison = abtest.paired(new_r, old_r, o.max_regression)
                old_stats = stats(np.concatenate(old_t), batch)
                results.append({
                    "graph": role, "batch": batch, "threads": o.threads, "variant": new_e.variant,
                    "engine": new_runner.engine, "provider": new_runner.provider, "file": new_e.file,
                    **stats(np.concatenate(new_t), batch),
                    "against_file": old_e.file, "against_p50_ms": old_stats["p50_ms"],
                    "round_p50_ms": new_r, "against_round_p50_ms": old_r, **comparison.to_json(),
                })
    return AgainstReport(env=environment(o.threads, o.device), against=str(old_dir), artifacts=str(new_dir),
                         max_regression=o.max_regression, rounds=o.rounds, min_time_s=o.min_time_s, warmup=o.warmup,
                         iterations=o.iterations, results=results, unmatched=unmatched)
