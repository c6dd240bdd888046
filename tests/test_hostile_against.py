"""Hostile inputs through `bench --against` and `bench --baseline` (issue 28): the OLD side
gets the same integrity and containment checks as plain `bench`, and a baseline file is
validated before any arithmetic. Each case: the exit code, one `Error:` line naming the
option, the file and the field, and nothing written."""

from __future__ import annotations

import os
import shutil

import onnx

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
