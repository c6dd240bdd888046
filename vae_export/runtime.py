"""A small torch-free runtime for apps: numpy + onnxruntime only.

    from vae_export.runtime import VAEDecoder
    images = VAEDecoder("artifacts/decoder.onnx").sample(16, seed=0)  # (16, 1, 28, 28) in [0, 1]

Works on every variant (fp32, int8, fp16, optimized, .ort): the contract (input name, latent
size, image shape) is read from the graph's own signature and metadata.

Inputs are checked against the graph's signature. float64 (and other real dtypes) are cast to
float32, since that is what numpy produces by default and the cast is exact enough for a
model that computes in float32; NaN or Inf inputs are refused, since they can only produce
garbage. Counts and seeds are checked too (`n`, `steps`, `samples` within the stated bounds of
`vae_export.options`, seeds non-negative integers); every bad argument is a
`RuntimeInputError` naming it. A graph is checked against the contract's signature when it
is opened, and a run past the time limit is stopped (`vae_export.ortsession`).
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from vae_export.contract import DECODER, ENCODER, META_PREFIX, GraphSpec
from vae_export.errors import VAEExportError
from vae_export.options import MAX_BATCH, MAX_SAMPLES, MAX_SEED, MAX_STEPS
from vae_export.ortsession import make_session, run_limited

__all__ = ["VAE", "VAEDecoder", "VAEEncoder", "RuntimeInputError"]

_LOG_EPS = 1e-7  # clamps probabilities away from 0 and 1 inside log()


class RuntimeInputError(VAEExportError, ValueError):
    """An input that does not match the graph's signature."""


def check_count(name: str, value: Any, low: int, high: int) -> int:
    """An integer argument in [low, high] (Python or numpy integers; not bool, not float)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise RuntimeInputError(f"{name}: expected an integer from {low} to {high}, found {type(value).__name__} {value!r}")
    if not low <= int(value) <= high:
        raise RuntimeInputError(f"{name}: expected an integer from {low} to {high}, found {value}")
    return int(value)


def check_seed(seed: Any) -> int | None:
    """None (fresh entropy) or a non-negative integer: numpy refuses negative seeds."""
    return None if seed is None else check_count("seed", seed, 0, MAX_SEED)


def as_array(value: Any, what: str) -> np.ndarray:
    """np.asarray, with a ragged list or an object that is not array-like as one error."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise RuntimeInputError(f"{what}: expected an array, found {type(value).__name__} ({exc})") from None
    if array.dtype == object:
        raise RuntimeInputError(f"{what}: expected a numeric array, found {type(value).__name__} of Python objects")
    return array


