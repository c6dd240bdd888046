// Tiled decoding (tiling.js) against a slow reference written the way diffusers'
// AutoencoderKL.tiled_decode is: decode every tile, blend whole tiles in place, crop, concatenate.

import assert from "node:assert/strict";
import { test } from "node:test";

import { tileGeometry, tiledDecode } from "../src/tiling.js";

const STRIDE = 2;

/** A stand-in decoder: 3 channels at `STRIDE` times the latent's size, each pixel depending on
 * its latent cell AND its position inside the tile, so that overlapping tiles disagree. */
async function fakeDecode({ data, dims }) {
  const [b, c, h, w] = dims;
  const H = h * STRIDE;
  const W = w * STRIDE;
  const out = new Float32Array(b * 3 * H * W);
  for (let n = 0; n < b; n++) {
    for (let k = 0; k < 3; k++) {
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) {
          const cell = data[((n * c + (k % c)) * h + Math.floor(y / STRIDE)) * w + Math.floor(x / STRIDE)];
          out[((n * 3 + k) * H + y) * W + x] = Math.sin(cell) * 0.5 + 0.1 * (y / H) - 0.07 * (x / W) + 0.05 * k;
        }
      }
    }
  }
  return { data: out, dims: [b, 3, H, W] };
}

/** diffusers' tiled_decode, element by element (numpy float32 arithmetic: each step rounded). */
async function reference(z, tile, overlap) {
  const [b, , h, w] = z.dims;
  if (h <= tile && w <= tile) return fakeDecode(z); // diffusers' decode() tiles only larger latents
  const step = Math.trunc(tile * (1 - overlap));
  const extent = Math.trunc(tile * STRIDE * overlap);
  const limit = tile * STRIDE - extent;
  const at = (t, n, k, y, x) => t.data[((n * t.dims[1] + k) * t.dims[2] + y) * t.dims[3] + x];
  const set = (t, n, k, y, x, v) => { t.data[((n * t.dims[1] + k) * t.dims[2] + y) * t.dims[3] + x] = v; };
  const rows = [];
  for (let i = 0; i < h; i += step) {
    const row = [];
    for (let j = 0; j < w; j += step) {
      const th = Math.min(tile, h - i);
      const tw = Math.min(tile, w - j);
      const part = new Float32Array(b * z.dims[1] * th * tw);
      for (let n = 0; n < b; n++) for (let k = 0; k < z.dims[1]; k++) for (let y = 0; y < th; y++) for (let x = 0; x < tw; x++) {
        part[((n * z.dims[1] + k) * th + y) * tw + x] = at(z, n, k, i + y, j + x);
      }
      row.push(await fakeDecode({ data: part, dims: [b, z.dims[1], th, tw] }));
    }
    rows.push(row);
  }
  const H = h * STRIDE;
  const W = w * STRIDE;
  const out = { data: new Float32Array(b * 3 * H * W), dims: [b, 3, H, W] };
  rows.forEach((row, ri) => row.forEach((t, rj) => {
    const [, C, th, tw] = t.dims;
    if (ri > 0) { // blend_v with the (blended) tile above
      const a = rows[ri - 1][rj];
      const e = Math.min(a.dims[2], th, extent);
      for (let y = 0; y < e; y++) for (let n = 0; n < b; n++) for (let k = 0; k < C; k++) for (let x = 0; x < tw; x++) {
        set(t, n, k, y, x, Math.fround(Math.fround(at(a, n, k, a.dims[2] - e + y, x) * Math.fround(1 - y / e)) +
          Math.fround(at(t, n, k, y, x) * Math.fround(y / e))));
      }
    }
    if (rj > 0) { // blend_h with the (blended) tile to the left
      const l = row[rj - 1];
      const e = Math.min(l.dims[3], tw, extent);
      for (let x = 0; x < e; x++) for (let n = 0; n < b; n++) for (let k = 0; k < C; k++) for (let y = 0; y < th; y++) {
        set(t, n, k, y, x, Math.fround(Math.fround(at(l, n, k, y, l.dims[3] - e + x) * Math.fround(1 - x / e)) +
          Math.fround(at(t, n, k, y, x) * Math.fround(x / e))));
      }
    }
    for (let n = 0; n < b; n++) for (let k = 0; k < C; k++) {
      for (let y = 0; y < Math.min(limit, th); y++) for (let x = 0; x < Math.min(limit, tw); x++) {
        set(out, n, k, ri * step * STRIDE + y, rj * step * STRIDE + x, at(t, n, k, y, x));
      }
    }
  }));
  return out;
}

function latent(b, c, h, w, seed) {
  let s = seed;
  const data = Float32Array.from({ length: b * c * h * w }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return (s / 2147483648) * 4 - 2;
  });
  return { data, dims: [b, c, h, w] };
}

for (const [name, dims, tile, overlap] of [
  ["2 x 3 tiles, overlap 0.25", [1, 4, 16, 24], 8, 0.25],
  ["uneven edges, batch 2", [2, 4, 13, 19], 8, 0.25],
  ["overlap 0.5", [1, 2, 20, 12], 8, 0.5],
  ["no overlap", [1, 4, 9, 10], 4, 0],
  ["one tile: decoded whole", [1, 4, 8, 8], 8, 0.25],
]) {
  test(`tiled decode = the slow reference: ${name}`, async () => {
    const z = latent(...dims, 7);
    const fast = await tiledDecode(fakeDecode, z, tile, STRIDE, overlap);
    const slow = await reference(z, tile, overlap);
    assert.deepEqual(fast.dims, slow.dims);
    assert.deepEqual(fast.data, slow.data);
  });
}

test("the blend changes the seams (the stand-in's tiles do disagree)", async () => {
  const z = latent(1, 4, 16, 24, 3);
  const tiled = await tiledDecode(fakeDecode, z, 8, STRIDE, 0.25);
  const whole = await fakeDecode(z);
  assert.notDeepEqual(tiled.data, whole.data);
});

test("tile geometry: diffusers' numbers, and the uneven ones refused", () => {
  assert.deepEqual(tileGeometry(64, 8, 0.25), [48, 128, 384]);
  assert.throws(() => tileGeometry(7, 2, 0.25), {
    message: "tile: 7 latent cells with overlap 0.25 do not tile evenly (step 5 cells x stride 2 != 11 pixels kept); use a multiple of 4",
  });
  assert.throws(() => tileGeometry(8, 2, 1), { message: "overlap: expected a fraction in [0, 1), found 1.0" });
  assert.throws(() => tileGeometry(8, 2, -0.5), { message: "overlap: expected a fraction in [0, 1), found -0.5" });
});
