"""Peak memory of one call (VmHWM with a reset), and decoding under a memory budget."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from vae_export_runtime import VAEDecoder, budget, memory
from vae_export_runtime.errors import RuntimeInputError

pytestmark = pytest.mark.skipif(not memory.supported(), reason="needs Linux's VmHWM reset (/proc/self/clear_refs)")


def _touch(mib: int) -> int:
    a = np.ones(mib << 17)  # float64: mib MiB, every page written
    return int(a[-1])


def test_each_measurement_is_that_calls_own_peak():
    """ru_maxrss would report the larger call for both; the reset makes the second its own."""
    _, big = memory.measure(lambda: _touch(96))
    _, small = memory.measure(lambda: _touch(16))
    assert big is not None and small is not None
    assert 90 <= big.growth_mib <= 104
    assert 14 <= small.growth_mib <= 24


def test_the_in_process_figure_matches_a_fresh_process(root):
    """A decoder call's peak measured here (other sessions open, earlier calls made) against the
    same call alone in a new process: within 10 MiB."""
    path = root / "conv" / "decoder.onnx"
    others = [VAEDecoder(root / "kl" / "decoder.onnx"), VAEDecoder(root / "flat" / "decoder.onnx")]
    for d in others:
        d.sample(2, seed=0)
    decoder = VAEDecoder(path, threads=1)
    z = np.zeros((32, 4, 64, 64), np.float32)
    _, here = memory.measure(lambda: decoder.decode(z))
    code = ("import numpy as np\nfrom vae_export_runtime import VAEDecoder, memory\n"
            f"d = VAEDecoder({str(path)!r}, threads=1)\nz = np.zeros((32, 4, 64, 64), np.float32)\n"
            "_, p = memory.measure(lambda: d.decode(z))\nprint(p.growth_mib)")
    alone = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert here is not None and alone > 40
    assert abs(here.growth_mib - alone) <= max(5.0, 0.1 * alone)


def test_the_planner_measures_the_tile_it_picks_and_fits_a_quadratic_need():
    """A decode whose working memory is a + b P + c P^2 (an array of that many bytes, touched):
    the planner's chosen tile is one it measured, and it fits the budget."""
    def decode(z: np.ndarray) -> np.ndarray:
        p = z.shape[0] * z.shape[2] * z.shape[3] * 64 / 1e6  # megapixels at stride 8
        _touch(int(2 + 40 * p + 300 * p * p))
        return np.zeros((z.shape[0], 3, z.shape[2] * 8, z.shape[3] * 8), np.float32)

    planner = budget.Planner(decode, 4, 8, 3)
    rss = memory.rss_mib() or 0.0
    plan = planner.plan(rss + 90, 1, 128, 128)
    assert plan.tile is not None and (1, plan.tile, plan.tile) in planner.probes
    assert plan.predicted_peak_mib <= rss + 90
    assert planner.peak(rss, 1, 128, 128, plan.tile + 4) > rss + 90 or (1, plan.tile + 4, plan.tile + 4) not in planner.probes
    with pytest.raises(RuntimeInputError, match="at least [0-9]+ MiB with the smallest tiles") as info:
        planner.plan(1, 1, 128, 128)
    least = int(str(info.value).split("at least ")[1].split(" MiB")[0])
    assert planner.plan(least + 4, 1, 128, 128).tile is not None  # the budget it names is one it can meet


def test_the_planner_never_probes_past_the_budget_on_an_attention_like_need():
    """Working memory growing with (latent cells)^4, as attention scores do: KiBs at the first
    probes (8 and 16 cells), 1 GiB untiled at 128. Extrapolating from the first probes saw
    nothing and probed the whole latent, committing 1 GiB against a 300 MiB budget (the
    README's example did: 2,187 MiB resident, then refused); probes now grow 2x a side at a
    time, so none goes past what the budget allows."""
    def decode(z: np.ndarray) -> np.ndarray:
        _touch(int(1 + 4 * (z.shape[2] * z.shape[3]) ** 2 / 2**20))  # float32 scores, MiB
        return np.zeros((z.shape[0], 3, z.shape[2] * 2, z.shape[3] * 2), np.float32)

    planner = budget.Planner(decode, 4, 2, 3)
    rss = memory.rss_mib() or 0.0
    plan = planner.plan(rss + 300, 1, 128, 128)
    assert plan.tile is not None and 32 <= plan.tile < 128
    assert max(first for first, _ in planner.probes.values()) <= 300
    assert (1, 128, 128) not in planner.probes


def test_decode_under_a_budget_tiles_and_refuses_below_its_least(root):
    decoder = VAEDecoder(root / "kl" / "decoder.onnx")
    z = np.random.default_rng(0).standard_normal((1, 4, 96, 96)).astype(np.float32)
    with pytest.raises(RuntimeInputError, match=r"max_memory_mb: 1 MiB is below what this decode needs: at least \d+"):
        decoder.decode(z, max_memory_mb=1)
    planner = decoder._planner
    planner.probe(1, 96, 96)  # the whole latent's need, measured (its attention scores alone: 324 MiB a copy)
    rss = memory.rss_mib() or 0.0
    # a budget between the smallest tile's need and the whole latent's: tiled, and as decode(tile=) is
    target = (planner.peak(rss, 1, 96, 96, budget.MIN_TILE) + planner.peak(rss, 1, 96, 96, None)) / 2
    out, peak = memory.measure(lambda: decoder.decode(z, max_memory_mb=target))
    plan = decoder.last_plan
    assert plan.tile is not None and 8 <= plan.tile < 96
    np.testing.assert_array_equal(out, decoder.decode(z, tile=plan.tile))
    assert peak is not None and peak.peak_mib <= target + 5
    for bad in (0, -5, float("nan"), True, "512"):
        with pytest.raises(RuntimeInputError, match="max_memory_mb: expected a positive number"):
            decoder.decode(z, max_memory_mb=bad)
    flat = VAEDecoder(root / "flat" / "decoder.onnx")
    with pytest.raises(RuntimeInputError, match="max_memory_mb: tiled decoding needs a decoder with a symbolic size"):
        flat.decode(np.zeros((1, *flat.latent_shape), np.float32), max_memory_mb=512)
