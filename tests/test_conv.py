"""Contract v2 on convolutional VAEs: spatial latents, --dynamic-size, every stage generic over
the latent shape (export, verify, bench, variants, runtime, inspect, web contract)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from conftest import one_line_error
from vae_export.cli import main
from vae_export_runtime.contract import Geometry
from vae_export.errors import UsageError
from vae_export.manifest import Manifest
from vae_export_runtime.session import make_session
from vae_export.runtime import VAE, RuntimeInputError, VAEDecoder


def test_conv_reference_model_shapes():
    from vae_export.model import VAE as TorchVAE, VAEConfig

    model = TorchVAE(VAEConfig(arch="conv", channels=8)).eval()
    with torch.no_grad():
        mu, logvar = model.encode(torch.rand(2, 1, 28, 28))
        assert mu.shape == logvar.shape == (2, 4, 7, 7)
        assert model.decode(mu).shape == (2, 1, 28, 28)
        assert model.encode(torch.rand(3, 1, 32, 48))[0].shape == (3, 4, 8, 12)  # any multiple of 4
    assert model.config.latent_shape == (4, 7, 7)


def test_dynamic_size_signature_and_metadata(conv_dir):
    encoder = onnx.load(str(conv_dir / "encoder.onnx"))
    decoder = onnx.load(str(conv_dir / "decoder.onnx"))

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    assert dims(encoder.graph.input[0]) == ["batch", 1, "height", "width"]
    assert dims(encoder.graph.output[0]) == ["batch", 4, "latent_height", "latent_width"]
    assert dims(decoder.graph.input[0]) == ["batch", 4, "latent_height", "latent_width"]
    assert dims(decoder.graph.output[0]) == ["batch", 1, "height", "width"]
    meta = {p.key: p.value for p in decoder.metadata_props}
    assert json.loads(meta["vae_export.latent_shape"]) == [4, None, None]
    assert meta["vae_export.image_shape"] == "null" and meta["vae_export.stride"] == "4"
    assert meta["vae_export.likelihood"] == "bernoulli" and "vae_export.latent_dim" not in meta
    geometry = Manifest.read(conv_dir).model.geometry
    assert geometry == Geometry((1, 28, 28), (4, 7, 7), True, 4)


@pytest.mark.parametrize("batch", [1, 3, 257])
def test_onnx_runtime_runs_any_size_and_batch(conv_dir, conv_model, batch):
    encoder = make_session(conv_dir / "encoder.onnx")
    decoder = make_session(conv_dir / "decoder.onnx")
    for h, w in [(28, 28), (56, 56), (32, 48)]:
        x = np.random.default_rng(batch).random((batch, 1, h, w), dtype=np.float32)
        mu, logvar = encoder.run(None, {"x": x})
        assert mu.shape == logvar.shape == (batch, 4, h // 4, w // 4)
        x_hat = decoder.run(None, {"z": mu})[0]
        assert x_hat.shape == (batch, 1, h, w)
        with torch.inference_mode():
            want = conv_model.decode(torch.from_numpy(mu)).numpy()
        np.testing.assert_allclose(x_hat, want, atol=1e-5, rtol=1e-4)


def test_verify_at_three_sizes(conv_dir, runner, tmp_path):
    result = runner.invoke(main, ["verify", "--artifacts", str(conv_dir), "--batch-sizes", "1,3",
                                  "--json", str(tmp_path / "v.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["passed"] and report["sizes"] == [[28, 28], [56, 56], [32, 48]]
    assert {tuple(c["size"]) for c in report["checks"]} == {(28, 28), (56, 56), (32, 48)}
    assert all(c["max_abs"] < 1e-4 for c in report["checks"])


def test_verify_size_not_multiple_of_stride_is_usage_error(conv_dir, runner):
    result = runner.invoke(main, ["verify", "--artifacts", str(conv_dir), "--sizes", "30x30"])
    assert result.exit_code == 2
    one_line_error(result, "--sizes 30x30", "multiples of the model's stride 4")


def test_dynamic_size_refused_for_an_mlp(checkpoint, runner, tmp_path):
    out = checkpoint.parent
    result = runner.invoke(main, ["export", "--artifacts", str(out), "--checkpoint", str(checkpoint), "--dynamic-size"])
    assert result.exit_code == 2
    one_line_error(result, "--dynamic-size: the model does not run at a second size", "encode failed")
    assert not (out / "manifest.json").exists()


def test_runtime_sizes_and_errors(conv_dir):
    decoder = VAEDecoder(conv_dir / "decoder.onnx")
    assert decoder.latent_shape == (4, None, None) and decoder.stride == 4
    images = decoder.sample(5, seed=0, size=(32, 48))
    assert images.shape == (5, 1, 32, 48) and 0.0 <= images.min() and images.max() <= 1.0
    np.testing.assert_array_equal(images, decoder.sample(5, seed=0, size=(32, 48)))
    with pytest.raises(RuntimeInputError, match="multiples of 4"):
        decoder.sample(2, size=(30, 30))
    # No size: the export size the graph records (metadata export_size), decided nowhere else.
    assert decoder.default_size == (28, 28) and decoder.sample(2, seed=0).shape == (2, 1, 28, 28)
    np.testing.assert_array_equal(decoder.sample(2, seed=0), decoder.sample(2, seed=0, size=(28, 28)))
    with pytest.raises(RuntimeInputError, match=r"z: expected shape \[batch, 4, latent_height, latent_width\]"):
        decoder.decode(np.zeros((1, 3, 7, 7), np.float32))  # wrong channel count
    with pytest.raises(RuntimeInputError, match=r"expected shape \[batch, 4, latent_height"):
        decoder.decode(np.zeros((1, 196), np.float32))  # wrong rank
    vae = VAE(conv_dir / "encoder.onnx", conv_dir / "decoder.onnx")
    with pytest.raises(RuntimeInputError, match=r"x: expected shape \[batch, 1, height, width\] \(height and width multiples of 4\)"):
        vae.encoder.encode(np.zeros((1, 1, 30, 30), np.float32))
    x = np.random.default_rng(0).random((2, 1, 32, 48), dtype=np.float32)
    mu, _ = vae.encoder.encode(x)
    strip = vae.decoder.interpolate(mu[0], mu[1], steps=4)
    assert strip.shape == (4, 1, 32, 48)
    np.testing.assert_allclose(strip[0], vae.decoder.decode(mu[:1])[0], atol=1e-6)
    scores = vae.anomaly_score(x)
    assert scores.shape == (2,) and np.all(np.isfinite(scores)) and np.all(scores > 0)


def test_bench_rows_have_sizes(conv_dir, runner, tmp_path):
    result = runner.invoke(main, ["bench", "--artifacts", str(conv_dir), "--batch-sizes", "1", "--sizes", "28x28,32x48",
                                  "--warmup", "1", "--iterations", "3", "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "b.json").read_text())["results"]
    assert {tuple(r["size"]) for r in rows} == {(28, 28), (32, 48)}
    for r in rows:
        assert r["ms_per_megapixel"] == pytest.approx(r["p50_ms"] / (r["size"][0] * r["size"][1] / 1e6))
    engines = {r["engine"] for r in rows}
    assert {"onnxruntime", "torch"} <= engines
    try:
        import openvino  # noqa: F401
    except ImportError:
        pass
    else:
        assert "openvino" in engines


class SpatialUserVAE(nn.Module):
    """A user's own conv VAE: encode -> (mu, logvar) [B, 2, H/2, W/2], decode -> [B, 1, H, W]."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Conv2d(1, 4, 2, stride=2)
        self.dec = nn.ConvTranspose2d(2, 1, 2, stride=2)

    def encode(self, x):
        mu, logvar = self.enc(x).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z):
        return torch.sigmoid(self.dec(z))


