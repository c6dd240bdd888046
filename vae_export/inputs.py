"""How every input a graph is fed is generated: verify's cases, int8 calibration, bench.

One place, so that the edge cases int8-static calibrates its ranges on are exactly the ones
verify checks (a docstring cannot drift from the code when both call the same function).
numpy only.
"""

from __future__ import annotations

import numpy as np

SEED = 0
EDGE_SIGMA = 4.0
CALIBRATION_SAMPLES = 256


def prior_z(n: int, latent_dim: int, rng: np.random.Generator) -> np.ndarray:
    """z ~ N(0, I), float32."""
    return rng.standard_normal((n, latent_dim)).astype(np.float32)


def edge_inputs(role: str, latent_dim: int, image_shape: tuple[int, ...]) -> np.ndarray:
    """Encoder: an all-zero and an all-one image. Decoder: z at +4 and -4 sigma on every
    dimension, and a mixed-sign z at 4 sigma (signs drawn once from SEED)."""
    if role == "encoder":
        return np.stack([np.zeros(image_shape, np.float32), np.ones(image_shape, np.float32)])
    signs = np.where(np.random.default_rng(SEED).random(latent_dim) < 0.5, -1.0, 1.0)
    return (EDGE_SIGMA * np.stack([np.ones(latent_dim), -np.ones(latent_dim), signs])).astype(np.float32)


def parity_inputs(role: str, batch: int, latent_dim: int, image_shape: tuple[int, ...],
                  images: np.ndarray | None) -> np.ndarray:
    """verify's seeded inputs: real images (else uniform [0, 1]) for the encoder, z ~ N(0, I)
    for the decoder."""
    rng = np.random.default_rng(SEED + batch)
    if role == "decoder":
        return prior_z(batch, latent_dim, rng)
    if images is not None:
        idx = rng.choice(len(images), size=batch, replace=len(images) < batch)
        return np.ascontiguousarray(images[idx], dtype=np.float32)
    return rng.random((batch, *image_shape), dtype=np.float32)


def calibration_inputs(role: str, latent_dim: int, image_shape: tuple[int, ...], images: np.ndarray | None) -> np.ndarray:
    """Static int8 calibration: real training images (encoder) or prior z (decoder), plus the
    edge cases verify checks, so that the calibrated ranges cover them instead of clipping."""
    if role == "decoder":
        prior = prior_z(CALIBRATION_SAMPLES, latent_dim, np.random.default_rng(SEED))
    else:
        if images is None:
            raise ValueError("encoder calibration needs images")
        prior = np.asarray(images[:CALIBRATION_SAMPLES], dtype=np.float32)
    return np.ascontiguousarray(np.concatenate([prior, edge_inputs(role, latent_dim, image_shape)]))


def bench_input(role: str, batch: int, latent_dim: int, image_shape: tuple[int, ...]) -> np.ndarray:
    """A seeded input of the shape an app would feed (values do not change the timing)."""
    rng = np.random.default_rng(batch)
    if role == "decoder":
        return prior_z(batch, latent_dim, rng)
    return rng.random((batch, *image_shape), dtype=np.float32)
