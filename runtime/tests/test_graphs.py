"""Every model kind and variant the toolkit exports, run through the runtime alone and held to
PyTorch's own outputs (golden.npz, written by the toolkit at export)."""

from __future__ import annotations

import numpy as np
import pytest

from vae_export_runtime import VAE, VAEClassifier, VAEDecoder, VAEEncoder
from vae_export_runtime.sampling import normal_latents, scaled

FP32_ATOL, FP32_RTOL = 1e-5, 1e-4  # the toolkit's verify defaults
KINDS = ("flat", "conv", "cond", "m2", "kl")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / max(np.mean((a.astype(np.float64) - b) ** 2), 1e-30)))


@pytest.mark.parametrize("kind", KINDS)
def test_fp32_graphs_match_pytorch(root, golden, kind):
    g = golden(kind)
    decoder = VAEDecoder(root / kind / "decoder.onnx")
    np.testing.assert_allclose(decoder.decode(g["decoder.z"], y=g.get("decoder.y")), g["decoder.x_hat"],
                               atol=FP32_ATOL, rtol=FP32_RTOL)
    mu, logvar = VAEEncoder(root / kind / "encoder.onnx").encode(g["encoder.x"], y=g.get("encoder.y"))
    np.testing.assert_allclose(mu, g["encoder.mu"], atol=FP32_ATOL, rtol=FP32_RTOL)
    np.testing.assert_allclose(logvar, g["encoder.logvar"], atol=1e-4, rtol=FP32_RTOL)
    if "classifier.logits" in g:
        classifier = VAEClassifier(root / kind / "classifier.onnx")
        np.testing.assert_allclose(classifier.logits(g["classifier.x"]), g["classifier.logits"], atol=1e-4, rtol=1e-4)
        probs = classifier.classify(g["classifier.x"])
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
        assert np.array_equal(probs.argmax(1), g["classifier.logits"].argmax(1))


@pytest.mark.parametrize("kind, variant, min_db", [("flat", "int8", 30.0), ("cond", "int8", 30.0),
                                                   ("m2", "int8", 30.0), ("flat", "fp16", 60.0),
                                                   ("conv", "fp16", 60.0), ("kl", "fp16-mixed", 60.0)])
def test_reduced_precision_variants_decode_close_to_pytorch(root, golden, kind, variant, min_db):
    g = golden(kind)
    decoder = VAEDecoder(root / kind / f"decoder.{variant}.onnx")
    assert decoder.meta.variant == variant
    assert psnr(decoder.decode(g["decoder.z"], y=g.get("decoder.y")), g["decoder.x_hat"]) >= min_db


def test_ort_format_is_the_fp32_graph(root, golden):
    g = golden("flat")
    decoder = VAEDecoder(root / "flat" / "decoder.ort")
    np.testing.assert_allclose(decoder.decode(g["decoder.z"]), g["decoder.x_hat"], atol=FP32_ATOL, rtol=FP32_RTOL)
    mu, _ = VAEEncoder(root / "flat" / "encoder.ort").encode(g["encoder.x"])
    np.testing.assert_allclose(mu, g["encoder.mu"], atol=FP32_ATOL, rtol=FP32_RTOL)


@pytest.mark.parametrize("kind", ["flat", "conv", "kl"])
def test_sample_is_decode_of_the_portable_latents(root, kind):
    decoder = VAEDecoder(root / kind / "decoder.onnx")
    shape = decoder.latent_shape_for()  # the export size for the symbolic-size graphs
    images = decoder.sample(4, seed=11, temperature=0.8)
    np.testing.assert_array_equal(images, decoder.decode(scaled(normal_latents((4, *shape), 11), 0.8)))
    assert images.shape == (4, *decoder.image_shape[:1], *decoder.default_size)
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert not np.array_equal(images, decoder.sample(4, seed=12, temperature=0.8))


