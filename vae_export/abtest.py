"""The statistics of a latency gate: the NEW/OLD time ratio of one bench row, its 95 %
confidence interval, and a verdict. No timing happens here (see `against.py`, `bench.py`).

Two designs, as the field's tools have them:

- **Paired rounds in session groups (`bench --against`)**: both artifact sets run in one
  process, round by round, so each round gives one NEW median and one OLD median measured in
  the same seconds; the per-round ratio cancels the machine's drift between rounds. Rounds of
  one pair of ONNX Runtime sessions are NOT independent: two sessions of byte-identical graphs
  differ by up to a few per cent for as long as they live (where their weights and buffers
  landed in memory, which of them was created first), and rounds of the same pair all carry
  that difference. So the sessions are re-created for every group of rounds (`against.py`),
  and the unit of the interval is the group: its ratio is the median of its rounds' ratios,
  and the interval is the distribution-free confidence interval of the median group ratio
  from order statistics (the sign-test interval of `scipy.stats.quantile_test`, computed here
  with exact binomial sums so the core does not install scipy; asv's `quantile_ci` is the
  same idea). Its coverage is exact for any distribution of the group
  ratios when groups are independent, it needs no resampling seed (the same samples give the
  same verdict), and a bootstrap of a median over ~10 values would be rough. An interval over
  rounds of one session pair (this module's first design, `paired`) was 0.1 % wide on
  identical artifacts and missed 1.0 in half the rows.
- **Unpaired runs (`bench --baseline FILE`)**: NEW and OLD come from different processes,
  often different minutes or machines. The within-run interval (a percentile bootstrap of the
  ratio of the two runs' median round times, resampled with numpy) says nothing about the
  run-to-run noise, which dominates here; so the ratio is first normalised by the same-run
  calibration figure (single-thread matmul rate) and the interval is then widened by a
  margin that grows with how much the two machines differ (`machine_difference`).

Verdicts, for a threshold R (the --max-regression): `regressed` when the whole interval lies
above R, `improved` when it lies below 1/R, `ok` when it lies inside [1/R, R], and
`inconclusive` when it straddles a bound (more rounds or --min-time narrow it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vae_export.options import AgainstOptions

CONFIDENCE = 0.95
DEFAULT_MAX_REGRESSION = AgainstOptions.max_regression
MIN_ROUNDS = 6  # the fewest paired rounds whose order statistics can bound a median at 95 %
MIN_SESSIONS = MIN_ROUNDS  # the same, for session groups (the interval's units)
REGRESSED, IMPROVED, OK, INCONCLUSIVE = "regressed", "improved", "ok", "inconclusive"
VERDICTS = (REGRESSED, IMPROVED, OK, INCONCLUSIVE)
PAIRED_METHOD = ("median of per-group NEW/OLD ratios, each group fresh ONNX Runtime sessions of both sides timed "
                 "in alternating paired rounds (group ratio: median of its round ratios); 95 % order-statistic "
                 "(sign-test) interval over groups, as scipy.stats.quantile_test's")
UNPAIRED_METHOD = ("ratio of median round times, normalised by the calibration matmul rate; 95 % percentile bootstrap "
                   "over rounds (4,000 resamples, seed 0), widened by the cross-run margin")

# How far apart two separate runs of identical artifacts land after calibration, as a factor:
# the interval of a cross-run comparison is widened by it both ways. From this project's gate
# study (benchmarks/RESULTS.md, "Latency gate"): on one shared 2-core machine, A/A row ratios
# between separate runs had a 5-95 % range of 0.84-1.28 but tails to 1.8x (another tenant's
# load arriving mid-run, which a calibration measured before and after cannot see). No margin
# a useful gate can afford covers those tails (3 of 20 A/A comparisons flagged at 1.10), so
# the margin covers the typical spread and the docs send shared runners to `--against`.
# Another CPU or other library builds change kernels and caches in ways one calibration
# figure does not capture: wider still.
MARGINS = {"same machine": 1.10, "same machine, other library versions": 1.15, "different machine": 1.30}
NO_CALIBRATION_MARGIN = 1.10  # extra factor when either run lacks the calibration figure
MACHINE_KEYS = ("cpu", "cores", "machine", "device", "threads")
LIBRARY_KEYS = ("onnxruntime", "torch", "numpy", "python")
BOOTSTRAP_RESAMPLES = 4000


@dataclass(frozen=True)
class Comparison:
    ratio: float  # NEW time / OLD time: above 1 is slower
    low: float
    high: float
    verdict: str
    rounds: int

    def to_json(self) -> dict[str, Any]:
        return {"ratio": self.ratio, "ratio_ci": [self.low, self.high], "verdict": self.verdict}


def verdict(low: float, high: float, max_regression: float) -> str:
    if low > max_regression:
        return REGRESSED
    if high < 1 / max_regression:
        return IMPROVED
    if low >= 1 / max_regression and high <= max_regression:
        return OK
    return INCONCLUSIVE


def round_medians(times_ms: np.ndarray, counts: Sequence[int]) -> list[float]:
    """Per-round medians of one row's timed calls, given how many calls each round (in order)
    added; rounds without a call of this row are skipped."""
    out, start = [], 0
    for count in counts:
        if count > 0:
            out.append(float(np.median(times_ms[start:start + count])))
        start += count
    return out


def _binomial_cdf(n: int) -> list[float]:
    """P(K <= k) for K ~ Binomial(n, 1/2), k = 0..n, from exact integer sums."""
    total, out = 0, []
    for k in range(n + 1):
        total += math.comb(n, k)
        out.append(total / 2**n)
    return out


def median_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The distribution-free (sign-test) interval of the median: the order statistics
    x(l) <= median <= x(h) whose binomial tails leave (1 - confidence) / 2 on each side. The
    same indices as scipy.stats.quantile_test(p=0.5).confidence_interval (binom.ppf and
    binom.isf of the tail, checked against it for n = 6..400). With MIN_ROUNDS values or more
    both ends exist, so they are always finite here."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = len(x)
    tail = (1 - confidence) / 2
    cdf = _binomial_cdf(n)
    # binom.ppf(tail): the smallest k with P(K <= k) >= tail; the lower end is x at k - 1.
    low_index = next(k for k in range(n + 1) if cdf[k] >= tail) - 1
    # binom.isf(tail): the smallest k with P(K > k) <= tail.
    high_index = next(k for k in range(n + 1) if 1 - cdf[k] <= tail)
    if low_index < 0 or high_index >= n:
        raise ValueError(f"{n} samples cannot bound a median at {confidence:.0%}")
    return float(x[low_index]), float(x[high_index])


def paired(new_rounds: Sequence[float], old_rounds: Sequence[float], max_regression: float,
           confidence: float = CONFIDENCE) -> Comparison:
    """NEW against OLD timed in the same rounds (index i of both = round i)."""
    ratios = np.asarray(new_rounds, dtype=np.float64) / np.asarray(old_rounds, dtype=np.float64)
    if len(ratios) < MIN_ROUNDS:
        raise ValueError(f"{len(ratios)} paired samples: at least {MIN_ROUNDS} are needed for a {confidence:.0%} interval")
    low, high = median_interval(ratios, confidence)
    return Comparison(float(np.median(ratios)), low, high, verdict(low, high, max_regression), len(ratios))


def grouped(new_groups: Sequence[Sequence[float]], old_groups: Sequence[Sequence[float]], max_regression: float,
            confidence: float = CONFIDENCE) -> tuple[Comparison, list[float]]:
    """NEW against OLD timed in session groups: group g holds the per-round medians of both
    sides' g-th pair of sessions (index i of both = round i of that group). Returns the
    comparison over group ratios (each the median of its rounds' NEW/OLD ratios) and those
    group ratios."""
    if len(new_groups) != len(old_groups):
        raise ValueError(f"{len(new_groups)} NEW groups against {len(old_groups)} OLD groups")
    ratios = [float(np.median(np.asarray(n, dtype=np.float64) / np.asarray(o, dtype=np.float64)))
              for n, o in zip(new_groups, old_groups)]
    comparison = paired(ratios, [1.0] * len(ratios), max_regression, confidence)
    return Comparison(comparison.ratio, comparison.low, comparison.high, comparison.verdict,
                      sum(len(n) for n in new_groups)), ratios


def unpaired(new_rounds: Sequence[float], old_rounds: Sequence[float], max_regression: float, scale: float = 1.0,
             margin: float = 1.0, confidence: float = CONFIDENCE) -> Comparison:
    """NEW and OLD from separate runs. `scale` multiplies the raw ratio (the calibration
    correction); `margin` widens the interval by that factor both ways (run-to-run noise)."""
    new = np.log(np.asarray(new_rounds, dtype=np.float64))
    old = np.log(np.asarray(old_rounds, dtype=np.float64))
    centre = float(np.median(new) - np.median(old))
    if len(new) >= 2 and len(old) >= 2 and (np.ptp(new) > 0 or np.ptp(old) > 0):
        # Percentile bootstrap of the log ratio of medians, each side resampled on its own
        # (they come from separate runs); a fixed seed gives the same verdict for the same files.
        rng = np.random.default_rng(0)
        new_draws = np.median(new[rng.integers(0, len(new), (BOOTSTRAP_RESAMPLES, len(new)))], axis=1)
        old_draws = np.median(old[rng.integers(0, len(old), (BOOTSTRAP_RESAMPLES, len(old)))], axis=1)
        tail = (1 - confidence) / 2
        lo, hi = (float(v) for v in np.quantile(new_draws - old_draws, [tail, 1 - tail]))
    else:  # a single round (or constant rounds) carries no spread: the margin is all there is
        lo = hi = centre
    shift, widen = math.log(scale), math.log(margin)
    low, high = math.exp(lo + shift - widen), math.exp(hi + shift + widen)
    return Comparison(math.exp(centre + shift), low, high, verdict(low, high, max_regression), min(len(new), len(old)))


def machine_difference(new_env: dict[str, Any], old_env: dict[str, Any], calibrated: bool) -> dict[str, Any]:
    """What differs between the two runs' environments, and the margin that buys."""
    machine = {k: [old_env.get(k), new_env.get(k)] for k in MACHINE_KEYS if old_env.get(k) != new_env.get(k)}
    libraries = {k: [old_env.get(k), new_env.get(k)] for k in LIBRARY_KEYS if old_env.get(k) != new_env.get(k)}
    level = "different machine" if machine else "same machine, other library versions" if libraries else "same machine"
    margin = MARGINS[level] * (1.0 if calibrated else NO_CALIBRATION_MARGIN)
    return {"level": level, "differences": {**machine, **libraries}, "calibrated": calibrated, "margin": margin}


def describe_machines(difference: dict[str, Any], max_regression: float) -> str:
    """One line for the reader: how alike the two runs' machines are, and what that costs."""
    diffs = "; ".join(f"{k} {old} -> {new}" for k, (old, new) in difference["differences"].items())
    calib = "normalised by the calibration matmul rate" if difference["calibrated"] else \
        "NOT normalised (a run lacks the calibration figure)"
    flagged = max_regression * difference["margin"]
    return (f"baseline from another run, {difference['level']}{' (' + diffs + ')' if diffs else ''}; "
            f"ratios {calib}; intervals widened by {difference['margin']:.2f}x, so only slow-downs beyond "
            f"~{flagged:.2f}x can be flagged (bench --against compares in one run, without this margin)")


def verdict_line(row: dict[str, Any], max_regression: float) -> str:
    """The line a reviewer reads in a PR, one per row."""
    low, high = row["ratio_ci"]
    bound = {REGRESSED: f"> {max_regression:g}x", IMPROVED: f"< {1 / max_regression:.3g}x",
             OK: f"within {1 / max_regression:.3g}-{max_regression:g}x",
             INCONCLUSIVE: f"straddles {max_regression:g}x or {1 / max_regression:.3g}x"}[row["verdict"]]
    return (f"{row['graph']} {row['variant']} {row['engine']} batch {row['batch']}: "
            f"new/old {row['ratio']:.3f}x (95% CI {low:.3f}-{high:.3f}) {row['verdict'].upper()} ({bound})")


def judge_baseline(report: dict[str, Any], baseline: dict[str, Any], matched: list[tuple[dict[str, Any], dict[str, Any]]],
                   max_regression: float) -> dict[str, Any] | None:
    """The unpaired verdicts of `bench --baseline` for matched (row, baseline row) pairs, or
    None when either run predates per-round samples (then the plain p50 threshold applies)."""
    if not matched or any("round_p50_ms" not in r or "round_p50_ms" not in b for r, b in matched):
        return None
    new_cal = (report.get("calibration") or {}).get("matmul_gflops_1thread")
    old_cal = (baseline.get("calibration") or {}).get("matmul_gflops_1thread")
    calibrated = bool(new_cal and old_cal)
    # A faster machine now (a higher matmul rate) would make NEW look faster: scale it back.
    scale = new_cal / old_cal if calibrated else 1.0
    machines = machine_difference(report.get("env", {}), baseline.get("env", {}), calibrated)
    rows = []
    for row, ref in matched:
        comparison = unpaired(row["round_p50_ms"], ref["round_p50_ms"], max_regression, scale, machines["margin"])
        rows.append({k: row[k] for k in ("graph", "variant", "engine", "batch")} | comparison.to_json())
    return {"machines": machines, "calibration_scale": scale, "method": UNPAIRED_METHOD, "rows": rows}
