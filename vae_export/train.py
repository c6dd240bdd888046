"""Training the reference VAE, and the test-set figure papers quote."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from vae_export.data import Dataset
from vae_export.model import VAE, VAEConfig, vae_loss

# Per-dataset epochs when --epochs is not given. MNIST: 40 epochs of one-cycle Adam
# (max lr 3e-3) reach ~100.5 nats in ~2 minutes on 2 cores, where the classic 10 epochs at a
# constant 1e-3 stop at ~105.5. digits has 1,438 training images (12 steps an epoch), so it
# needs more epochs for the same number of steps and still finishes in seconds.
DEFAULT_EPOCHS = {"digits": 100, "mnist": 40, "fashion-mnist": 40}


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 40
    batch_size: int = 128
    lr: float = 3e-3  # the one-cycle schedule's peak
    beta: float = 1.0
    seed: int = 0


@dataclass
class TrainResult:
    model: VAE
    metrics: dict[str, Any] = field(default_factory=dict)


@torch.inference_mode()
def negative_elbo(model: VAE, images: torch.Tensor, seed: int = 0, batch_size: int = 1000) -> float:
    """Test figure in nats per image: BCE (continuous targets, summed over pixels) + KL.

    One sampled z per image (z = mu + eps * sigma, not z = mu) and KL weight 1 whatever beta
    training used: the negative ELBO that papers and the PyTorch examples quote.
    """
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    total = 0.0
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size]
        logits, mu, logvar = model(x, generator)
        total += vae_loss(logits, x, mu, logvar, beta=1.0)[0].item()
    return total / len(images)


def train(
    dataset: Dataset,
    model_config: VAEConfig = VAEConfig(),
    config: TrainConfig = TrainConfig(),
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Adam with a one-cycle learning rate; deterministic for a seed on a given machine."""
    torch.manual_seed(config.seed)
    model = VAE(model_config)
    # fused: one kernel per step for all parameters, ~20% faster steps on CPU than foreach
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, fused=True)
    n = len(dataset.train)
    steps_per_epoch = (n + config.batch_size - 1) // config.batch_size
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch
    )
    shuffle = torch.Generator().manual_seed(config.seed)
    history: list[dict[str, Any]] = []
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        model.train()
        epoch_start = time.perf_counter()
        order = torch.randperm(n, generator=shuffle)
        total = 0.0
        for start in range(0, n, config.batch_size):
            x = dataset.train[order[start : start + config.batch_size]]
            logits, mu, logvar = model(x)
            loss, _, _ = vae_loss(logits, x, mu, logvar, beta=config.beta)
            optimizer.zero_grad(set_to_none=True)
            (loss / len(x)).backward()
            optimizer.step()
            scheduler.step()
            total += loss.item()
        row = {
            "epoch": epoch,
            "train_loss": total / n,
            "test_loss": negative_elbo(model, dataset.test, seed=config.seed),
            "seconds": time.perf_counter() - epoch_start,
        }
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
    model.eval()
    metrics = {
        "dataset": dataset.name,
        "train_images": n,
        "test_images": len(dataset.test),
        "model_config": asdict(model_config),
        "train_config": asdict(config),
        "epochs": history,
        "final_test_loss": history[-1]["test_loss"] if history else negative_elbo(model, dataset.test, config.seed),
        "final_test_loss_definition": (
            "negative ELBO in nats per image on the test split: BCE against continuous pixels "
            "summed over pixels + KL (weight 1), one sampled z per image"
        ),
        "wall_time_s": time.perf_counter() - started,
        "torch_threads": torch.get_num_threads(),
    }
    return TrainResult(model=model, metrics=metrics)
