"""Conditional generation and semi-supervised learning (M2): training, the three graphs, every
stage over them, the torch-free runtime's labels, and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest
import torch

from tests.conftest import one_line_error, write_idx_dir
from vae_export.families import load_model
from vae_export.cli import main
from vae_export.inputs import label_rows
from vae_export.manifest import Manifest
from vae_export.model import VAEConfig, kl_divergence
from vae_export.runtime import VAE, RuntimeInputError, VAEClassifier, VAEDecoder, VAEEncoder
from vae_export.semisup import pick_labelled
from vae_export.train import train
from vae_export_runtime.sampling import normal_latents, scaled
from vae_export.training import TrainConfig


# ---- training -----------------------------------------------------------------------------

def test_conditional_model_has_lower_test_loss_than_unconditional(digits, trained):
    """The label carries information about the image, so -log p(x | y) < -log p(x): with the same
    recipe the conditional bound must come out lower."""
    from vae_export.training import negative_elbo

    config = VAEConfig(num_classes=10, class_names=digits.class_names)
    conditional = train(digits, config, TrainConfig(epochs=30, seed=0))
    unconditional = negative_elbo(trained, digits.test)
    assert conditional.metrics["final_test_loss"] < unconditional - 1.0
    assert "true test labels" in conditional.metrics["final_test_loss_definition"]
    assert conditional.metrics["model_config"]["num_classes"] == 10


def test_m2_learns_a_classifier_from_few_labels(m2_model):
    metrics = m2_model.metrics
    assert metrics["labelled_images"] == 100
    # 10 per class on 1,438 digits: far better than chance (90 % error); both figures measured
    assert metrics["test_error"] < 0.25
    assert 0.0 < metrics["baseline_test_error"] < 0.9
    assert [row["epoch"] for row in metrics["epochs"]] == list(range(1, 21))
    assert all(0.0 <= row["test_error"] <= 1.0 for row in metrics["epochs"])
    assert metrics["final_test_loss"] == metrics["epochs"][-1]["test_loss"]


def test_labelled_images_are_balanced_and_chosen_by_seed(digits):
    picked = pick_labelled(digits.train_labels, 50, 10, seed=3)
    counts = np.bincount(digits.train_labels[picked].numpy(), minlength=10)
    assert counts.tolist() == [5] * 10
    assert len(set(picked.tolist())) == 50
    assert torch.equal(picked, pick_labelled(digits.train_labels, 50, 10, seed=3))
    assert not torch.equal(picked, pick_labelled(digits.train_labels, 50, 10, seed=4))


# ---- the graphs ----------------------------------------------------------------------------

def test_export_writes_three_graphs_with_y_and_classes(m2_dir):
    manifest = Manifest.read(m2_dir)
    assert sorted(e.file for e in manifest.artifacts) == ["classifier.onnx", "decoder.onnx", "encoder.onnx"]
    g = manifest.model.geometry
    assert (g.num_classes, g.classifier) == (10, True)
    for name, inputs, outputs in (("encoder", ["x", "y"], ["mu", "logvar"]), ("decoder", ["z", "y"], ["x_hat"]),
                                  ("classifier", ["x"], ["logits"])):
        model = onnx.load(str(m2_dir / f"{name}.onnx"))
        assert [i.name for i in model.graph.input] == inputs
        assert [o.name for o in model.graph.output] == outputs
        meta = {p.key: p.value for p in model.metadata_props}
        assert meta["vae_export.num_classes"] == "10"
        assert json.loads(meta["vae_export.class_names"]) == [str(d) for d in range(10)]
        if "y" in inputs:
            dims = model.graph.input[1].type.tensor_type.shape.dim
            assert (dims[0].dim_param, dims[1].dim_value) == ("batch", 10)
    logits = onnx.load(str(m2_dir / "classifier.onnx")).graph.output[0].type.tensor_type.shape.dim
    assert (logits[0].dim_param, logits[1].dim_value) == ("batch", 10)


def test_graphs_match_pytorch_at_any_batch(m2_dir, m2_model):
    model = m2_model.model.eval()
    decoder, encoder = VAEDecoder(m2_dir / "decoder.onnx"), VAEEncoder(m2_dir / "encoder.onnx")
    classifier = VAEClassifier(m2_dir / "classifier.onnx")
    for batch in (1, 3, 257):
        z = np.random.default_rng(batch).standard_normal((batch, 32)).astype(np.float32)
        y = label_rows(batch, 10)
        with torch.inference_mode():
            want = model.decode(torch.from_numpy(z), torch.from_numpy(y)).numpy()
            x = want
            mu_want, _ = model.encode(torch.from_numpy(x), torch.from_numpy(y))
            logits_want = model.classify(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(decoder.decode(z, y), want, atol=1e-5, rtol=1e-4)
        np.testing.assert_allclose(encoder.encode(x, y)[0], mu_want.numpy(), atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(classifier.logits(x), logits_want, atol=1e-4, rtol=1e-4)


def test_verify_covers_every_graph_with_mixed_labels(m2_dir, tmp_path, runner):
    report_path = tmp_path / "verify.json"
    artifacts = tmp_path / "a"
    import shutil

    shutil.copytree(m2_dir, artifacts)
    result = runner.invoke(main, ["verify", "--artifacts", str(artifacts), "--json", str(report_path),
                                  "--batch-sizes", "1,7"])
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert report["passed"] is True
    assert "every third row an even mix" in report["inputs"]["y"]
    graphs = {(c["graph"], c["output"]) for c in report["checks"]}
    assert graphs == {("encoder", "mu"), ("encoder", "logvar"), ("decoder", "x_hat"), ("classifier", "logits")}
    for row in report["checks"]:
        if row["graph"] == "classifier":
            assert row["argmax_agreement"] == 1.0 and row["gated_on"] == "atol/rtol"
        else:
            assert "argmax_agreement" not in row


def test_reduced_variants_of_all_three_graphs_verify(m2_dir, tmp_path, runner):
    import shutil

    artifacts = tmp_path / "a"
    shutil.copytree(m2_dir, artifacts)
    result = runner.invoke(main, ["export", "--artifacts", str(artifacts), "--variant", "int8", "--variant", "fp16",
                                  "--variant", "int8-static"])
    assert result.exit_code == 0, result.output
    files = {e.file for e in Manifest.read(artifacts).artifacts}
    assert {"classifier.int8.onnx", "classifier.fp16.onnx", "classifier.int8-static.onnx",
            "decoder.int8-static.onnx", "encoder.fp16.onnx"} <= files
    report_path = tmp_path / "verify.json"
    result = runner.invoke(main, ["verify", "--artifacts", str(artifacts), "--batch-sizes", "64",
                                  "--json", str(report_path)])
    assert result.exit_code == 0, result.output
    rows = [r for r in json.loads(report_path.read_text())["checks"] if r["graph"] == "classifier"
            and r["variant"] != "fp32"]
    assert rows and all(r["gated_on"] == "argmax" and r["argmax_agreement"] >= 0.9 for r in rows)


def test_bench_times_all_three_graphs(m2_dir, tmp_path, runner):
    report_path = tmp_path / "bench.json"
    result = runner.invoke(main, ["bench", "--artifacts", str(m2_dir), "--batch-sizes", "1,8", "--iterations", "5",
                                  "--warmup", "1", "--rounds", "2", "--no-peers", "--json", str(report_path)])
    assert result.exit_code == 0, result.output
    rows = json.loads(report_path.read_text())["results"]
    assert {(r["graph"], r["engine"]) for r in rows} == {
        (g, e) for g in ("encoder", "decoder", "classifier") for e in ("onnxruntime", "torch")}
    assert all(r["p50_ms"] > 0 for r in rows)


def test_conditional_conv_runs_at_several_sizes(cond_conv_dir, runner):
    result = runner.invoke(main, ["verify", "--artifacts", str(cond_conv_dir), "--batch-sizes", "2"])
    assert result.exit_code == 0, result.output
    decoder = VAEDecoder(cond_conv_dir / "decoder.onnx")
    assert decoder.num_classes == 10 and decoder.latent_shape == (4, None, None)
    images = decoder.sample(3, seed=0, size=(32, 48), labels=[1, 2, 3])
    assert images.shape == (3, 1, 32, 48) and 0.0 <= images.min() and images.max() <= 1.0


def test_user_conditional_class_exports_with_classifier(tmp_path, runner, monkeypatch):
    (tmp_path / "cond_user.py").write_text('''
import torch
from torch import nn

class Model(nn.Module):
    num_classes = 3
    class_names = ["a", "b", "c"]

    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(16 + 3, 8)
        self.dec = nn.Linear(4 + 3, 16)
        self.cls = nn.Linear(16, 3)

    def encode(self, x, y):
        h = self.enc(torch.cat([x.flatten(1), y], 1))
        return h[:, :4], h[:, 4:]

    def decode(self, z, y):
        return torch.sigmoid(self.dec(torch.cat([z, y], 1))).reshape(-1, 1, 4, 4)

    def classify(self, x):
        return self.cls(x.flatten(1))
''')
    from safetensors.torch import save_file

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import cond_user

    save_file(cond_user.Model().state_dict(), str(tmp_path / "user.safetensors"))
    args = ["--artifacts", str(tmp_path / "a"), "--model", "cond_user:Model", "--checkpoint",
            str(tmp_path / "user.safetensors"), "--image-shape", "1,4,4"]
    result = runner.invoke(main, ["export", *args])
    assert result.exit_code == 0, result.output
    loaded = load_model(tmp_path / "user.safetensors", "cond_user:Model", (1, 4, 4))
    assert loaded.class_names == ("a", "b", "c") and loaded.geometry.latent_shape == (4,)
    result = runner.invoke(main, ["verify", *args])
    assert result.exit_code == 0, result.output
    assert VAEClassifier(tmp_path / "a" / "classifier.onnx").classify(np.zeros((2, 1, 4, 4))).shape == (2, 3)


# ---- the runtime ---------------------------------------------------------------------------

def test_sample_takes_labels_and_temperature(m2_dir, m2_model):
    decoder = VAEDecoder(m2_dir / "decoder.onnx")
    assert decoder.num_classes == 10 and decoder.class_names == tuple(str(d) for d in range(10))
    sevens = decoder.sample(4, seed=5, label=7, temperature=0.5)
    z = scaled(normal_latents((4, 32), 5), 0.5)  # the portable generator (docs/contract.md)
    np.testing.assert_allclose(sevens, decoder.decode(z, labels=7), atol=1e-6)
    mixed = decoder.sample(3, seed=1, labels=[0, 4, 9])
    with torch.inference_mode():
        z = normal_latents((3, 32), 1)
        want = m2_model.model.decode(torch.from_numpy(z), torch.eye(10)[[0, 4, 9]]).numpy()
    np.testing.assert_allclose(mixed, want, atol=1e-5)


def test_class_interpolation_mixes_the_rows(m2_dir):
    decoder = VAEDecoder(m2_dir / "decoder.onnx")
    z = np.random.default_rng(0).standard_normal(32).astype(np.float32)
    strip = decoder.interpolate(z, z, steps=5, y0=3, y1=8)
    rows = np.zeros((5, 10), np.float32)
    rows[:, 3], rows[:, 8] = np.linspace(1, 0, 5), np.linspace(0, 1, 5)
    np.testing.assert_allclose(strip, decoder.decode(np.tile(z, (5, 1)), y=rows), atol=1e-6)
    assert np.abs(strip[0] - strip[-1]).max() > 0.1  # the class changes the picture


def test_classify_returns_probabilities_that_match_pytorch(m2_dir, m2_model, digits):
    vae = VAE(m2_dir / "encoder.onnx", m2_dir / "decoder.onnx", classifier_path=m2_dir / "classifier.onnx")
    x = digits.test[:50].numpy()
    probs = vae.classify(x)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    with torch.inference_mode():
        want = torch.softmax(m2_model.model.classify(torch.from_numpy(x)), 1).numpy()
    np.testing.assert_allclose(probs, want, atol=1e-4)
    assert np.mean(probs.argmax(1) == digits.test_labels[:50].numpy()) > 0.7


def test_anomaly_score_with_labels_is_the_conditional_elbo(m2_dir, m2_model, digits):
    vae = VAE(m2_dir / "encoder.onnx", m2_dir / "decoder.onnx")
    x, labels = digits.test[:8].numpy(), digits.test_labels[:8].numpy()
    eps = np.random.default_rng(0).standard_normal((1, 8, 32)).astype(np.float32)
    got = vae.anomaly_score(x, eps=eps, labels=labels)
    with torch.inference_mode():
        y = torch.eye(10)[labels]
        mu, logvar = m2_model.model.encode(torch.from_numpy(x), y)
        z = mu + torch.from_numpy(eps[0]) * torch.exp(0.5 * logvar)
        p = m2_model.model.decode(z, y).clamp(1e-7, 1 - 1e-7).double()
        xt = torch.from_numpy(x).double()
        nll = -(xt * p.log() + (1 - xt) * (1 - p).log()).flatten(1).sum(1)
        want = (nll + kl_divergence(mu, logvar).double()).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4)


def test_marginal_anomaly_score_bounds(m2_dir, digits):
    """Without labels: the exact marginal over a uniform p(y) lies between the best class's bound
    and that plus log K; M2's classifier-weighted bound is never below it (the exact one is the
    tightest bound of that form)."""
    x = digits.test[:8].numpy()
    plain = VAE(m2_dir / "encoder.onnx", m2_dir / "decoder.onnx")
    with_classifier = VAE(m2_dir / "encoder.onnx", m2_dir / "decoder.onnx", classifier_path=m2_dir / "classifier.onnx")
    per_class = np.stack([plain.anomaly_score(x, labels=k) for k in range(10)], 1)
    marginal = plain.anomaly_score(x)
    assert np.all(marginal >= per_class.min(1) - 1e-6)
    assert np.all(marginal <= per_class.min(1) + math.log(10) + 1e-6)
    assert np.all(with_classifier.anomaly_score(x) >= marginal - 1e-6)


@pytest.mark.parametrize("call, message", [
    (lambda d: d.sample(2), "labels: this graph is conditional on 10 classes"),
    (lambda d: d.sample(2, label=10), "labels: expected class indices 0..9, found 10..10"),
    (lambda d: d.sample(2, label=-1), "labels: expected class indices 0..9, found -1..-1"),
    (lambda d: d.sample(2, labels=[1, 2, 3]), "labels: expected one class index or 2 of them"),
    (lambda d: d.sample(2, label=1.5), "labels: expected class indices 0..9, found float64"),
    (lambda d: d.decode(np.zeros((2, 32)), y=np.ones((2, 9)) / 9), "y: expected shape [2, 10]"),
    (lambda d: d.decode(np.zeros((2, 32)), y=np.ones((2, 10))), "y: each row must sum to 1"),
    (lambda d: d.decode(np.zeros((2, 32)), y=np.full((2, 10), np.nan)), "y: expected finite class weights"),
    (lambda d: d.decode(np.zeros((2, 32)), y=label_rows(2, 10), labels=1), "one of them"),
    (lambda d: d.sample(2, label=1, labels=[1, 2]), "not both"),
    (lambda d: d.sample(2, label=1, temperature=0), "temperature: expected a number in (0, 10]"),
    (lambda d: d.interpolate(np.zeros(32), np.zeros(32)), "y0: this decoder is conditional"),
    (lambda d: d.interpolate(np.zeros(32), np.zeros(32), y0=np.ones(10)), "y0: each row must sum to 1"),
])
def test_runtime_refuses_bad_labels(m2_dir, call, message):
    with pytest.raises(RuntimeInputError, match=None) as info:
        call(VAEDecoder(m2_dir / "decoder.onnx"))
    assert message in str(info.value)


def test_unconditional_graphs_refuse_a_class(exported_dir):
    decoder = VAEDecoder(exported_dir / "decoder.onnx")
    with pytest.raises(RuntimeInputError, match="labels: this graph is not conditional"):
        decoder.sample(2, label=1)
    with pytest.raises(RuntimeInputError, match="y: this graph is not conditional"):
        decoder.interpolate(np.zeros(32), np.ones(32), y0=1)


def test_ort_refuses_a_conditional_graph_without_y(m2_dir):
    """The graph itself needs y: an app that feeds only z gets ONNX Runtime's refusal."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(m2_dir / "decoder.onnx"), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="y"):
        session.run(None, {"z": np.zeros((1, 32), np.float32)})


