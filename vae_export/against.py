"""`bench --against OLD`: time two artifact sets in one process, row by row, in paired rounds
grouped by sessions, and give each row a NEW/OLD ratio with its interval and a verdict
(`abtest.grouped`).

Why in one process: separate runs of identical artifacts differ by 10-20 % on a shared
runner (benchmarks/RESULTS.md), more than the regressions a gate should catch. Here every
round runs a block of NEW calls and a block of OLD calls of the same row back to back, so
load bursts and frequency changes fall on both sides of the ratio; the block order flips
every round so that neither side always runs on the cache the other left behind.

Why session groups: one ONNX Runtime session per side made every round share that pair's
own difference (two sessions of one graph differ by up to a few per cent for as long as they
live: where their weights, arena and buffers landed, which was created first), so the
interval over rounds was far narrower than the run-to-run spread, and identical artifacts
came out `improved` or `regressed`. So the sessions are part of the resampling: the rounds
are split into `sessions` groups, each group opens fresh sessions of both sides (the side
created first alternates, a spacer of random size shifts where the next allocations land,
and each side gets its own copy of the input at a random offset), times its rounds, and
closes them; the interval is over groups. Only ONNX Runtime rows are compared: PyTorch's
row times the checkpoint, not the artifacts under test. Every session opens a private copy
of the graph checked against the manifest (`snapshots.py`), so what is timed is what was
hashed, however often it is reopened.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vae_export import abtest
from vae_export.bench import calls_to_fill, environment, stats, timed_round
from vae_export.engines import DEFAULT, Runner, Target
from vae_export.engines import get as get_engine
from vae_export.errors import UsageError
from vae_export.inputs import bench_input, with_labels
from vae_export.manifest import ArtifactEntry, Manifest
from vae_export.options import AgainstOptions
from vae_export.progress import SILENT, Progress
from vae_export.reports import AgainstReport
from vae_export.snapshots import copy_verified
from vae_export_runtime.session import expected_shapes

Feeds = Mapping[str, np.ndarray]
# (NEW runner, OLD runner) per compared file pair, opened for one group; `new_first` says
# which side's sessions to create first.
PairOpener = Callable[[bool, np.random.Generator], list[tuple[Runner, Runner]]]


@dataclass
class Sampled:
    """One compared row's timings: per group, the per-round medians (ms) of each side; and
    every call's duration (ms) of each side, for the row's percentiles."""

    new_groups: list[list[float]] = field(default_factory=list)
    old_groups: list[list[float]] = field(default_factory=list)
    new_calls: list[float] = field(default_factory=list)
    old_calls: list[float] = field(default_factory=list)


GroupTimes = dict[tuple[int, int], Sampled]  # by (pair index, batch)
SPACER_MAX_BYTES = 1 << 20  # up to 1 MiB: past glibc's mmap threshold, so both heap and mmap placement move
INPUT_OFFSET_MAX = 64  # input copies start 0..63 cache lines into their buffer


def rounds_in_group(group: int, rounds: int, sessions: int) -> int:
    """Rounds of group `group` when `rounds` are spread over `sessions` groups (the first
    groups take the remainder)."""
    return rounds // sessions + (1 if group < rounds % sessions else 0)


def spacer(rng: np.random.Generator) -> np.ndarray:
    """A live allocation of random size, held while sessions are created: their weights and
    arena land at other addresses than in the previous group."""
    block = np.empty(int(rng.integers(1, SPACER_MAX_BYTES)), np.uint8)
    block[::4096] = 1  # touched, so that the pages are really placed
    return block


def placed_copy(feeds: Feeds, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The feeds copied into fresh buffers at a random cache-line offset: each side's input
    has its own placement, drawn again every group."""
    out = {}
    for name, value in feeds.items():
        offset = 64 * int(rng.integers(0, INPUT_OFFSET_MAX))
        buffer = np.empty(value.nbytes + offset + 64, np.uint8)
        start = offset + (-buffer.ctypes.data - offset) % 64  # 64-byte aligned, then the offset
        view = buffer[start:start + value.nbytes].view(value.dtype).reshape(value.shape)
        view[...] = value
        out[name] = view
    return out


