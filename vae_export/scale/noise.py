"""Standard-normal draws per row, the same whichever batch or worker a row lands in.

A job split into batches cannot share one random stream, so row i's draw comes from the
block of CHUNK rows that holds it: block k is default_rng([seed, stream, draw, k]) drawing
(CHUNK, dim) values. One generator per CHUNK rows keeps this cheap.
"""

from __future__ import annotations

import numpy as np

CHUNK = 1024
SCORE_STREAM = 0  # the eps of anomaly scores
PRIOR_STREAM = 1  # the z of generated samples


def normal_rows(seed: int, rows: np.ndarray, dim: int, stream: int, draw: int = 0) -> np.ndarray:
    """[len(rows), dim] float32 draws; row i's values depend only on (seed, stream, draw, i)
    (`draw` numbers repeated draws for the same rows, e.g. several z per image)."""
    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty((len(rows), dim), dtype=np.float32)
    blocks = rows // CHUNK
    for block in np.unique(blocks):
        where = blocks == block
        values = np.random.default_rng([seed, stream, draw, int(block)]).standard_normal((CHUNK, dim))
        out[where] = values[rows[where] % CHUNK]
    return out
