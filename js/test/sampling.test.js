// The portable generator against the vectors the Python runtime wrote
// (runtime/tests/data/sampling_vectors.json): every value bit for bit.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { RuntimeInputError } from "../src/errors.js";
import { GENERATOR, ln, normalLatents, normals, scaled, seedKey, threefry2x32 } from "../src/sampling.js";

const VECTORS = JSON.parse(readFileSync(new URL("../../runtime/tests/data/sampling_vectors.json", import.meta.url), "utf8"));

const hex32 = (u) => u.toString(16).padStart(8, "0");
const f32Bits = (values) => Array.from(new Uint32Array(Float32Array.from(values).buffer), hex32);
const f64Bits = (values) => {
  const words = new Uint32Array(Float64Array.from(values).buffer); // little-endian: low word first
  return Array.from({ length: words.length / 2 }, (_, i) => hex32(words[2 * i + 1]) + hex32(words[2 * i]));
};
const fromF64Bits = (words) => {
  const view = new DataView(new ArrayBuffer(8));
  return words.map((w) => {
    view.setBigUint64(0, BigInt(`0x${w}`));
    return view.getFloat64(0);
  });
};
const seedOf = (text) => (BigInt(text) <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(text) : BigInt(text));

test("the name of the algorithm", () => {
  assert.equal(GENERATOR, VECTORS.generator);
});

test("Threefry-2x32-20: Random123's known answers and the shared vectors", () => {
  assert.deepEqual(threefry2x32(0, 0, 0, 0).map(hex32), ["6b200159", "99ba4efe"]);
  assert.deepEqual(threefry2x32(0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff).map(hex32), ["1cb996fc", "bb002be7"]);
  assert.deepEqual(threefry2x32(0x13198a2e, 0x03707344, 0x243f6a88, 0x85a308d3).map(hex32), ["c4923a9c", "483df7a0"]);
  for (const { key, counter, words } of VECTORS.threefry2x32_20) {
    const [k0, k1, c0, c1] = [...key, ...counter].map((w) => parseInt(w, 16));
    assert.deepEqual(threefry2x32(k0, k1, c0, c1).map(hex32), words);
  }
});

test("ln: the spec's algorithm, bit for bit (never Math.log)", () => {
  const xs = fromF64Bits(VECTORS.ln.x_f64);
  assert.deepEqual(f64Bits(xs.map(ln)), VECTORS.ln.ln_f64);
  assert.equal(ln(1), 0);
  assert.equal(ln(0.5), -0.6931471805599453);
});

for (const c of VECTORS.normals) {
  test(`normals of seed ${c.seed}, bit for bit`, () => {
    const seed = seedOf(c.seed);
    assert.deepEqual(f64Bits(normals(8, seed)), c.first8_f64);
    assert.deepEqual(f32Bits(normalLatents([c.count], seed).data), c.f32);
  });
}

test("an SD-sized draw (65536 values) matches Python's digest", () => {
  const { seed, count, sha256_f32le: digest, last4_f32: last } = VECTORS.long;
  const z = normalLatents([1, 4, 128, 128], seedOf(seed));
  assert.equal(z.data.length, count);
  assert.deepEqual(z.dims, [1, 4, 128, 128]);
  assert.equal(createHash("sha256").update(new Uint8Array(z.data.buffer)).digest("hex"), digest);
  assert.deepEqual(f32Bits(z.data.subarray(count - 4)), last);
});

for (const c of VECTORS.latents) {
  test(`latents ${JSON.stringify(c.shape)} of seed ${c.seed} at temperature ${c.temperature}`, () => {
    const z = scaled(normalLatents(c.shape, seedOf(c.seed)), c.temperature);
    assert.deepEqual(z.dims, c.shape);
    assert.deepEqual(f32Bits(z.data), c.f32);
  });
}

test("a seed as a Number or a BigInt is the same seed", () => {
  assert.deepEqual(normals(10, 42), normals(10, 42n));
  assert.deepEqual(normals(10, 2 ** 40 + 7), normals(10, 2n ** 40n + 7n));
  assert.deepEqual(seedKey(2n ** 63n - 1n), [0xffffffff, 0x7fffffff]);
});

test("a larger draw starts with a smaller one, whatever the shape", () => {
  const small = normalLatents([5, 4, 3, 3], 11).data;
  const large = normalLatents([7, 4, 3, 3], 11).data;
  assert.deepEqual(large.subarray(0, small.length), small);
  assert.deepEqual(normalLatents([180], 11).data, small);
  assert.deepEqual(normals(3, 9), normals(4, 9).subarray(0, 3));
});

test("temperature 1 changes nothing; others are one float32 multiplication", () => {
  const z = normalLatents([100], 4);
  assert.deepEqual(scaled(z, 1).data, z.data);
  const t = Math.fround(0.37);
  scaled(z, 0.37).data.forEach((v, i) => assert.equal(v, Math.fround(z.data[i] * t)));
});

test("bad seeds: check_seed's message", () => {
  const cases = [
    [-1, "seed: expected an integer from 0 to 9223372036854775807, found -1"],
    [1.5, "seed: expected an integer from 0 to 9223372036854775807, found float 1.5"],
    [2n ** 63n, "seed: expected an integer from 0 to 9223372036854775807, found 9223372036854775808"],
    ["3", "seed: expected an integer from 0 to 9223372036854775807, found str '3'"],
    [2 ** 60, "seed: expected an integer from 0 to 9223372036854775807, found 1152921504606846976 " +
      "(a Number above 2^53 - 1 is not exact; pass a BigInt)"],
  ];
  for (const [seed, message] of cases) {
    assert.throws(() => normals(1, seed), (e) => e instanceof RuntimeInputError && e.message === message, String(seed));
  }
});

test("moments of a million draws", () => {
  const z = normals(1_000_000, 2024);
  const mean = z.reduce((a, v) => a + v, 0) / z.length;
  const variance = z.reduce((a, v) => a + (v - mean) ** 2, 0) / z.length;
  assert.ok(Math.abs(mean) < 5 / Math.sqrt(z.length), `mean ${mean}`);
  assert.ok(Math.abs(variance - 1) < 5 * Math.sqrt(2 / z.length), `variance ${variance}`);
});
