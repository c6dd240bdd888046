"""Tiled decoding outside the graph (numpy only), as diffusers' `AutoencoderKL.tiled_decode`.

diffusers tiles in Python control flow (`enable_tiling()`), which a traced graph cannot keep:
the graph bakes in one path. So the runtime tiles: the latent is cut into overlapping tiles of
`tile` x `tile` cells, each decoded by the graph on its own, and neighbours are blended
linearly over the overlap, in diffusers' order and with its arithmetic:

- tiles start every `int(tile * (1 - overlap))` latent cells (diffusers: 64 cells, overlap 0.25);
- a tile is blended with the (already blended) tile above over `int(tile * stride * overlap)`
  rows, then with the one to its left over as many columns: weight y / extent for the new tile;
- each tile keeps its first `tile * stride - extent` rows and columns.

Memory is bounded by one tile plus one row of tile borders (not the whole image's activations):
only the output image and the last `extent` rows/columns of the previous tiles are kept.

The one difference from diffusers: our graphs end in `clamp((x + 1) / 2, 0, 1)`, so tiles are
blended after the clamp, diffusers' before its image processor clamps. Where both tiles are in
range the results are the same; elsewhere they differ by at most the amount a tile's output
lies out of range inside the overlap (docs: tests/test_diffusers.py measures it).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

DEFAULT_OVERLAP = 0.25  # diffusers' AutoencoderKL.tile_overlap_factor


def tile_geometry(tile: int, stride: int, overlap: float = DEFAULT_OVERLAP) -> tuple[int, int, int]:
    """(latent step between tiles, blend extent in pixels, pixels kept per tile). Raises
    ValueError when the tiles would not add up to the untiled image size (the kept pixels
    must equal the step times the stride, which diffusers' defaults satisfy)."""
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap: expected a fraction in [0, 1), found {overlap}")
    step = int(tile * (1 - overlap))
    extent = int(tile * stride * overlap)
    keep = tile * stride - extent
    if step < 1 or keep != step * stride:
        raise ValueError(f"tile: {tile} latent cells with overlap {overlap:g} do not tile evenly "
                         f"(step {step} cells x stride {stride} != {keep} pixels kept); use a multiple of 4")
    return step, extent, keep


def _blend_v(above: np.ndarray, tile: np.ndarray, extent: int) -> None:
    """diffusers' blend_v, in place: the first rows of `tile` fade in over `above`'s last ones."""
    extent = min(above.shape[2], tile.shape[2], extent)
    for y in range(extent):
        tile[:, :, y, :] = above[:, :, -extent + y, :] * (1 - y / extent) + tile[:, :, y, :] * (y / extent)


def _blend_h(left: np.ndarray, tile: np.ndarray, extent: int) -> None:
    extent = min(left.shape[3], tile.shape[3], extent)
    for x in range(extent):
        tile[:, :, :, x] = left[:, :, :, -extent + x] * (1 - x / extent) + tile[:, :, :, x] * (x / extent)


def tiled_decode(decode: Callable[[np.ndarray], np.ndarray], z: np.ndarray, tile: int, stride: int,
                 overlap: float = DEFAULT_OVERLAP) -> np.ndarray:
    """Decode `z` [batch, c, h, w] in overlapping tiles of `tile` latent cells; `decode` maps a
    latent tile to its image [batch, C, th * stride, tw * stride]. A latent no larger than one
    tile is decoded whole, as diffusers does."""
    batch, _, h, w = z.shape
    if h <= tile and w <= tile:
        return decode(z)
    step, extent, keep = tile_geometry(tile, stride, overlap)
    out: np.ndarray | None = None
    above: list[np.ndarray] = []  # the last `extent` rows of each tile of the previous row
    for i in range(0, h, step):
        row_bottoms: list[np.ndarray] = []
        left: np.ndarray | None = None
        for n, j in enumerate(range(0, w, step)):
            t = np.array(decode(np.ascontiguousarray(z[:, :, i:i + tile, j:j + tile])), dtype=np.float32)
            if out is None:
                out = np.empty((batch, t.shape[1], h * stride, w * stride), dtype=np.float32)
            if i > 0:
                _blend_v(above[n], t, extent)
            if left is not None:
                _blend_h(left, t, extent)
            # What the next tiles read: kept before cropping, as diffusers blends whole tiles.
            left = t[:, :, :, -extent:].copy() if extent else t[:, :, :, :0]
            row_bottoms.append(t[:, :, -extent:, :].copy() if extent else t[:, :, :0, :])
            kept = t[:, :, :keep, :keep]
            out[:, :, i * stride:i * stride + kept.shape[2], j * stride:j * stride + kept.shape[3]] = kept
        above = row_bottoms
    assert out is not None
    return out
