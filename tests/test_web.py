"""The decoder running on onnxruntime-web in headless Chromium (Debian's), driven by
Playwright's Python library with no browser download. Skips with the reason when Chromium,
Playwright or onnxruntime-web (npm) cannot be had."""

from __future__ import annotations

import functools
import json
import http.server
import shutil
import threading

import numpy as np
import pytest

from vae_export.cli import main
from vae_export.runtime import VAEDecoder

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Canvas pixels are round(255 * p); WASM and the native CPU kernels may differ in the last
# float bits, so allow one grey level.
PIXEL_TOLERANCE = 1


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


FIXTURES = {"mlp": "exported_dir", "conv": "conv_dir", "conditional": "m2_dir"}


@pytest.fixture(scope="module", params=list(FIXTURES))
def site(request, tmp_path_factory):
    """The page for the MLP decoder (flat latent), the conv decoder (spatial latent [4, 7, 7],
    exported with --dynamic-size and shown at its export size) and a conditional decoder (z, y)."""
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    from click.testing import CliRunner

    artifacts = request.getfixturevalue(FIXTURES[request.param])
    out = tmp_path_factory.mktemp(f"site-{request.param}")
    result = CliRunner().invoke(main, ["web", "--artifacts", str(artifacts), "--out", str(out)])
    if result.exit_code != 0 and "onnxruntime-web" in result.output:
        pytest.skip(f"onnxruntime-web unavailable: {result.output.strip()}")
    assert result.exit_code == 0, result.output
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(out)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield out, f"http://127.0.0.1:{server.server_address[1]}/index.html", artifacts
    server.shutdown()


def test_site_is_static_and_vendored(site):
    out, _, _ = site
    names = {p.name for p in out.iterdir()}
    assert {"index.html", "app.js", "decoder.onnx", "contract.json", "ort.wasm.min.js",
            "ort-wasm-simd-threaded.wasm", "ort-wasm-simd-threaded.mjs"} <= names
    for name in ("index.html", "app.js"):
        text = (out / name).read_text()
        assert "http://" not in text and "https://" not in text  # nothing from a CDN


def _main_pixels(page) -> np.ndarray:
    data = page.evaluate("""() => Array.from(document.getElementById('main').getContext('2d')
                                   .getImageData(0, 0, 28, 28).data)""")
    return np.array(data, dtype=np.int16).reshape(28, 28, 4)[..., 0]


def _decoded(page, decoder, latent_shape) -> np.ndarray:
    """What the Python runtime draws for the z (and y) the page shows, as grey levels."""
    z = np.array(page.evaluate("Array.from(window.vaeDemo.shown)"), dtype=np.float32).reshape(1, *latent_shape)
    y = page.evaluate("window.vaeDemo.shownY && Array.from(window.vaeDemo.shownY)")
    rows = None if y is None else np.array([y], dtype=np.float32)
    return np.rint(decoder.decode(z, rows)[0, 0] * 255)


def test_slider_redraws_and_matches_python_runtime(site):
    from playwright.sync_api import sync_playwright

    out, url, artifacts = site
    decoder = VAEDecoder(artifacts / "decoder.onnx")
    latent_shape = json.loads((out / "contract.json").read_text())["latent_shape"]
    plane = int(np.prod(latent_shape[1:]))  # values slider 0 moves: one, or a whole latent channel
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            page.wait_for_function("window.vaeDemo && window.vaeDemo.ready", timeout=60_000)
            before = _main_pixels(page)
            z0 = np.array(page.evaluate("Array.from(window.vaeDemo.shown)"), dtype=np.float32)
            assert np.abs(before - _decoded(page, decoder, latent_shape)).max() <= PIXEL_TOLERANCE

            decodes = page.evaluate("window.vaeDemo.decodes")
            page.locator("#slider-0").fill("2.5")
            # the frame drawn from the moved slider's z (an event, not a fixed wait)
            page.wait_for_function(f"window.vaeDemo.decodes > {decodes} && window.vaeDemo.shown[0] === 2.5")
            after = _main_pixels(page)
            z1 = np.array(page.evaluate("Array.from(window.vaeDemo.shown)"), dtype=np.float32)
            assert np.all(z1[:plane] == 2.5) and np.array_equal(z1[plane:], z0[plane:])
            assert np.abs(after - before).max() > 20  # the picture changed
            assert np.abs(after - _decoded(page, decoder, latent_shape)).max() <= PIXEL_TOLERANCE

            latency = page.evaluate("document.getElementById('latency').textContent")
            assert latency.startswith("batch 1: ") and " ms" in latency
            assert errors == []
        finally:
            browser.close()


def test_class_selector_and_mix_drive_y(site):
    """Conditional decoders: the class selectors and the mix slider set y, and the picture is the
    runtime's decode of that mix; other decoders show no class controls."""
    from playwright.sync_api import sync_playwright

    out, url, artifacts = site
    decoder = VAEDecoder(artifacts / "decoder.onnx")
    latent_shape = json.loads((out / "contract.json").read_text())["latent_shape"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url)
            page.wait_for_function("window.vaeDemo && window.vaeDemo.ready", timeout=60_000)
            if not decoder.num_classes:
                assert page.locator("#classes").is_hidden() and page.evaluate("window.vaeDemo.y") is None
                return
            before = _main_pixels(page)
            page.locator("#class-a").select_option("3")
            page.locator("#class-b").select_option("8")
            page.locator("#mix").fill("0.5")
            page.wait_for_function("window.vaeDemo.shownY && window.vaeDemo.shownY[3] === 0.5 "
                                   "&& window.vaeDemo.shownY[8] === 0.5")
            y = page.evaluate("Array.from(window.vaeDemo.shownY)")
            assert y == [0.5 if k in (3, 8) else 0.0 for k in range(decoder.num_classes)]
            after = _main_pixels(page)
            assert np.abs(after - _decoded(page, decoder, latent_shape)).max() <= PIXEL_TOLERANCE
            assert np.abs(after - before).max() > 20  # the class changed the picture
        finally:
            browser.close()
