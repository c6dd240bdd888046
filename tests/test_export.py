import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from vae_export.families import load_model
from vae_export.cli import main
from vae_export.export import export


def ort_run(path, name, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {name: x})


def dims(value):
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_graph_contract(exported_dir):
    enc = onnx.load(str(exported_dir / "encoder.onnx"))
    dec = onnx.load(str(exported_dir / "decoder.onnx"))
    assert [(v.name, dims(v)) for v in enc.graph.input] == [("x", ["batch", 1, 28, 28])]
    assert [(v.name, dims(v)) for v in enc.graph.output] == [("mu", ["batch", 32]), ("logvar", ["batch", 32])]
    assert [(v.name, dims(v)) for v in dec.graph.input] == [("z", ["batch", 32])]
    assert [(v.name, dims(v)) for v in dec.graph.output] == [("x_hat", ["batch", 1, 28, 28])]
    for model in (enc, dec):
        assert not any(n.op_type.startswith("Random") for n in model.graph.node)
        assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
        meta = {p.key: p.value for p in model.metadata_props}
        assert meta["vae_export.latent_dim"] == "32" and meta["vae_export.image_shape"] == "1,28,28"
        assert meta["vae_export.opset"] == "18" and meta["vae_export.version"]
        digest = hashlib.sha256((exported_dir / "vae.safetensors").read_bytes()).hexdigest()
        assert meta["vae_export.checkpoint_sha256"] == digest
    assert {p.name for p in exported_dir.iterdir()} >= {"encoder.onnx", "decoder.onnx", "manifest.json"}
    assert not [p for p in exported_dir.iterdir() if p.suffix == ".data" or p.name.startswith(".")]


