import json

import torch

from vae_export.cli import main
from vae_export.data import Dataset
from vae_export.train import train
from vae_export.training import TrainConfig, negative_elbo


def small(digits, n=256):
    return Dataset("digits", train=digits.train[:n], test=digits.test[:64])


def test_loss_decreases_on_small_subset(digits):
    result = train(small(digits), config=TrainConfig(epochs=8, seed=0))
    losses = [row["train_loss"] for row in result.metrics["epochs"]]
    assert losses[-1] < 0.8 * losses[0]
    assert result.metrics["final_test_loss"] == result.metrics["epochs"][-1]["test_loss"]


def test_deterministic_for_seed(digits):
    a = train(small(digits), config=TrainConfig(epochs=2, seed=3)).model.state_dict()
    b = train(small(digits), config=TrainConfig(epochs=2, seed=3)).model.state_dict()
    c = train(small(digits), config=TrainConfig(epochs=2, seed=4)).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_negative_elbo_uses_sampled_z_and_kl_weight_one(trained, digits):
    x = digits.test[:100]
    a = negative_elbo(trained, x, seed=0)
    assert a == negative_elbo(trained, x, seed=0)
    assert a != negative_elbo(trained, x, seed=1)  # one sampled z per image, not z = mu
    assert 50.0 < a < 400.0


def test_train_cli_writes_checkpoint_and_metrics(tmp_path, runner):
    result = runner.invoke(main, ["train", "--artifacts", str(tmp_path), "--epochs", "2", "--latent-dim", "8",
                                  "--hidden-dim", "32", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "final test loss" in result.output
    metrics = json.loads((tmp_path / "train_metrics.json").read_text())
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2]
    assert metrics["dataset"] == "digits" and metrics["model_config"]["latent_dim"] == 8
    assert metrics["final_test_loss"] > 0 and metrics["wall_time_s"] > 0
    assert (tmp_path / "vae.safetensors").stat().st_size > 0
    # not a terminal: no progress lines
    assert "epoch" not in result.output.replace("epochs", "")
