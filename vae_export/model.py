"""The reference VAEs, their config and their loss.

Two architectures, chosen by `VAEConfig.arch`:
- `mlp`, the seed's: Flatten -> Linear(784, 400) -> ReLU -> {fc_mu, fc_logvar} -> latent 32;
- `conv`, fully convolutional with a spatial latent (`[latent_channels, H/4, W/4]`, so
  `[4, 7, 7]` for 28x28), which runs at any image size that is a multiple of its stride, 4.

Either can be conditional (`num_classes` > 0: q(z|x,y) and p(x|z,y), the one-hot label y fed
to both), and a semi-supervised model (Kingma et al. 2014, M2) adds a classifier q(y|x).

Encoder, decoder and classifier are separate modules so that splitting the model into graphs
needs no surgery: export takes `model.encoder`, `model.decoder` and `model.classifier` as they are.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vae_export.options import ARCHS, CHANNELS, HIDDEN_DIM, LATENT_CHANNELS, LATENT_DIM

CONV_STRIDE = 4  # two stride-2 stages


@dataclass(frozen=True)
class VAEConfig:
    """Architecture of a reference VAE; stored inside every checkpoint we write.

    `hidden_dim` and `latent_dim` size the MLP; `channels` (the first stage's width, doubled
    in the second) and `latent_channels` size the conv architecture."""

    image_shape: tuple[int, int, int] = (1, 28, 28)
    hidden_dim: int = HIDDEN_DIM
    latent_dim: int = LATENT_DIM
    arch: str = "mlp"
    channels: int = CHANNELS
    latent_channels: int = LATENT_CHANNELS
    num_classes: int = 0  # > 0: conditional on a one-hot label y
    classifier: bool = False  # semi-supervised (M2): a classifier q(y|x) too
    class_names: tuple[str, ...] = ()

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    @property
    def latent_shape(self) -> tuple[int, ...]:
        if self.arch == "conv":
            _, h, w = self.image_shape
            return (self.latent_channels, h // CONV_STRIDE, w // CONV_STRIDE)
        return (self.latent_dim,)

    @property
    def input_dim(self) -> int:
        return math.prod(self.image_shape)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "VAEConfig":
        """Checkpoints written before the conv architecture have no `arch`: they are MLPs."""
        shape = tuple(int(v) for v in data["image_shape"])
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"image_shape must be 3 positive ints (C, H, W), got {shape}")
        arch = data.get("arch", "mlp")
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {arch!r}")
        sizes = {k: int(data.get(k, getattr(cls, k))) for k in ("hidden_dim", "latent_dim", "channels", "latent_channels")}
        if min(sizes.values()) < 1:
            raise ValueError(f"sizes must be positive, got {sizes}")
        if arch == "conv" and (shape[1] % CONV_STRIDE or shape[2] % CONV_STRIDE):
            raise ValueError(f"conv image height and width must be multiples of {CONV_STRIDE}, got {shape}")
        classes = int(data.get("num_classes", 0))
        classifier = data.get("classifier", False)
        names = data.get("class_names", [])
        if not 0 <= classes <= 1000 or not isinstance(classifier, bool) or (classifier and not classes):
            raise ValueError(f"num_classes must be 0..1000 (and > 0 for a classifier), got {classes}")
        if not (isinstance(names, list) and all(isinstance(n, str) and len(n) <= 64 for n in names)
                and len(names) in (0, classes)):
            raise ValueError(f"class_names must be {classes} short strings, got {str(names)[:80]}")
        return cls(image_shape=shape, arch=arch, num_classes=classes, classifier=classifier,  # type: ignore[arg-type]
                   class_names=tuple(names), **sizes)


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


class ConvEncoder(nn.Module):
    """x [B, C, H, W] -> (mu, logvar), each [B, latent_channels, H/4, W/4]; H, W multiples of 4.

    Two stride-2 convolutions, then a dilated 3x3 on the 4x-downsampled grid (a wider view at
    no extra cost); measured on MNIST (6 epochs, 1 thread) this reached 114.7 nats where a
    4x4-patch design of the same speed class plateaued near 120."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        c, k = config.channels, config.latent_channels
        self.hidden = nn.Sequential(
            nn.Conv2d(config.image_shape[0], c, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * c, 2 * c, 3, padding=2, dilation=2), nn.ReLU(),
        )
        self.fc_mu = nn.Conv2d(2 * c, k, 3, padding=1)
        self.fc_logvar = nn.Conv2d(2 * c, k, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.hidden(x)
        return self.fc_mu(h), self.fc_logvar(h)


class ConvDecoder(nn.Module):
    """z [B, latent_channels, h, w] -> x_hat [B, C, 4h, 4w], Bernoulli probabilities in [0, 1]:
    the encoder's mirror, with two stride-2 transposed convolutions."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        c, k = config.channels, config.latent_channels
        self.hidden = nn.Sequential(
            nn.Conv2d(k, 2 * c, 3, padding=1), nn.ReLU(),
            nn.Conv2d(2 * c, 2 * c, 3, padding=2, dilation=2), nn.ReLU(),
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1), nn.ReLU(),
        )
        self.out = nn.ConvTranspose2d(c, config.image_shape[0], 4, stride=2, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(z))

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.hidden(z))


class _Conditioned(nn.Module):
    """A first layer fed [input; y], the one-hot label concatenated to the input. For the MLP
    that is one Linear over the concatenation, written as `stem(input) + label(y)` (the same
    function: [x; y] W = x Wx + y Wy), so M2's training computes the input's part once for all
    classes. For the conv architecture the label enters as a per-channel bias of the first
    convolution: what K constant label planes concatenated to the input give away from the
    borders, at any image size."""

    stem: nn.Module
    label: nn.Linear

    def condition(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        bias = self.label(y)
        return h + (bias[:, :, None, None] if h.ndim == 4 else bias)


class CondEncoder(_Conditioned):
    """q(z | x, y): x [B, C, H, W], y [B, K] -> (mu, logvar), shaped as the unconditional encoder's."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        if config.arch == "conv":
            c, k = config.channels, config.latent_channels
            self.stem = nn.Conv2d(config.image_shape[0], c, 4, stride=2, padding=1)
            self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(2 * c, 2 * c, 3, padding=2, dilation=2), nn.ReLU())
            self.fc_mu, self.fc_logvar = nn.Conv2d(2 * c, k, 3, padding=1), nn.Conv2d(2 * c, k, 3, padding=1)
            width = c
        else:
            self.stem = nn.Sequential(nn.Flatten(), nn.Linear(config.input_dim, config.hidden_dim))
            self.body = nn.ReLU()
            self.fc_mu = nn.Linear(config.hidden_dim, config.latent_dim)
            self.fc_logvar = nn.Linear(config.hidden_dim, config.latent_dim)
            width = config.hidden_dim
        self.label = nn.Linear(config.num_classes, width, bias=False)

    def head(self, features: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) from `stem(x)` and y; M2 calls it once per class on the same features."""
        h = self.body(self.condition(features, y))
        return self.fc_mu(h), self.fc_logvar(h)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.stem(x), y)


class CondDecoder(_Conditioned):
    """p(x | z, y): z [B, *latent], y [B, K] -> x_hat [B, C, H, W], Bernoulli probabilities."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.image_shape = config.image_shape
        self.conv = config.arch == "conv"
        if self.conv:
            c, k = config.channels, config.latent_channels
            self.stem = nn.Conv2d(k, 2 * c, 3, padding=1)
            self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(2 * c, 2 * c, 3, padding=2, dilation=2), nn.ReLU(),
                                      nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1), nn.ReLU())
            self.out = nn.ConvTranspose2d(c, config.image_shape[0], 4, stride=2, padding=1)
            width = 2 * c
        else:
            self.stem = nn.Linear(config.latent_dim, config.hidden_dim)
            self.body = nn.ReLU()
            self.out = nn.Linear(config.hidden_dim, config.input_dim)
            width = config.hidden_dim
        self.label = nn.Linear(config.num_classes, width, bias=False)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(z, y))

    def logits(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self.out(self.body(self.condition(self.stem(z), y)))
        return out if self.conv else out.reshape(-1, *self.image_shape)


class Classifier(nn.Module):
    """q(y | x): x [B, C, H, W] -> logits [B, K]. Batch-normalised (M2 trains it on a few labelled
    images per batch beside many unlabelled ones); the conv version pools globally, so it runs at
    any size the conv VAE does."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        k = config.num_classes
        if config.arch == "conv":
            c = config.channels
            self.net = nn.Sequential(
                nn.Conv2d(config.image_shape[0], c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), nn.BatchNorm2d(2 * c), nn.ReLU(),
                nn.Conv2d(2 * c, 4 * c, 4, stride=2, padding=1), nn.BatchNorm2d(4 * c), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * c, k))
        else:
            h = config.hidden_dim
            self.net = nn.Sequential(
                nn.Flatten(), nn.Linear(config.input_dim, h), nn.BatchNorm1d(h), nn.ReLU(),
                nn.Linear(h, h), nn.BatchNorm1d(h), nn.ReLU(), nn.Linear(h, k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class VAE(nn.Module):
    def __init__(self, config: VAEConfig = VAEConfig()) -> None:
        super().__init__()
        self.config = config
        conv = config.arch == "conv"
        if config.conditional:
            self.encoder: nn.Module = CondEncoder(config)
            self.decoder: nn.Module = CondDecoder(config)
        else:
            self.encoder = ConvEncoder(config) if conv else Encoder(config)
            self.decoder = ConvDecoder(config) if conv else Decoder(config)
        if config.classifier:
            self.classifier = Classifier(config)

    def encode(self, x: torch.Tensor, *y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar); conditional models take the label rows y as well."""
        return self.encoder(x, *y)

    def decode(self, z: torch.Tensor, *y: torch.Tensor) -> torch.Tensor:
        return self.decoder(z, *y)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x)

    def forward(
        self, x: torch.Tensor, *y: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (x_logits, mu, logvar) with one sampled z per image."""
        mu, logvar = self.encoder(x, *y)
        z = reparameterize(mu, logvar, generator)
        return self.decoder.logits(z, *y), mu, logvar


def reparameterize(
    mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """z = mu + eps * exp(0.5 * logvar), eps ~ N(0, I)."""
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    return mu + eps * torch.exp(0.5 * logvar)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per image: -0.5 * sum(1 + logvar - mu^2 - exp(logvar)), summed
    over every latent axis (flat or spatial)."""
    terms = 1 + logvar - mu.pow(2) - logvar.exp()
    return -0.5 * terms.reshape(len(terms), -1).sum(dim=1)


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