@pytest.mark.parametrize("batch", [1, 3, 257])
def test_dynamic_batch_matches_pytorch(exported_dir, trained, batch):
    rng = np.random.default_rng(batch)
    x = rng.random((batch, 1, 28, 28), dtype=np.float32)
    z = rng.standard_normal((batch, 32)).astype(np.float32)
    mu, logvar = ort_run(exported_dir / "encoder.onnx", "x", x)
    (x_hat,) = ort_run(exported_dir / "decoder.onnx", "z", z)
    with torch.inference_mode():
        tmu, tlogvar = trained.encode(torch.from_numpy(x))
        tx = trained.decode(torch.from_numpy(z))
    np.testing.assert_allclose(mu, tmu.numpy(), atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(logvar, tlogvar.numpy(), atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(x_hat, tx.numpy(), atol=1e-5, rtol=1e-4)
    assert x_hat.shape == (batch, 1, 28, 28)


def test_manifest_lists_everything(exported_dir):
    manifest = json.loads((exported_dir / "manifest.json").read_text())
    files = {e["file"]: e for e in manifest["artifacts"]}
    assert set(files) == {"encoder.onnx", "decoder.onnx"}
    for name, entry in files.items():
        assert entry["sha256"] == hashlib.sha256((exported_dir / name).read_bytes()).hexdigest()
        assert entry["bytes"] == (exported_dir / name).stat().st_size and entry["opset"] == 18
        assert entry["variant"] == "fp32"
    assert files["decoder.onnx"]["outputs"] == [{"name": "x_hat", "dtype": "float", "shape": ["batch", 1, 28, 28]}]
    assert manifest["model"]["latent_dim"] == 32 and manifest["model"]["config"]["hidden_dim"] == 400
    assert set(manifest["versions"]) == {"vae-export", "torch", "onnx", "onnxruntime"}
    assert len(manifest["checkpoint"]["sha256"]) == 64
    # relative to the artifacts directory, so the directory can move as a whole
    assert manifest["checkpoint"]["path"] == "vae.safetensors"


def test_byte_identical_reexport(checkpoint, exported_dir):
    export(load_model(checkpoint), checkpoint.parent)
    for name in ("encoder.onnx", "decoder.onnx"):
        assert (checkpoint.parent / name).read_bytes() == (exported_dir / name).read_bytes()


def test_seed_state_dict_latent_24_exports(tmp_path, runner):
    from conftest import SimpleVAE

    torch.manual_seed(0)
    torch.save(SimpleVAE(latent_dim=24).state_dict(), tmp_path / "seed.pt")
    result = runner.invoke(main, ["export", "--artifacts", str(tmp_path / "out"), "--checkpoint", str(tmp_path / "seed.pt")])
    assert result.exit_code == 0, result.output
    (x_hat,) = ort_run(tmp_path / "out" / "decoder.onnx", "z", np.zeros((5, 24), np.float32))
    assert x_hat.shape == (5, 1, 28, 28)


class ConvVAE(nn.Module):
    """A small convolutional VAE with the encode/decode convention (used through --model)."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(),
                                 nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten())
        self.mu = nn.Linear(16 * 7 * 7, 6)
        self.logvar = nn.Linear(16 * 7 * 7, 6)
        self.fc = nn.Linear(6, 16 * 7 * 7)
        self.dec = nn.Sequential(nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1), nn.ReLU(),
                                 nn.ConvTranspose2d(8, 1, 4, stride=2, padding=1), nn.Sigmoid())

    def encode(self, x):
        h = self.enc(x)
        return self.mu(h), self.logvar(h)

    def decode(self, z):
        return self.dec(self.fc(z).view(-1, 16, 7, 7))


def test_conv_vae_through_model_option(tmp_path, runner, monkeypatch):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = ConvVAE().eval()
    save_file(model.state_dict(), str(tmp_path / "conv.safetensors"))
    monkeypatch.chdir(tmp_path.parent)
    out = tmp_path / "out"
    result = runner.invoke(main, ["export", "--artifacts", str(out), "--model", "test_export:ConvVAE",
                                  "--checkpoint", str(tmp_path / "conv.safetensors")])
    assert result.exit_code == 0, result.output
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    mu, logvar = ort_run(out / "encoder.onnx", "x", x)
    with torch.inference_mode():
        tmu, _ = model.encode(torch.from_numpy(x))
        np.testing.assert_allclose(mu, tmu.numpy(), atol=1e-5, rtol=1e-4)
        (x_hat,) = ort_run(out / "decoder.onnx", "z", mu)
        np.testing.assert_allclose(x_hat, model.decode(torch.from_numpy(mu)).numpy(), atol=1e-5, rtol=1e-4)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["source"] == "test_export:ConvVAE" and manifest["model"]["latent_dim"] == 6
    # a manifest never names code to run: verify needs the user's own --model (issue 14)
    result = runner.invoke(main, ["verify", "--artifacts", str(out), "--batch-sizes", "1,3"])
    assert result.exit_code == 2 and "pass --model MODULE:ATTR" in result.stderr
    result = runner.invoke(main, ["verify", "--artifacts", str(out), "--batch-sizes", "1,3", "--model", "test_export:ConvVAE"])
    assert result.exit_code == 0, result.output


def test_torchscript_exporter_on_request(checkpoint, runner):
    result = runner.invoke(main, ["export", "--artifacts", str(checkpoint.parent), "--exporter", "torchscript"])
    assert result.exit_code == 0, result.output
    assert "deprecated" in result.output
    dec = onnx.load(str(checkpoint.parent / "decoder.onnx"))
    assert dims(dec.graph.output[0]) == ["batch", 1, 28, 28]


def test_inspect_json(exported_dir, runner, tmp_path):
    result = runner.invoke(main, ["inspect", str(exported_dir / "decoder.onnx"), "--json", str(tmp_path / "i.json")])
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "i.json").read_text())
    assert info["opset"] == 18 and info["inputs"][0]["shape"] == ["batch", 32]
    assert info["ops"]["Sigmoid"] == 1 and info["parameters"] == 32 * 400 + 400 + 400 * 784 + 784
    assert "vae_export.role = decoder" in result.output


class WarningVAE(ConvVAE):
    """A user model that warns: its warning is the user's to see, unlike exporter chatter."""

    def encode(self, x):
        import warnings

        warnings.warn("user model warning", UserWarning)
        return super().encode(x)


def test_user_warnings_survive_export(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    save_file(WarningVAE().state_dict(), str(tmp_path / "w.safetensors"))
    loaded = load_model(tmp_path / "w.safetensors", "test_export:WarningVAE")
    with pytest.warns(UserWarning, match="user model warning"):
        export(loaded, tmp_path)


def test_graphs_do_not_carry_source_paths(exported_dir):
    """No stack trace with this machine's directories in an artifact that travels: the bytes
    do not depend on where vae-export or torch are installed."""
    import vae_export

    package_dir = str(Path(vae_export.__file__).resolve().parent.parent).encode()
    for name in ("encoder.onnx", "decoder.onnx"):
        data = (exported_dir / name).read_bytes()
        assert b"pkg.torch.onnx.stack_trace" not in data and package_dir not in data and b"site-packages" not in data
