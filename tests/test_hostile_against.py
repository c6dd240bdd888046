"""Hostile inputs through `bench --against` and `bench --baseline` (issue 28): the OLD side
gets the same integrity and containment checks as plain `bench`, and a baseline file is
validated before any arithmetic. Each case: the exit code, one `Error:` line naming the
option, the file and the field, and nothing written."""

from __future__ import annotations

import json
import os
import shutil

import onnx
import pytest

from conftest import one_line_error, snapshot
from vae_export.against import against
from vae_export.cli import main
from vae_export.options import AgainstOptions
from vae_export.workloads import slow_decoder

FAST = ["--batch-sizes", "1", "--rounds", "6", "--sessions", "6", "--min-time", "0.02", "--warmup", "2",
        "--iterations", "6"]


# ---- --against: integrity and containment -------------------------------------------------------

def test_against_a_folder_made_of_symlinks_is_refused(artifacts, exported_dir, runner, tmp_path):
    links = tmp_path / "links"
    links.mkdir()
    for path in exported_dir.iterdir():
        (links / path.name).symlink_to(path)
    before = snapshot(artifacts)
    result = runner.invoke(main, ["bench", "--artifacts", str(artifacts), "--against", str(links), *FAST,
                                  "--json", str(tmp_path / "ab.json")])
    assert result.exit_code == 1
    one_line_error(result, "integrity check failed", "encoder.onnx is a symlink", str(links / "manifest.json"),
                   "nothing was run")
    assert not (tmp_path / "ab.json").exists() and snapshot(artifacts) == before


