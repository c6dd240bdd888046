// The portable seeded normal generator, "vae-export normal v1" (docs/contract.md, "Portable
// seeded sampling"): the same float32 latents, bit for bit, as the Python runtime's
// vae_export_runtime/sampling.py for the same seed.
//
// 1. seed s in [0, 2^63 - 1] -> key (k0, k1) = (s mod 2^32, floor(s / 2^32));
// 2. block i -> Threefry-2x32, 20 rounds (Salmon et al. 2011, Random123; JAX's generator),
//    counter (i mod 2^32, floor(i / 2^32)) -> words (w0, w1);
// 3. U_i = ((w0 >>> 5) * 2^26 + (w1 >>> 6)) / 2^53, exact;
// 4. Marsaglia's polar method on blocks (2j, 2j + 1);
// 5. ln by `ln` below, never Math.log (whose last bit differs between engines and libms);
// 6. the first n * prod(L) normals rounded to float32, row-major; times float32(temperature).
//
// JavaScript evaluates every + - * / and Math.sqrt in binary64, rounded to nearest, and never
// fuses a multiply with an add: exactly the arithmetic the specification prescribes.

import { RuntimeInputError } from "./errors.js";
import { MAX_SEED } from "./limits.js";
import { pyRepr, typeName } from "./pyformat.js";

export const GENERATOR = "vae-export normal v1";

const ROTATIONS = [13, 15, 26, 6, 17, 29, 16, 24]; // Random123's R_32x2
const PARITY = 0x1bd11bda;
const TWO32 = 4294967296;
const SQRT_HALF = 0.7071067811865476;
const LN2 = 0.6931471805599453;
// 1/(2k+1) for k = 11 (the start, 1/23) down to 0, each a correctly rounded division.
const ODD_RECIPROCALS = Array.from({ length: 12 }, (_, i) => 1 / (2 * (11 - i) + 1));

const words = new Uint32Array(2); // threefry's output, reused: no array per block in the hot loop

/** Threefry-2x32-20 of counter (c0, c1) under key (k0, k1) into `words`. */
function threefryInto(k0, k1, c0, c1) {
  const k2 = (k0 ^ k1 ^ PARITY) >>> 0;
  const ks = [k0 >>> 0, k1 >>> 0, k2];
  let x0 = (c0 + ks[0]) >>> 0;
  let x1 = (c1 + ks[1]) >>> 0;
  for (let r = 0; r < 20; r++) {
    const rot = ROTATIONS[r % 8];
    x0 = (x0 + x1) >>> 0;
    x1 = ((x1 << rot) | (x1 >>> (32 - rot))) >>> 0;
    x1 = (x1 ^ x0) >>> 0;
    if (r % 4 === 3) {
      const g = (r >> 2) + 1;
      x0 = (x0 + ks[g % 3]) >>> 0;
      x1 = (x1 + ks[(g + 1) % 3] + g) >>> 0;
    }
  }
  words[0] = x0;
  words[1] = x1;
}

/**
 * Threefry-2x32 with 20 rounds: the two output words of counter (c0, c1) under key (k0, k1),
 * all unsigned 32-bit integers. `>>> 0` keeps every sum and rotation in 0 .. 2^32 - 1 (sums
 * of two words are below 2^33, exact in a Number).
 * @param {number} k0 @param {number} k1 @param {number} c0 @param {number} c1
 * @returns {[number, number]}
 */
export function threefry2x32(k0, k1, c0, c1) {
  threefryInto(k0, k1, c0, c1);
  return [words[0], words[1]];
}

const bits = new DataView(new ArrayBuffer(8));

/**
 * frexp from the IEEE-754 bits: x = m * 2^e with m in [0.5, 1), exactly (subnormals are
 * scaled by 2^54 first, which is exact).
 * @param {number} x positive and finite
 * @returns {[number, number]}
 */
function frexp(x) {
  bits.setFloat64(0, x);
  let field = (bits.getUint32(0) >>> 20) & 0x7ff;
  let shift = 0;
  if (field === 0) {
    bits.setFloat64(0, x * 2 ** 54);
    field = (bits.getUint32(0) >>> 20) & 0x7ff;
    shift = 54;
  }
  bits.setUint32(0, (bits.getUint32(0) & 0x800fffff) | (1022 << 20));
  return [bits.getFloat64(0), field - 1022 - shift];
}

/**
 * The natural logarithm of a positive finite x by the specification's algorithm (step 5): the
 * same bits in every host. (m, e) = frexp(x); m < sqrt(1/2) -> (2m, e - 1);
 * r = (m - 1)/(m + 1); ln m = 2r (1 + r^2/3 + ... + r^22/23) by Horner from 1/23;
 * ln x = ln m + e ln 2.
 * @param {number} x
 */