def test_user_conv_class_with_spatial_latent(tmp_path, runner):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    save_file(SpatialUserVAE().state_dict(), tmp_path / "user.safetensors")
    out = tmp_path / "a"
    result = runner.invoke(main, ["export", "--artifacts", str(out), "--checkpoint", str(tmp_path / "user.safetensors"),
                                  "--model", "test_conv:SpatialUserVAE", "--image-shape", "1,16,24", "--dynamic-size"])
    assert result.exit_code == 0, result.output
    geometry = Manifest.read(out).model.geometry
    assert geometry == Geometry((1, 16, 24), (2, 8, 12), True, 2)
    assert VAEDecoder(out / "decoder.onnx").sample(2, seed=1, size=(6, 10)).shape == (2, 1, 6, 10)
    verified = runner.invoke(main, ["verify", "--artifacts", str(out), "--model", "test_conv:SpatialUserVAE",
                                    "--batch-sizes", "2"])
    assert verified.exit_code == 0, verified.output


def test_sample_and_web_contract_for_dynamic_decoder(conv_dir, runner, tmp_path):
    result = runner.invoke(main, ["sample", "--artifacts", str(conv_dir), "-n", "4", "--size", "32x48",
                                  "--output", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output
    bad = runner.invoke(main, ["sample", "--artifacts", str(conv_dir), "-n", "4", "--size", "30x30",
                               "--output", str(tmp_path / "t.png")])
    assert bad.exit_code == 2 and not (tmp_path / "t.png").exists()
    one_line_error(bad, "--size", "multiples of 4")


def test_geometry_rules():
    g = Geometry((1, 28, 28), (4, 7, 7), True, 4)
    assert g.default_sizes() == ((28, 28), (56, 56), (32, 48))
    assert g.latent_at((32, 48)) == (4, 8, 12) and g.image_at((32, 48)) == (1, 32, 48)
    with pytest.raises(ValueError, match="multiples of the model's stride 4"):
        g.check_size((30, 30))
    fixed = Geometry((1, 28, 28), (32,))
    assert fixed.default_sizes() == ((28, 28),) and fixed.latent_at((28, 28)) == (32,)
    with pytest.raises(ValueError, match="runs at 28x28 only"):
        fixed.check_size((56, 56))
    with pytest.raises(UsageError):
        raise UsageError("typed")


def test_batch_jobs_on_a_spatial_latent(conv_dir, runner, tmp_path):
    """encode/generate run on conv graphs too (at the export size of a --dynamic-size model)."""
    import pyarrow.parquet as pq

    result = runner.invoke(main, ["generate", "-n", "5", "--seed", "1", "-o", str(tmp_path / "g.parquet"),
                                  "--artifacts", str(conv_dir)])
    assert result.exit_code == 0, result.output
    table = pq.read_table(tmp_path / "g.parquet")
    z = np.array(table.column("z").to_pylist(), np.float32).reshape(5, 4, 7, 7)
    x_hat = np.array(table.column("x_hat").to_pylist(), np.float32)
    assert x_hat.shape == (5, 784)
    np.testing.assert_allclose(x_hat.reshape(5, 1, 28, 28), VAEDecoder(conv_dir / "decoder.onnx").decode(z), atol=1e-6)
