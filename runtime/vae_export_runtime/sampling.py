"""The portable seeded normal generator, "vae-export normal v1" (numpy only).

A seed must mean the same latents, bit for bit, in every host (this runtime, the npm package
`vae-export-runtime`, any re-implementation), so `sample(n, seed=s)` cannot use numpy's
`default_rng`: its bit generator and its ziggurat are numpy's own, and the platform `log` differs
between libms in the last bit. This module implements the specification in docs/contract.md
("Portable seeded sampling", from the v3 plan), steps 1 to 6:

1. seed s in [0, 2^63 - 1] -> key (k0, k1) = (s mod 2^32, floor(s / 2^32));
2. block i -> Threefry-2x32 with 20 rounds (Salmon et al., "Parallel random numbers: as easy as
   1, 2, 3", SC 2011; Random123; the generator JAX uses), counter (i mod 2^32, floor(i / 2^32));
3. U_i = ((w0 >> 5) * 2^26 + (w1 >> 6)) / 2^53, exact in binary64;
4. Marsaglia's polar method on blocks (2j, 2j + 1), every step one IEEE-754 binary64 operation;
5. ln by `ln` below (exact frexp plus + - * / only), never the platform's log;
6. the first n * prod(L) normals rounded to float32, row-major; the caller scales by
   float32(temperature) in float32 (`scaled`).

Vectorised: a draw of 65536 values is a few array passes over ~84,000 Threefry blocks.
Every operation below is an element-wise numpy ufunc on float64 or uint32 arrays: numpy rounds
each one to nearest and never fuses a multiply and an add, which is what the bit-exact
agreement with JavaScript (where the language forbids fusing) rests on.
"""

from __future__ import annotations

import math

import numpy as np

from vae_export_runtime.limits import MAX_SEED  # seeds fit a signed 64-bit integer in every host

__all__ = ["GENERATOR", "MAX_SEED", "ln", "normal_latents", "normals", "scaled", "threefry2x32", "uniforms"]

GENERATOR = "vae-export normal v1"  # the name docs/contract.md gives this algorithm

_MASK32 = 0xFFFFFFFF
# Threefry-2x32 (Random123 threefry.h): rotation constants R_32x2 and the key-schedule parity.
_ROTATIONS = (13, 15, 26, 6, 17, 29, 16, 24)
_PARITY = 0x1BD11BDA
_ROUNDS = 20

_SQRT_HALF = 0.7071067811865476  # the spec's split point: m in [sqrt(1/2), sqrt(2)) after it
_LN2 = 0.6931471805599453  # math.log(2) rounded to binary64, as the spec writes it
# 1/(2k+1) for k = 11 (the start, 1/23) down to 0: each a correctly rounded binary64 division.
_ODD_RECIPROCALS = tuple(1.0 / (2 * k + 1) for k in range(11, -1, -1))

# The polar method accepts a pair with probability pi/4; a first pass sized for that plus four
# standard deviations rarely needs a second one. The size changes speed only, never values.
_ACCEPT = math.pi / 4


def _u32(value: int | np.ndarray) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype != np.uint32:
        if np.any(array < 0) or np.any(array > _MASK32):
            raise ValueError(f"expected 32-bit unsigned words, found values outside 0..{_MASK32}")
        array = array.astype(np.uint32)
    return array


