"""Semi-supervised training: Kingma et al. 2014 ("Semi-Supervised Learning with Deep Generative
Models"), model M2.

N labelled training images (balanced per class, chosen by the seed), the rest without labels.
Every step mixes a labelled batch and an unlabelled batch:

- labelled (x, y): the conditional negative ELBO L(x, y) = BCE + beta * KL, plus alpha times the
  classifier's cross-entropy -log q(y | x) (the classifier would otherwise learn only from the
  unlabelled term);
- unlabelled x: U(x) = sum_y q(y | x) L(x, y) - H(q(y | x)), marginalising over the classes.

The classifier is batch-normalised and sees both halves of the batch in one call, so its
statistics are those of the mixture it is evaluated on. The figure that shows the unlabelled
data helped, `baseline_test_error`, comes from the same classifier architecture trained on the
same N labelled images alone for the same number of steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from vae_export.data import Dataset
from vae_export.errors import UsageError
from vae_export.model import VAE, Classifier, VAEConfig, kl_divergence, reparameterize
from vae_export.training import TrainConfig, TrainResult, base_metrics, negative_elbo, one_hot

LABELLED_BATCH = 100
# Weight of the labelled images' mean cross-entropy against the batch's mean ELBO. Measured on
# MNIST (benchmarks/RESULTS.md, "Semi-supervised"): 100 labels, 30 epochs: alpha 10 -> 8.4 %
# (at 17 epochs), 50 -> 7.9 % (24), 200 -> 6.7 %; 1,000 labels, 20 epochs: 50 -> 5.2 %, 200 -> 4.7 %.
ALPHA = 200.0


def pick_labelled(labels: torch.Tensor, count: int, num_classes: int, seed: int) -> torch.Tensor:
    """Indices of `count` training images, `count / num_classes` of each class, chosen by seed."""
    if count % num_classes:
        raise UsageError(f"--labels {count}: expected a multiple of the {num_classes} classes "
                         "(the labelled images are balanced per class)")
    per_class = count // num_classes
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for k in range(num_classes):
        members = torch.nonzero(labels == k).flatten()
        if len(members) < per_class:
            raise UsageError(f"--labels {count}: needs {per_class} images of class {k}, the training split "
                             f"has {len(members)}")
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(chosen)


def _elbo_terms(model: VAE, features: torch.Tensor, x: torch.Tensor, y: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-image conditional negative ELBO (BCE + beta * KL) from the encoder's stem features."""
    mu, logvar = model.encoder.head(features, y)
    logits = model.decoder.logits(reparameterize(mu, logvar), y)
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    return bce + beta * kl_divergence(mu, logvar)


def _unlabelled(model: VAE, x: torch.Tensor, class_logits: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-image U(x) = sum_y q(y|x) L(x, y) - H(q(y|x)); the encoder's first layer runs once."""
    k, b = model.config.num_classes, len(x)
    features = model.encoder.stem(x)
    expand = (k,) + (1,) * (features.ndim - 1)
    y = torch.eye(k).repeat_interleave(b, dim=0)  # class-major: rows j*b .. (j+1)*b-1 have class j
    losses = _elbo_terms(model, features.repeat(expand), x.repeat(k, 1, 1, 1), y, beta).view(k, b).T
    log_q = F.log_softmax(class_logits, dim=1)
    q = log_q.exp()
    return (q * losses).sum(1) + (q * log_q).sum(1)


@torch.inference_mode()
def test_error(classifier: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 2000) -> float:
    """Fraction of the images the classifier gets wrong (eval mode: batch norm's running stats)."""
    classifier.eval()
    wrong = 0
    for start in range(0, len(images), batch_size):
        predicted = classifier(images[start : start + batch_size]).argmax(1)
        wrong += int((predicted != labels[start : start + batch_size]).sum())
    return wrong / len(images)


def _baseline(model_config: VAEConfig, x: torch.Tensor, y: torch.Tensor, steps: int, config: TrainConfig) -> Classifier:
    """The same classifier architecture on the labelled images alone, same steps and optimiser."""
    torch.manual_seed(config.seed)
    classifier = Classifier(model_config)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=config.lr, fused=True)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=max(steps, 1))
    generator = torch.Generator().manual_seed(config.seed + 1)
    classifier.train()
    for _ in range(steps):
        pick = torch.randint(len(x), (min(LABELLED_BATCH, len(x)),), generator=generator)
        loss = F.cross_entropy(classifier(x[pick]), y[pick])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    return classifier


