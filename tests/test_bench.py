import copy
import json

import pytest
import torch

from vae_export.bench import bench, compare_baseline, time_interleaved
from vae_export.families import load_model
from vae_export.cli import main
from vae_export.manifest import Manifest
from vae_export.options import BenchOptions
from vae_export_runtime.session import session_options
from vae_export.reports import BenchReport, BenchRow

ROW_FIELDS = {"graph", "engine", "variant", "provider", "batch", "threads", "p50_ms", "p90_ms", "p99_ms",
              "mean_ms", "throughput_per_s"}
FAST = ["--batch-sizes", "1,4", "--warmup", "2", "--iterations", "15", "--no-peers"]


def test_json_schema_and_percentiles(artifacts, runner, tmp_path):
    result = runner.invoke(main, ["bench", "--artifacts", str(artifacts), *FAST, "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "b.json").read_text())
    assert {"cpu", "cores", "onnxruntime", "torch", "providers_available", "threads"} <= set(report["env"])
    rows = report["results"]
    assert len(rows) == 2 * 2 * 2  # graphs x batch sizes x engines
    assert {(r["graph"], r["engine"], r["batch"]) for r in rows} == {
        (g, e, b) for g in ("encoder", "decoder") for e in ("onnxruntime", "torch") for b in (1, 4)}
    for r in rows:
        assert ROW_FIELDS <= set(r)
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["throughput_per_s"] == r["batch"] / (r["p50_ms"] / 1e3)
        assert r["variant"] == "fp32" and r["iterations"] == 15
    assert all(r["speedup_vs_torch"] > 0 for r in rows if r["engine"] == "onnxruntime")
    assert "speedup" in result.output and "decoder" in result.output
    manifest = json.loads((artifacts / "manifest.json").read_text())
    assert "decoder.fp32.onnxruntime.b4" in manifest["bench"]["p50_ms"]


def test_regression_gate(artifacts, runner, tmp_path):
    runner.invoke(main, ["bench", "--artifacts", str(artifacts), *FAST, "--json", str(tmp_path / "b.json")])
    report = json.loads((tmp_path / "b.json").read_text())
    for factor, name in ((0.1, "faster.json"), (10.0, "slower.json")):
        baseline = copy.deepcopy(report)
        for row in baseline["results"]:
            row["p50_ms"] *= factor
            # faster.json: this version's per-round samples (statistical verdicts); slower.json:
            # a baseline from before them (the p50 rule alone)
            if factor < 1:
                row["round_p50_ms"] = [v * factor for v in row["round_p50_ms"]]
            else:
                del row["round_p50_ms"]
        (tmp_path / name).write_text(json.dumps(baseline))
    failed = runner.invoke(main, ["bench", "--artifacts", str(artifacts), *FAST, "--baseline", str(tmp_path / "faster.json"),
                                  "--max-regression", "1.5"])
    assert failed.exit_code == 1
    assert "REGRESSION decoder fp32 onnxruntime batch 1" in failed.output
    assert "Error: 8 of 8 rows slower than 1.5x the baseline" in failed.output
    passed = runner.invoke(main, ["bench", "--artifacts", str(artifacts), *FAST, "--baseline", str(tmp_path / "slower.json")])
    assert passed.exit_code == 0, passed.output
    assert "regression gate passed: 8 rows" in passed.output


def test_unmatched_rows_reported_not_failed(tmp_path):
    row = BenchRow(graph="decoder", batch=3, threads=1, variant="fp32", engine="onnxruntime",
                   provider="CPUExecutionProvider", file="decoder.onnx", p50_ms=5.0, p90_ms=5.0, p99_ms=5.0,
                   mean_ms=5.0, min_ms=5.0, throughput_per_s=600.0, iterations=10)
    report = BenchReport(env={}, warmup=0, iterations=10, min_time_s=0.0, results=[row])
    (tmp_path / "base.json").write_text(json.dumps({"results": []}))
    gate = compare_baseline(report, tmp_path / "base.json", 1.5)
    assert gate.passed and gate.compared == 0 and gate.unmatched[0].batch == 3


class ThreadProbe(torch.nn.Module):
    """Wraps the decoder and records the torch thread count it runs under."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.seen = inner, set()

    def forward(self, z):
        self.seen.add(torch.get_num_threads())
        return self.inner(z)


def test_threads_honoured(artifacts):
    loaded = load_model(artifacts / "vae.safetensors")
    loaded.decoder = ThreadProbe(loaded.decoder)
    before = torch.get_num_threads()
    options = BenchOptions(batch_sizes=(2,), threads=2, warmup=1, iterations=3)
    report = bench(artifacts, Manifest.read(artifacts), loaded, options, graphs=("decoder",))
    assert loaded.decoder.seen == {2}
    assert torch.get_num_threads() == before  # restored
    assert report.env["threads"] == 2 and {r.threads for r in report.results} == {2}
    assert session_options(3).intra_op_num_threads == 3


class FakeClock:
    """A nanosecond clock that moves only when a timed call says so: counts and budgets become
    exact, whatever the machine is doing (tests never depend on real durations)."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now

    def call(self, nanoseconds: int, calls: list[int]):
        def run() -> None:
            calls.append(1)
            self.now += nanoseconds
        return run


def test_time_budget_adds_calls_to_fast_rows_only():
    clock, fast_calls, slow_calls = FakeClock(), [], []
    fast, slow = clock.call(1_000, fast_calls), clock.call(4_000_000, slow_calls)  # 1 us and 4 ms a call
    fast_t, slow_t = time_interleaved([fast, slow], warmup=3, iterations=5, min_time_s=0.02, clock=clock)
    # 20 ms at 4 ms a call is 5 calls; the fast call fills the same budget with 20,000
    assert len(slow_t) == 5 and len(slow_calls) == 3 + 5
    assert len(fast_t) == 20_000 and len(fast_calls) == 3 + 20_000
    assert slow_t.sum() == 20 and fast_t.sum() == pytest.approx(20)  # ms: each row fills the budget exactly
    no_budget = time_interleaved([fast, slow], warmup=0, iterations=5, clock=clock)
    assert [len(t) for t in no_budget] == [5, 5]


def test_top_up_passes_fill_a_budget_the_warm_up_underestimated():
    """The warm-up runs slow (cold caches) and the row then speeds up: the calls planned at the
    warm-up's pace leave the budget short, and top-up passes add calls until it is filled."""
    clock, calls = FakeClock(), []
    pace = iter([4_000_000] * 3 + [1_000_000] * 1000)  # 4 ms during warm-up, 1 ms after

    def drifting() -> None:
        calls.append(1)
        clock.now += next(pace)

    (times,) = time_interleaved([drifting], warmup=3, iterations=1, rounds=5, min_time_s=0.02, clock=clock)
    assert times.sum() == 20 and len(times) == 20  # 5 planned at 4 ms, then top-ups to 20 calls of 1 ms


def test_cli_min_time_reported(artifacts, runner, tmp_path):
    result = runner.invoke(main, ["bench", "--artifacts", str(artifacts), "--batch-sizes", "1", "--warmup", "3",
                                  "--iterations", "5", "--min-time", "0.05", "--no-torch", "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["min_time_s"] == 0.05
    assert all(r["iterations"] > 5 for r in report["results"])


def test_openvino_peer_rows(artifacts, runner, tmp_path):
    """With the [peers] extra installed, bench times OpenVINO on the fp32 graph in the same rounds."""
    import importlib.util

    if importlib.util.find_spec("openvino") is None:
        pytest.skip("openvino is not installed (pip install vae-export[peers])")
    result = runner.invoke(main, ["bench", "--artifacts", str(artifacts), "--batch-sizes", "2", "--warmup", "1",
                                  "--iterations", "5", "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "b.json").read_text())["results"]
    peers = [r for r in rows if r["engine"] == "openvino"]
    assert {r["graph"] for r in peers} == {"encoder", "decoder"}
    assert all(r["variant"] == "fp32" and r["file"].endswith(".onnx") and r["speedup_vs_torch"] > 0 for r in peers)
