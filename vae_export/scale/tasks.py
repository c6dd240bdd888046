"""The work of one batch of a job, the same on every engine: rows (indices) in, an Arrow
table out. Local and Ray engines differ only in who calls `Worker` on which rows.

Output columns (one row per input row, in input order):
- encode:   id, mu (list<float32>), logvar (list<float32>), error (string, null when fine)
- score:    id, score (float64: the runtime's anomaly score, negative ELBO in nats), error
- generate: id, z (list<float32>), x_hat (list<float32>, C*H*W values; the image shape is in
            the schema metadata)
A row whose input is unusable keeps its id, nulls, and the reason in `error`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from vae_export.scale.inputs import Source
from vae_export.limits import MAX_SCORE_DRAWS_PER_CALL
from vae_export.scale.noise import PRIOR_STREAM, SCORE_STREAM, normal_rows

KINDS = ("encode", "score", "generate")
_VECTOR = pa.list_(pa.float32())


@dataclass(frozen=True)
class Task:
    """Everything a worker needs, small and picklable (graphs are loaded in the worker)."""

    kind: str
    encoder: Path
    decoder: Path
    image_shape: tuple[int, ...]
    latent_shape: tuple[int, ...]  # flat (latent,) or spatial (c, h, w): rows are stored flattened
    source: Source | None = None  # None for generate
    seed: int = 0
    samples: int = 1  # score: draws of z per image

    def schema(self) -> pa.Schema:
        id_type = pa.string() if self.source is not None and self.source.kind == "folder" else pa.int64()
        if self.kind == "encode":
            fields = [("id", id_type), ("mu", _VECTOR), ("logvar", _VECTOR), ("error", pa.string())]
        elif self.kind == "score":
            fields = [("id", id_type), ("score", pa.float64()), ("error", pa.string())]
        else:
            fields = [("id", id_type), ("z", _VECTOR), ("x_hat", _VECTOR)]
        meta = {"vae_export.image_shape": ",".join(map(str, self.image_shape)), "vae_export.job": self.kind}
        return pa.schema(fields, metadata=meta)


def _vectors(values: np.ndarray | None, ok: np.ndarray) -> pa.Array:
    """A list<float32> column (one row of `values` per True in `ok`), null where a row failed;
    built from offsets, since a Python list of arrays is slow at 784 values a row."""
    width = 0 if values is None else int(np.prod(values.shape[1:]))
    offsets = np.concatenate([[0], np.cumsum(np.where(ok, width, 0))]).astype(np.int32)
    flat = np.empty(0, np.float32) if values is None else np.ascontiguousarray(values, np.float32).reshape(-1)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat), type=_VECTOR, mask=pa.array(~ok))


class Worker:
    """Holds the ONNX Runtime sessions for one process (a Ray actor, or the local engine)."""

    def __init__(self, task: Task, threads: int | None = None) -> None:
        from vae_export_runtime import VAE, VAEDecoder

        self.task = task
        if task.kind == "generate":
            self.decoder = VAEDecoder(task.decoder, threads=threads)
        else:
            self.vae = VAE(task.encoder, task.decoder, threads=threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        rows = np.asarray(batch["id"], dtype=np.int64)  # Ray Data's range() names its column "id"
        if self.task.kind == "generate":
            return self._generate(rows)
        assert self.task.source is not None
        loaded = self.task.source.load(rows, self.task.image_shape)
        ok = np.array([not isinstance(v, str) for v in loaded], dtype=bool)
        errors = [v if isinstance(v, str) else None for v in loaded]
        x = np.stack([v for v in loaded if not isinstance(v, str)]) if ok.any() else None
        ids = pa.array(self.task.source.ids(rows), type=self.task.schema().field("id").type)
        if self.task.kind == "encode":
            mu = logvar = None
            if x is not None:
                mu, logvar = self.vae.encoder.encode(x)
            columns = [ids, _vectors(mu, ok), _vectors(logvar, ok), pa.array(errors, type=pa.string())]
        else:
            scores: list[float | None] = [None] * len(rows)
            if x is not None:
                for slot, value in zip(np.flatnonzero(ok), self._scores(rows[ok], x)):
                    scores[slot] = float(value)
            columns = [ids, pa.array(scores, type=pa.float64()), pa.array(errors, type=pa.string())]
        return pa.Table.from_arrays(columns, schema=self.task.schema())

    def _scores(self, rows: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Anomaly scores in calls of at most MAX_SCORE_DRAWS_PER_CALL z draws (rows x samples):
        the eps of 65,536 rows at --samples 1024 would otherwise be 8.6 GB at once."""
        samples = self.task.samples
        step = max(1, MAX_SCORE_DRAWS_PER_CALL // samples)
        parts = []
        for start in range(0, len(rows), step):
            part = rows[start : start + step]
            eps = np.stack([self._normal(part, SCORE_STREAM, draw) for draw in range(samples)])
            parts.append(self.vae.anomaly_score(x[start : start + step], samples, eps=eps))
        return np.concatenate(parts)

    def _normal(self, rows: np.ndarray, stream: int, draw: int = 0) -> np.ndarray:
        shape = self.task.latent_shape
        return normal_rows(self.task.seed, rows, int(np.prod(shape)), stream, draw).reshape(len(rows), *shape)

    def _generate(self, rows: np.ndarray) -> pa.Table:
        z = self._normal(rows, PRIOR_STREAM)
        x_hat = self.decoder.decode(z)
        every = np.ones(len(rows), dtype=bool)
        columns = [pa.array(rows, type=pa.int64()), _vectors(z, every), _vectors(x_hat, every)]
        return pa.Table.from_arrays(columns, schema=self.task.schema())


def make_task(kind: str, artifacts: Path, source: Source | None = None, seed: int = 0, samples: int = 1,
              variant: str = "fp32") -> Task:
    """A task on ARTIFACTS' graphs; the image shape and latent size come from the decoder's
    own signature (loading it here also reports a missing or broken graph before any work)."""
    from vae_export.errors import UsageError
    from vae_export_runtime import RuntimeInputError, VAEDecoder
    from vae_export_runtime.contract import graph_filename

    # absolute: Ray workers may run in another working directory
    encoder, decoder = (artifacts.resolve() / graph_filename(role, variant) for role in ("encoder", "decoder"))
    for path in (decoder,) if kind == "generate" else (encoder, decoder):
        if not path.is_file():
            raise UsageError(f"--artifacts {artifacts}: no {path.name}; run `vae-export export --artifacts {artifacts}` first")
    graph = VAEDecoder(decoder)
    try:  # --dynamic-size graphs: jobs run at the size they were exported at
        latent_shape = graph.latent_shape_for()
    except RuntimeInputError as exc:
        raise UsageError(f"--artifacts {artifacts}: {exc}") from None
    height, width = graph.default_size  # type: ignore[misc]
    image_shape = (int(graph.image_shape[0]), height, width)  # type: ignore[arg-type]
    if source is not None:
        source.check_rows(image_shape)
    return Task(kind, encoder, decoder, image_shape, latent_shape, source, seed, samples)