def test_symbolic_sizes_and_tiles(root):
    decoder = VAEDecoder(root / "kl" / "decoder.onnx")
    assert decoder.latent_shape == (4, None, None) and decoder.stride == 2 and decoder.default_size == (64, 64)
    assert decoder.meta.likelihood == "gaussian" and decoder.meta.extras()["native_range"] == "[-1, 1]"
    z = normal_latents((1, 4, 40, 56), 3)
    whole = decoder.decode(z)
    tiled = decoder.decode(z, tile=16)
    assert whole.shape == tiled.shape == (1, 3, 80, 112)
    # tiles blend over their overlap: close to the whole decode, not equal (diffusers' own trade-off)
    assert np.abs(tiled - whole).mean() < 0.05 and not np.array_equal(tiled, whole)
    np.testing.assert_array_equal(decoder.decode(z[:, :, :16, :16], tile=16), decoder.decode(z[:, :, :16, :16]))
    conv = VAEDecoder(root / "conv" / "decoder.onnx")
    assert conv.sample(2, seed=0, size=(32, 48)).shape == (2, 1, 32, 48)


def test_conditional_labels_interpolation_and_scores(root, golden):
    g = golden("cond")
    vae = VAE.open(root / "cond")
    assert vae.classifier is None and vae.num_classes == 10 and vae.decoder.class_names == tuple("0123456789")
    sevens = vae.decoder.sample(3, seed=0, label=7)
    np.testing.assert_allclose(sevens, vae.decoder.decode(normal_latents((3, 8), 0), labels=7), atol=1e-6)
    strip = vae.decoder.interpolate(np.zeros(8), np.zeros(8), steps=4, y0=3, y1=8)
    assert strip.shape == (4, 1, 28, 28)
    np.testing.assert_allclose(strip[0], vae.decoder.decode(np.zeros((1, 8)), labels=3)[0], atol=1e-6)
    x = g["encoder.x"]
    given = vae.anomaly_score(x, labels=[1, 2, 3])
    marginal = vae.anomaly_score(x)
    assert np.all(np.isfinite(given)) and np.all(np.isfinite(marginal))
    # -log p(x) = -log mean_k p(x|k) <= min_k(-log p(x|k)) + log K: the bound this score meets
    per_class = np.stack([vae.anomaly_score(x, labels=k) for k in range(10)], 1)
    assert np.all(marginal <= per_class.min(1) + np.log(10) + 1e-6)


def test_semi_supervised_model_with_its_classifier(root):
    vae = VAE.open(root / "m2")
    assert vae.classifier is not None
    x = np.random.default_rng(1).random((4, 1, 28, 28), dtype=np.float32)
    probs = vae.classify(x)
    assert probs.shape == (4, 10) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    recon = vae.reconstruct(x)  # the class rows: the classifier's q(y | x)
    assert recon.shape == x.shape
    scores = vae.anomaly_score(x, samples=2, seed=3)
    np.testing.assert_array_equal(scores, vae.anomaly_score(x, samples=2, seed=3))


def test_anomaly_score_uses_the_graphs_likelihood(root, golden):
    """Bernoulli for the reference models; gaussian (sigma 0.5 in [0, 1] pixels) for diffusers'."""
    for kind in ("flat", "kl"):
        vae = VAE.open(root / kind)
        x = golden(kind)["encoder.x"][:2]
        mu, logvar = vae.encoder.encode(x)
        eps = np.zeros((1, *mu.shape), np.float32)  # z = mu: the score's likelihood term is exact
        x_hat = vae.decoder.decode(mu).astype(np.float64)
        kl = -0.5 * (1 + logvar - mu.astype(np.float64) ** 2 - np.exp(logvar)).reshape(2, -1).sum(1)
        if kind == "flat":
            p = np.clip(x_hat, 1e-7, 1 - 1e-7)
            nll = -(x * np.log(p) + (1 - x) * np.log1p(-p)).reshape(2, -1).sum(1)
        else:
            nll = (0.5 * ((x - x_hat) / 0.5) ** 2 + np.log(0.5 * np.sqrt(2 * np.pi))).reshape(2, -1).sum(1)
        np.testing.assert_allclose(vae.anomaly_score(x, eps=eps), nll + kl, rtol=1e-6)
