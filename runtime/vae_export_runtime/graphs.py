"""The runtime's graphs, for apps: numpy + onnxruntime only.

    from vae_export_runtime import VAEDecoder
    images = VAEDecoder("artifacts/decoder.onnx").sample(16, seed=0)  # (16, 1, 28, 28) in [0, 1]

Works on every variant (fp32, int8, fp16, optimized, .ort; and the ExecuTorch programs,
decoder.pte and decoder.int8.pte, when `executorch` is installed: the path's suffix picks the
engine, `backends.py`), any latent shape (flat or spatial) and conditional graphs (docs/contract.md): the contract (inputs, latent shape, image
shape, symbolic sizes, their stride and default size, classes) is read from the graph's own
signature and metadata (`codec.py`). A conditional graph takes its class as `labels=` (class
indices) or `y=` (rows of class weights summing to 1, for mixes):

    decoder = VAEDecoder("artifacts/decoder.onnx")
    sevens = decoder.sample(8, seed=0, label=7, temperature=0.5)

Inputs are checked against the graph's signature. float64 (and other real dtypes) are cast to
float32, since that is what numpy produces by default and the cast is exact enough for a
model that computes in float32; NaN or Inf inputs are refused, since they can only produce
garbage. Counts and seeds are checked too (`n`, `steps`, `samples` within the stated bounds of
`limits.py`, seeds non-negative integers); every bad argument, and a graph that is not one of
ours, is a `RuntimeInputError` naming the rule. A run past the time limit is stopped
(`session.py`).
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vae_export_runtime.checks import (as_array, check_count, check_rows, check_seed, check_temperature, condition,
                                       label_rows)
from vae_export_runtime.codec import GraphMetadata
from vae_export_runtime.contract import Y_NAME, GraphSpec, Shape, format_shape, graph_filename, graph_spec, symbolic_names
from vae_export_runtime.errors import RuntimeInputError
from vae_export_runtime.limits import MAX_BATCH, MAX_ELEMENTS, MAX_PIXELS, MAX_SAMPLES, MAX_SEED, MAX_STEPS, MAX_TILE
from vae_export_runtime.sampling import normal_latents, scaled
from vae_export_runtime.tiling import DEFAULT_OVERLAP, tile_geometry, tiled_decode
from vae_export_runtime.backends import Backend, open_backend
from vae_export_runtime.session import check_names, check_signature, metadata_shapes

_LOG_EPS = 1e-7  # clamps probabilities away from 0 and 1 inside log()


class _Graph:
    role: str

    def __init__(
        self, path: str | os.PathLike[str], providers: Sequence[str] | None = None, threads: int | None = None,
        *, engine: str | None = None,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise RuntimeInputError(f"path: expected a file path, found {type(path).__name__}")
        self.path = Path(path)
        if not self.path.is_file():
            raise RuntimeInputError(f"{self.path}: file not found")
        # threads: e.g. one per Ray actor's CPU share, so parallel workers do not fight over cores
        self._providers, self._threads = providers, threads
        self.backend: Backend = open_backend(self.path, engine, providers, threads, role=self.role)
        self.meta: GraphMetadata = GraphMetadata.from_props(self.backend.metadata_map(), str(self.path))
        self.spec: GraphSpec = graph_spec(self.role, conditional=self.meta.num_classes > 0)
        check_names(self.backend, self.spec, self.path)
        if self.meta.role != self.role:
            raise RuntimeInputError(f"{self.path}: expected a {self.role} graph, found metadata role {self.meta.role}")
        check_signature(self.backend, self.spec, self.path, metadata_shapes(self.backend, self.meta, self.spec, self.path))
        # Without the batch axis; None where the graph has a symbolic dimension (height, width).
        self.input_shape: Shape = _dims(self.backend.get_inputs()[0].shape)
        self.stride: int | None = self.meta.stride
        self.num_classes: int = self.meta.num_classes
        self.class_names: tuple[str, ...] = self.meta.class_names

    @property
    def engine(self) -> str:
        return self.backend.engine

    @property
    def precision(self) -> str:
        """The arithmetic the engine runs at: "fp32", or a reduced one asked for ("bf16")."""
        return getattr(self.backend, "precision", "fp32")

    @property
    def engine_reason(self) -> str:
        """Why this engine runs the graph: as asked, or what engine="auto" found (the recorded
        recommendation, or the fallback to ONNX Runtime CPU and its reason)."""
        return str(getattr(self.backend, "engine_reason", ""))

    @property
    def session(self) -> Any:
        """ONNX Runtime's InferenceSession of an `onnxruntime` graph (the backend otherwise)."""
        return getattr(self.backend, "session", self.backend)

    @property
    def metadata(self) -> dict[str, str]:
        """The graph's `vae_export.*` metadata as strings, without the prefix (informational;
        `meta` is the same read and typed)."""
        return {k.removeprefix("vae_export."): v for k, v in self.meta.to_props().items()}

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

    def _run(self, x: np.ndarray, y: np.ndarray | None = None) -> list[np.ndarray]:
        feeds = {self.spec.input_name: x, **({Y_NAME: y} if y is not None else {})}
        return self.backend.run(self.spec.output_names, feeds)


