"""A v1 artifact set (flat latent, one size, written before contract v2: no `latent_shape` or
`likelihood` metadata, v1 manifest) is read by every command and the runtime."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

from vae_export.artifacts import sha256_file
from vae_export.cli import main
from vae_export.runtime import VAE

V2_KEYS = ("vae_export.latent_shape", "vae_export.likelihood")


@pytest.fixture(scope="module")
def v1_dir(tmp_path_factory, exported_dir):
    """Today's flat export with the v2 metadata removed: byte for byte what v1 wrote, apart from
    the exporter's stack-trace paths."""
    d = tmp_path_factory.mktemp("v1")
    shutil.copytree(exported_dir, d, dirs_exist_ok=True)
    manifest = json.loads((d / "manifest.json").read_text())
    for entry in manifest["artifacts"]:
        model = onnx.load(str(d / entry["file"]))
        kept = [(p.key, p.value) for p in model.metadata_props if p.key not in V2_KEYS]
        del model.metadata_props[:]
        for key, value in kept:
            prop = model.metadata_props.add()
            prop.key, prop.value = key, value
        onnx.save(model, str(d / entry["file"]))
        entry["sha256"], entry["bytes"] = sha256_file(d / entry["file"]), (d / entry["file"]).stat().st_size
    manifest["model"]["config"] = {k: manifest["model"]["config"][k] for k in ("image_shape", "hidden_dim", "latent_dim")}
    (d / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return d


def test_v1_set_has_no_v2_keys(v1_dir):
    meta = {p.key for p in onnx.load(str(v1_dir / "decoder.onnx")).metadata_props}
    assert "vae_export.latent_dim" in meta and not meta & set(V2_KEYS)
    assert "latent_shape" not in json.loads((v1_dir / "manifest.json").read_text())["model"]


@pytest.mark.parametrize("args", [
    ["verify", "--batch-sizes", "1,2"],
    ["bench", "--batch-sizes", "1", "--warmup", "1", "--iterations", "3", "--no-peers"],
    ["sample", "-n", "4"],
])
def test_every_command_reads_v1(v1_dir, tmp_path, runner, args):
    d = tmp_path / "a"
    shutil.copytree(v1_dir, d)
    result = runner.invoke(main, [args[0], "--artifacts", str(d), *args[1:]])
    assert result.exit_code == 0, result.output


def test_inspect_and_runtime_read_v1(v1_dir, runner, digits):
    result = runner.invoke(main, ["inspect", str(v1_dir / "decoder.onnx")])
    assert result.exit_code == 0 and "vae_export.latent_dim = 32" in result.output
    vae = VAE(v1_dir / "encoder.onnx", v1_dir / "decoder.onnx")
    assert vae.decoder.latent_dim == 32 and vae.decoder.latent_shape == (32,) and vae.decoder.stride is None
    x = digits.test[:3].numpy()
    assert vae.reconstruct(x).shape == (3, 1, 28, 28)
    assert np.all(np.isfinite(vae.anomaly_score(x)))
    assert vae.decoder.sample(2, seed=0).shape == (2, 1, 28, 28)
