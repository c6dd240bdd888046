import hashlib
import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from vae_export.cli import main
from vae_export.parity import compare, psnr_db

CHECK_FIELDS = {"graph", "variant", "output", "batch", "max_abs", "max_rel", "mean_abs", "atol", "rtol", "psnr_db", "passed"}


def tamper_decoder(artifacts, fn, rewrite_hash):
    path = artifacts / "decoder.onnx"
    model = onnx.load(str(path))
    weight = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
    weight.CopyFrom(numpy_helper.from_array(fn(numpy_helper.to_array(weight)), weight.name))
    onnx.save_model(model, str(path))
    if rewrite_hash:
        manifest = json.loads((artifacts / "manifest.json").read_text())
        for entry in manifest["artifacts"]:
            if entry["file"] == "decoder.onnx":
                entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
                entry["bytes"] = path.stat().st_size
        (artifacts / "manifest.json").write_text(json.dumps(manifest))


def test_passes_on_honest_artifacts(artifacts, runner, tmp_path):
    result = runner.invoke(main, ["verify", "--artifacts", str(artifacts), "--json", str(tmp_path / "v.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["passed"] is True
    assert report["integrity"] == [{"file": "encoder.onnx", "sha256_ok": True}, {"file": "decoder.onnx", "sha256_ok": True}]
    # one row per graph x variant x output x batch size (+ the edge-case batch)
    rows = {(c["graph"], c["output"], c["batch"], c["input"]) for c in report["checks"]}
    for batch in (1, 2, 7, 64):
        assert {("encoder", "mu", batch, "images"), ("encoder", "logvar", batch, "images"),
                ("decoder", "x_hat", batch, "random")} <= rows
    assert ("decoder", "x_hat", 3, "edge") in rows and ("encoder", "mu", 2, "edge") in rows
    for check in report["checks"]:
        assert CHECK_FIELDS <= set(check)
        assert check["max_abs"] <= check["atol"] + check["rtol"] * 1.0
        assert check["min_atol"] <= check["atol"]
    assert all(c["psnr_db"] > 60 for c in report["checks"] if c["graph"] == "decoder")
    assert report["inputs"]["encoder"].startswith("digits")
    manifest = json.loads((artifacts / "manifest.json").read_text())
    assert manifest["parity"]["passed"] is True and manifest["parity"]["checks"] == len(report["checks"])
    assert "thresholds: fp32 atol 1e-05 rtol 0.0001" in result.output


@pytest.mark.parametrize("rewrite_hash", [False, True])
def test_scaled_weight_fails(artifacts, runner, rewrite_hash, tmp_path):
    tamper_decoder(artifacts, lambda w: w * 1.05, rewrite_hash)
    manifest_before = (artifacts / "manifest.json").read_bytes()
    result = runner.invoke(main, ["verify", "--artifacts", str(artifacts), "--json", str(tmp_path / "v.json")])
    assert result.exit_code == 1, result.output
    assert (artifacts / "manifest.json").read_bytes() == manifest_before  # a failed verify records nothing
    if not rewrite_hash:  # integrity fails first: nothing runs, no report
        assert "Error: integrity check failed: sha256 of decoder.onnx" in result.output
        assert "nothing was run" in result.output and not (tmp_path / "v.json").exists()
        return
    report = json.loads((tmp_path / "v.json").read_text())
    decoder_rows = [c for c in report["checks"] if c["graph"] == "decoder"]
    assert decoder_rows and not any(c["passed"] for c in decoder_rows)  # parity fails on its own merits
    assert all(c["passed"] for c in report["checks"] if c["graph"] == "encoder")
    assert "Error: parity failed" in result.output


def test_nan_outputs_fail(artifacts, runner, tmp_path):
    def poison(w):
        w = w.copy()
        w.flat[0] = np.nan
        return w

    tamper_decoder(artifacts, poison, rewrite_hash=True)
    result = runner.invoke(main, ["verify", "--artifacts", str(artifacts), "--json", str(tmp_path / "v.json")])
    assert result.exit_code == 1
    report = json.loads((tmp_path / "v.json").read_text())
    bad = [c for c in report["checks"] if c["graph"] == "decoder"]
    assert all(c["nonfinite"] > 0 and c["max_abs"] is None and not c["passed"] for c in bad)


def test_hash_mismatch_names_file(artifacts, runner):
    manifest = json.loads((artifacts / "manifest.json").read_text())
    manifest["artifacts"][0]["sha256"] = "0" * 64
    (artifacts / "manifest.json").write_text(json.dumps(manifest))
    result = runner.invoke(main, ["verify", "--artifacts", str(artifacts)])
    assert result.exit_code == 1
    assert "Error: integrity check failed: sha256 of encoder.onnx does not match the manifest" in result.output


def test_tolerance_rule_on_hand_made_arrays():
    expected = np.array([1.0, -2.0, 0.0, 100.0])
    # |a - e| <= atol + rtol * |e|: allowed slack 0.1 + 0.01 * |e| = [0.11, 0.12, 0.1, 1.1]
    ok = compare(expected + np.array([0.11, -0.12, 0.1, 1.1]) * 0.999, expected, atol=0.1, rtol=0.01)
    assert ok["passed"] is True
    bad = compare(expected + np.array([0.0, 0.0, 0.1001, 0.0]), expected, atol=0.1, rtol=0.01)
    assert bad["passed"] is False
    assert bad["max_abs"] == pytest.approx(0.1001) and bad["min_atol"] == pytest.approx(0.1001)
    assert bad["mean_abs"] == pytest.approx(0.1001 / 4)
    assert compare(expected + np.array([0.0, 0.0, 0.0, 5.0]), expected, 0.0, 0.01)["min_atol"] == pytest.approx(4.0)
    nan = compare(np.array([1.0, np.nan]), np.array([1.0, 1.0]), atol=1e9, rtol=1e9)
    assert nan["passed"] is False and nan["nonfinite"] == 1
    inf = compare(np.array([np.inf]), np.array([np.inf]), atol=1.0, rtol=1.0)
    assert inf["passed"] is False


def test_psnr():
    a = np.zeros((2, 4))
    assert psnr_db(a + 0.1, a) == pytest.approx(20.0)
    assert psnr_db(a, a) == 200.0
    assert psnr_db(a + np.nan, a) is None