def time_session_groups(open_pairs: PairOpener, feeds: Mapping[int, Feeds], o: AgainstOptions,
                        clock: Callable[[], int] = time.perf_counter_ns, seed: int = 0) -> GroupTimes:
    """Times every opened pair at every batch of `feeds`, in `o.sessions` groups of fresh
    sessions with `o.rounds` paired rounds over all groups. Within a group both sides of a
    pair get the same number of calls a round (the larger of their shares of max(iterations,
    calls filling min_time_s, rounds), spread over the groups); the block order flips every
    round, counted across groups. `seed` draws the placement (not the statistics: the same
    samples always give the same verdict). `clock` (nanoseconds) is for tests."""
    rng = np.random.default_rng(seed)
    budget_ns = o.min_time_s * 1e9 / o.sessions
    out: GroupTimes = {}
    round_index = 0
    for group in range(o.sessions):
        hold = spacer(rng)
        pairs = open_pairs(group % 2 == 0, rng)
        per_group = rounds_in_group(group, o.rounds, o.sessions)
        start_index = round_index
        # Whatever happens first in a group (binding buffers, warm-up) happens to NEW in even
        # groups and to OLD in odd ones: a fixed order biased the A/A ratio by +0.1 %.
        first = (lambda k: 2 * k, lambda k: 2 * k + 1) if group % 2 == 0 else (lambda k: 2 * k + 1, lambda k: 2 * k)
        setup_order = [pick(k) for k in range(len(pairs)) for pick in first]
        for batch, batch_feeds in feeds.items():
            made = {i: pairs[i // 2][i % 2].timed_call(placed_copy(batch_feeds, rng)) for i in setup_order}
            calls = [made[i] for i in range(len(made))]
            filled = {i: calls_to_fill(calls[i], o.warmup, budget_ns, clock) for i in setup_order}
            counts = [max(math.ceil(o.iterations / o.sessions), per_group, filled[i]) for i in range(len(calls))]
            shares = [math.ceil(max(counts[i - i % 2], counts[i - i % 2 + 1]) / per_group) for i in range(len(calls))]
            times: list[list[list[int]]] = [[[] for _ in range(per_group)] for _ in calls]
            for r in range(per_group):
                order = range(len(calls)) if (start_index + r) % 2 == 0 else range(len(calls) - 1, -1, -1)
                for i in order:
                    timed_round([calls[i]], [times[i][r]], [shares[i]], clock)
            for k in range(len(pairs)):
                row = out.setdefault((k, batch), Sampled())
                for groups, calls_ms, per_round in ((row.new_groups, row.new_calls, times[2 * k]),
                                                    (row.old_groups, row.old_calls, times[2 * k + 1])):
                    groups.append([float(np.median(t)) / 1e6 for t in per_round])
                    calls_ms.extend(v / 1e6 for t in per_round for v in t)
            del calls
        round_index += per_group
        for pair in pairs:
            for side in pair:
                side.close()
        del pairs, hold  # the sessions go with their last reference: the next group opens fresh ones
    return out


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
    Both artifact sets pass the same integrity checks as `bench` before anything is loaded,
    and the graphs timed are private copies of exactly the bytes checked.
    `graphs`: roles to time (default: every graph NEW's model has)."""
    o = options
    if o.sessions < abtest.MIN_SESSIONS:
        raise UsageError(f"--sessions: expected at least {abtest.MIN_SESSIONS} for a 95 % interval, found {o.sessions}")
    if o.rounds < o.sessions:
        raise UsageError(f"--rounds: expected at least one round per session group ({o.sessions}), found {o.rounds}")
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
    with tempfile.TemporaryDirectory(prefix="vae-export-against-") as private:  # mode 0700
        copies = {}
        for i, (side, directory, option) in enumerate((("new", new_dir, "--artifacts"), ("old", old_dir, "--against"))):
            (Path(private) / side).mkdir()
            copies[side] = copy_verified(directory, [p[i] for p in pairs], Path(private) / side, option)
        for role in graphs:
            spec = g.spec(role)
            shapes = expected_shapes(spec, g.latent_dims(), g.image_dims(), g.num_classes)
            role_pairs = [(new_e, old_e) for new_e, old_e in pairs if new_e.graph == role]
            if not role_pairs:
                continue

            def open_pairs(new_first: bool, rng: np.random.Generator,
                           role_pairs: Sequence[tuple[ArtifactEntry, ArtifactEntry]] = role_pairs,
                           spec: Any = spec, shapes: Any = shapes) -> list[tuple[Runner, Runner]]:
                opened, holds = [], []
                for new_e, old_e in role_pairs:
                    sides: dict[str, Runner] = {}
                    for side, entry in (("new", new_e), ("old", old_e)) if new_first else (("old", old_e), ("new", new_e)):
                        holds.append(spacer(rng))
                        sides[side] = engine.open(Target(spec, entry.variant, copies[side][entry.file], shapes=shapes),
                                                  o.device, o.threads)
                    opened.append((sides["new"], sides["old"]))
                return opened

            # One input for both sides, at the size the graphs were exported at (each side
            # gets its own copy of it, placed anew every group).
            feeds = {batch: with_labels(spec.input_names, bench_input(role, batch, g.latent_shape, g.image_shape),
                                        g.num_classes) for batch in o.batch_sizes}
            progress(f"against {role}: {', '.join(n.variant for n, _ in role_pairs)}, batches "
                     f"{','.join(map(str, o.batch_sizes))}, {o.sessions} session groups, {o.rounds} rounds")
            timings = time_session_groups(open_pairs, feeds, o)
            for batch in o.batch_sizes:
                for k, (new_e, old_e) in enumerate(role_pairs):
                    t = timings[(k, batch)]
                    comparison, group_ratios = abtest.grouped(t.new_groups, t.old_groups, o.max_regression)
                    results.append({
                        "graph": role, "batch": batch, "threads": o.threads, "variant": new_e.variant,
                        "engine": engine.name, "provider": _provider(o.device), "file": new_e.file,
                        **stats(np.asarray(t.new_calls), batch),
                        "against_file": old_e.file, "against_p50_ms": stats(np.asarray(t.old_calls), batch)["p50_ms"],
                        "round_p50_ms": [v for group in t.new_groups for v in group],
                        "against_round_p50_ms": [v for group in t.old_groups for v in group],
                        "sessions": len(group_ratios), "session_ratios": group_ratios, **comparison.to_json(),
                    })
    return AgainstReport(env=environment(o.threads, o.device), against=str(old_dir), artifacts=str(new_dir),
                         max_regression=o.max_regression, rounds=o.rounds, min_time_s=o.min_time_s, warmup=o.warmup,
                         iterations=o.iterations, results=results, unmatched=unmatched, sessions=o.sessions)


def _provider(device: str) -> str:
    from vae_export_runtime.session import providers_for

    return providers_for(device)[0]
