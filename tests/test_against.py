"""The latency gate: the statistics (abtest), `bench --against` in one process, and the
calibrated `--baseline` verdicts. Speed itself is never asserted; the slowed decoder is
2-3x slower than A, far beyond the 1.10 threshold, so its verdict does not hang on the
machine's noise (the gate's error rates on a real noisy machine are in RESULTS.md)."""

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from conftest import one_line_error
from vae_export import abtest
from vae_export.against import time_paired_rounds
from vae_export.cli import main
from vae_export.workloads import slowed_copy


SMALL = ["--batch-sizes", "1", "--rounds", "6", "--min-time", "0.05", "--warmup", "3", "--iterations", "6"]


# ---- statistics -------------------------------------------------------------------------------

@pytest.mark.parametrize("low, high, expected", [
    (1.11, 1.3, "regressed"), (0.5, 0.9, "improved"), (0.95, 1.05, "ok"), (1.0 / 1.1, 1.1, "ok"),
    (1.05, 1.2, "inconclusive"), (0.8, 1.0, "inconclusive"), (0.8, 1.3, "inconclusive"),
])
def test_verdict_bounds(low, high, expected):
    assert abtest.verdict(low, high, 1.1) == expected


def test_paired_interval_is_order_statistics_of_round_ratios():
    old = np.full(30, 2.0)
    new = old * np.linspace(1.25, 1.35, 30)  # ratios 1.25 ... 1.35, median 1.30
    result = abtest.paired(new, old, 1.1)
    assert result.ratio == pytest.approx(1.30)
    # The 95 % sign-test interval of a median of 30 values spans the 10th to the 21st order statistic.
    ratios = np.sort(new / old)
    assert (result.low, result.high) == (pytest.approx(ratios[9]), pytest.approx(ratios[20]))
    assert result.verdict == "regressed" and result.rounds == 30
    assert abtest.paired(old, new, 1.1).verdict == "improved"
    noisy = abtest.paired(old * np.linspace(0.8, 1.4, 30), old, 1.1)
    assert noisy.verdict == "inconclusive" and noisy.low < 1.1 < noisy.high
    with pytest.raises(ValueError, match="at least 6"):
        abtest.paired(new[:5], old[:5], 1.1)


def test_unpaired_scale_and_margin():
    rng = np.random.default_rng(0)
    old = rng.normal(1.0, 0.01, 30)
    plain = abtest.unpaired(old * 1.3, old, 1.1)
    assert plain.ratio == pytest.approx(1.3) and plain.verdict == "regressed"
    # The machine ran 1.3x slower now (matmul rate 1/1.3 of the baseline's): calibrated, no change.
    calibrated = abtest.unpaired(old * 1.3, old, 1.1, scale=1 / 1.3)
    assert calibrated.ratio == pytest.approx(1.0) and calibrated.verdict == "ok"
    # A 1.3x margin (another CPU) widens the interval past the threshold: no longer a verdict.
    widened = abtest.unpaired(old * 1.3, old, 1.1, margin=1.3)
    assert widened.low == pytest.approx(plain.low / 1.3) and widened.verdict == "inconclusive"


def test_machine_difference_levels():
    env = {"cpu": "AMD EPYC", "cores": 2, "machine": "x86_64", "device": "cpu", "threads": 1,
           "onnxruntime": "1.32.0", "torch": "2.13.0", "numpy": "2.3", "python": "3.11.9"}
    assert abtest.machine_difference(env, dict(env), True) == {
        "level": "same machine", "differences": {}, "calibrated": True, "margin": 1.10}
    libs = abtest.machine_difference({**env, "onnxruntime": "1.33.0"}, env, True)
    assert libs["level"] == "same machine, other library versions" and libs["differences"] == {
        "onnxruntime": ["1.32.0", "1.33.0"]}
    other = abtest.machine_difference({**env, "cpu": "Intel Xeon", "threads": 2}, env, False)
    assert other["level"] == "different machine" and other["margin"] == pytest.approx(1.30 * 1.10)
    line = abtest.describe_machines(other, 1.1)
    assert "cpu AMD EPYC -> Intel Xeon" in line and "NOT normalised" in line and "1.43x" in line


def test_round_medians_follow_round_counts():
    times = np.array([1.0, 9.0, 2.0, 3.0, 4.0, 10.0])
    assert abtest.round_medians(times, [2, 0, 3, 1]) == [5.0, 3.0, 10.0]


def test_paired_rounds_alternate_order_and_match_counts():
    log = []
    calls = [lambda: log.append("new"), lambda: log.append("old")]
    timings = time_paired_rounds(calls, warmup=0, iterations=12, rounds=6, min_time_s=0.0)
    assert [len(per_round) for per_round in timings] == [6, 6]
    assert all(len(t) == 2 for per_round in timings for t in per_round)  # 12 calls over 6 rounds, both sides
    assert log[:8] == ["new", "new", "old", "old", "old", "old", "new", "new"]  # the order flips each round


# ---- bench --against --------------------------------------------------------------------------

@pytest.fixture
def slow_copy(tmp_path, exported_dir) -> Path:
    """The exported artifacts with 4 identity products in the decoder: same outputs, slower."""
    slowed_copy(exported_dir, tmp_path / "slow", products=4)
    return tmp_path / "slow"