def train_m2(
    dataset: Dataset,
    model_config: VAEConfig,
    config: TrainConfig,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """M2 with `config.labels` labelled images; an epoch is one pass over the unlabelled ones."""
    if dataset.train_labels is None or dataset.test_labels is None:
        raise UsageError(f"--labels: dataset {dataset.name!r} has no labels")
    count = config.labels or 0
    if not 0 < count < len(dataset.train):
        raise UsageError(f"--labels {count}: expected 1..{len(dataset.train) - 1} (fewer than the "
                         f"{len(dataset.train)} training images, so some stay unlabelled)")
    k = model_config.num_classes
    labelled = pick_labelled(dataset.train_labels, count, k, config.seed)
    unlabelled_mask = torch.ones(len(dataset.train), dtype=torch.bool)
    unlabelled_mask[labelled] = False
    x_l, y_l = dataset.train[labelled], dataset.train_labels[labelled]
    x_u = dataset.train[unlabelled_mask]

    torch.manual_seed(config.seed)
    model = VAE(model_config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, fused=True)
    steps_per_epoch = math.ceil(len(x_u) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, epochs=config.epochs,
                                                    steps_per_epoch=steps_per_epoch)
    generator = torch.Generator().manual_seed(config.seed)
    history: list[dict[str, Any]] = []
    started = time.perf_counter()
    lab_batch = min(LABELLED_BATCH, count)
    for epoch in range(1, config.epochs + 1):
        model.train()
        epoch_start = time.perf_counter()
        order = torch.randperm(len(x_u), generator=generator)
        total, seen = 0.0, 0
        for start in range(0, len(x_u), config.batch_size):
            xu = x_u[order[start : start + config.batch_size]]
            pick = torch.randint(count, (lab_batch,), generator=generator)
            xl, yl = x_l[pick], y_l[pick]
            class_logits = model.classifier(torch.cat([xl, xu]))  # one batch-norm batch: both halves
            labelled_loss = _elbo_terms(model, model.encoder.stem(xl), xl, one_hot(yl, k), config.beta)
            unlabelled_loss = _unlabelled(model, xu, class_logits[lab_batch:], config.beta)
            elbo = torch.cat([labelled_loss, unlabelled_loss])
            loss = elbo.mean() + ALPHA * F.cross_entropy(class_logits[:lab_batch], yl)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(elbo.detach().sum())
            seen += len(elbo)
        row = {
            "epoch": epoch,
            "train_loss": total / seen,
            "test_loss": negative_elbo(model, dataset.test, seed=config.seed, labels=dataset.test_labels),
            "test_error": test_error(model.classifier, dataset.test, dataset.test_labels),
            "seconds": time.perf_counter() - epoch_start,
        }
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
    model.eval()
    train_seconds = time.perf_counter() - started
    baseline = _baseline(model_config, x_l, y_l, config.epochs * steps_per_epoch, config)
    final = history[-1]["test_loss"] if history else negative_elbo(model, dataset.test, config.seed,
                                                                    labels=dataset.test_labels)
    metrics = base_metrics(dataset, model_config, config, history, final, started)
    metrics.update(
        labelled_images=count,
        labelled_indices_seed=config.seed,
        test_error=history[-1]["test_error"] if history else test_error(model.classifier, dataset.test,
                                                                         dataset.test_labels),
        baseline_test_error=test_error(baseline, dataset.test, dataset.test_labels),
        baseline_definition=("the same classifier architecture trained on the same labelled images alone, "
                             "same optimiser and number of steps"),
        m2_train_seconds=train_seconds,
        alpha=ALPHA,
    )
    return TrainResult(model=model, metrics=metrics)