def _dims(shape: Sequence[int | str | None]) -> Shape:
    return tuple(d if isinstance(d, int) else None for d in shape[1:])


def _pair(size: Any) -> tuple[int, int] | None:
    """(height, width) as two integers, or None when `size` is not a pair of integers."""
    try:
        items = tuple(size)
    except TypeError:
        return None
    if len(items) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in items):
        return None
    return int(items[0]), int(items[1])


def prior_latents(n: int, shape: tuple[int, ...], seed: int | None, temperature: float = 1.0) -> np.ndarray:
    """z ~ N(0, temperature^2 I) of shape (n, *shape), float32, from the portable generator
    (`sampling.py`): the same latents, bit for bit, in every host for a seed; seed None draws a
    fresh one."""
    if n * int(np.prod(shape)) > MAX_ELEMENTS:
        raise RuntimeInputError(f"n: {n} latents of shape {list(shape)} hold more than {MAX_ELEMENTS} values")
    return scaled(normal_latents((n, *shape), fresh_seed() if seed is None else seed), temperature)


def fresh_seed() -> int:
    """A seed from the operating system's entropy, within the generator's range."""
    return int.from_bytes(os.urandom(8), "little") & MAX_SEED


def _one_row(value: Any, num_classes: int, what: str) -> np.ndarray:
    """One class as a row: a class index, or a row of class weights."""
    array = as_array(value, what)
    if array.ndim == 0:
        return label_rows(array, num_classes, 1, what)[0]
    return check_rows(array.reshape(1, -1) if array.ndim == 1 else array, num_classes, 1, what)[0]


