"""The comparison semantics every check uses (verify's rows, export's check right after
export): an element fails when ``|actual - expected| > atol + rtol * |expected|`` (numpy.isclose's
rule); NaN or Inf in `actual` always fails; the statistics say by how much (parity.py's
docstring is the user-facing statement)."""

from __future__ import annotations

from typing import Any

import numpy as np

PSNR_CAP_DB = 200.0
# Right after export (ONNX and ExecuTorch), the graph against PyTorch on random inputs: a smoke
# check that the graph is the model (a wrong graph is off by whole units), looser than verify's
# 1e-5/1e-4, which runs later on real inputs and every variant.
CHECK_ATOL, CHECK_RTOL = 1e-4, 1e-3


def compare(actual: np.ndarray, expected: np.ndarray, atol: float, rtol: float) -> dict[str, Any]:
    """Error statistics of `actual` against `expected` under the rule in the module docstring."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return {"passed": False, "error": f"shape {list(actual.shape)} != expected {list(expected.shape)}",
                "max_abs": None, "max_rel": None, "mean_abs": None, "min_atol": None, "nonfinite": 0}
    nonfinite = int((~np.isfinite(actual)).sum())
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # NaN/Inf are counted above
        diff = np.abs(actual - expected)
        rel = diff / np.maximum(np.abs(expected), np.finfo(np.float32).tiny)
        excess = diff - rtol * np.abs(expected)
    finite = nonfinite == 0
    max_abs = float(np.max(diff)) if diff.size else 0.0
    return {
        "passed": bool(finite and np.all(diff <= atol + rtol * np.abs(expected))),
        "max_abs": max_abs if finite else None,
        "max_rel": float(np.max(rel)) if finite and rel.size else (0.0 if finite else None),
        "mean_abs": float(np.mean(diff)) if finite and diff.size else (0.0 if finite else None),
        "min_atol": max(float(np.max(excess)), 0.0) if finite and excess.size else (0.0 if finite else None),
        "nonfinite": nonfinite,
    }


def psnr_db(actual: np.ndarray, expected: np.ndarray, peak: float = 1.0) -> float | None:
    """Peak signal-to-noise ratio in dB, capped at PSNR_CAP_DB for identical images (JSON has
    no inf); None when `actual` is not finite."""
    if not np.all(np.isfinite(actual)):
        return None
    mse = float(np.mean((np.asarray(actual, np.float64) - np.asarray(expected, np.float64)) ** 2))
    return min(PSNR_CAP_DB, 10.0 * np.log10(peak**2 / max(mse, 1e-30)))
