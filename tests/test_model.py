import dataclasses
import math

import pytest
import torch

from vae_export.model import VAE, VAEConfig, kl_divergence, reparameterize, vae_loss


def test_shapes_default_and_custom():
    for config in (VAEConfig(), VAEConfig(image_shape=(3, 8, 6), hidden_dim=16, latent_dim=5)):
        model = VAE(config)
        x = torch.rand(4, *config.image_shape)
        with torch.no_grad():
            mu, logvar = model.encode(x)
            x_hat = model.decode(mu)
        assert mu.shape == logvar.shape == (4, config.latent_dim)
        assert x_hat.shape == (4, *config.image_shape)
        assert float(x_hat.min()) >= 0.0 and float(x_hat.max()) <= 1.0


def test_reference_layers():
    model = VAE()
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(784, 400), (400, 32), (400, 32), (32, 400), (400, 784)]


def test_config_is_frozen_and_round_trips():
    config = VAEConfig(latent_dim=24)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.latent_dim = 3  # type: ignore[misc]
    import json

    assert VAEConfig.from_dict(json.loads(config.to_json())) == config


def test_loss_matches_hand_computation():
    # One image of two pixels, latent size 1, numbers small enough to do by hand.
    x = torch.tensor([[0.0, 1.0]])
    logits = torch.tensor([[0.0, math.log(3.0)]])  # p = 0.5, 0.75
    mu, logvar = torch.tensor([[1.0]]), torch.tensor([[0.0]])
    total, bce, kl = vae_loss(logits, x, mu, logvar, beta=2.0)
    expected_bce = -math.log(0.5) - math.log(0.75)
    expected_kl = -0.5 * (1 + 0.0 - 1.0 - 1.0)  # 0.5
    assert bce.item() == pytest.approx(expected_bce, rel=1e-6)
    assert kl.item() == pytest.approx(expected_kl, rel=1e-6)
    assert total.item() == pytest.approx(expected_bce + 2.0 * expected_kl, rel=1e-6)


def test_kl_zero_at_prior():
    assert kl_divergence(torch.zeros(3, 4), torch.zeros(3, 4)).abs().max().item() == 0.0


def test_reparameterize_is_seeded_and_scaled():
    mu, logvar = torch.full((1000, 2), 3.0), torch.full((1000, 2), math.log(4.0))
    a = reparameterize(mu, logvar, torch.Generator().manual_seed(1))
    b = reparameterize(mu, logvar, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert a.mean().item() == pytest.approx(3.0, abs=0.15)
    assert a.std().item() == pytest.approx(2.0, abs=0.15)