# ---- CLI -----------------------------------------------------------------------------------

def test_sample_per_class_and_label(m2_dir, tmp_path, runner):
    from PIL import Image

    out = tmp_path / "grid.png"
    result = runner.invoke(main, ["sample", "--artifacts", str(m2_dir), "-n", "6", "--per-class", "--temperature",
                                  "0.5", "--output", str(out)])
    assert result.exit_code == 0, result.output
    # 10 rows of 6 tiles of 28 px, 2 px gaps, scaled 2x
    assert Image.open(out).size == (2 * (6 * 30 + 2), 2 * (10 * 30 + 2))
    result = runner.invoke(main, ["sample", "--artifacts", str(m2_dir), "-n", "4", "--label", "3",
                                  "--output", str(out)])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("args, fragments", [
    (["--label", "10"], ("--label 10", "0..9")),
    ([], ("--label", "conditional on 10 classes")),
    (["--label", "1", "--per-class"], ("--label or --per-class",)),
])
def test_sample_refuses_bad_class_options(m2_dir, runner, args, fragments, tmp_path):
    result = runner.invoke(main, ["sample", "--artifacts", str(m2_dir), "--output", str(tmp_path / "x.png"), *args])
    assert result.exit_code == 2
    one_line_error(result, *fragments)
    assert not (tmp_path / "x.png").exists()