class _Graph:
    spec: GraphSpec

    def __init__(self, path: str | os.PathLike[str], providers: Sequence[str] | None = None) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise RuntimeInputError(f"path: expected a file path, found {type(path).__name__}")
        self.path = Path(path)
        if not self.path.is_file():
            raise VAEExportError(f"{self.path}: file not found")
        self.session = make_session(self.path, spec=self.spec, providers=providers or ["CPUExecutionProvider"],
                                    validate=False)
        self.input_shape = tuple(self.session.get_inputs()[0].shape[1:])  # without the batch axis
        self.metadata = {
            k[len(META_PREFIX):]: v
            for k, v in self.session.get_modelmeta().custom_metadata_map.items()
            if k.startswith(META_PREFIX)
        }

    def _check(self, x: np.ndarray, what: str) -> np.ndarray:
        x = as_array(x, what)
        if x.ndim != 1 + len(self.input_shape) or tuple(x.shape[1:]) != self.input_shape:
            raise RuntimeInputError(
                f"{what}: expected shape [batch, {', '.join(map(str, self.input_shape))}], "
                f"found {list(x.shape)}"
            )
        if x.shape[0] == 0:
            raise RuntimeInputError(f"{what}: expected at least one item in the batch, found 0")
        if x.shape[0] > MAX_BATCH:
            raise RuntimeInputError(f"{what}: expected at most {MAX_BATCH} items in the batch, found {x.shape[0]}")
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise RuntimeInputError(f"{what}: expected a real-valued array, found dtype {x.dtype}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.all(np.isfinite(x)):
            raise RuntimeInputError(f"{what}: contains NaN or Inf")
        return x

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        return run_limited(self.session, self.spec.output_names, {self.spec.input_name: x}, self.path)


class VAEDecoder(_Graph):
    """z [batch, latent] -> images [batch, C, H, W], probabilities in [0, 1]."""

    spec = DECODER

    @property
    def latent_dim(self) -> int:
        return int(self.input_shape[0])

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.session.get_outputs()[0].shape[1:])

    def decode(self, z: np.ndarray) -> np.ndarray:
        return self._run(self._check(z, "z"))[0]

    def sample(self, n: int, seed: int | None = None) -> np.ndarray:
        """n images decoded from z ~ N(0, I) (the prior), reproducible for a seed."""
        n = check_count("n", n, 1, MAX_BATCH)
        z = np.random.default_rng(check_seed(seed)).standard_normal((n, self.latent_dim)).astype(np.float32)
        return self.decode(z)

    def interpolate(self, z0: np.ndarray, z1: np.ndarray, steps: int = 8) -> np.ndarray:
        """Decodes of `steps` points on the straight line from z0 to z1 (both included)."""
        steps = check_count("steps", steps, 2, MAX_STEPS)
        z0 = self._check(as_array(z0, "z0").reshape(1, -1), "z0")[0]
        z1 = self._check(as_array(z1, "z1").reshape(1, -1), "z1")[0]
        t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
        return self.decode((1.0 - t) * z0 + t * z1)


class VAEEncoder(_Graph):
    """x [batch, C, H, W] in [0, 1] -> (mu, logvar), each [batch, latent]."""

    spec = ENCODER

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mu, logvar = self._run(self._check(x, "x"))
        return mu, logvar


class VAE:
    """Both graphs together: reconstruction and anomaly scores."""

    def __init__(
        self,
        encoder_path: str | os.PathLike[str],
        decoder_path: str | os.PathLike[str],
        providers: Sequence[str] | None = None,
    ) -> None:
        self.encoder = VAEEncoder(encoder_path, providers)
        self.decoder = VAEDecoder(decoder_path, providers)

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        """decode(mu): the deterministic reconstruction."""
        mu, _ = self.encoder.encode(x)
        return self.decoder.decode(mu)

    def anomaly_score(self, x: np.ndarray, samples: int = 1, seed: int | None = 0) -> np.ndarray:
        """Negative ELBO per image in nats (higher = more anomalous).

        -ELBO = E_q[-log p(x|z)] + KL(q(z|x) || N(0, I)), with the Bernoulli likelihood
        -log p(x|z) = -sum(x log p + (1 - x) log(1 - p)) over pixels (continuous x allowed) and
        the analytic KL -0.5 * sum(1 + logvar - mu^2 - exp(logvar)). The expectation is
        estimated with `samples` draws z = mu + eps * exp(0.5 * logvar), seeded.
        """
        samples = check_count("samples", samples, 1, MAX_SAMPLES)
        rng = np.random.default_rng(check_seed(seed))
        x = self.encoder._check(x, "x")
        mu, logvar = self.encoder.encode(x)
        nll = np.zeros(len(x), dtype=np.float64)
        for _ in range(samples):
            z = mu + rng.standard_normal(mu.shape).astype(np.float32) * np.exp(0.5 * logvar)
            p = np.clip(self.decoder.decode(z).astype(np.float64), _LOG_EPS, 1.0 - _LOG_EPS)
            ll = x * np.log(p) + (1.0 - x) * np.log1p(-p)
            nll -= ll.reshape(len(x), -1).sum(axis=1)
        kl = -0.5 * np.sum(1.0 + logvar - mu.astype(np.float64) ** 2 - np.exp(logvar), axis=1)
        return nll / samples + kl
