"""Issue 26: engines at a precision, verified before they are recommended; bench's memory
figures and its recommendation; `bench --recommend` and the runtime's engine="auto".
Real graphs, real sessions (no engine is mocked)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from conftest import one_line_error
from vae_export.cli import main
from vae_export.recommend import recommend, run_noise
from vae_export.reports import BenchRow
from vae_export_runtime import VAEDecoder
from vae_export_runtime.cpu import fingerprint, has_bf16

needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="needs the [peers] extra")
needs_bf16 = pytest.mark.skipif(not has_bf16(), reason="the CPU has no native bfloat16 (AVX-512 BF16 or AMX)")


@pytest.fixture
def conv(tmp_path, conv_dir) -> Path:
    d = tmp_path / "conv"
    shutil.copytree(conv_dir, d)
    return d


def _row(engine: str, p50: float, precision: str = "fp32", verified: bool = True, passed: bool | None = True,
         rounds: list[float] | None = None, variant: str = "fp32") -> BenchRow:
    return BenchRow(graph="decoder", batch=1, threads=1, variant=variant, engine=engine, provider="cpu",
                    file=None if engine == "torch" else "decoder.onnx", p50_ms=p50, p90_ms=p50, p99_ms=p50,
                    mean_ms=p50, min_ms=p50, throughput_per_s=1e3 / p50, iterations=10, precision=precision,
                    verified=verified, check_passed=passed, round_p50_ms=rounds or [p50 * 0.98, p50 * 1.02])


def test_the_fastest_verified_row_is_recommended_with_its_margins():
    rows = [_row("torch", 10.0), _row("onnxruntime", 5.0), _row("openvino", 4.0),
            _row("openvino", 1.0, "bf16", verified=False),  # fastest, but never verified here
            _row("torch", 3.0, "bf16", passed=False)]  # verified once, but wrong in this run
    noise = run_noise(rows)
    assert noise == pytest.approx(0.02)
    [entry] = recommend(rows, noise)
    assert entry["recommended"]["engine"] == "openvino" and entry["recommended"]["precision"] == "fp32"
    assert entry["runner_up"]["engine"] == "onnxruntime"
    assert entry["margin_over_runner_up"] == pytest.approx(1.25) and not entry["within_noise"]
    assert entry["speedup_vs_torch"] == pytest.approx(2.5)
    assert entry["faster_unverified"] == ["decoder fp32 openvino:bf16 batch 1", "decoder fp32 torch:bf16 batch 1"]
    assert [c["engine"] for c in entry["ranking"]] == ["openvino", "onnxruntime", "torch"]


def test_no_recommendation_without_a_verified_row():
    [entry] = recommend([_row("onnxruntime", 5.0, verified=False)], None)
    assert entry["recommended"] is None and "verified" in entry["reason"]


def test_a_runner_up_within_the_noise_is_a_tie():
    [entry] = recommend([_row("onnxruntime", 5.0), _row("openvino", 5.1)], 0.05)
    assert entry["within_noise"] is True


@pytest.mark.parametrize("spec, fragment", [
    ("onnxruntime:bf16", "--engine onnxruntime:bf16: onnxruntime runs fp32"),
    ("openvino:fp8", "--engine openvino:fp8: openvino runs fp32, bf16"),
    ("nope:bf16", "--engine 'nope': expected one of"),
])
def test_a_precision_an_engine_does_not_run_is_a_usage_error(conv, runner, spec, fragment):
    for command in ("verify", "bench"):
        result = runner.invoke(main, [command, "--artifacts", str(conv), "--engine", spec])
        assert result.exit_code == 2, result.output
        one_line_error(result, fragment)


def test_onnxruntime_openvino_is_refused_with_its_reason_where_it_cannot_run(conv, runner):
    from vae_export_runtime import ort_openvino

    reason = ort_openvino.unavailable()
    if reason is None:
        pytest.skip("the OpenVINO plugin offers a device here (test_verify_and_bench_on_onnxruntime_openvino)")
    for command in ("verify", "bench"):
        result = runner.invoke(main, [command, "--artifacts", str(conv), "--engine", "onnxruntime-openvino"])
        assert result.exit_code == 2
        one_line_error(result, reason)


def test_verify_and_bench_on_onnxruntime_openvino(conv, runner):
    from vae_export_runtime import ort_openvino

    if ort_openvino.unavailable():
        pytest.skip(ort_openvino.unavailable())
    result = runner.invoke(main, ["verify", "--artifacts", str(conv), "--engine", "onnxruntime-openvino",
                                  "--batch-sizes", "1,3", "-q"])
    assert result.exit_code == 0, result.output


@needs_openvino
@needs_bf16
def test_bf16_is_verified_on_psnr_recorded_then_recommended_and_opened_by_auto(conv, runner, tmp_path):
    out = tmp_path / "verify.json"
    result = runner.invoke(main, ["verify", "--artifacts", str(conv), "--engine", "openvino:bf16", "--engine",
                                  "torch:bf16", "--engine", "onnxruntime", "--batch-sizes", "1,3", "--json", str(out),
                                  "-q"])
    assert result.exit_code == 0, result.output
    checks = json.loads(out.read_text())["checks"]
    reduced = [c for c in checks if c.get("precision") == "bf16"]
    assert {c["engine"] for c in reduced} == {"openvino:bf16", "torch:bf16"}
    assert all(c["gated_on"] == "psnr" for c in reduced if c["graph"] == "decoder")
    assert all(c["psnr_db"] >= 30 for c in reduced if c["graph"] == "decoder" and c["input"] != "edge")
    manifest = json.loads((conv / "manifest.json").read_text())
    verified = manifest["parity"]["verified"]
    assert {"openvino:bf16|decoder.onnx", "torch:bf16|decoder.onnx", "onnxruntime|decoder.onnx"} <= set(verified)
    assert all(v["fingerprint"] == fingerprint() for v in verified.values())

    bench = tmp_path / "bench.json"
    result = runner.invoke(main, ["bench", "--artifacts", str(conv), "--batch-sizes", "1", "--sizes", "28x28",
                                  "--warmup", "2", "--iterations", "5", "--rounds", "2", "--recommend",
                                  "--json", str(bench)])
    assert result.exit_code == 0, result.output
    assert "recommended (fastest verified; run noise" in result.output
    report = json.loads(bench.read_text())
    rows = report["results"]
    labels = {(r["engine"], r["precision"]) for r in rows}
    assert {("onnxruntime", "fp32"), ("openvino", "fp32"), ("openvino", "bf16"), ("torch", "fp32"),
            ("torch", "bf16")} <= labels
    for r in rows:
        assert r["session_mib"] is not None and r["peak_mib"] is not None and r["peak_mib"] >= 0
        assert r["check_passed"] is True
    # openvino fp32 was never verified in this directory: measured, never recommended
    assert all(r["verified"] is False for r in rows if (r["engine"], r["precision"]) == ("openvino", "fp32"))
    recs = report["recommendations"]
    assert recs and all(e["recommended"]["engine"] + ":" + e["recommended"]["precision"] != "openvino:fp32"
                        for e in recs)
    recorded = json.loads((conv / "manifest.json").read_text())["recommendation"]
    assert recorded["fingerprint"] == fingerprint() and recorded["rows"]
    decoder = VAEDecoder(conv / "decoder.onnx", engine="auto")
    row = next(r for r in recorded["rows"] if r["graph"] == "decoder")
    best = next(c for c in row["ranking"] if c["engine"] != "torch" and c["precision"] == "fp32"
                and c["file"] == "decoder.onnx")
    assert decoder.engine == best["engine"] == "onnxruntime"  # the one fp32 graph engine verified here


def test_bench_memory_grows_with_the_batch(conv, runner, tmp_path):
    bench = tmp_path / "bench.json"
    result = runner.invoke(main, ["bench", "--artifacts", str(conv), "--engine", "onnxruntime", "--batch-sizes",
                                  "1,256", "--sizes", "112x112", "--warmup", "1", "--iterations", "3", "--rounds", "1",
                                  "--json", str(bench), "-q"])
    assert result.exit_code == 0, result.output
    rows = {(r["graph"], r["batch"]): r for r in json.loads(bench.read_text())["results"]}
    small, big = rows["decoder", 1], rows["decoder", 256]
    # batch 256 at 112x112: the output alone is 256 x 112 x 112 x 4 bytes = 12.25 MiB
    assert big["peak_mib"] > small["peak_mib"] + 12
    assert small["session_mib"] == big["session_mib"]
