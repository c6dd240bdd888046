"""The reference MLP VAE, its config and its loss.

Encoder and decoder are separate modules so that splitting the model into two graphs needs
no surgery: export takes `model.encoder` and `model.decoder` as they are.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class VAEConfig:
    """Architecture of the reference VAE; stored inside every checkpoint we write."""

    image_shape: tuple[int, int, int] = (1, 28, 28)
    hidden_dim: int = 400
    latent_dim: int = 32

    @property
    def input_dim(self) -> int:
        return math.prod(self.image_shape)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "VAEConfig":
        shape = tuple(int(v) for v in data["image_shape"])
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"image_shape must be 3 positive ints (C, H, W), got {shape}")
        hidden, latent = int(data["hidden_dim"]), int(data["latent_dim"])
        if hidden < 1 or latent < 1:
            raise ValueError(f"hidden_dim and latent_dim must be positive, got {hidden}, {latent}")
        return cls(image_shape=shape, hidden_dim=hidden, latent_dim=latent)  # type: ignore[arg-type]


class Encoder(nn.Module):
    """x [B, C, H, W] -> (mu, logvar), each [B, latent]."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(config.input_dim, config.hidden_dim), nn.ReLU())
        self.fc_mu = nn.Linear(config.hidden_dim, config.latent_dim)
        self.fc_logvar = nn.Linear(config.hidden_dim, config.latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.hidden(x)
        return self.fc_mu(h), self.fc_logvar(h)


class Decoder(nn.Module):
    """z [B, latent] -> x_hat [B, C, H, W], Bernoulli probabilities in [0, 1]."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.image_shape = config.image_shape
        self.hidden = nn.Sequential(nn.Linear(config.latent_dim, config.hidden_dim), nn.ReLU())
        self.out = nn.Linear(config.hidden_dim, config.input_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # Reshape before the sigmoid, not after: in the exported graph the reshape of an
        # intermediate is free, and the sigmoid then writes straight into the caller's output
        # buffer; a trailing Reshape costs a full copy of x_hat (~3.5% at batch 256).
        return torch.sigmoid(self.logits(z))

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        # Training uses logits with BCE-with-logits: same loss as BCE(sigmoid), but stable
        # for saturated pixels, where BCE on probabilities clamps log(0) to -100.
        return self.out(self.hidden(z)).reshape(-1, *self.image_shape)


class VAE(nn.Module):
    def __init__(self, config: VAEConfig = VAEConfig()) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (x_logits, mu, logvar) with one sampled z per image."""
        mu, logvar = self.encoder(x)
        z = reparameterize(mu, logvar, generator)
        return self.decoder.logits(z), mu, logvar


def reparameterize(
    mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """z = mu + eps * exp(0.5 * logvar), eps ~ N(0, I)."""
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    return mu + eps * torch.exp(0.5 * logvar)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per image: -0.5 * sum(1 + logvar - mu^2 - exp(logvar))."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def vae_loss(
    x_logits: torch.Tensor,
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    beta: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed over the batch: (BCE + beta * KL, BCE, KL), in nats.

    BCE is summed over pixels against the continuous pixel values (not binarised). Divide
    by the batch size for nats per image.
    """
    bce = F.binary_cross_entropy_with_logits(x_logits, x, reduction="sum")
    kl = kl_divergence(mu, logvar).sum()
    return bce + beta * kl, bce, kl
