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
from vae_export.bench import _calls_to_fill, _round, environment, ort_call, stats
from vae_export.errors import CheckFailed, UsageError
from vae_export.inputs import bench_input, with_labels
from vae_export.manifest import ArtifactEntry, Manifest
from vae_export.options import AgainstOptions
from vae_export.ortsession import make_session, providers_for
from vae_export.progress import SILENT, Progress

DEFAULT_ROUNDS = AgainstOptions.rounds
DEFAULT_MIN_TIME_S = AgainstOptions.min_time_s


def time_paired_rounds(calls: list[Callable[[], Any]], warmup: int, iterations: int, rounds: int,
                       min_time_s: float) -> list[list[np.ndarray]]:
    """Times calls[0::2] (NEW) against calls[1::2] (OLD) in `rounds` rounds; returns, per call,
    one array of durations (ms) per round. Both sides of a pair get the same number of calls
    a round: the larger of their shares of max(iterations, calls filling min_time_s, rounds)."""
    budget_ns = min_time_s * 1e9
    counts = [max(iterations, rounds, _calls_to_fill(call, warmup, budget_ns)) for call in calls]
    shares = [math.ceil(max(counts[i - i % 2], counts[i - i % 2 + 1]) / rounds) for i in range(len(calls))]
    times: list[list[list[int]]] = [[[] for _ in range(rounds)] for _ in calls]
    for r in range(rounds):
        order = range(len(calls)) if r % 2 == 0 else range(len(calls) - 1, -1, -1)
        for i in order:
            _round([calls[i]], [times[i][r]], [shares[i]])
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


def against(
    new_dir: Path,
    old_dir: Path,
    device: str = "cpu",
    batch_sizes: tuple[int, ...] = (1, 64),
    threads: int = 1,
    warmup: int = 20,
    iterations: int = 200,
    rounds: int = DEFAULT_ROUNDS,
    min_time_s: float = DEFAULT_MIN_TIME_S,
    max_regression: float = AgainstOptions.max_regression,
    graphs: tuple[str, ...] | None = None,
    variants: tuple[str, ...] | None = None,
    progress: Progress = SILENT,
) -> dict[str, Any]:
    """The A/B report: bench rows of NEW (p50_ms, ...) with the OLD side and the verdict.
    `graphs`: roles to time (default: every graph NEW's model has)."""
    if rounds < abtest.MIN_ROUNDS:
        raise UsageError(f"--rounds: expected at least {abtest.MIN_ROUNDS} for a 95 % interval, found {rounds}")
    new_manifest, old_manifest = Manifest.read(new_dir), Manifest.read(old_dir)
    g = new_manifest.model.geometry
    graphs = graphs or tuple(spec.role for spec in g.specs())
    for key in ("latent_shape", "image_shape", "num_classes"):
        new_value, old_value = getattr(new_manifest.model.geometry, key), getattr(old_manifest.model.geometry, key)
        if new_value != old_value:
            shown = [list(v) if isinstance(v, tuple) else v for v in (old_value, new_value)]
            raise UsageError(f"--against {old_dir}: model {key} is {shown[0]}, but "
                             f"{new_dir} has {shown[1]}; the rows cannot be compared")
    pairs, unmatched = _matching(new_manifest, old_manifest, graphs, variants)
    if not pairs:
        raise UsageError(f"--against {old_dir}: no graph and variant in common with {new_dir}")
    provider = providers_for(device)[0]
    results: list[dict[str, Any]] = []
    for role in graphs:
        spec = g.spec(role)
        sessions = [(new_e, old_e, make_session(new_dir / new_e.file, device, threads, spec=spec),
                     make_session(old_dir / old_e.file, device, threads, spec=spec))
                    for new_e, old_e in pairs if new_e.graph == role]
        for batch in batch_sizes:
            if not sessions:
                break
            # One input for both sides, at the size the graphs were exported at.
            x = with_labels(spec.input_names, bench_input(role, batch, g.latent_shape, g.image_shape), g.num_classes)
            progress(f"against {role} batch {batch:>4}: {', '.join(n.variant for n, *_ in sessions)}, {rounds} rounds")
            calls = [ort_call(s, spec, x, device) for _, _, new_s, old_s in sessions for s in (new_s, old_s)]
            timings = time_paired_rounds(calls, warmup, iterations, rounds, min_time_s)
            for k, (new_e, old_e, _, _) in enumerate(sessions):
                new_t, old_t = timings[2 * k], timings[2 * k + 1]
                new_r = [float(np.median(t)) for t in new_t]
                old_r = [float(np.median(t)) for t in old_t]
                comparison = abtest.paired(new_r, old_r, max_regression)
                old_stats = stats(np.concatenate(old_t), batch)
                results.append({
                    "graph": role, "batch": batch, "threads": threads, "variant": new_e.variant,
                    "engine": "onnxruntime", "provider": provider, "file": new_e.file,
                    **stats(np.concatenate(new_t), batch),
                    "against_file": old_e.file, "against_p50_ms": old_stats["p50_ms"],
                    "round_p50_ms": new_r, "against_round_p50_ms": old_r, **comparison.to_json(),
                })
    verdicts = [r["verdict"] for r in results]
    return {"env": environment(threads, device), "against": str(old_dir), "artifacts": str(new_dir),
            "max_regression": max_regression, "confidence": abtest.CONFIDENCE, "rounds": rounds,
            "min_time_s": min_time_s, "warmup": warmup, "iterations": iterations, "method": abtest.PAIRED_METHOD,
            "results": results, "unmatched": unmatched,
            "counts": {v: verdicts.count(v) for v in (abtest.REGRESSED, abtest.IMPROVED, abtest.OK, abtest.INCONCLUSIVE)},
            "passed": abtest.REGRESSED not in verdicts}


def raise_if_regressed(report: dict[str, Any]) -> None:
    """The gate's verdict as the domain error: exit 1 when any row regressed."""
    if not report["passed"]:
        counts = ", ".join(f"{n} {v}" for v, n in report["counts"].items() if n)
        raise CheckFailed(f"{report['counts'][abtest.REGRESSED]} of {len(report['results'])} rows regressed beyond "
                          f"{report['max_regression']:g}x {report['against']} ({counts})")