def test_self_check_same_artifacts_not_regressed(artifacts, exported_dir, runner, tmp_path):
    """The project's CI self-check: the same artifacts on both sides are never `regressed`."""
    result = runner.invoke(main, ["bench", "--artifacts", str(artifacts), "--against", str(exported_dir), *SMALL,
                                  "--json", str(tmp_path / "aa.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "aa.json").read_text())
    assert report["passed"] and report["rounds"] == 6 and report["max_regression"] == 1.10
    assert [(r["graph"], r["batch"]) for r in report["results"]] == [("encoder", 1), ("decoder", 1)]
    for row in report["results"]:
        assert row["verdict"] != "regressed"
        low, high = row["ratio_ci"]
        assert low <= row["ratio"] <= high
        assert len(row["round_p50_ms"]) == len(row["against_round_p50_ms"]) == 6
        assert row["ratio"] == pytest.approx(np.median(np.divide(row["round_p50_ms"], row["against_round_p50_ms"])))
        assert f"{row['graph']} fp32 onnxruntime batch 1: new/old {row['ratio']:.3f}x (95% CI" in result.output
    assert "latency gate passed" in result.output


def test_slowed_decoder_regressed(slow_copy, exported_dir, runner, tmp_path):
    outputs = [onnx.load(d / "decoder.onnx") for d in (exported_dir, slow_copy)]
    assert len(outputs[1].graph.node) == len(outputs[0].graph.node) + 4
    result = runner.invoke(main, ["bench", "--artifacts", str(slow_copy), "--against", str(exported_dir),
                                  "--batch-sizes", "64", "--rounds", "8", "--min-time", "0.1", "--json", str(tmp_path / "ab.json")])
    assert result.exit_code == 1, result.output
    report = json.loads((tmp_path / "ab.json").read_text())
    verdicts = {r["graph"]: r["verdict"] for r in report["results"]}
    assert verdicts["decoder"] == "regressed" and verdicts["encoder"] != "regressed"
    assert "decoder fp32 onnxruntime batch 64: new/old" in result.output and "REGRESSED (> 1.1x)" in result.output
    one_line_error(result, "1 of 2 rows regressed beyond 1.1x", str(exported_dir))
    # A threshold above the real slow-down (4 products of 400 x 400 add far less than 50x): not regressed.
    lenient = runner.invoke(main, ["bench", "--artifacts", str(slow_copy), "--against", str(exported_dir),
                                   "--max-regression", "50", *SMALL])
    assert lenient.exit_code == 0, lenient.output


def test_against_usage_errors(artifacts, exported_dir, runner, tmp_path):
    both = runner.invoke(main, ["bench", "--artifacts", str(artifacts), "--against", str(exported_dir),
                                "--baseline", str(artifacts / "manifest.json")])
    assert both.exit_code == 2
    one_line_error(both, "--against and --baseline")
    few = runner.invoke(main, ["bench", "--artifacts", str(artifacts), "--against", str(exported_dir), "--rounds", "3"])
    assert few.exit_code == 2
    one_line_error(few, "--rounds", "at least 6", "found 3")
    other = tmp_path / "other"
    shutil.copytree(exported_dir, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["model"]["latent_dim"] = 16
    (other / "manifest.json").write_text(json.dumps(manifest))
    mismatch = runner.invoke(main, ["bench", "--artifacts", str(artifacts), "--against", str(other), *SMALL])
    assert mismatch.exit_code == 2
    one_line_error(mismatch, f"--against {other}", "latent_shape is [16]")


# ---- bench --baseline with round samples ------------------------------------------------------

def test_baseline_verdicts_calibrated(artifacts, runner, tmp_path):
    fast = ["--batch-sizes", "1", "--warmup", "2", "--iterations", "24", "--rounds", "8", "--no-torch", "--no-peers"]
    runner.invoke(main, ["bench", "--artifacts", str(artifacts), *fast, "--json", str(tmp_path / "b.json")])
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["rounds"] == 8 and report["calibration"]["matmul_gflops_1thread"] > 0
    assert all(len(r["round_p50_ms"]) == 8 for r in report["results"])
    slower = copy.deepcopy(report)  # a baseline 3x slower than anything this run will see
    for row in slower["results"]:
        row["round_p50_ms"] = [v * 3 for v in row["round_p50_ms"]]
    (tmp_path / "slower.json").write_text(json.dumps(slower))
    result = runner.invoke(main, ["bench", "--artifacts", str(artifacts), *fast, "--baseline", str(tmp_path / "slower.json")])
    assert result.exit_code == 0, result.output
    assert "baseline from another run, same machine; ratios normalised by the calibration matmul rate" in result.output
    assert "IMPROVED" in result.output
    # The same 3x, but the baseline's machine multiplied 3x slower too: normalised, no change.
    other = copy.deepcopy(slower)
    other["calibration"]["matmul_gflops_1thread"] /= 3
    other["env"]["cpu"] = "Some Other CPU"
    (tmp_path / "other.json").write_text(json.dumps(other))
    moved = runner.invoke(main, ["bench", "--artifacts", str(artifacts), *fast, "--baseline", str(tmp_path / "other.json")])
    assert "different machine (cpu Some Other CPU -> " in moved.output and "widened by 1.30x" in moved.output
    assert "IMPROVED" not in moved.output and moved.exit_code == 0
    faster = copy.deepcopy(report)  # a baseline 3x faster: every row regressed
    for row in faster["results"]:
        row["round_p50_ms"] = [v / 3 for v in row["round_p50_ms"]]
    (tmp_path / "faster.json").write_text(json.dumps(faster))
    failed = runner.invoke(main, ["bench", "--artifacts", str(artifacts), *fast, "--baseline", str(tmp_path / "faster.json"),
                                  "--max-regression", "1.1"])
    assert failed.exit_code == 1 and failed.output.count("REGRESSED") == 2
    one_line_error(failed, "2 of 2 rows slower than 1.1x the baseline")
