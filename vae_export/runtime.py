"""A small torch-free runtime for apps: numpy + onnxruntime only.

    from vae_export.runtime import VAEDecoder
    images = VAEDecoder("artifacts/decoder.onnx").sample(16, seed=0)  # (16, 1, 28, 28) in [0, 1]

Works on every variant (fp32, int8, fp16, optimized, .ort) and any latent shape (flat or
spatial, docs/contract.md): the contract (input name, latent shape, image shape, symbolic sizes
and their stride) is read from the graph's own signature and metadata.

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
from vae_export.contract import DECODER, ENCODER, META_PREFIX, GraphSpec, Shape, format_shape, symbolic_names
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

    def __init__(
        self, path: str | os.PathLike[str], providers: Sequence[str] | None = None, threads: int | None = None
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise RuntimeInputError(f"path: expected a file path, found {type(path).__name__}")
        self.path = Path(path)
        if not self.path.is_file():
            raise VAEExportError(f"{self.path}: file not found")
        # threads: e.g. one per Ray actor's CPU share, so parallel workers do not fight over cores
        self.session = make_session(self.path, threads=threads, spec=self.spec,
                                    providers=providers or ["CPUExecutionProvider"], validate=False)
        self.metadata = {
            k[len(META_PREFIX):]: v
            for k, v in self.session.get_modelmeta().custom_metadata_map.items()
            if k.startswith(META_PREFIX)
        }
        # Without the batch axis; None where the graph has a symbolic dimension (height, width).
        self.input_shape: Shape = _dims(self.session.get_inputs()[0].shape)
        stride = self.metadata.get("stride", "")
        self.stride: int | None = int(stride) if stride.isdigit() and int(stride) > 0 else None

    def _expected(self, shape: Shape, image: bool) -> str:
        names = symbolic_names("x" if image else "z", len(shape) + 1)[1:]
        dims = ", ".join(str(d) if d is not None else n for d, n in zip(shape, names))
        rule = f" (height and width multiples of {self.stride})" if image and self.stride and None in shape else ""
        return f"[batch, {dims}]{rule}"

    def _check(self, x: np.ndarray, what: str, shape: Shape | None = None, image: bool = False) -> np.ndarray:
        """x against `shape` (default: the graph's input): rank, fixed dims, the stride rule
        for symbolic image dims; real dtype, finite values, a non-empty batch."""
        shape = self.input_shape if shape is None else shape
        x = as_array(x, what)
        fits = x.ndim == 1 + len(shape) and all(d is None or d == n for d, n in zip(shape, x.shape[1:]))
        if fits and image and self.stride and None in shape:
            fits = all(n % self.stride == 0 and n > 0 for d, n in zip(shape, x.shape[1:]) if d is None)
        if not fits:
            raise RuntimeInputError(f"{what}: expected shape {self._expected(shape, image)}, found {list(x.shape)}")
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


def _dims(shape: Sequence[int | str | None]) -> Shape:
    return tuple(d if isinstance(d, int) else None for d in shape[1:])


class VAEDecoder(_Graph):
    """z [batch, *latent_shape] -> images [batch, C, H, W], probabilities in [0, 1].

    `latent_shape` is `(latent,)` for flat latents or `(c, h, w)` for spatial ones; a decoder
    exported with --dynamic-size has symbolic h and w (None here) and decodes any size."""

    spec = DECODER

    @property
    def latent_shape(self) -> Shape:
        return self.input_shape

    @property
    def latent_dim(self) -> int:
        """The latent size of a flat latent (v1 decoders)."""
        if len(self.latent_shape) != 1:
            raise RuntimeInputError(f"latent_dim: the latent {format_shape(self.latent_shape)} is not flat; "
                                    "use latent_shape")
        return int(self.latent_shape[0])  # type: ignore[arg-type]

    @property
    def image_shape(self) -> Shape:
        return _dims(self.session.get_outputs()[0].shape)

    def latent_shape_for(self, size: tuple[int, int] | None = None) -> tuple[int, ...]:
        """The concrete latent shape for images of `size` (required for a symbolic size)."""
        if None not in self.latent_shape:
            if size is not None and tuple(size) != tuple(self.image_shape[1:]):
                raise RuntimeInputError(f"size: this decoder makes {format_shape(self.image_shape[1:])} images only, "
                                        f"found {list(size)}")
            return tuple(int(d) for d in self.latent_shape)  # type: ignore[arg-type]
        stride = self.stride or 1
        if size is None:
            raise RuntimeInputError(f"size: this decoder has a symbolic image size; pass size=(height, width), "
                                    f"multiples of {stride}")
        if len(size) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 and v % stride == 0 for v in size):
            raise RuntimeInputError(f"size: expected (height, width), positive multiples of {stride}, found {size!r}")
        return (int(self.latent_shape[0]), int(size[0]) // stride, int(size[1]) // stride)  # type: ignore[arg-type]

    def decode(self, z: np.ndarray, tile: int | None = None, overlap: float = 0.25) -> np.ndarray:
        """z -> images. With `tile` (latent cells, e.g. 64 for diffusers' 512-pixel tiles), a
        latent larger than a tile is decoded in overlapping tiles blended as diffusers'
        `enable_tiling()` does (`vae_export.tiling`): memory bounded by the tile, not the image."""
        z = self._check(z, "z")
        if tile is None:
            return self._run(z)[0]
        tile = check_count("tile", tile, 1, 1 << 16)
        if len(self.latent_shape) != 3 or None not in self.latent_shape or not self.stride:
            raise RuntimeInputError("tile: tiled decoding needs a decoder with a symbolic size (--dynamic-size)")
        from vae_export.tiling import tile_geometry, tiled_decode

        try:
            tile_geometry(tile, self.stride, overlap)
        except ValueError as exc:
            raise RuntimeInputError(str(exc)) from None
        return tiled_decode(lambda part: self._run(part)[0], z, tile, self.stride, overlap)

    def sample(self, n: int, seed: int | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
        """n images decoded from z ~ N(0, I) (the prior), reproducible for a seed; `size`
        (height, width) for a decoder with a symbolic size."""
        n = check_count("n", n, 1, MAX_BATCH)
        shape = self.latent_shape_for(size)
        z = np.random.default_rng(check_seed(seed)).standard_normal((n, *shape)).astype(np.float32)
        return self.decode(z)

    def interpolate(self, z0: np.ndarray, z1: np.ndarray, steps: int = 8) -> np.ndarray:
        """Decodes of `steps` points on the straight line from z0 to z1 (both included); z0 and
        z1 are single latents (a leading batch axis of 1 is accepted too)."""
        steps = check_count("steps", steps, 2, MAX_STEPS)
        ends = []
        for name, z in (("z0", z0), ("z1", z1)):
            z = as_array(z, name)
            if z.ndim == len(self.latent_shape):
                z = z[None]
            ends.append(self._check(z, name)[0])
        if ends[0].shape != ends[1].shape:
            raise RuntimeInputError(f"z1: expected the shape of z0 {list(ends[0].shape)}, found {list(ends[1].shape)}")
        t = np.linspace(0.0, 1.0, steps, dtype=np.float32).reshape(-1, *([1] * ends[0].ndim))
        return self.decode((1.0 - t) * ends[0] + t * ends[1])


class VAEEncoder(_Graph):
    """x [batch, C, H, W] in [0, 1] -> (mu, logvar), each [batch, *latent_shape]."""

    spec = ENCODER

    def encode(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mu, logvar = self._run(self._check(x, "x", image=True))
        return mu, logvar
class VAE:
    """Both graphs together: reconstruction and anomaly scores."""

    def __init__(
        self,
        encoder_path: str | os.PathLike[str],
        decoder_path: str | os.PathLike[str],
        providers: Sequence[str] | None = None,
        threads: int | None = None,
    ) -> None:
        self.encoder = VAEEncoder(encoder_path, providers, threads)
        self.decoder = VAEDecoder(decoder_path, providers, threads)

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        """decode(mu): the deterministic reconstruction."""
        mu, _ = self.encoder.encode(x)
        return self.decoder.decode(mu)

    def anomaly_score(
        self, x: np.ndarray, samples: int = 1, seed: int | None = 0, eps: np.ndarray | None = None
    ) -> np.ndarray:
        """Negative ELBO per image in nats (higher = more anomalous).

        -ELBO = E_q[-log p(x|z)] + KL(q(z|x) || N(0, I)), with the Bernoulli likelihood
        -log p(x|z) = -sum(x log p + (1 - x) log(1 - p)) over pixels (continuous x allowed) and
        the analytic KL -0.5 * sum(1 + logvar - mu^2 - exp(logvar)). The expectation is
        estimated with `samples` draws z = mu + eps * exp(0.5 * logvar), seeded. `eps`
        ([samples, batch, latent] standard-normal draws) replaces the seeded draws: batch jobs
        draw them per row, so a row's score does not depend on how the rows were batched.
        """
        samples = check_count("samples", samples, 1, MAX_SAMPLES)
        rng = np.random.default_rng(check_seed(seed))
        x = self.encoder._check(x, "x", image=True)
        mu, logvar = self.encoder.encode(x)
        if eps is not None and np.shape(eps) != (samples, *mu.shape):
            raise RuntimeInputError(f"eps: expected shape {[samples, *mu.shape]}, found {list(np.shape(eps))}")
        nll = np.zeros(len(x), dtype=np.float64)
        for s in range(samples):
            draw = rng.standard_normal(mu.shape) if eps is None else eps[s]
            z = mu + draw.astype(np.float32) * np.exp(0.5 * logvar)
            p = np.clip(self.decoder.decode(z).astype(np.float64), _LOG_EPS, 1.0 - _LOG_EPS)
            ll = x * np.log(p) + (1.0 - x) * np.log1p(-p)
            nll -= ll.reshape(len(x), -1).sum(axis=1)
        terms = 1.0 + logvar - mu.astype(np.float64) ** 2 - np.exp(logvar)
        kl = -0.5 * terms.reshape(len(x), -1).sum(axis=1)  # over every latent axis, flat or spatial
        return nll / samples + kl