class VAEDecoder(_Graph):
    """z [batch, *latent_shape] (, y [batch, K]) -> images [batch, C, H, W], probabilities in [0, 1].

    `latent_shape` is `(latent,)` for flat latents or `(c, h, w)` for spatial ones; a decoder
    exported with --dynamic-size has symbolic h and w (None here) and decodes any size. A
    conditional decoder (`num_classes` > 0) also takes the class of each image."""

    role = "decoder"

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
        return _dims(self.backend.get_outputs()[0].shape)

    @property
    def default_size(self) -> tuple[int, int] | None:
        """The image size `sample` makes without `size=`: the fixed size, or for a symbolic-size
        decoder the size it was exported at (metadata `export_size`; None for graphs exported
        before it was recorded, which then need `size=`)."""
        if None not in self.image_shape:
            return int(self.image_shape[1]), int(self.image_shape[2])  # type: ignore[arg-type]
        return self.meta.export_size

    def latent_shape_for(self, size: tuple[int, int] | None = None) -> tuple[int, ...]:
        """The concrete latent shape for images of `size` (default: `default_size`)."""
        if None not in self.latent_shape:
            if size is not None and _pair(size) != tuple(self.image_shape[1:]):
                raise RuntimeInputError(f"size: this decoder makes {format_shape(self.image_shape[1:])} images only, "
                                        f"found {size!r}")
            return tuple(int(d) for d in self.latent_shape)  # type: ignore[arg-type]
        stride = self.stride or 1
        if size is None:
            size = self.default_size
            if size is None:
                raise RuntimeInputError(f"size: this decoder has a symbolic image size and no recorded export size; "
                                        f"pass size=(height, width), multiples of {stride}")
        pair = _pair(size)
        if pair is None or not all(v > 0 and v % stride == 0 for v in pair):
            raise RuntimeInputError(f"size: expected (height, width), positive multiples of {stride}, found {size!r}")
        # The same pixel bound as the CLI's --size/--sizes and the server's (limits.MAX_PIXELS).
        if pair[0] * pair[1] > MAX_PIXELS:
            raise RuntimeInputError(f"size: {pair[0]}x{pair[1]} has more than {MAX_PIXELS} pixels (8192x8192 at most)")
        if self.image_shape[0] * pair[0] * pair[1] > MAX_ELEMENTS:  # type: ignore[operator]
            raise RuntimeInputError(f"size: {pair[0]}x{pair[1]} images hold more than {MAX_ELEMENTS} values each")
        return (int(self.latent_shape[0]), pair[0] // stride, pair[1] // stride)  # type: ignore[arg-type]

    def decode(self, z: np.ndarray, y: np.ndarray | None = None, *, labels: Any = None, tile: int | None = None,
               overlap: float = DEFAULT_OVERLAP, max_memory_mb: float | None = None) -> np.ndarray:
        """Images from latents; a conditional decoder takes `labels` (class indices: one for
        every image, or one per image) or `y` (rows of class weights summing to 1). With `tile`
        (latent cells, e.g. 64 for diffusers' 512-pixel tiles), a latent larger than a tile is
        decoded in overlapping tiles blended as diffusers' `enable_tiling()` does
        (`tiling.py`): memory bounded by the tile, not the image.

        `max_memory_mb`: the process's peak resident memory (MiB) this decode may reach; the
        tile size is chosen to stay under it (`budget.py`: a measured model of the graph's
        memory per tile, the chosen tile measured), or the call is refused with the smallest
        budget that would do. The session keeps its settings: on the SD-sized decoder ONNX
        Runtime's arena and memory pattern need less than running without them (budget.py).
        `last_plan` then holds the tile and the predicted peak."""
        z = self._check(z, "z")
        rows = condition(y, labels, self.num_classes, len(z))
        if max_memory_mb is not None:
            return self._decode_within(z, rows, max_memory_mb, overlap)
        if tile is None:
            return self._run(z, rows)[0]
        tile = check_count("tile", tile, 1, MAX_TILE)
        self._check_tiling("tile")
        if isinstance(overlap, bool) or not isinstance(overlap, numbers.Real):
            raise RuntimeInputError(f"overlap: expected a fraction in [0, 1), found {type(overlap).__name__} {overlap!r}")
        try:
            tile_geometry(tile, self.stride, float(overlap))  # type: ignore[arg-type]
        except ValueError as exc:
            raise RuntimeInputError(str(exc)) from None
        return tiled_decode(lambda part: self._run(part, rows)[0], z, tile, self.stride, float(overlap))  # type: ignore[arg-type]

    def _check_tiling(self, what: str) -> None:
        if len(self.latent_shape) != 3 or None not in self.latent_shape or not self.stride:
            raise RuntimeInputError(f"{what}: tiled decoding needs a decoder with a symbolic size (--dynamic-size)")

    def _decode_within(self, z: np.ndarray, rows: np.ndarray | None, max_memory_mb: Any, overlap: float) -> np.ndarray:
        from vae_export_runtime import budget

        if isinstance(max_memory_mb, bool) or not isinstance(max_memory_mb, numbers.Real) \
                or not (0 < float(max_memory_mb) < 1 << 30):
            raise RuntimeInputError(f"max_memory_mb: expected a positive number of MiB, found {max_memory_mb!r}")
        self._check_tiling("max_memory_mb")
        if overlap != DEFAULT_OVERLAP:
            raise RuntimeInputError("max_memory_mb: plans tiles with the default overlap; pass tile= for another")
        run = lambda part: self._run(part, None if rows is None else rows[:len(part)])[0]
        planner = self.__dict__.get("_planner")  # its probes are kept: a second decode costs none
        if planner is None:
            planner = budget.Planner(run, int(z.shape[1]), self.stride, int(self.image_shape[0]))  # type: ignore[arg-type]
            self._planner = planner
        planner.decode = run  # this call's class rows (conditional decoders)
        plan = planner.plan(float(max_memory_mb), len(z), z.shape[2], z.shape[3])
        self.last_plan = plan
        if plan.tile is None:
            return run(z)
        return tiled_decode(run, z, plan.tile, self.stride, DEFAULT_OVERLAP)  # type: ignore[arg-type]

    def sample(self, n: int, seed: int | None = None, size: tuple[int, int] | None = None, *,
               label: int | None = None, labels: Sequence[int] | None = None, temperature: float = 1.0) -> np.ndarray:
        """n images decoded from z ~ N(0, temperature^2 I) (temperature 1: the prior),
        reproducible for a seed; `size` (height, width) for a decoder with a symbolic size
        (default: `default_size`). Conditional decoders: `label` (every image of that class) or
        `labels` (one per image)."""
        if label is not None and labels is not None:
            raise RuntimeInputError("label: pass label= (one class for all) or labels= (one per image), not both")
        z = self.sample_latents(n, seed, size, temperature=temperature)
        return self.decode(z, labels=label if labels is None else labels)

    def sample_latents(self, n: int, seed: int | None = None, size: tuple[int, int] | None = None, *,
                       temperature: float = 1.0) -> np.ndarray:
        """The latents `sample` decodes: z ~ N(0, temperature^2 I), [n, *latent_shape] float32,
        from the portable generator (the same for a seed in every host)."""
        n = check_count("n", n, 1, MAX_BATCH)
        scale = check_temperature(temperature)
        return prior_latents(n, self.latent_shape_for(size), check_seed(seed), scale)

    def interpolate(self, z0: np.ndarray, z1: np.ndarray, steps: int = 8, *, y0: Any = None,
                    y1: Any = None) -> np.ndarray:
        """Decodes of `steps` points on the straight line from z0 to z1 (both included); z0 and
        z1 are single latents (a leading batch axis of 1 is accepted too). A conditional
        decoder also moves from class y0 to class y1 (each a class index or a row of class
        weights; y1 defaults to y0), mixing the rows in step: pass z1 = z0 for a pure class
        interpolation."""
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
        z = (1.0 - t) * ends[0] + t * ends[1]
        if not self.num_classes:
            return self.decode(z, y=y0 if y0 is not None else y1)  # refuses a class for an unconditional decoder
        if y0 is None:
            raise RuntimeInputError(f"y0: this decoder is conditional on {self.num_classes} classes; pass y0= "
                                    "(and y1=), each a class index or a row of class weights")
        r0 = _one_row(y0, self.num_classes, "y0")
        r1 = r0 if y1 is None else _one_row(y1, self.num_classes, "y1")
        w = t.reshape(-1, 1)
        return self.decode(z, y=(1.0 - w) * r0 + w * r1)


class VAEEncoder(_Graph):
    """x [batch, C, H, W] in [0, 1] (, y [batch, K]) -> (mu, logvar), each [batch, *latent_shape]."""

    role = "encoder"

    def encode(self, x: np.ndarray, y: np.ndarray | None = None, *, labels: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """(mu, logvar); a conditional encoder takes `labels` or `y` as the decoder does."""
        x = self._check(x, "x", image=True)
        mu, logvar = self._run(x, condition(y, labels, self.num_classes, len(x)))
        return mu, logvar


class VAEClassifier(_Graph):
    """x [batch, C, H, W] in [0, 1] -> class probabilities [batch, K] (semi-supervised models'
    classifier.onnx, q(y | x))."""

    role = "classifier"

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self._run(self._check(x, "x", image=True))[0]

    def classify(self, x: np.ndarray) -> np.ndarray:
        """Probabilities (softmax of the logits), rows summing to 1."""
        logits = self.logits(x).astype(np.float64)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


# `gaussian` graphs (diffusers' autoencoders, trained on pixel reconstruction in [-1, 1]): unit
# variance in that native range, sigma = 0.5 in the graphs' [0, 1] pixels (docs/contract.md).
GAUSSIAN_SIGMA = 0.5


def negative_log_likelihood(x: np.ndarray, x_hat: np.ndarray, likelihood: str) -> np.ndarray:
    """-log p(x | z) per image in nats, summed over pixels: Bernoulli with probabilities x_hat
    (continuous x allowed), or a Gaussian N(x_hat, GAUSSIAN_SIGMA^2) per pixel."""
    x64, p = np.asarray(x, np.float64), np.asarray(x_hat, np.float64)
    if likelihood == "gaussian":
        per_pixel = 0.5 * ((x64 - p) / GAUSSIAN_SIGMA) ** 2 + np.log(GAUSSIAN_SIGMA * np.sqrt(2 * np.pi))
    else:
        p = np.clip(p, _LOG_EPS, 1.0 - _LOG_EPS)
        per_pixel = -(x64 * np.log(p) + (1.0 - x64) * np.log1p(-p))
    return per_pixel.reshape(len(x64), -1).sum(axis=1)


class VAE:
    """The graphs together: reconstruction, anomaly scores, and classification (with a
    semi-supervised model's classifier.onnx)."""

    def __init__(
        self,
        encoder_path: str | os.PathLike[str],
        decoder_path: str | os.PathLike[str],
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        classifier_path: str | os.PathLike[str] | None = None,
        *,
        engine: str | None = None,
    ) -> None:
        self.encoder = VAEEncoder(encoder_path, providers, threads, engine=engine)
        self.decoder = VAEDecoder(decoder_path, providers, threads, engine=engine)
        self.classifier = None if classifier_path is None else VAEClassifier(classifier_path, providers, threads,
                                                                             engine=engine)
        counts = {self.encoder.num_classes, self.decoder.num_classes}
        if self.classifier is not None:
            counts.add(self.classifier.num_classes)
        if len(counts) != 1:
            raise RuntimeInputError(f"{self.decoder.path}: the graphs disagree on the number of classes "
                                    f"({sorted(counts)}); they are not from one model")
        self.num_classes = self.decoder.num_classes

    @classmethod
    def open(cls, artifacts: str | os.PathLike[str], variant: str = "fp32", providers: Sequence[str] | None = None,
             threads: int | None = None, *, engine: str | None = None) -> VAE:
        """The model's graphs in an artifacts directory: encoder and decoder, and the classifier
        when the model has one (a semi-supervised model's classifier.onnx). `variant` names the
        files (`contract.graph_filename`): "executorch" opens encoder.pte and decoder.pte."""
        if not isinstance(artifacts, (str, os.PathLike)):
            raise RuntimeInputError(f"artifacts: expected a directory path, found {type(artifacts).__name__}")
        directory = Path(artifacts)
        classifier = directory / graph_filename("classifier", variant)
        return cls(directory / graph_filename("encoder", variant), directory / graph_filename("decoder", variant),
                   providers, threads, classifier if classifier.is_file() else None, engine=engine)

    def classify(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities q(y | x) [batch, K]."""
        if self.classifier is None:
            raise RuntimeInputError("classify: no classifier graph; pass classifier_path= (classifier.onnx of a "
                                    "semi-supervised model)")
        return self.classifier.classify(x)

    def _rows(self, x: np.ndarray, y: Any, labels: Any) -> np.ndarray | None:
        """A conditional model's class rows for x: as given, else the classifier's q(y | x)."""
        if self.num_classes and y is None and labels is None and self.classifier is not None:
            return self.classifier.classify(x)
        return condition(y, labels, self.num_classes, len(x))

    def reconstruct(self, x: np.ndarray, y: np.ndarray | None = None, *, labels: Any = None) -> np.ndarray:
        """decode(mu): the deterministic reconstruction. Conditional models use the given class,
        else the classifier's q(y | x) rows when there is a classifier."""
        x = self.encoder._check(x, "x", image=True)
        rows = self._rows(x, y, labels)
        mu, _ = self.encoder.encode(x, rows)
        return self.decoder.decode(mu, rows)

    def anomaly_score(
        self, x: np.ndarray, samples: int = 1, seed: int | None = 0, eps: np.ndarray | None = None,
        y: np.ndarray | None = None, *, labels: Any = None,
    ) -> np.ndarray:
        """Negative ELBO per image in nats (higher = more anomalous).

        -ELBO = E_q[-log p(x|z)] + KL(q(z|x) || N(0, I)), with the likelihood the graph's
        metadata names (`negative_log_likelihood`: Bernoulli, -sum(x log p + (1 - x) log(1 - p))
        over pixels with continuous x allowed, for the reference models) and the analytic KL -0.5 * sum(1 + logvar - mu^2 - exp(logvar)). The expectation is
        estimated with `samples` draws z = mu + eps * exp(0.5 * logvar), eps from the portable
        generator for `seed` ([samples, batch, *latent], every class the same draws). `eps`
        ([samples, batch, latent] standard-normal draws) replaces the seeded draws: batch jobs
        draw them per row, so a row's score does not depend on how the rows were batched.

        Conditional models: with `labels` or `y`, the bound on -log p(x | y) for those classes.
        With neither, a bound on -log p(x) with a uniform class prior p(y) = 1/K, marginalising
        over the classes with every class's ELBO L(x, k): weighted by the classifier's q(y | x)
        when the model has one (M2's unlabelled bound, sum_k q_k (L_k + log K) - H(q)), else
        exactly, -log sum_k exp(-L_k) / K (the tightest such bound).
        """
        samples = check_count("samples", samples, 1, MAX_SAMPLES)
        seed = check_seed(seed)
        x = self.encoder._check(x, "x", image=True)
        k = self.num_classes
        if not k or y is not None or labels is not None:
            return self._neg_elbo(x, condition(y, labels, k, len(x)), samples, seed, eps)
        per_class = np.stack([self._neg_elbo(x, label_rows(c, k, len(x)), samples, seed, eps) for c in range(k)], 1)
        if self.classifier is not None:
            q = self.classifier.classify(x).astype(np.float64)
            return (q * (per_class + np.log(k))).sum(1) + (q * np.log(np.clip(q, _LOG_EPS, 1.0))).sum(1)
        low = per_class.min(axis=1, keepdims=True)  # log-sum-exp, stable
        return (low[:, 0] - np.log(np.exp(low - per_class).sum(1))) + np.log(k)

    def _neg_elbo(self, x: np.ndarray, rows: np.ndarray | None, samples: int, seed: int | None,
                  eps: np.ndarray | None) -> np.ndarray:
        mu, logvar = self.encoder.encode(x, rows)
        if eps is not None and np.shape(eps) != (samples, *mu.shape):
            raise RuntimeInputError(f"eps: expected shape {[samples, *mu.shape]}, found {list(np.shape(eps))}")
        if eps is None:  # the portable generator: a seed gives the same score in every host
            eps = normal_latents((samples, *mu.shape), fresh_seed() if seed is None else seed)
        nll = np.zeros(len(x), dtype=np.float64)
        for s in range(samples):
            z = mu + np.asarray(eps[s], dtype=np.float32) * np.exp(0.5 * logvar)
            nll += negative_log_likelihood(x, self.decoder.decode(z, rows), self.decoder.meta.likelihood)
        terms = 1.0 + logvar - mu.astype(np.float64) ** 2 - np.exp(logvar)
        kl = -0.5 * terms.reshape(len(x), -1).sum(axis=1)  # over every latent axis, flat or spatial
        return nll / samples + kl
