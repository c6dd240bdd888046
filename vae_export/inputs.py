"""How every input a graph is fed is generated: verify's cases, int8 calibration, bench.

One place, so that the edge cases int8-static calibrates its ranges on are exactly the ones
verify checks (a docstring cannot drift from the code when both call the same function).
Shapes are without the batch axis: `latent_shape` is `(latent,)` or `(c, h, w)`. numpy only.

Conditional graphs also take `y` (`label_rows`): a fixed mix of one-hot rows over every class
and half-and-half mixes of two classes, so each check covers both kinds of row.
"""

from __future__ import annotations

import numpy as np

SEED = 0
EDGE_SIGMA = 4.0
CALIBRATION_SAMPLES = 256


LABEL_ROWS = "row i: one-hot of class i mod K; every third row an even mix of that class and the next"


def label_rows(batch: int, num_classes: int) -> np.ndarray:
    """y for `batch` rows: row i is the one-hot of class i mod K, except every third row, an
    even mix of that class and the next (rows that interpolation between classes feeds)."""
    rows = np.zeros((batch, num_classes), np.float32)
    index = np.arange(batch)
    rows[index, index % num_classes] = 1.0
    mixed = index[index % 3 == 2]
    rows[mixed] = 0.0
    rows[mixed, mixed % num_classes] += 0.5
    rows[mixed, (mixed + 1) % num_classes] += 0.5
    return rows


def with_labels(input_names: tuple[str, ...], primary: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """The feeds of a graph: its primary input (`x` or `z`), and `y` when the graph takes it."""
    feeds = {input_names[0]: primary}
    if len(input_names) > 1:
        feeds[input_names[1]] = label_rows(len(primary), num_classes)
    return feeds


def prior_z(n: int, latent_shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """z ~ N(0, I), float32."""
    return rng.standard_normal((n, *latent_shape)).astype(np.float32)


def edge_inputs(role: str, latent_shape: tuple[int, ...], image_shape: tuple[int, ...]) -> np.ndarray:
    """Encoder and classifier: an all-zero and an all-one image. Decoder: z at +4 and -4 sigma
    everywhere, and a mixed-sign z at 4 sigma (signs drawn once from SEED)."""
    if role != "decoder":
        return np.stack([np.zeros(image_shape, np.float32), np.ones(image_shape, np.float32)])
    ones = np.ones(latent_shape)
    signs = np.where(np.random.default_rng(SEED).random(latent_shape) < 0.5, -1.0, 1.0)
    return (EDGE_SIGMA * np.stack([ones, -ones, signs])).astype(np.float32)


def fit_images(images: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray | None:
    """Real images at another spatial size by nearest-neighbour resampling (verify at several
    sizes keeps real content); None when the channel count differs."""
    if images.shape[1] != image_shape[0]:
        return None
    h0, w0 = images.shape[2:]
    _, h, w = image_shape
    if (h, w) == (h0, w0):
        return images
    rows = (np.arange(h) * h0 // h)[:, None]
    cols = (np.arange(w) * w0 // w)[None, :]
    return np.ascontiguousarray(images[:, :, rows, cols])


def fits_images(images: np.ndarray | None, image_shape: tuple[int, ...]) -> bool:
    """Whether real images can feed a graph of `image_shape` (`fit_images` resamples them)."""
    return images is not None and images.shape[1] == image_shape[0]


def parity_inputs(role: str, batch: int, latent_shape: tuple[int, ...], image_shape: tuple[int, ...],
                  images: np.ndarray | None) -> np.ndarray:
    """verify's seeded inputs: real images (else uniform [0, 1]) for the encoder, resampled to
    `image_shape`; z ~ N(0, I) for the decoder. Only the images drawn are resampled: all of
    them at 8192x8192 were 90 GB for a batch of one."""
    rng = np.random.default_rng(SEED + batch)
    if role == "decoder":
        return prior_z(batch, latent_shape, rng)
    if images is not None and fits_images(images, image_shape):
        idx = rng.choice(len(images), size=batch, replace=len(images) < batch)
        return np.ascontiguousarray(fit_images(images[idx], image_shape), dtype=np.float32)
    return rng.random((batch, *image_shape), dtype=np.float32)


def calibration_inputs(role: str, latent_shape: tuple[int, ...], image_shape: tuple[int, ...],
                       images: np.ndarray | None) -> np.ndarray:
    """Static int8 calibration: real training images (encoder) or prior z (decoder), plus the
    edge cases verify checks, so that the calibrated ranges cover them instead of clipping."""
    if role == "decoder":
        prior = prior_z(CALIBRATION_SAMPLES, latent_shape, np.random.default_rng(SEED))
    else:
        if images is None:
            raise ValueError("encoder calibration needs images")
        prior = np.asarray(images[:CALIBRATION_SAMPLES], dtype=np.float32)
    return np.ascontiguousarray(np.concatenate([prior, edge_inputs(role, latent_shape, image_shape)]))


def bench_input(role: str, batch: int, latent_shape: tuple[int, ...], image_shape: tuple[int, ...]) -> np.ndarray:
    """A seeded input of the shape an app would feed (values do not change the timing)."""
    rng = np.random.default_rng(batch)
    if role == "decoder":
        return prior_z(batch, latent_shape, rng)
    return rng.random((batch, *image_shape), dtype=np.float32)