def threefry2x32(
    key: tuple[int | np.ndarray, int | np.ndarray], counter_lo: int | np.ndarray, counter_hi: int | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Threefry-2x32 with 20 rounds: (w0, w1) uint32 arrays for counters (counter_lo, counter_hi)
    under key (k0, k1). All four operands broadcast against each other (element-wise keys
    are what the comparison with JAX's `threefry_2x32` uses).

    Random123's threefry2x32_R(20, ...): x = ctr + key; then five groups of four rounds
    (x0 += x1; x1 = rotl(x1, R[r mod 8]); x1 ^= x0), each group followed by the key injection
    x0 += ks[g mod 3], x1 += ks[(g + 1) mod 3] + g (g = 1..5), with ks2 = k0 ^ k1 ^ 0x1BD11BDA.
    uint32 array arithmetic wraps modulo 2^32, as the algorithm wants.
    """
    k0, k1, c0, c1 = np.broadcast_arrays(*(np.atleast_1d(_u32(v)) for v in (key[0], key[1], counter_lo, counter_hi)))
    ks = (k0, k1, k0 ^ k1 ^ np.uint32(_PARITY))
    x0 = c0 + ks[0]
    x1 = c1 + ks[1]
    t = np.empty_like(x1)
    # In place (out=): the same operations, without a fresh array per step (twice as fast).
    for r in range(_ROUNDS):
        rot = _ROTATIONS[r % 8]
        np.add(x0, x1, out=x0)
        np.right_shift(x1, np.uint32(32 - rot), out=t)  # x1 = rotl(x1, rot) ^ x0
        np.left_shift(x1, np.uint32(rot), out=x1)
        np.bitwise_or(x1, t, out=x1)
        np.bitwise_xor(x1, x0, out=x1)
        if r % 4 == 3:
            g = r // 4 + 1
            np.add(x0, ks[g % 3], out=x0)
            np.add(x1, ks[(g + 1) % 3], out=x1)
            np.add(x1, np.uint32(g), out=x1)
    return x0, x1


def _key(seed: int) -> tuple[int, int]:
    """Step 1. Booleans and floats are refused: a seed is an integer (numpy ints welcome)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an integer, found {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed: expected an integer from 0 to {MAX_SEED}, found {seed}")
    return seed & _MASK32, seed >> 32


def uniforms(seed: int, start: int, count: int) -> np.ndarray:
    """Steps 2-3: U_start .. U_{start+count-1}, float64 in [0, 1), each exact (a multiple of
    2^-53). The 53 bits are the top 27 of w0 and the top 26 of w1."""
    k0, k1 = _key(seed)
    i = np.arange(start, start + count, dtype=np.uint64)
    w0, w1 = threefry2x32((k0, k1), (i & np.uint64(_MASK32)).astype(np.uint32), (i >> np.uint64(32)).astype(np.uint32))
    # Both products and the sum are below 2^53, and the division is by a power of two: exact.
    return ((w0 >> np.uint32(5)).astype(np.float64) * 67108864.0 + (w1 >> np.uint32(6)).astype(np.float64)) / 2.0**53


def ln(x: np.ndarray | float) -> np.ndarray:
    """Step 5: the natural logarithm of positive finite x, the same bits in every host.

    (m, e) = frexp(x), exact; m < sqrt(1/2) -> (2m, e - 1), so m is in [sqrt(1/2), sqrt(2));
    r = (m - 1) / (m + 1); ln m = 2 r (1 + r^2/3 + ... + r^22/23) by Horner from 1/23 with each
    1/(2k+1) correctly rounded; ln x = ln m + e * ln 2 (the product rounded, then the sum).
    |r| <= 0.1716, so the series' first omitted term is below 2^-60 of the result. Within 2 ulp
    of a correctly rounded log (tests/test_sampling.py measures it); what matters is that it is
    a fixed sequence of correctly rounded operations, which a platform log is not.
    """
    m, e = np.frexp(np.asarray(x, dtype=np.float64))
    low = m < _SQRT_HALF
    m = np.where(low, m * 2.0, m)  # exact: a power-of-two scaling
    e = (e - low).astype(np.float64)  # exact: small integers
    r = (m - 1.0) / (m + 1.0)
    r2 = r * r
    p = np.full_like(r, _ODD_RECIPROCALS[0])
    for c in _ODD_RECIPROCALS[1:]:
        p = p * r2 + c  # two roundings: numpy never fuses them
    return (2.0 * r) * p + e * _LN2


def _polar(u01: np.ndarray) -> np.ndarray:
    """Step 4 on 2P uniforms (pairs (U_2j, U_2j+1)): the accepted pairs' normals, in order."""
    u = 2.0 * u01[0::2] - 1.0
    v = 2.0 * u01[1::2] - 1.0
    s = u * u + v * v
    ok = (s > 0.0) & (s < 1.0)
    u, v, s = u[ok], v[ok], s[ok]
    f = np.sqrt((-2.0 * ln(s)) / s)
    out = np.empty(2 * len(s), dtype=np.float64)
    out[0::2] = u * f
    out[1::2] = v * f
    return out


def normals(count: int, seed: int, chunk_pairs: int | None = None) -> np.ndarray:
    """The first `count` standard normals of the seed's stream, float64 (steps 1-5).

    `chunk_pairs` (pairs of blocks drawn per pass; default sized for one pass) changes only
    how the stream is computed: the values never depend on it, which the tests check."""
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"count: expected a non-negative integer, found {count!r}")
    _key(seed)  # a bad seed is refused even when count is 0
    pairs = -(-int(count) // 2)
    if chunk_pairs is None:
        chunk_pairs = int(pairs / _ACCEPT + 4.0 * math.sqrt(pairs) + 16)
    parts: list[np.ndarray] = []
    have, block = 0, 0
    while have < count:
        part = _polar(uniforms(seed, block, 2 * chunk_pairs))
        parts.append(part)
        have += len(part)
        block += 2 * chunk_pairs
    return np.concatenate(parts)[:count] if parts else np.empty(0, dtype=np.float64)


def normal_latents(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """z ~ N(0, I) of `shape` (n first, then the concrete latent shape), float32, reproducible
    in every host for a seed (steps 1-6 of the spec; temperature is the caller's: `scaled`).

    The values are the stream's first prod(shape) normals in row-major order, so a larger draw
    starts with a smaller one: normal_latents((7, *L), s)[:5] == normal_latents((5, *L), s)."""
    dims = tuple(int(d) for d in shape)
    if any(d < 0 for d in dims):
        raise ValueError(f"shape: expected non-negative dimensions, found {list(dims)}")
    # float64 -> float32 by astype rounds to nearest, ties to even (IEEE), as Math.fround does.
    return normals(math.prod(dims), seed).astype(np.float32).reshape(dims)


def scaled(z: np.ndarray, temperature: float) -> np.ndarray:
    """Step 6's last part: z * float32(temperature), one float32 multiplication per value (the
    exact product of two float32 values rounded once, as JavaScript's Math.fround(a * b))."""
    return np.asarray(z, dtype=np.float32) * np.float32(temperature)
