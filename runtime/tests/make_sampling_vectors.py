"""Writes tests/data/sampling_vectors.json: fixed outputs of the portable generator that every
host's tests compare bit for bit (test_sampling.py here, js/test/sampling.test.js in the npm
package). Run it again only when the specification changes, and say so in the commit:

    python runtime/tests/make_sampling_vectors.py

Floats are stored as hex bit patterns (float32: 8 digits, float64: 16), so no decimal
conversion in any language stands between the file and the bits. Seeds are decimal strings,
since 2^63 - 1 is no exact JSON number in JavaScript.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the runtime package, uninstalled

from vae_export_runtime.sampling import GENERATOR, ln, normal_latents, normals, scaled, threefry2x32

OUT = Path(__file__).resolve().parent / "data" / "sampling_vectors.json"

# Random123's kat_vectors (threefry2x32_20) and words from jax.random's threefry_2x32 (checked
# against it when these were written: 200,625 random and edge keys and counters agreed).
THREEFRY = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3)),
    ((0x00000001, 0x00000000), (0x00000002, 0x00000000)),
    ((0xDEADBEEF, 0x01234567), (0x89ABCDEF, 0xFEDCBA98)),
]
SEEDS = [0, 1, 42, 2**32 - 1, 2**32, 2**53 + 1, 2**63 - 1]
COUNT = 64  # values per seed, stored in full
LONG = (0, 65536)  # (seed, count): an SD-sized latent, stored as a sha256 of its float32 bytes


def f32_hex(values: np.ndarray) -> list[str]:
    return [f"{int(b):08x}" for b in np.asarray(values, np.float32).view(np.uint32)]


def f64_hex(values: np.ndarray) -> list[str]:
    return [f"{int(b):016x}" for b in np.asarray(values, np.float64).view(np.uint64)]


def main() -> None:
    rng = np.random.default_rng(2024)
    # ln's edge cases: the split point, 1, powers of two, the smallest s the polar method can
    # produce (2^-104), neighbours of each, and random points over (0, 1) and beyond.
    edges = [0.7071067811865476, 0.7071067811865475, 1.0, 0.5, 2.0, 2.0**-104, 0.9999999999999999,
             1.0000000000000002, 1e-300, 1e300, 5e-324, 2.2250738585072014e-308]
    xs = np.concatenate([np.array(edges), rng.random(48), 2.0 ** rng.uniform(-110, 20, 16)])
    words = [threefry2x32(k, c[0], c[1]) for k, c in THREEFRY]
    long_z = normal_latents((LONG[1],), LONG[0])
    data = {
        "generator": GENERATOR,
        "spec": "docs/contract.md, Portable seeded sampling (steps 1-6)",
        "threefry2x32_20": [
            {"key": [f"{k[0]:08x}", f"{k[1]:08x}"], "counter": [f"{c[0]:08x}", f"{c[1]:08x}"],
             "words": [f"{int(w[0][0]):08x}", f"{int(w[1][0]):08x}"]}
            for (k, c), w in zip(THREEFRY, words)
        ],
        "ln": {"x_f64": f64_hex(xs), "ln_f64": f64_hex(ln(xs))},
        "normals": [
            {"seed": str(s), "count": COUNT, "first8_f64": f64_hex(normals(8, s)),
             "f32": f32_hex(normal_latents((COUNT,), s))}
            for s in SEEDS
        ],
        "long": {"seed": str(LONG[0]), "count": LONG[1],
                 "sha256_f32le": hashlib.sha256(long_z.astype("<f4").tobytes()).hexdigest(),
                 "last4_f32": f32_hex(long_z[-4:])},
        "latents": [
            {"seed": "7", "shape": [2, 4, 3, 5], "temperature": 0.7,
             "f32": f32_hex(scaled(normal_latents((2, 4, 3, 5), 7), 0.7).ravel())},
            {"seed": "123456789012", "shape": [3, 16], "temperature": 1.0,
             "f32": f32_hex(normal_latents((3, 16), 123456789012).ravel())},
        ],
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # One line per list of words: readable, and diffs show which vector changed.
    text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]",
                  json.dumps(data, indent=1))
    OUT.write_text(text + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
