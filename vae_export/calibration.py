"""The same-run calibration figure a bench report carries: how fast this machine multiplies
matrices on one thread right now, so that a baseline from another run (or a similar machine)
can be compared on normalised time (`abtest.unpaired`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# Short products, many of them: a product of ~50 us is rarely preempted on a shared machine,
# and the median of hundreds drops the ones that were, as the rows' p50s do. (Measured here
# under load: 512^3 products, 15 of them, gave 33-42 GFLOP/s from one call to the next while
# these gave 93-96.)
MATMUL_N = 128
REPEATS = 400


def matmul_gflops(n: int = MATMUL_N, repeats: int = REPEATS,
                  statistic: Callable[[Sequence[int]], Any] = np.median) -> float:
    """Single-thread float32 torch.mm throughput in GFLOP/s (2 n^3 flops a product), from the
    `statistic` of the products' times. The median by default, not the best: the calibration
    figure should move with the machine's load as latencies do (benchmarks/bench_sweep.py
    takes the best, np.min, for the machine's ceiling)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = torch.rand(n, n), torch.rand(n, n)
        for _ in range(2):
            torch.mm(a, b)
        spent = []
        for _ in range(repeats):
            start = time.perf_counter_ns()
            torch.mm(a, b)
            spent.append(time.perf_counter_ns() - start)
        return 2 * n**3 / float(statistic(spent))  # flops per ns = GFLOP/s
    finally:
        torch.set_num_threads(previous)


def calibrate(before: float, after: float) -> dict[str, Any]:
    """The report's `calibration` entry from the figures measured before and after the sweep."""
    return {"matmul_gflops_1thread": (before + after) / 2, "before": before, "after": after,
            "method": f"median torch.mm {MATMUL_N}^3 float32, 1 thread, {REPEATS} products, before and after the sweep"}