def test_sample_refuses_a_class_for_an_unconditional_decoder(exported_dir, runner, tmp_path):
    result = runner.invoke(main, ["sample", "--artifacts", str(exported_dir), "--per-class",
                                  "--output", str(tmp_path / "x.png")])
    assert result.exit_code == 2
    one_line_error(result, "--per-class", "not conditional")


@pytest.mark.parametrize("labels, fragments", [
    ("95", ("--labels 95", "multiple of the 10 classes")),
    ("5000", ("--labels 5000", "fewer than the 1438 training images")),
])
def test_train_refuses_bad_label_counts(runner, tmp_path, labels, fragments):
    result = runner.invoke(main, ["train", "--artifacts", str(tmp_path), "--labels", labels, "--epochs", "1"])
    assert result.exit_code == 2
    one_line_error(result, *fragments)
    assert not (tmp_path / "vae.safetensors").exists()


@pytest.mark.parametrize("option", [["--conditional"], ["--labels", "10"]])
def test_train_refuses_labels_on_a_dataset_without_them(runner, tmp_path, option):
    data = tmp_path / "data"
    data.mkdir()
    write_idx_dir(data, n_train=20, n_test=5)
    for path in data.glob("*labels*"):
        path.unlink()
    result = runner.invoke(main, ["train", "--artifacts", str(tmp_path / "a"), "--dataset", "mnist",
                                  "--data-dir", str(data), "--epochs", "1", *option])
    assert result.exit_code == 2
    one_line_error(result, option[0], "has no labels")
    # and the same images train an unconditional model
    result = runner.invoke(main, ["train", "--artifacts", str(tmp_path / "a"), "--dataset", "mnist",
                                  "--data-dir", str(data), "--epochs", "1", "--quiet"])
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_run_conditional_draws_class_pictures(tmp_path, runner):
    result = runner.invoke(main, ["run", "--artifacts", str(tmp_path), "--conditional", "--epochs", "5", "--quiet"])
    assert result.exit_code == 0, result.output
    for name in ("classes.png", "class_interpolation.png", "samples.png", "reconstructions.png"):
        assert (tmp_path / name).stat().st_size > 500
    assert json.loads((tmp_path / "train_metrics.json").read_text())["model_config"]["num_classes"] == 10


