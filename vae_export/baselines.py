"""What a bench report read back as a `--baseline` must hold before any arithmetic runs on it.

A baseline travels (a CI artifact from another job), so it is untrusted input: a NaN or zero
calibration figure turns every ratio into NaN, and NaN passes every threshold (a 100x
regression read `regression gate passed`); empty, negative or NaN per-round medians do the
same through `np.log`; a 4 MB row of two million medians made the bootstrap resample them
4,000 times at once (60 GB). So the raw JSON is checked field by field here, lengths and the
total work first, before any row object or array is built; each failure is one message naming
the field (`results[3].round_p50_ms[7]`), to which `BenchReport.read` adds the option and file.
The row fields of earlier versions keep their checks in `reports.check_row_types`.
"""

from __future__ import annotations

import math
from typing import Any

from vae_export.errors import VAEExportError
from vae_export.limits import MAX_ELEMENTS, MAX_ITERATIONS, MAX_MIN_TIME_S, MAX_ROUNDS

# Round medians over all rows: what judging the baseline may resample (abtest.unpaired), and
# what parsing may hold. 10^6 is 1,000 rows of MAX_ROUNDS, far above any real sweep.
MAX_BASELINE_SAMPLES = 1_000_000
MAX_TEXT = 255
ENV_SCALARS = ("cpu", "cores", "machine", "device", "threads", "onnxruntime", "torch", "numpy", "python", "system",
               "vae_export")  # what the gate compares and prints of two environments


def _shown(value: Any) -> str:
    if isinstance(value, (bool, int, float, type(None))):
        return repr(value)[:40]
    if isinstance(value, str):
        return repr(value[:40]) + ("..." if len(value) > 40 else "")
    return type(value).__name__


def _fail(field: str, expected: str, value: Any) -> None:
    raise VAEExportError(f"{field}: expected {expected}, found {_shown(value)}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive(value: Any, field: str) -> None:
    if not (_number(value) and value > 0):
        _fail(field, "a finite positive number", value)


def _count(value: Any, field: str, high: int, low: int = 0, nullable: bool = False) -> None:
    if value is None and nullable:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        what = "a non-negative integer" if low == 0 else f"an integer from {low} to {high}"
        _fail(field, what + (" or null" if nullable else ""), value)


def check_baseline(data: dict[str, Any]) -> None:
    """Raise VAEExportError naming the first malformed field; return when `data` may be judged."""
    rows = data.get("results")
    if not isinstance(rows, list):
        raise VAEExportError("not a bench report (no 'results' list)")
    _check_total(rows)
    _check_header(data)
    for i, row in enumerate(rows):
        if isinstance(row, dict):  # anything else: BenchRow.from_json names it
            _check_row(row, f"results[{i}]")


def _check_total(rows: list[Any]) -> None:
    """The total work first: the length of every round list, before any value is read."""
    total = 0
    for i, row in enumerate(rows):
        rounds = row.get("round_p50_ms") if isinstance(row, dict) else None
        if rounds is None:
            continue
        if not isinstance(rounds, list) or not 1 <= len(rounds) <= MAX_ROUNDS:
            found = f"{len(rounds)}" if isinstance(rounds, list) else _shown(rounds)
            raise VAEExportError(f"results[{i}].round_p50_ms: expected from 1 to {MAX_ROUNDS} finite positive numbers "
                                 f"(one per round), found {found}")
        total += len(rounds)
    if total > MAX_BASELINE_SAMPLES:
        raise VAEExportError(f"results: at most {MAX_BASELINE_SAMPLES} round medians over all rows, found {total}")


def _check_header(data: dict[str, Any]) -> None:
    env = data.get("env", {})
    if not isinstance(env, dict):
        _fail("env", "a JSON object", env)
    for key in ENV_SCALARS:
        value = env.get(key)
        if not (value is None or _number(value) or (isinstance(value, str) and len(value) <= MAX_TEXT)):
            _fail(f"env.{key}", f"a string of at most {MAX_TEXT} characters, a number or null", value)
    shape = env.get("image_shape")
    if shape is not None and not (isinstance(shape, list) and len(shape) == 3
                                  and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
                                  and math.prod(shape) <= MAX_ELEMENTS):
        _fail("env.image_shape", f"three positive integers C,H,W (at most {MAX_ELEMENTS} values)", shape)
    _count(data.get("rounds"), "rounds", MAX_ROUNDS, low=1, nullable=True)
    _count(data.get("warmup", 0), "warmup", MAX_ITERATIONS)
    _count(data.get("iterations", 0), "iterations", MAX_ITERATIONS)
    min_time = data.get("min_time_s", 0.0)
    if not (_number(min_time) and 0 <= min_time <= MAX_MIN_TIME_S):
        _fail("min_time_s", f"a finite non-negative number of at most {MAX_MIN_TIME_S:g}", min_time)
    calibration = data.get("calibration")
    if calibration is not None:
        if not isinstance(calibration, dict):
            _fail("calibration", "a JSON object or null", calibration)
        # The figure scales every ratio: NaN, zero or a sign flip would make the gate unable to fail.
        _positive(calibration.get("matmul_gflops_1thread"), "calibration.matmul_gflops_1thread")
        for key in ("before", "after"):
            if key in calibration:
                _positive(calibration[key], f"calibration.{key}")


def _check_row(row: dict[str, Any], where: str) -> None:
    """The fields the gate divides by or takes logs of, and those that key a row."""
    if "p50_ms" in row:
        _positive(row["p50_ms"], f"{where}.p50_ms")  # the old rule divides by it
    size = row.get("size")
    if size is not None and not (isinstance(size, list) and len(size) == 2 and all(
            isinstance(d, int) and not isinstance(d, bool) and 0 < d <= MAX_ELEMENTS for d in size)):
        _fail(f"{where}.size", "[height, width], two positive integers, or null", size)
    per_mpx = row.get("ms_per_megapixel")
    if per_mpx is not None and not (_number(per_mpx) and per_mpx >= 0):
        _fail(f"{where}.ms_per_megapixel", "a finite non-negative number or null", per_mpx)
    for k, value in enumerate(row.get("round_p50_ms") or ()):
        _positive(value, f"{where}.round_p50_ms[{k}]")
