"""The decoder running on onnxruntime-web in headless Chromium (Debian's), driven by
Playwright's Python library with no browser download. Skips with the reason when Chromium,
Playwright or onnxruntime-web (npm) cannot be had."""

from __future__ import annotations

import functools
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


@pytest.fixture(scope="module")
def site(tmp_path_factory, exported_dir):
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    from click.testing import CliRunner

    out = tmp_path_factory.mktemp("site")
    result = CliRunner().invoke(main, ["web", "--artifacts", str(exported_dir), "--out", str(out)])
    if result.exit_code != 0 and "onnxruntime-web" in result.output:
        pytest.skip(f"onnxruntime-web unavailable: {result.output.strip()}")
    assert result.exit_code == 0, result.output
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(out)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield out, f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()


def test_site_is_static_and_vendored(site):
    out, _ = site
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


def test_slider_redraws_and_matches_python_runtime(site, exported_dir):
    from playwright.sync_api import sync_playwright

    _, url = site
    decoder = VAEDecoder(exported_dir / "decoder.onnx")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            page.wait_for_function("window.vaeDemo && window.vaeDemo.ready", timeout=60_000)
            before = _main_pixels(page)
            z0 = np.array(page.evaluate("Array.from(window.vaeDemo.z)"), dtype=np.float32)
            expected0 = np.rint(decoder.decode(z0[None])[0, 0] * 255)
            assert np.abs(before - expected0).max() <= PIXEL_TOLERANCE

            decodes = page.evaluate("window.vaeDemo.decodes")
            page.locator("#slider-0").fill("2.5")
            page.wait_for_function(f"window.vaeDemo.decodes > {decodes} && window.vaeDemo.z[0] === 2.5")
            page.wait_for_timeout(200)  # let a pending redraw land
            after = _main_pixels(page)
            z1 = np.array(page.evaluate("Array.from(window.vaeDemo.z)"), dtype=np.float32)
            assert z1[0] == 2.5 and np.array_equal(z1[1:], z0[1:])
            assert np.abs(after - before).max() > 20  # the picture changed
            expected1 = np.rint(decoder.decode(z1[None])[0, 0] * 255)
            assert np.abs(after - expected1).max() <= PIXEL_TOLERANCE

            latency = page.evaluate("document.getElementById('latency').textContent")
            assert latency.startswith("batch 1: ") and " ms" in latency
            assert errors == []
        finally:
            browser.close()
