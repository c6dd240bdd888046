"""Defects a new user met following the README (issue 28), each pinned by a test that failed
before its fix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from vae_export.cli import main
from vae_export.images import _COLOURS, latency_plot
from vae_export.reports import BenchReport, BenchRow, VerifyReport

ROOT = Path(__file__).resolve().parents[1]


def _cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "VAE_EXPORT_DEBUG"}  # the user's view: no --debug
    return {**env, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "runtime"), env.get("PYTHONPATH", "")])}


def test_inspect_into_a_closed_pipe_exits_quietly(exported_dir):
    """`vae-export inspect ... | head -2`: once the reader has gone, the command stops quietly
    (exit 1, no `internal error: BrokenPipeError`, nothing on stderr), as click's own commands
    and other CLIs do."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line: every write fails with EPIPE
    try:
        result = subprocess.run([sys.executable, "-m", "vae_export", "inspect", str(exported_dir / "decoder.onnx")],
                                stdout=write, stderr=subprocess.PIPE, text=True, env=_cli_env(), timeout=120)
    finally:
        os.close(write)
    assert result.stderr == ""
    assert result.returncode == 1


def test_inspect_into_head_prints_its_lines_and_no_error(exported_dir):
    result = subprocess.run(f"'{sys.executable}' -m vae_export inspect '{exported_dir / 'decoder.onnx'}' | head -c 1",
                            shell=True, capture_output=True, text=True, env=_cli_env(), timeout=120)
    assert result.stdout == str(exported_dir / "decoder.onnx")[0]
    assert "Error" not in result.stderr and "BrokenPipe" not in result.stderr


def _row(engine: str, variant: str, batch: int, p50: float) -> BenchRow:
    return BenchRow(graph="decoder", batch=batch, threads=1, variant=variant, engine=engine, provider="CPU",
                    file="decoder.onnx", p50_ms=p50, p90_ms=p50, p99_ms=p50, mean_ms=p50, min_ms=p50,
                    throughput_per_s=batch / p50 * 1e3, iterations=10)


def _colours_drawn(image) -> set[tuple[int, int, int]]:
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    return {c for c in _COLOURS if (pixels == c).all(axis=1).any()}


def test_latency_plot_has_one_line_per_engine_and_variant():
    """ONNX Runtime and OpenVINO both run the fp32 graph: two lines (two colours), not one
    "onnxruntime fp32" line zig-zagging between them."""
    rows = [_row("onnxruntime", "fp32", 1, 0.05), _row("openvino", "fp32", 1, 0.2), _row("onnxruntime", "fp32", 64, 0.4),
            _row("openvino", "fp32", 64, 0.9), _row("onnxruntime", "int8", 1, 0.04), _row("onnxruntime", "int8", 64, 0.3),
            _row("torch", "fp32", 1, 0.1), _row("torch", "fp32", 64, 0.5)]
    assert len(_colours_drawn(latency_plot(rows))) == 4  # onnxruntime fp32, onnxruntime int8, openvino fp32, torch


def test_verify_table_has_a_size_column_for_symbolic_size_graphs(conv_dir, runner, tmp_path):
    artifacts = tmp_path / "conv"
    shutil.copytree(conv_dir, artifacts)
    result = runner.invoke(main, ["verify", "--artifacts", str(artifacts), "--batch-sizes", "1",
                                  "--sizes", "28x28,32x48"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(line for line in lines if line.startswith("graph"))
    assert header.split()[:5] == ["graph", "variant", "output", "size", "batch"]
    rows = [line.split() for line in lines if line.startswith(("encoder ", "decoder "))]
    assert {r[3] for r in rows} == {"28x28", "32x48"}
    # Rows of different sizes are told apart by the size column alone.
    assert len({tuple(r[:6]) for r in rows}) == len(rows)


def test_verify_table_of_fixed_size_graphs_keeps_a_dash(artifacts, runner):
    result = runner.invoke(main, ["verify", "--artifacts", str(artifacts), "--batch-sizes", "1"])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if line.startswith(("encoder ", "decoder "))]
    assert rows and {r[3] for r in rows} == {"-"}


def test_run_names_the_variant_files_it_removes(artifacts, runner, monkeypatch):
    """`run` re-exports into the directory, which removes the previous export's variant graphs
    it did not rebuild (they come from another checkpoint). `export` names them; so must `run`."""
    from vae_export import pipeline
    from vae_export.artifacts import atomic_write_json, sha256_file

    for role in ("encoder", "decoder"):  # a previous export with --variant fp16
        shutil.copy(artifacts / f"{role}.onnx", artifacts / f"{role}.fp16.onnx")
    manifest = json.loads((artifacts / "manifest.json").read_text())
    for entry in list(manifest["artifacts"]):
        copy = dict(entry, file=entry["file"].replace(".onnx", ".fp16.onnx"), variant="fp16")
        copy["sha256"] = sha256_file(artifacts / copy["file"])
        manifest["artifacts"].append(copy)
    atomic_write_json(artifacts / "manifest.json", manifest)
    # Training, verify, bench and pictures are not what this test is about: stand-ins.
    monkeypatch.setattr(pipeline, "train_into", lambda *a, **k: {"dataset": "digits", "final_test_loss": 1.0,
                                                                 "wall_time_s": 0.0})
    empty_verify = VerifyReport(integrity=[], checkpoint={"matches_manifest": True}, checks=[], thresholds={},
                                inputs={}, batch_sizes=[1], device="cpu")
    monkeypatch.setattr(pipeline, "verify_artifacts", lambda *a, **k: empty_verify)
    empty_bench = BenchReport(env={}, warmup=0, iterations=0, min_time_s=0.0, results=[])
    monkeypatch.setattr(pipeline, "bench_artifacts", lambda *a, **k: pipeline.BenchOutcome(empty_bench, None))
    monkeypatch.setattr(pipeline, "draw_pictures", lambda *a, **k: [])
    result = runner.invoke(main, ["run", "--artifacts", str(artifacts), "--epochs", "1"])
    assert result.exit_code == 0, result.output
    for name in ("encoder.fp16.onnx", "decoder.fp16.onnx"):
        assert not (artifacts / name).exists()
        assert f"removed {name} (from the previous export, not rebuilt by this one)" in result.output
