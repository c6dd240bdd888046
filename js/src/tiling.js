// Tiled decoding outside the graph, as the Python runtime's tiling.py (itself diffusers'
// AutoencoderKL.tiled_decode): the latent is cut into overlapping tiles of `tile` x `tile`
// cells, each decoded on its own, and neighbours are blended linearly over the overlap:
//
// - tiles start every trunc(tile * (1 - overlap)) latent cells;
// - a tile is blended with the (already blended) tile above over trunc(tile * stride * overlap)
//   rows, then with the one to its left over as many columns: weight y / extent for the new tile;
// - each tile keeps its first tile * stride - extent rows and columns.
//
// The arithmetic is numpy's on float32 arrays: a weight (a Python float) becomes a float32,
// each product and the sum are rounded to float32. Here every one of those steps is a
// Math.fround of the exact binary64 result, which rounds the same way.

import { pyFloat, pyFormatG } from "./pyformat.js";

export const DEFAULT_OVERLAP = 0.25; // diffusers' AutoencoderKL.tile_overlap_factor

/**
 * [latent step between tiles, blend extent in pixels, pixels kept per tile]. Throws RangeError
 * (the runtime turns it into a RuntimeInputError) when the tiles would not add up to the
 * untiled image size.
 * @param {number} tile @param {number} stride @param {number} [overlap]
 * @returns {[number, number, number]}
 */
export function tileGeometry(tile, stride, overlap = DEFAULT_OVERLAP) {
  if (!(overlap >= 0 && overlap < 1)) {
    throw new RangeError(`overlap: expected a fraction in [0, 1), found ${pyFloat(overlap)}`);
  }
  const step = Math.trunc(tile * (1 - overlap));
  const extent = Math.trunc(tile * stride * overlap);
  const keep = tile * stride - extent;
  if (step < 1 || keep !== step * stride) {
    throw new RangeError(`tile: ${tile} latent cells with overlap ${pyFormatG(overlap)} do not tile evenly ` +
      `(step ${step} cells x stride ${stride} != ${keep} pixels kept); use a multiple of 4`);
  }
  return [step, extent, keep];
}

/**
 * A [b, c, y0:y1, x0:x1] window of a 4-D row-major array, as a new array.
 * @param {{ data: Float32Array, dims: number[] }} a
 */
function crop(a, y0, y1, x0, x1) {
  const [b, c, h, w] = a.dims;
  y1 = Math.min(y1, h);
  x1 = Math.min(x1, w);
  const out = new Float32Array(b * c * (y1 - y0) * (x1 - x0));
  let k = 0;
  for (let p = 0; p < b * c; p++) {
    for (let y = y0; y < y1; y++) {
      const row = (p * h + y) * w;
      out.set(a.data.subarray(row + x0, row + x1), k);
      k += x1 - x0;
    }
  }
  return { data: out, dims: [b, c, y1 - y0, x1 - x0] };
}

/** diffusers' blend_v, in place: the first rows of `tile` fade in over `above`'s last ones. */
function blendV(above, tile, extent) {
  const [b, c, ah] = above.dims;
  const [, , th, tw] = tile.dims;
  extent = Math.min(ah, th, extent);
  for (let y = 0; y < extent; y++) {
    const wOld = Math.fround(1 - y / extent);
    const wNew = Math.fround(y / extent);
    for (let p = 0; p < b * c; p++) {
      const src = (p * ah + ah - extent + y) * tw;
      const dst = (p * th + y) * tw;
      for (let x = 0; x < tw; x++) {
        tile.data[dst + x] = Math.fround(above.data[src + x] * wOld) + Math.fround(tile.data[dst + x] * wNew);
      }
    }
  }
}

/** diffusers' blend_h, in place: the first columns of `tile` fade in over `left`'s last ones. */
function blendH(left, tile, extent) {
  const [b, c, , lw] = left.dims;
  const [, , th, tw] = tile.dims;
  extent = Math.min(lw, tw, extent);
  for (let x = 0; x < extent; x++) {
    const wOld = Math.fround(1 - x / extent);
    const wNew = Math.fround(x / extent);
    for (let p = 0; p < b * c; p++) {
      for (let y = 0; y < th; y++) {
        const src = (p * th + y) * lw + lw - extent + x;
        const dst = (p * th + y) * tw + x;
        tile.data[dst] = Math.fround(left.data[src] * wOld) + Math.fround(tile.data[dst] * wNew);
      }
    }
  }
}

/**
 * Decode `z` [batch, c, h, w] in overlapping tiles of `tile` latent cells; `decode` maps a
 * latent tile to its image [batch, C, th * stride, tw * stride]. A latent no larger than one
 * tile is decoded whole, as diffusers does. Memory: the output, one tile, and one row of tile
 * borders.
 * @param {(part: { data: Float32Array, dims: number[] }) => Promise<{ data: Float32Array, dims: number[] }>} decode
 * @param {{ data: Float32Array, dims: number[] }} z
 * @param {number} tile @param {number} stride @param {number} [overlap]
 * @returns {Promise<{ data: Float32Array, dims: number[] }>}
 */
export async function tiledDecode(decode, z, tile, stride, overlap = DEFAULT_OVERLAP) {
  const [batch, , h, w] = z.dims;
  if (h <= tile && w <= tile) return decode(z);
  const [step, extent, keep] = tileGeometry(tile, stride, overlap);
  let out = null;
  let channels = 0;
  let above = []; // the last `extent` rows of each tile of the previous row
  for (let i = 0; i < h; i += step) {
    const bottoms = [];
    let left = null;
    for (let j = 0, n = 0; j < w; j += step, n++) {
      const decoded = await decode(crop(z, i, i + tile, j, j + tile));
      const t = { data: Float32Array.from(decoded.data), dims: Array.from(decoded.dims) };
      const [, c, th, tw] = t.dims;
      if (out === null) {
        channels = c;
        out = new Float32Array(batch * c * h * stride * w * stride);
      }
      if (i > 0) blendV(above[n], t, extent);
      if (left !== null) blendH(left, t, extent);
      // What the next tiles read: kept before cropping, as diffusers blends whole tiles.
      left = crop(t, 0, th, Math.max(0, tw - extent), tw);
      bottoms.push(crop(t, Math.max(0, th - extent), th, 0, tw));
      const kept = crop(t, 0, keep, 0, keep);
      const [, , kh, kw] = kept.dims;
      const H = h * stride;
      const W = w * stride;
      for (let p = 0; p < batch * c; p++) {
        for (let y = 0; y < kh; y++) {
          const dst = (p * H + i * stride + y) * W + j * stride;
          out.set(kept.data.subarray((p * kh + y) * kw, (p * kh + y + 1) * kw), dst);
        }
      }
    }
    above = bottoms;
  }
  return { data: out, dims: [batch, channels, h * stride, w * stride] };
}
