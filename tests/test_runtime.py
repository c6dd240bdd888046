import subprocess
import sys
import textwrap

import numpy as np
import onnxruntime as ort
import pytest

from vae_export.errors import VAEExportError
from vae_export.runtime import VAE, VAEDecoder, VAEEncoder


def test_runtime_imports_without_torch(exported_dir):
    # A meta-path hook makes `import torch` fail, as in an app that ships without torch.
    code = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
        sys.meta_path.insert(0, Block())
        import vae_export
        from vae_export.runtime import VAEDecoder
        import vae_export.web, vae_export.progress, vae_export.manifest, vae_export.reports  # torch-free layers too
        assert "click" not in sys.modules  # only the CLI knows about Click
        images = VAEDecoder({str(exported_dir / 'decoder.onnx')!r}).sample(16, seed=0)
        assert images.shape == (16, 1, 28, 28) and images.dtype.name == "float32"
        assert 0.0 <= images.min() and images.max() <= 1.0
        assert "torch" not in sys.modules
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_decode_equals_raw_session(exported_dir):
    z = np.random.default_rng(0).standard_normal((5, 32)).astype(np.float32)
    raw = ort.InferenceSession(str(exported_dir / "decoder.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(VAEDecoder(exported_dir / "decoder.onnx").decode(z), raw.run(None, {"z": z})[0])


def test_sample_is_seeded(exported_dir):
    decoder = VAEDecoder(exported_dir / "decoder.onnx")
    assert decoder.latent_dim == 32 and decoder.image_shape == (1, 28, 28)
    np.testing.assert_array_equal(decoder.sample(4, seed=1), decoder.sample(4, seed=1))
    assert not np.array_equal(decoder.sample(4, seed=1), decoder.sample(4, seed=2))


def test_interpolation_endpoints(exported_dir):
    decoder = VAEDecoder(exported_dir / "decoder.onnx")
    rng = np.random.default_rng(3)
    z0, z1 = rng.standard_normal(32).astype(np.float32), rng.standard_normal(32).astype(np.float32)
    strip = decoder.interpolate(z0, z1, steps=7)
    assert strip.shape == (7, 1, 28, 28)
    np.testing.assert_allclose(strip[0], decoder.decode(z0[None])[0], atol=1e-6)
    np.testing.assert_allclose(strip[-1], decoder.decode(z1[None])[0], atol=1e-6)
    assert not np.allclose(strip[3], strip[0])


def test_anomaly_scores_noise_above_digits(exported_dir, digits):
    vae = VAE(exported_dir / "encoder.onnx", exported_dir / "decoder.onnx")
    real = digits.test[:32].numpy()
    noise = np.random.default_rng(0).random(real.shape, dtype=np.float32)
    real_scores, noise_scores = vae.anomaly_score(real), vae.anomaly_score(noise)
    assert real_scores.shape == (32,)
    assert noise_scores.min() > real_scores.max()
    recon = vae.reconstruct(real)
    assert recon.shape == real.shape and np.abs(recon - real).mean() < np.abs(noise - real).mean()


def test_encoder_matches_contract(exported_dir, digits):
    mu, logvar = VAEEncoder(exported_dir / "encoder.onnx").encode(digits.test[:3].numpy())
    assert mu.shape == logvar.shape == (3, 32)


def test_wrong_graph_role(exported_dir):
    with pytest.raises(VAEExportError, match="expected a decoder graph z -> x_hat"):
        VAEDecoder(exported_dir / "encoder.onnx")


def test_runtime_sessions_come_from_the_one_factory(exported_dir):
    from vae_export_runtime.session import session_options

    decoder = VAEDecoder(exported_dir / "decoder.onnx")
    options = decoder.session.get_session_options()
    expected = session_options()
    assert options.execution_mode == expected.execution_mode and options.inter_op_num_threads == 1
    assert options.log_severity_level == 4 and decoder.session.get_providers() == ["CPUExecutionProvider"]
