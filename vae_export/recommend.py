"""The recommendation `bench` ends with: for each graph, size and batch, the fastest
(engine, variant, precision) that is verified, its margin over the runner-up and over PyTorch
eager fp32; `bench --recommend` records it in manifest.json (`vae_export_runtime.recommend`
owns that format) for the runtime's `engine="auto"`.

Verified, for a row, means both (bench.py):
- `verified`: `verify` passed for that engine, precision and file on this CPU (the manifest's
  record, matched on the file's sha256 and the CPU's fingerprint). verify covers several
  batches, edge inputs and sizes; its record is what says "correct on this machine".
- `check_passed`: in this very run, the row's output matched PyTorch eager fp32 on the same
  feeds with verify's rules, at the exact size and batch recommended (a reduced precision's
  error grows with the image size; a stale record cannot pass a wrong engine).
PyTorch eager fp32 is the reference and verified by definition. A row without a PyTorch row to
check against (`--no-torch`) is not recommended.

Noise: a row's spread is the half-range of its per-round p50s relative to its p50; the run's
noise is the median over its rows. A runner-up within the noise of the winner is a tie; the
recommendation also lists any engine (verified or not) measured faster than it by more than
the noise, so that the table shows what was passed over and why.
"""

from __future__ import annotations

import statistics
from typing import Any

from vae_export.reports import BenchRow
from vae_export_runtime.recommend import Candidate, Recommendation, Row

REFERENCE = ("torch", "fp32")


def row_spread(row: BenchRow) -> float | None:
    """Half the range of the row's round p50s, relative to its p50."""
    rounds = row.round_p50_ms or []
    if len(rounds) < 2 or row.p50_ms <= 0:
        return None
    return (max(rounds) - min(rounds)) / (2 * row.p50_ms)


def run_noise(rows: list[BenchRow]) -> float | None:
    spreads = [s for r in rows if (s := row_spread(r)) is not None]
    return statistics.median(spreads) if spreads else None


def is_candidate(row: BenchRow) -> bool:
    """Verified on this machine and correct in this run."""
    if (row.engine, row.arithmetic) == REFERENCE:
        return True
    return bool(row.verified) and row.check_passed is True


def _brief(row: BenchRow) -> dict[str, Any]:
    return {"engine": row.engine, "variant": row.variant, "precision": row.arithmetic, "file": row.file,
            "p50_ms": row.p50_ms, "peak_mib": row.peak_mib}


def recommend(rows: list[BenchRow], noise: float | None) -> list[dict[str, Any]]:
    """One entry per graph, size and batch (docstring above)."""
    shapes: dict[tuple[Any, ...], list[BenchRow]] = {}
    for row in rows:
        shapes.setdefault(row.shape(), []).append(row)
    out = []
    for (graph, size, batch), group in shapes.items():
        ranked = sorted((r for r in group if is_candidate(r)), key=lambda r: r.p50_ms)
        torch_row = next((r for r in group if (r.engine, r.arithmetic) == REFERENCE), None)
        entry: dict[str, Any] = {"graph": graph, "size": list(size) or None, "batch": batch,
                                 "torch_p50_ms": torch_row.p50_ms if torch_row else None}
        if not ranked:
            entry.update(recommended=None, reason="no row is both verified on this CPU and checked in this run")
            out.append(entry)
            continue
        best = ranked[0]
        runner_up = ranked[1] if len(ranked) > 1 else None
        fp32 = next((r for r in ranked if r.variant == "fp32" and r.arithmetic == "fp32"), None)
        limit = best.p50_ms * (1 - (noise or 0.0))
        entry.update(
            recommended=_brief(best),
            runner_up=_brief(runner_up) if runner_up else None,
            margin_over_runner_up=runner_up.p50_ms / best.p50_ms if runner_up else None,
            within_noise=bool(runner_up and noise is not None and runner_up.p50_ms / best.p50_ms - 1 <= noise),
            speedup_vs_torch=torch_row.p50_ms / best.p50_ms if torch_row else None,
            fastest_fp32=_brief(fp32) if fp32 else None,
            fp32_speedup_vs_torch=torch_row.p50_ms / fp32.p50_ms if torch_row and fp32 else None,
            faster_unverified=[r.label() for r in group if r.p50_ms < limit and not is_candidate(r)],
            ranking=[_brief(r) for r in ranked],
        )
        out.append(entry)
    return out


def recorded(recommendations: list[dict[str, Any]], env: dict[str, Any], noise: float | None) -> Recommendation:
    """What `bench --recommend` writes into the manifest (the runtime's format)."""
    from vae_export_runtime.cpu import cpu_flags, cpu_model, fingerprint

    rows = []
    for entry in recommendations:
        ranking = tuple(Candidate(engine=c["engine"], precision=c["precision"], variant=c["variant"], file=c["file"],
                                  p50_ms=c["p50_ms"], peak_mib=c["peak_mib"]) for c in entry.get("ranking") or [])
        size = tuple(entry["size"]) if entry["size"] else None
        rows.append(Row(graph=entry["graph"], size=size, batch=entry["batch"], ranking=ranking,  # type: ignore[arg-type]
                        torch_p50_ms=entry["torch_p50_ms"]))
    return Recommendation(cpu=cpu_model(), cpu_flags=cpu_flags(), fingerprint=fingerprint(),
                          threads=int(env.get("threads") or 1), noise=noise, rows=tuple(rows))
