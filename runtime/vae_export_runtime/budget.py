"""Tiled decoding under a memory budget: `VAEDecoder.decode(z, max_memory_mb=M)`.

M is the process's peak resident memory during the decode (what an OOM killer or a container
limit sees), in MiB. A decode's peak is: the RSS now, plus the output image and the tiling's
own buffers (exact sizes, `predicted_peak`), plus the graph's working memory for one tile,
which is measured, never guessed: a probe decodes zeros of the tile's latent size under
`memory.measure` (VmHWM reset: that call's own peak above the RSS before it).

Why measured at the tile used, not extrapolated: a decoder's working memory is not linear in
the tile's pixels. Convolution activations are (channels x pixels), but the mid-block
self-attention holds (latent cells)^2 scores: 4 MiB per copy at a 32-cell tile, 64 MiB at 64
cells, 1 GiB untiled at 128 cells (SD-sized, 1024x1024). So the planner fits
need(P) = a + b P + c P^2 (P: output pixels of the tile x batch; a, b, c >= 0) to its probes
(PROBE_CELLS first), picks the largest tile whose predicted peak fits M, and probes that tile
if it has not yet (or, when that tile is more than MAX_STEP times the largest measured side, the
tile MAX_STEP times it: a quadratic fitted at 8 and 16 cells cannot see 128 cells' attention);
it repeats until the tile it picks is one it has measured. The chosen tile's
need is its own measurement (plus MEASURED_SLACK); only the choice of what to probe next is
extrapolated. Each probe runs twice: an engine that keeps memory between calls (ONNX Runtime's
arena) grows on the first call and holds it, so the RSS afterwards includes it and the need is
the second call's growth; an engine that frees everything grows the same on both. The fit that
picks the next probe uses first calls, since probing a size commits what the arena keeps. Probes are kept per decoder, so a second decode with the same batch costs none.
The whole latent (no tiling) is a candidate like any tile, probed the same way: a budget that
allows it costs one extra untiled decode the first time. When the smallest tile (MIN_TILE
cells) does not fit, the decode is refused with the smallest budget that would do.

The session's own settings are kept. ONNX Runtime's memory arena and memory pattern were
measured against running without them (`session.session_options(low_memory=True)`) on the
SD-sized decoder: without them a 32-cell tile's call took RSS 506 MiB above the loaded session,
with them the arena held about 250 MiB in all (benchmarks/RESULTS.md), since glibc's per-thread
heaps fragment under the decoder's large, short-lived buffers where the arena reuses its blocks.
Probes run in increasing size, so an arena grows as the decode will make it grow.

Linux only (the peak reset); elsewhere the budget is refused with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from vae_export_runtime import memory
from vae_export_runtime.errors import RuntimeInputError

PROBE_CELLS = (8, 16)  # latent cells per side of the first probe tiles (an arena keeps what they grow)
MIN_TILE = 8  # the smallest tile planned; multiples of 4 tile evenly with the default overlap
MEASURED_SLACK = 1.05  # run-to-run variation of a measured tile's need
SAFETY = 1.25  # on a fitted (extrapolated) need, when choosing what to probe next
MAX_PROBES = 8
MAX_STEP = 2  # a probe is at most this many times the largest measured tile's side (4x its pixels)
MIB = float(1 << 20)


def image_mib(batch: int, channels: int, height: int, width: int) -> float:
    return batch * channels * height * width * 4 / MIB


@dataclass(frozen=True)
class Plan:
    tile: int | None  # None: the whole latent in one call
    predicted_peak_mib: float
    rss_mib: float
    need_mib: float  # the graph's measured working memory for one call at that tile


def buffers_mib(batch: int, out_channels: int, h: int, w: int, stride: int, tile: int | None) -> float:
    """The decode's own arrays beside the graph's working memory: the output image, and when
    tiled one tile's output and its float32 copy and the previous row's bottom band."""
    out = image_mib(batch, out_channels, h * stride, w * stride)
    if tile is None:
        return 2 * out  # the graph's output, then the checked copy an app receives
    side, extent = tile * stride, int(tile * stride * 0.25)
    return out + 2 * image_mib(batch, out_channels, side, side) + image_mib(batch, out_channels, extent, w * stride)


@dataclass
class Planner:
    """Probes and plans for one decoder: `decode` maps a latent to its image."""

    decode: Callable[[np.ndarray], np.ndarray]
    latent_channels: int
    stride: int
    out_channels: int
    # (batch, h, w) -> (growth of the first call at that size, growth of a second one), MiB
    probes: dict[tuple[int, int, int], tuple[float, float]] = field(default_factory=dict)
    warmed: set[int] = field(default_factory=set)

    def probe(self, batch: int, h: int, w: int) -> float:
        """Measure two calls on zeros of this latent size. The first call's growth includes
        what the engine keeps (an arena grows to the size and holds it: afterwards it is in the
        RSS); the second's is what every further call of that size adds above the RSS, which
        is the decode's regime (tile after tile of one size)."""
        key = (batch, h, w)
        if key not in self.probes:
            if batch not in self.warmed:  # one-time allocations (thread pools, kernels) do not count
                self.decode(np.zeros((batch, self.latent_channels, MIN_TILE, MIN_TILE), np.float32))
                self.warmed.add(batch)
            z = np.zeros((batch, self.latent_channels, h, w), np.float32)
            _, first = memory.measure(lambda: self.decode(z))
            _, again = memory.measure(lambda: self.decode(z))
            assert first is not None and again is not None  # plan() checked memory.supported()
            self.probes[key] = (first.growth_mib, again.growth_mib)
        return self.probes[key][1]

    def need(self, batch: int, h: int, w: int) -> float:
        """What a call on a (h, w) latent adds above the RSS: measured (a second call), else
        the fit of the first calls (which include what an arena keeps: probing that size would
        add it for good), with SAFETY."""
        if (batch, h, w) in self.probes:
            return self.probes[(batch, h, w)][1] * MEASURED_SLACK
        points = [(b * hh * ww * self.stride ** 2, g[0]) for (b, hh, ww), g in self.probes.items() if b == batch]
        p = np.array([x for x, _ in points], np.float64) / 1e6
        g = np.array([y for _, y in points], np.float64)
        design = np.stack([np.ones_like(p), p, p * p], 1)[:, :max(1, min(3, len(p)))]
        coef = np.clip(np.linalg.lstsq(design, g, rcond=None)[0], 0.0, None)
        coef = np.concatenate([coef, np.zeros(3 - len(coef))])
        x = batch * h * w * self.stride ** 2 / 1e6
        return SAFETY * float(coef[0] + coef[1] * x + coef[2] * x * x)

    def peak(self, rss: float, batch: int, h: int, w: int, tile: int | None) -> float:
        th, tw = (h, w) if tile is None else (min(tile, h), min(tile, w))
        return rss + buffers_mib(batch, self.out_channels, h, w, self.stride, tile) + self.need(batch, th, tw)

    def plan(self, budget_mib: float, batch: int, h: int, w: int) -> Plan:
        """The largest measured tile (None: whole) whose peak fits `budget_mib`; or a
        RuntimeInputError naming the smallest budget that fits."""
        if not memory.supported():
            raise RuntimeInputError("max_memory_mb: measuring a decode's peak memory needs Linux's /proc/self/status "
                                    "and /proc/self/clear_refs, which this system does not allow")
        for cells in PROBE_CELLS:
            self.probe(batch, min(cells, h), min(cells, w))
        # candidates, largest first: the whole latent, then square tiles down to MIN_TILE
        tiles: list[int | None] = [None] + [t for t in range(4 * math.ceil(max(h, w) / 4) - 4, MIN_TILE - 1, -4)]
        for _ in range(MAX_PROBES):
            memory.trim()  # freed heap goes back now; what an engine keeps (an arena) stays in the RSS
            rss = memory.rss_mib() or 0.0
            fits = [t for t in tiles if self.peak(rss, batch, h, w, t) <= budget_mib]
            if not fits:
                self.probe(batch, min(MIN_TILE, h), min(MIN_TILE, w))
                least = self.peak(rss, batch, h, w, MIN_TILE)
                raise RuntimeInputError(
                    f"max_memory_mb: {budget_mib:g} MiB is below what this decode needs: at least "
                    f"{math.ceil(least)} MiB with the smallest tiles ({MIN_TILE} latent cells; {rss:.0f} MiB already "
                    f"resident, {self.need(batch, min(MIN_TILE, h), min(MIN_TILE, w)):.0f} MiB measured per call)")
            tile = fits[0]
            th, tw = (h, w) if tile is None else (min(tile, h), min(tile, w))
            if (batch, th, tw) in self.probes:
                return Plan(tile, self.peak(rss, batch, h, w, tile), rss, self.probes[(batch, th, tw)][1])
            # Extrapolate at most MAX_STEP per side beyond what was measured: a fit of small
            # probes cannot see the attention term (at 8 and 16 cells its scores are KiBs; at
            # 128 cells, 1 GiB a copy), and probing a size commits what an arena keeps. A
            # smaller tile than the one that fits is predicted to fit too (the need grows with
            # the pixels), so stepping up never probes past the budget's prediction.
            measured = max(max(hh, ww) for (b, hh, ww) in self.probes if b == batch)
            if max(th, tw) > MAX_STEP * measured:
                step = 4 * (MAX_STEP * measured // 4)
                th, tw = min(step, h), min(step, w)
            self.probe(batch, th, tw)
        # still choosing after MAX_PROBES: the largest measured tile that fits
        measured = [t for t in tiles if (batch, *((h, w) if t is None else (min(t, h), min(t, w)))) in self.probes]
        rss = memory.rss_mib() or 0.0
        for tile in measured:
            if self.peak(rss, batch, h, w, tile) <= budget_mib:
                th, tw = (h, w) if tile is None else (min(tile, h), min(tile, w))
                return Plan(tile, self.peak(rss, batch, h, w, tile), rss, self.probes[(batch, th, tw)][1])
        raise RuntimeInputError(f"max_memory_mb: {budget_mib:g} MiB: no measured tile fits")