export function ln(x) {
  let [m, e] = frexp(x);
  if (m < SQRT_HALF) {
    m = m * 2;
    e = e - 1;
  }
  const r = (m - 1) / (m + 1);
  const r2 = r * r;
  let p = ODD_RECIPROCALS[0];
  for (let k = 1; k < ODD_RECIPROCALS.length; k++) p = p * r2 + ODD_RECIPROCALS[k];
  return 2 * r * p + e * LN2;
}

/**
 * Step 1: the key of a seed, a safe-integer Number or a BigInt in [0, 2^63 - 1]. The message
 * is check_seed's (Python) where Python has the same case.
 * @param {number | bigint} seed
 * @returns {[number, number]}
 */
export function seedKey(seed) {
  if (typeof seed === "number") {
    if (!Number.isInteger(seed)) {
      throw new RuntimeInputError(`seed: expected an integer from 0 to ${MAX_SEED}, found ${typeName(seed)} ${pyRepr(seed)}`);
    }
    if (!Number.isSafeInteger(seed) && seed > 0) {
      throw new RuntimeInputError(`seed: expected an integer from 0 to ${MAX_SEED}, found ${BigInt(seed)} ` +
        "(a Number above 2^53 - 1 is not exact; pass a BigInt)");
    }
    if (seed < 0) throw new RuntimeInputError(`seed: expected an integer from 0 to ${MAX_SEED}, found ${seed}`);
    return [seed % TWO32, Math.floor(seed / TWO32)];
  }
  if (typeof seed === "bigint") {
    if (seed < 0n || seed > MAX_SEED) {
      throw new RuntimeInputError(`seed: expected an integer from 0 to ${MAX_SEED}, found ${seed}`);
    }
    return [Number(seed & 0xffffffffn), Number(seed >> 32n)];
  }
  throw new RuntimeInputError(`seed: expected an integer from 0 to ${MAX_SEED}, found ${typeName(seed)} ${pyRepr(seed)}`);
}

/**
 * A fresh seed from the platform's cryptographic generator (Python: os.urandom), for calls
 * without one: then the same generator.
 * @returns {Promise<bigint>}
 */
export async function freshSeed() {
  const crypto = globalThis.crypto ?? (await import(/* webpackIgnore: true */ "node:crypto")).webcrypto;
  const words = crypto.getRandomValues(new Uint32Array(2));
  return (BigInt(words[1] & 0x7fffffff) << 32n) | BigInt(words[0]);
}

/**
 * Steps 2-3: U_i for block i, exact in binary64 (a multiple of 2^-53 in [0, 1)).
 * @param {number} k0 @param {number} k1 @param {number} i
 */
function uniform(k0, k1, i) {
  threefryInto(k0, k1, i >>> 0, Math.floor(i / TWO32));
  return ((words[0] >>> 5) * 67108864 + (words[1] >>> 6)) / 9007199254740992;
}

/**
 * Steps 1-5: the first `count` standard normals of the seed's stream, in binary64.
 * @param {number} count
 * @param {number | bigint} seed
 * @returns {Float64Array}
 */
export function normals(count, seed) {
  const [k0, k1] = seedKey(seed);
  const out = new Float64Array(count);
  let have = 0;
  for (let block = 0; have < count; block += 2) {
    const u = 2 * uniform(k0, k1, block) - 1;
    const v = 2 * uniform(k0, k1, block + 1) - 1;
    const s = u * u + v * v;
    if (!(s > 0 && s < 1)) continue;
    const f = Math.sqrt((-2 * ln(s)) / s);
    out[have++] = u * f;
    if (have < count) out[have++] = v * f;
  }
  return out;
}

/**
 * z ~ N(0, I) of `shape` (n first, then the concrete latent shape), reproducible in every
 * host for a seed (steps 1-6; the temperature is `scaled`'s). Float32Array.from rounds each
 * binary64 value to nearest, ties to even, as numpy's astype(float32) does.
 * @param {readonly number[]} shape
 * @param {number | bigint} seed
 * @returns {{ data: Float32Array, dims: number[] }}
 */
export function normalLatents(shape, seed) {
  const dims = Array.from(shape);
  const count = dims.reduce((a, b) => a * b, 1);
  return { data: Float32Array.from(normals(count, seed)), dims };
}

/**
 * Step 6's last part: z * float32(temperature) in float32. The product of two float32 values
 * is exact in binary64, so Float32Array's rounding of it is the float32 multiplication.
 * @param {{ data: Float32Array, dims: number[] }} z
 * @param {number} temperature
 */
export function scaled(z, temperature) {
  const t = Math.fround(temperature);
  const data = new Float32Array(z.data.length);
  for (let i = 0; i < data.length; i++) data[i] = z.data[i] * t;
  return { data, dims: Array.from(z.dims) };
}
