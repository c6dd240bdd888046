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
from vae_export.against import time_session_groups
from vae_export.cli import main
from vae_export.engines.base import Runner
from vae_export.options import AgainstOptions
from vae_export.workloads import slowed_copy


SMALL = ["--batch-sizes", "1", "--rounds", "6", "--sessions", "6", "--min-time", "0.05", "--warmup", "3",
         "--iterations", "6"]


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


class FakeClock:
    """Nanoseconds that advance only when a fake call runs: timings without real durations."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


class FakeRunner(Runner):
    """A session whose every call costs `cost_ns` on the fake clock; logs what it runs."""

    engine = "fake"

    def __init__(self, name: str, cost_ns: int, clock: FakeClock, log: list) -> None:
        self.name, self.cost_ns, self.clock, self.log = name, cost_ns, clock, log
        self.closed = False

    def timed_call(self, feeds):
        self.log.append("bind " + self.name)

        def call():
            self.log.append(self.name)
            self.clock.now += self.cost_ns
        return call

    def close(self) -> None:
        self.closed = True


def test_session_groups_reopen_alternate_and_flip_order():
    clock, log, opened = FakeClock(), [], []

    def open_pairs(new_first, rng):
        order = ("new", "old") if new_first else ("old", "new")
        opened.append(order)
        runners = {side: FakeRunner(side, 1000, clock, log) for side in order}
        return [(runners["new"], runners["old"])]

    options = AgainstOptions(sessions=6, rounds=12, warmup=0, iterations=24, min_time_s=0.0)
    times = time_session_groups(open_pairs, {1: {"z": np.zeros((1, 2), np.float32)}}, options, clock=clock)
    sampled = times[(0, 1)]
    # Fresh sessions for every group, the side created first alternating.
    assert opened == [("new", "old"), ("old", "new")] * 3
    assert [len(g) for g in sampled.new_groups] == [2] * 6 and [len(g) for g in sampled.old_groups] == [2] * 6
    assert len(sampled.new_calls) == len(sampled.old_calls) == 24  # 24 calls over 12 rounds, both sides
    # Buffers are bound (and warm-ups run) first for NEW in even groups, for OLD in odd ones.
    assert [name for name in log if name.startswith("bind")][:4] == ["bind new", "bind old", "bind old", "bind new"]
    timed = [name for name in log if not name.startswith("bind")]
    rounds = [timed[i:i + 4] for i in range(0, len(timed), 4)]
    assert rounds[:2] == [["new", "new", "old", "old"], ["old", "old", "new", "new"]]  # the order flips each round


def test_session_groups_spread_budget_and_close_sessions():
    clock, log, runners = FakeClock(), [], []

    def open_pairs(new_first, rng):
        pair = (FakeRunner("new", 2_000_000, clock, log), FakeRunner("old", 1_000_000, clock, log))
        runners.extend(pair)
        return [pair]

    options = AgainstOptions(sessions=6, rounds=6, warmup=1, iterations=1, min_time_s=0.6)
    sampled = time_session_groups(open_pairs, {1: {}}, options, clock=clock)[(0, 1)]
    assert all(r.closed for r in runners) and len(runners) == 12
    # 0.1 s a group and side: the slower side (2 ms) sets both sides' share, 100 calls a group.
    assert len(sampled.new_calls) == len(sampled.old_calls) == 6 * 100
    assert all(g == [2.0] for g in sampled.new_groups) and all(g == [1.0] for g in sampled.old_groups)


def test_session_effects_are_inside_the_interval():
    """Identical graphs whose sessions differ by a few per cent for as long as they live (where
    they landed in memory): the interval over session groups covers 1.0 in at least 95 % of
    comparisons, where an interval over the rounds of one session pair (the first design)
    covered it in well under half."""
    covered_groups, covered_rounds = 0, 0
    trials = 200
    for trial in range(trials):
        clock, rng = FakeClock(), np.random.default_rng(trial)

        def open_pairs(new_first, _placement, rng=rng, clock=clock):
            # the session's own speed (sd 1.5 %) and round-to-round noise on top
            return [tuple(NoisyRunner(1_000_000 * rng.lognormal(0, 0.015), rng, clock) for _ in range(2))]

        options = AgainstOptions(sessions=10, rounds=30, warmup=0, iterations=30, min_time_s=0.0)
        sampled = time_session_groups(open_pairs, {1: {}}, options, clock=clock)[(0, 1)]
        comparison, _ = abtest.grouped(sampled.new_groups, sampled.old_groups, 1.1)
        covered_groups += comparison.low <= 1.0 <= comparison.high
        one_pair = abtest.paired(sampled.new_groups[0] * 10, sampled.old_groups[0] * 10, 1.1)
        covered_rounds += one_pair.low <= 1.0 <= one_pair.high
    assert covered_groups >= 0.95 * trials
    assert covered_rounds < 0.5 * trials


class NoisyRunner(Runner):
    def __init__(self, cost_ns: float, rng: np.random.Generator, clock: FakeClock) -> None:
        self.cost_ns, self.rng, self.clock = cost_ns, rng, clock

    def timed_call(self, feeds):
        def call():
            self.clock.now += int(self.cost_ns * self.rng.lognormal(0, 0.002))
        return call


def test_grouped_ratio_is_the_median_of_group_medians():
    new = [[2.0, 2.2, 2.4]] * 3 + [[3.0, 3.0, 3.0]] * 3
    old = [[2.0, 2.0, 2.0]] * 6
    comparison, ratios = abtest.grouped(new, old, 1.1)
    assert ratios == [pytest.approx(1.1)] * 3 + [pytest.approx(1.5)] * 3
    assert comparison.ratio == pytest.approx(1.3) and comparison.rounds == 18
    assert (comparison.low, comparison.high) == (pytest.approx(1.1), pytest.approx(1.5))


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
        assert row["sessions"] == len(row["session_ratios"]) == 6  # one round in each of 6 session groups
        assert row["session_ratios"] == pytest.approx(np.divide(row["round_p50_ms"], row["against_round_p50_ms"]))
        assert row["ratio"] == pytest.approx(np.median(row["session_ratios"]))
        assert f"{row['graph']} fp32 onnxruntime batch 1: new/old {row['ratio']:.3f}x (95% CI" in result.output
    assert "latency gate passed" in result.output


def test_slowed_decoder_regressed(slow_copy, exported_dir, runner, tmp_path):
    outputs = [onnx.load(d / "decoder.onnx") for d in (exported_dir, slow_copy)]
    assert len(outputs[1].graph.node) == len(outputs[0].graph.node) + 4
    result = runner.invoke(main, ["bench", "--artifacts", str(slow_copy), "--against", str(exported_dir),
                                  "--batch-sizes", "64", "--rounds", "8", "--sessions", "8", "--min-time", "0.1",
                                  "--json", str(tmp_path / "ab.json")])
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
    few = runner.invoke(main, ["bench", "--artifacts", str(artifacts), "--against", str(exported_dir), "--sessions", "3"])
    assert few.exit_code == 2
    one_line_error(few, "--sessions", "at least 6", "found 3")
    short = runner.invoke(main, ["bench", "--artifacts", str(artifacts), "--against", str(exported_dir), "--rounds", "8"])
    assert short.exit_code == 2
    one_line_error(short, "--rounds", "one round per session group (10)", "found 8")
    alone = runner.invoke(main, ["bench", "--artifacts", str(artifacts), "--sessions", "8"])
    assert alone.exit_code == 2
    one_line_error(alone, "--sessions", "only with --against")
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
