"""What both training loops share (`train.py`, the unsupervised and conditional loop; `semisup.py`,
M2): the training configuration and result, the one-hot condition, and the test-set figure
papers quote."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from vae_export.data import Dataset
from vae_export.model import VAE, VAEConfig, vae_loss
from vae_export.options import BATCH_SIZE, LEARNING_RATE

# Per-dataset epochs when --epochs is not given. MNIST: 40 epochs of one-cycle Adam
# (max lr 3e-3) reach ~100.5 nats in ~2 minutes on 2 cores, where the classic 10 epochs at a
# constant 1e-3 stop at ~105.5. digits has 1,438 training images (12 steps an epoch), so it
# needs more epochs for the same number of steps and still finishes in seconds.
DEFAULT_EPOCHS = {"digits": 100, "mnist": 40, "fashion-mnist": 40}
# Semi-supervised (M2): an epoch is one pass over the unlabelled images with every class's
# ELBO (about 10x an unconditional epoch); 25 epochs on MNIST fit in 10 minutes on 2 cores.
DEFAULT_M2_EPOCHS = {"digits": 100, "mnist": 25, "fashion-mnist": 25}


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 40
    batch_size: int = BATCH_SIZE
    lr: float = LEARNING_RATE  # the one-cycle schedule's peak
    beta: float = 1.0
    seed: int = 0
    labels: int | None = None  # semi-supervised (M2): labelled training images, balanced per class


@dataclass
class TrainResult:
    model: VAE
    metrics: dict[str, Any] = field(default_factory=dict)


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return F.one_hot(labels, num_classes).to(torch.float32)


def condition(model: VAE, labels: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """The extra inputs of a conditional model: (one-hot y,); () for an unconditional one."""
    if not model.config.conditional:
        return ()
    assert labels is not None, "a conditional model needs labels"
    return (one_hot(labels, model.config.num_classes),)


@torch.inference_mode()
def negative_elbo(model: VAE, images: torch.Tensor, seed: int = 0, batch_size: int = 1000,
                  labels: torch.Tensor | None = None) -> float:
    """Test figure in nats per image: BCE (continuous targets, summed over pixels) + KL.

    One sampled z per image (z = mu + eps * sigma, not z = mu) and KL weight 1 whatever beta
    training used: the negative ELBO that papers and the PyTorch examples quote. For a
    conditional model it is the bound on -log p(x | y) with the true labels.
    """
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    total = 0.0
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size]
        y = condition(model, None if labels is None else labels[start : start + batch_size])
        logits, mu, logvar = model(x, *y, generator=generator)
        total += vae_loss(logits, x, mu, logvar, beta=1.0)[0].item()
    return total / len(images)


def base_metrics(dataset: Dataset, model_config: VAEConfig, config: TrainConfig, history: list[dict[str, Any]],
                 final_test_loss: float, started: float) -> dict[str, Any]:
    """train_metrics.json's common part (docs/contract.md describes `final_test_loss`)."""
    definition = ("negative ELBO in nats per image on the test split: BCE against continuous pixels "
                  "summed over pixels + KL (weight 1), one sampled z per image")
    if model_config.conditional:
        definition += "; conditional: the bound on -log p(x | y) with the true test labels"
    return {
        "dataset": dataset.name,
        "train_images": len(dataset.train),
        "test_images": len(dataset.test),
        "model_config": asdict(model_config),
        "train_config": asdict(config),
        "epochs": history,
        "final_test_loss": final_test_loss,
        "final_test_loss_definition": definition,
        "wall_time_s": time.perf_counter() - started,
        "torch_threads": torch.get_num_threads(),
    }