@pytest.mark.parametrize("command", [["encode", "{input}", "--output", "{out}.parquet"],
                                     ["generate", "-n", "4", "--output", "{out}.parquet"],
                                     ["serve", "--port", "1"]])
def test_scale_commands_without_labels_refuse_conditional_models(m2_dir, runner, tmp_path, command):
    pytest.importorskip("ray")
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 1, 28, 28), np.float32))
    args = [a.format(input=x, out=tmp_path / "out") for a in command]
    result = runner.invoke(main, [*args, "--artifacts", str(m2_dir)])
    assert result.exit_code == 2
    one_line_error(result, command[0], "conditional model (10 classes)", "takes no labels")
    assert not list(tmp_path.glob("out*"))


def test_score_marginalises_a_conditional_model(m2_dir, runner, tmp_path, digits):
    pytest.importorskip("ray")
    x = tmp_path / "x.npy"
    np.save(x, digits.test[:4].numpy())
    out = tmp_path / "scores.parquet"
    result = runner.invoke(main, ["score", str(x), "--output", str(out), "--artifacts", str(m2_dir), "--quiet"])
    assert result.exit_code == 0, result.output
    import pyarrow.parquet as pq

    from vae_export.scale.noise import SCORE_STREAM, normal_rows

    scores = pq.read_table(out).column("score").to_numpy()
    eps = normal_rows(0, np.arange(4), 32, SCORE_STREAM)[None]  # the job's per-row draws for --seed 0
    want = VAE(m2_dir / "encoder.onnx", m2_dir / "decoder.onnx").anomaly_score(digits.test[:4].numpy(), eps=eps)
    np.testing.assert_allclose(scores, want, rtol=1e-4)


def test_against_compares_every_graph_of_a_conditional_model(m2_dir, exported_dir, runner, tmp_path):
    small = ["--batch-sizes", "1", "--rounds", "6", "--sessions", "6", "--iterations", "5", "--warmup", "2"]
    result = runner.invoke(main, ["bench", "--artifacts", str(m2_dir), "--against", str(m2_dir), *small,
                                  "--json", str(tmp_path / "ab.json")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "ab.json").read_text())["results"]
    assert [r["graph"] for r in rows] == ["encoder", "decoder", "classifier"]
    # an unconditional model's graphs are not comparable with a conditional one's
    result = runner.invoke(main, ["bench", "--artifacts", str(m2_dir), "--against", str(exported_dir), *small])
    assert result.exit_code == 2
    one_line_error(result, "model num_classes is 0", "cannot be compared")
