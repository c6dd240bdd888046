"""The portable seeded generator ("vae-export normal v1", docs/contract.md): known answers, the
fixed vectors every host shares (data/sampling_vectors.json, also read by js/test), properties
that make a seed mean one stream whatever the call, and statistical sanity.

numpy + pytest only (the statistics below are written out, so they run where scipy is absent).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from vae_export_runtime.sampling import GENERATOR, MAX_SEED, ln, normal_latents, normals, scaled, threefry2x32, uniforms

VECTORS = json.loads((Path(__file__).parent / "data" / "sampling_vectors.json").read_text())


def bits32(values: np.ndarray) -> list[str]:
    return [f"{int(b):08x}" for b in np.asarray(values, np.float32).ravel().view(np.uint32)]


def bits64(values: np.ndarray) -> list[str]:
    return [f"{int(b):016x}" for b in np.asarray(values, np.float64).ravel().view(np.uint64)]


def from_bits64(words: list[str]) -> np.ndarray:
    return np.array([int(w, 16) for w in words], dtype=np.uint64).view(np.float64)


# ---- Threefry-2x32-20 -------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "counter", "words"), [
    # Random123 kat_vectors, threefry2x32_20 (the three the spec quotes)
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
])
def test_threefry_known_answers(key, counter, words):
    w0, w1 = threefry2x32(key, counter[0], counter[1])
    assert (int(w0[0]), int(w1[0])) == words


def test_threefry_shared_vectors_and_broadcasting():
    rows = VECTORS["threefry2x32_20"]
    keys = np.array([[int(w, 16) for w in r["key"]] for r in rows], dtype=np.uint32)
    ctrs = np.array([[int(w, 16) for w in r["counter"]] for r in rows], dtype=np.uint32)
    w0, w1 = threefry2x32((keys[:, 0], keys[:, 1]), ctrs[:, 0], ctrs[:, 1])  # element-wise keys
    assert [[f"{a:08x}", f"{b:08x}"] for a, b in zip(w0.tolist(), w1.tolist())] == [r["words"] for r in rows]
    # one key against many counters: the same words as one at a time
    many = threefry2x32((7, 9), np.arange(5, dtype=np.uint32), 3)
    one = [threefry2x32((7, 9), i, 3) for i in range(5)]
    assert many[0].tolist() == [int(o[0][0]) for o in one] and many[1].tolist() == [int(o[1][0]) for o in one]


def test_threefry_refuses_words_that_are_not_32_bit():
    with pytest.raises(ValueError, match="32-bit"):
        threefry2x32((2**32, 0), 0, 0)


# ---- ln ---------------------------------------------------------------------------------------

def test_ln_shared_vectors_bit_for_bit():
    x = from_bits64(VECTORS["ln"]["x_f64"])
    assert bits64(ln(x)) == VECTORS["ln"]["ln_f64"]


def test_ln_is_close_to_the_platform_log():
    """The spec's series is within 3 ulp of a correctly rounded log (measured: 3 ulp against
    math.log and 2.79 ulp against a 60-digit log over 4.7 million points: r = (m - 1)/(m + 1)
    carries two roundings into the leading term). Accuracy only has to be good; what the
    spec buys is that every host gets the same bits."""
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.random(100_000), 1.0 + (rng.random(20_000) - 0.5) * 1e-3,
                        2.0 ** rng.uniform(-110, 30, 20_000)])
    ref = np.log(x)
    ok = ref != 0
    ulps = np.abs(ln(x) - ref)[ok] / np.spacing(np.abs(ref[ok]))
    assert ulps.max() <= 3.0
    assert ln(np.array([1.0]))[0] == 0.0 and ln(np.array([0.5]))[0] == -0.6931471805599453


# ---- uniforms and normals ---------------------------------------------------------------------

def test_uniforms_are_53_bit_multiples_in_unit_interval():
    u = uniforms(5, 0, 10_000)
    assert u.dtype == np.float64 and u.min() >= 0.0 and u.max() < 1.0
    scaled_up = u * 2.0**53
    assert np.array_equal(scaled_up, np.floor(scaled_up))


@pytest.mark.parametrize("case", VECTORS["normals"], ids=lambda c: f"seed{c['seed']}")
def test_normals_shared_vectors_bit_for_bit(case):
    seed = int(case["seed"])
    assert bits64(normals(8, seed)) == case["first8_f64"]
    assert bits32(normal_latents((case["count"],), seed)) == case["f32"]


def test_long_draw_matches_its_digest():
    case = VECTORS["long"]
    z = normal_latents((1, 4, 128, 128), int(case["seed"]))  # the same count, shaped as an SD latent
    assert z.size == case["count"]
    assert hashlib.sha256(z.astype("<f4").tobytes()).hexdigest() == case["sha256_f32le"]
    assert bits32(z.ravel()[-4:]) == case["last4_f32"]


@pytest.mark.parametrize("case", VECTORS["latents"], ids=lambda c: f"seed{c['seed']}")
def test_shaped_and_scaled_latents_bit_for_bit(case):
    z = scaled(normal_latents(tuple(case["shape"]), int(case["seed"])), case["temperature"])
    assert z.shape == tuple(case["shape"]) and z.dtype == np.float32
    assert bits32(z) == case["f32"]


def test_a_larger_draw_starts_with_a_smaller_one():
    small = normal_latents((5, 4, 3, 3), 11)
    large = normal_latents((7, 4, 3, 3), 11)
    assert np.array_equal(large[:5], small)
    # the shape only says how many values and how to lay them out, row-major
    assert np.array_equal(normal_latents((36 * 5,), 11), small.ravel())


@pytest.mark.parametrize("chunk", [1, 2, 7, 100])
def test_values_do_not_depend_on_the_chunking(chunk):
    assert np.array_equal(normals(301, 3, chunk_pairs=chunk), normals(301, 3))


def test_seeds_use_both_key_words():
    # seeds 2^32 apart differ only in k1; a generator that dropped the high word would repeat
    assert not np.array_equal(normals(16, 1), normals(16, 1 + 2**32))
    assert normals(4, MAX_SEED).shape == (4,)


@pytest.mark.parametrize("seed", [-1, 2**63, 1.0, True, "1"])
def test_bad_seeds_are_refused(seed):
    with pytest.raises((ValueError, TypeError), match="seed"):
        normal_latents((2,), seed)


def test_empty_and_odd_counts():
    assert normal_latents((0, 4), 0).shape == (0, 4)
    assert np.array_equal(normals(3, 9), normals(4, 9)[:3])  # an odd count drops the pair's second value


def test_scaled_is_one_float32_multiplication():
    z = normal_latents((1000,), 4)
    t = 0.37
    exact = z.astype(np.float64) * float(np.float32(t))  # exact: two 24-bit significands
    assert np.array_equal(scaled(z, t), exact.astype(np.float32))
    assert np.array_equal(scaled(z, 1.0), z)


def test_generator_name():
    assert GENERATOR == "vae-export normal v1"


# ---- statistics -------------------------------------------------------------------------------

def test_moments():
    z = normals(400_000, 2024)
    assert abs(z.mean()) < 5 / math.sqrt(len(z))  # 5 standard errors
    assert abs(z.var() - 1.0) < 5 * math.sqrt(2 / len(z))
    assert abs(np.mean(z**4) - 3.0) < 5 * math.sqrt(96 / len(z))  # var(z^4) = 105 - 9


def test_kolmogorov_smirnov_against_the_standard_normal():
    """The KS statistic D against N(0, 1)'s CDF (math.erf) stays below the critical value of
    the test at alpha = 1e-4 (asymptotically sqrt(ln(2 / alpha) / 2) / sqrt(n))."""
    n = 200_000
    critical = math.sqrt(math.log(2 / 1e-4) / 2) / math.sqrt(n)
    for seed in (0, 1, 2**40 + 3):
        x = np.sort(normal_latents((n,), seed).astype(np.float64))
        cdf = 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))
        d = max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))
        assert d < critical, (seed, d, critical)


def test_neighbouring_seeds_are_independent():
    """Pearson's r of two neighbouring seeds' streams: |r| * sqrt(n) is about N(0, 1) for
    independent streams; 4.5 is p ~ 7e-6 two-sided."""
    a, b = normals(50_000, 100), normals(50_000, 101)
    r = float(np.corrcoef(a, b)[0, 1])
    assert abs(r) * math.sqrt(len(a)) < 4.5, r