def test_against_graphs_whose_hashes_no_longer_match_are_refused(artifacts, exported_dir, runner, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(exported_dir, old)
    model = onnx.load(old / "decoder.onnx")
    model.producer_name = "changed"
    onnx.save(model, old / "decoder.onnx")
    result = runner.invoke(main, ["bench", "--artifacts", str(artifacts), "--against", str(old), *FAST])
    assert result.exit_code == 1
    one_line_error(result, "integrity check failed", "sha256 of decoder.onnx does not match", str(old / "manifest.json"))


def test_against_times_the_bytes_it_checked_even_if_a_graph_is_swapped_mid_run(artifacts, exported_dir, tmp_path):
    """Sessions are re-created for every group of rounds, so a graph is opened many times: a
    file swapped after the integrity check (here: for a 2-3x slower decoder, the manifest left
    as it was) must not be what is timed. Every session opens a private verified copy."""
    old = tmp_path / "old"
    shutil.copytree(exported_dir, old)
    slow = slow_decoder(onnx.load(exported_dir / "decoder.onnx"), 4)

    def swap(message: str) -> None:
        if not (old / "swapped").exists():
            (old / "swapped").touch()
            onnx.save(slow, old / "decoder.onnx")

    options = AgainstOptions(batch_sizes=(64,), rounds=6, sessions=6, min_time_s=0.05, warmup=2, iterations=6,
                             max_regression=1.5)
    report = against(old, artifacts, options, progress=swap)  # NEW is OLD's folder: its decoder is swapped
    decoder = next(r for r in report.results if r["graph"] == "decoder")
    assert decoder["verdict"] != "regressed", decoder["ratio"]


def test_against_refuses_a_fifo_listed_as_a_graph_without_blocking(artifacts, exported_dir, runner, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(exported_dir, old)
    (old / "decoder.onnx").unlink()
    os.mkfifo(old / "decoder.onnx")
    result = runner.invoke(main, ["bench", "--artifacts", str(artifacts), "--against", str(old), *FAST])
    assert result.exit_code == 1
    one_line_error(result, "integrity check failed", "decoder.onnx is not a regular file")


# ---- --baseline: validated before any arithmetic -------------------------------------------------

def _baseline() -> dict:
    """A well-formed baseline of this version (per-round medians, calibration) for the
    reference model's two graphs at batch 1."""
    rows = [{"graph": g, "batch": 1, "threads": 1, "variant": "fp32", "engine": "onnxruntime",
             "provider": "CPUExecutionProvider", "file": f"{g}.onnx", "p50_ms": 0.05, "p90_ms": 0.06, "p99_ms": 0.07,
             "mean_ms": 0.05, "min_ms": 0.04, "throughput_per_s": 20000.0, "iterations": 40,
             "round_p50_ms": [0.05, 0.051, 0.049, 0.05, 0.052]} for g in ("encoder", "decoder")]
    return {"env": {"cpu": "AMD EPYC", "cores": 2, "threads": 1, "onnxruntime": "1.32.0", "image_shape": [1, 28, 28]},
            "warmup": 2, "iterations": 40, "min_time_s": 0.0, "rounds": 5,
            "calibration": {"matmul_gflops_1thread": 90.0, "before": 89.0, "after": 91.0, "method": "m"},
            "results": rows}


def _set(data: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for part in parents:
        data = data[int(part)] if isinstance(data, list) else data[part]
    if isinstance(data, list):
        data[int(last)] = value
    else:
        data[last] = value


NAN = float("nan")
MALFORMED = [  # (field to set, value, what the one Error line must name)
    ("calibration.matmul_gflops_1thread", NAN, "calibration.matmul_gflops_1thread: expected a finite positive number"),
    ("calibration.matmul_gflops_1thread", 0, "calibration.matmul_gflops_1thread: expected a finite positive number"),
    ("calibration.matmul_gflops_1thread", -90.0, "calibration.matmul_gflops_1thread: expected a finite positive"),
    ("calibration.matmul_gflops_1thread", "fast", "calibration.matmul_gflops_1thread: expected a finite positive"),
    ("calibration", [90.0], "calibration: expected a JSON object"),
    ("results.1.round_p50_ms", [], "results[1].round_p50_ms: expected from 1 to 1000 finite positive numbers"),
    ("results.1.round_p50_ms", [0.05, NAN], "results[1].round_p50_ms[1]: expected a finite positive number"),
    ("results.1.round_p50_ms", [0.05, -0.05], "results[1].round_p50_ms[1]: expected a finite positive number"),
    ("results.1.round_p50_ms", [0.0], "results[1].round_p50_ms[0]: expected a finite positive number"),
    ("results.1.round_p50_ms", ["0.05"], "results[1].round_p50_ms[0]: expected a finite positive number"),
    ("results.1.round_p50_ms", [[0.05]], "results[1].round_p50_ms[0]: expected a finite positive number"),
    ("results.1.round_p50_ms", "0.05,0.05", "results[1].round_p50_ms: expected from 1 to 1000"),
    ("results.1.round_p50_ms", [0.05] * 1001, "results[1].round_p50_ms: expected from 1 to 1000 finite positive "
                                              "numbers (one per round), found 1001"),
    ("results.0.size", [[28], 28], "results[0].size: expected [height, width]"),
    ("results.0.size", "28x28", "results[0].size: expected [height, width]"),
    ("results.0.ms_per_megapixel", NAN, "results[0].ms_per_megapixel: expected a finite non-negative number or null"),
    ("results.0.p50_ms", 0, "results[0].p50_ms: expected a finite positive number"),
    ("env", ["AMD"], "env: expected a JSON object"),
    ("env.cpu", "x" * 300, "env.cpu: expected a string of at most 255 characters, a number or null"),
    ("env.cpu", {"model": "AMD"}, "env.cpu: expected a string of at most 255 characters"),
    ("env.image_shape", [1, -28, 28], "env.image_shape: expected three positive integers"),
    ("rounds", "30", "rounds: expected an integer from 1 to 1000 or null"),
    ("min_time_s", NAN, "min_time_s: expected a finite non-negative number"),
    ("warmup", -1, "warmup: expected a non-negative integer"),
]


@pytest.mark.parametrize("field, value, message", MALFORMED, ids=[f"{f}={str(v)[:12]}" for f, v, _ in MALFORMED])
def test_malformed_baseline_is_one_error_before_anything_runs(artifacts, runner, tmp_path, field, value, message):
    baseline = _baseline()
    _set(baseline, field, value)
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(baseline))
    before = snapshot(artifacts)
    result = runner.invoke(main, ["bench", "--artifacts", str(artifacts), "--baseline", str(path), "--no-torch",
                                  "--no-peers", "--batch-sizes", "1", "--json", str(tmp_path / "out.json")])
    assert result.exit_code == 1, result.output
    one_line_error(result, f"--baseline {path}: ", message)
    assert snapshot(artifacts) == before and not (tmp_path / "out.json").exists()


def test_round_samples_over_all_rows_are_bounded(artifacts, runner, tmp_path):
    """Within every per-row bound, but 4 MB of round medians over many rows: refused before
    any row is built, in bounded memory."""
    baseline = _baseline()
    row = baseline["results"][0]
    baseline["results"] = [dict(row, batch=b + 2, round_p50_ms=[0.05] * 1000) for b in range(1200)]
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(baseline))
    assert path.stat().st_size > 4_000_000
    result = runner.invoke(main, ["bench", "--artifacts", str(artifacts), "--baseline", str(path), "--no-torch",
                                  "--batch-sizes", "1"])
    assert result.exit_code == 1, result.output
    one_line_error(result, f"--baseline {path}: ", "results: at most 1000000 round medians over all rows, found 1200000")


def test_a_long_round_list_does_not_allocate_gigabytes(tmp_path):
    """A 4 MB baseline row of 2 million per-round medians: judging it resampled all of them
    4,000 times at once (60 GB). It is refused where it is read, before any array is built."""
    import subprocess
    import sys

    baseline = _baseline()
    baseline["results"][0]["round_p50_ms"] = [1] * 2_000_000
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(baseline, separators=(",", ":")))
    assert path.stat().st_size > 4_000_000
    # The child's own peak is VmHWM (its memory map's high-water mark): ru_maxrss keeps the
    # parent's RSS at the fork across exec, so under a 1.6 GB pytest it read 1.6 GB.
    code = ("import sys; from pathlib import Path; from vae_export.reports import BenchReport\n"
            "try:\n    BenchReport.read(Path(sys.argv[1]))\nexcept Exception as exc:\n    print(exc)\n"
            "print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}).stdout.splitlines()
    assert "results[0].round_p50_ms: expected from 1 to 1000" in out[0]
    assert int(out[1]) < 1_000_000  # KiB: well under a gigabyte


def test_summary_line_counts_inconclusive_rows(artifacts, runner, tmp_path):
    """Every row INCONCLUSIVE (a baseline from another CPU: the 1.30x margin straddles the
    threshold) must not be summarised as "N rows within": the line says how many were."""
    fast = ["--batch-sizes", "1", "--warmup", "2", "--iterations", "20", "--rounds", "6", "--no-torch", "--no-peers"]
    first = runner.invoke(main, ["bench", "--artifacts", str(artifacts), *fast, "--json", str(tmp_path / "b.json")])
    assert first.exit_code == 0, first.output
    baseline = json.loads((tmp_path / "b.json").read_text())
    baseline["env"]["cpu"] = "Some Other CPU"
    (tmp_path / "other.json").write_text(json.dumps(baseline))
    result = runner.invoke(main, ["bench", "--artifacts", str(artifacts), *fast, "--baseline", str(tmp_path / "other.json"),
                                  "--max-regression", "1.1"])
    assert result.exit_code == 0, result.output
    assert result.output.count("INCONCLUSIVE") == 2
    assert "rows within" not in result.output
    assert result.output.splitlines()[-1] == (f"regression gate passed: no row regressed; 2 inconclusive (the interval "
                                              f"straddles 1.1x or 0.909x: these runs cannot tell) of 2 rows against "
                                              f"{tmp_path / 'other.json'}")
