"""The decoder running on onnxruntime-web in headless Chromium (Debian's), driven by
Playwright's Python library with no browser download. Skips with the reason when Chromium,
Playwright or onnxruntime-web (npm) cannot be had.

The page runs the npm package vae-export-runtime (js/, copied as one file): its grid for seed S
must be the Python runtime's `VAEDecoder(...).sample(16, seed=S)`, latents bit for bit and
pixels within a grey level, for a flat MLP decoder, a --dynamic-size conv decoder shown at a
non-square size, and a conditional decoder."""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import threading
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from vae_export.cli import main
from vae_export.runtime import VAEDecoder
from vae_export_runtime.sampling import normal_latents

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Canvas pixels are round(255 * p); WASM and the native CPU kernels may differ in the last
# float bits, so allow one grey level.
PIXEL_TOLERANCE = 1
SEED = 7


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


# site -> (artifacts fixture, `vae-export web --size`): the conv decoder (spatial latent, exported
# with --dynamic-size at 28x28) is shown at a non-square size, 32 high and 48 wide.
FIXTURES = {"mlp": ("exported_dir", None), "conv": ("conv_dir", (32, 48)), "conditional": ("m2_dir", None)}


def test_page_bundle_is_js_src():
    """vae_export/webapp/vae-export-runtime.js (what the wheel carries and `web` copies) is the
    bundle of this checkout's js/src: `node js/scripts/bundle.mjs` was run after the last change."""
    if shutil.which("node") is None or not (REPO / "js" / "scripts" / "bundle.mjs").is_file():
        pytest.skip("node, or the repository's js/ (an installed package has no js/src to compare with)")
    result = subprocess.run(["node", str(REPO / "js" / "scripts" / "bundle.mjs"), "--check"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module", params=list(FIXTURES))
def site(request, tmp_path_factory):
    """(site directory, URL of its index.html, artifacts, the size it shows or None)."""
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    from click.testing import CliRunner

    fixture, size = FIXTURES[request.param]
    artifacts = request.getfixturevalue(fixture)
    out = tmp_path_factory.mktemp(f"site-{request.param}")
    args = ["web", "--artifacts", str(artifacts), "--out", str(out)]
    result = CliRunner().invoke(main, args + (["--size", f"{size[0]}x{size[1]}"] if size else []))
    if result.exit_code != 0 and "onnxruntime-web" in result.output:
        pytest.skip(f"onnxruntime-web unavailable: {result.output.strip()}")
    assert result.exit_code == 0, result.output
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(out)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield out, f"http://127.0.0.1:{server.server_address[1]}/index.html", artifacts, size
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _open(browser, url: str):
    """A fresh page at `url`, loaded; its page errors collect in page.errors."""
    page = browser.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(url)
    page.wait_for_function("window.vaeDemo && (window.vaeDemo.ready || window.vaeDemo.error)", timeout=60_000)
    assert page.evaluate("window.vaeDemo.error") is None
    return page


def test_site_is_static_and_vendored(site):
    out = site[0]
    names = {p.name for p in out.iterdir()}
    assert {"index.html", "app.js", "vae-export-runtime.js", "decoder.onnx", "page.json", "ort.wasm.min.js",
            "ort-wasm-simd-threaded.wasm", "ort-wasm-simd-threaded.mjs"} <= names
    assert "contract.json" not in names  # the page reads the graph's own metadata, through the package
    for name in ("index.html", "app.js", "vae-export-runtime.js"):
        text = (out / name).read_text()
        assert "http://" not in text and "https://" not in text  # nothing from a CDN
    # the package as the wheel carries it, copied as it is; the page imports it by name
    webapp = resources.files("vae_export") / "webapp"
    assert (out / "vae-export-runtime.js").read_bytes() == webapp.joinpath("vae-export-runtime.js").read_bytes()
    assert 'from "vae-export-runtime"' in (out / "app.js").read_text()
    assert '"vae-export-runtime": "./vae-export-runtime.js"' in (out / "index.html").read_text()


def _canvas(page, name: str) -> np.ndarray:
    """A canvas's pixels, [height, width, RGBA]."""
    width, height, data = page.evaluate(f"""() => {{ const c = document.getElementById('{name}');
        return [c.width, c.height, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)]; }}""")
    return np.array(data, dtype=np.int16).reshape(height, width, 4)


def _grey(images: np.ndarray) -> np.ndarray:
    """Images [n, C, H, W] in [0, 1] as the page draws them: 255 * p rounded, RGB ([n, H, W, 3])."""
    channels = images.shape[1]
    rgb = np.stack([images[:, min(c, channels - 1)] for c in range(3)], axis=-1)
    return np.rint(rgb.astype(np.float64) * 255)


def _decoded(page, decoder, latent_shape) -> np.ndarray:
    """What the Python runtime draws for the z (and y) the page shows, [H, W, 3]."""
    z = np.array(page.evaluate("Array.from(window.vaeDemo.shown)"), dtype=np.float32).reshape(1, *latent_shape)
    y = page.evaluate("window.vaeDemo.shownY && Array.from(window.vaeDemo.shownY)")
    rows = None if y is None else np.array([y], dtype=np.float32)
    return _grey(decoder.decode(z, rows))[0]


def test_grid_is_python_sample(site, browser):
    """The page's grid for ?seed=S is the Python runtime's sample(16, seed=S) at the page's size
    (of class 0 for a conditional decoder): the portable generator's latents bit for bit, the
    images within a grey level."""
    _, url, artifacts, size = site
    decoder = VAEDecoder(artifacts / "decoder.onnx")
    page = _open(browser, f"{url}?seed={SEED}")
    try:
        height, width = size or decoder.default_size
        assert page.evaluate("window.vaeDemo.size") == [height, width]
        latent_shape = decoder.latent_shape_for(size)
        assert page.evaluate("window.vaeDemo.latentShape") == list(latent_shape)
        latents = np.array(page.evaluate("Array.from(window.vaeDemo.gridLatents)"), dtype=np.float32)
        want = normal_latents((16, *latent_shape), SEED)
        assert np.array_equal(latents.view(np.uint32), want.reshape(-1).view(np.uint32))

        python = decoder.sample(16, seed=SEED, size=size, label=0 if decoder.num_classes else None)
        tiles = _grey(python)  # [16, H, W, 3] -> the page's 4 x 4 mosaic
        mosaic = tiles.reshape(4, 4, height, width, 3).transpose(0, 2, 1, 3, 4).reshape(4 * height, 4 * width, 3)
        grid = _canvas(page, "grid")[..., :3]
        assert grid.shape == mosaic.shape
        assert np.abs(grid - mosaic).max() <= PIXEL_TOLERANCE
        assert page.evaluate("document.getElementById('grid-seed').textContent") == f"sample(16, seed={SEED})"
        assert page.errors == []
    finally:
        page.close()


def test_canvases_keep_the_image_aspect_ratio(site, browser):
    """Each canvas is drawn in its images' aspect ratio (issue 28: a 32x48 size was stretched into
    fixed square canvases), at one image pixel per canvas pixel."""
    _, url, artifacts, size = site
    decoder = VAEDecoder(artifacts / "decoder.onnx")
    height, width = size or decoder.default_size
    page = _open(browser, url)
    try:
        for name, tiles in (("grid", 4), ("main", 1), ("interp", 1)):
            w, h, css_w, css_h = page.evaluate(f"""() => {{ const c = document.getElementById('{name}');
                const r = c.getBoundingClientRect(); return [c.width, c.height, r.width, r.height]; }}""")
            assert (w, h) == (tiles * width, tiles * height), name
            assert css_w / css_h == pytest.approx(width / height, rel=0.01), (name, css_w, css_h)
    finally:
        page.close()


def test_slider_redraws_and_matches_python_runtime(site, browser):
    _, url, artifacts, _ = site
    decoder = VAEDecoder(artifacts / "decoder.onnx")
    page = _open(browser, url)
    try:
        assert page.evaluate("window.vaeDemo.seed") == 0  # the grid's seed without ?seed=
        latent_shape = page.evaluate("window.vaeDemo.latentShape")
        plane = int(np.prod(latent_shape[1:]))  # values slider 0 moves: one, or a whole latent channel
        before = _canvas(page, "main")[..., :3]
        z0 = np.array(page.evaluate("Array.from(window.vaeDemo.shown)"), dtype=np.float32)
        assert np.abs(before - _decoded(page, decoder, latent_shape)).max() <= PIXEL_TOLERANCE

        decodes = page.evaluate("window.vaeDemo.decodes")
        page.locator("#slider-0").fill("2.5")
        # the frame drawn from the moved slider's z (an event, not a fixed wait)
        page.wait_for_function(f"window.vaeDemo.decodes > {decodes} && window.vaeDemo.shown[0] === 2.5")
        after = _canvas(page, "main")[..., :3]
        z1 = np.array(page.evaluate("Array.from(window.vaeDemo.shown)"), dtype=np.float32)
        assert np.all(z1[:plane] == 2.5) and np.array_equal(z1[plane:], z0[plane:])
        assert np.abs(after - before).max() > 20  # the picture changed
        assert np.abs(after - _decoded(page, decoder, latent_shape)).max() <= PIXEL_TOLERANCE

        # random: a fresh seed's z, named on the page, is the Python runtime's draw for that seed
        page.locator("#random").click()
        page.wait_for_function("window.vaeDemo.zSeed !== undefined "
                               "&& window.vaeDemo.shown.every((v, k) => v === window.vaeDemo.z[k])")
        seed = page.evaluate("window.vaeDemo.zSeed")
        shown = np.array(page.evaluate("Array.from(window.vaeDemo.shown)"), dtype=np.float32)
        assert np.array_equal(shown, normal_latents((1, *latent_shape), seed).reshape(-1))
        assert page.evaluate("document.getElementById('z-seed').textContent") == f"z: sample(1, seed={seed})"

        latency = page.evaluate("document.getElementById('latency').textContent")
        assert latency.startswith("batch 1: ") and " ms" in latency
        assert page.errors == []
    finally:
        page.close()


def test_class_selector_and_mix_drive_y(site, browser):
    """Conditional decoders: the class selectors and the mix slider set y, and the picture is the
    runtime's decode of that mix; other decoders show no class controls."""
    _, url, artifacts, _ = site
    decoder = VAEDecoder(artifacts / "decoder.onnx")
    page = _open(browser, url)
    try:
        latent_shape = page.evaluate("window.vaeDemo.latentShape")
        if not decoder.num_classes:
            assert page.locator("#classes").is_hidden() and page.evaluate("window.vaeDemo.y") is None
            return
        names = page.locator("#class-a option").all_text_contents()
        assert names == [f"{k}: {n}" for k, n in enumerate(decoder.class_names)]  # from the graph's metadata
        before = _canvas(page, "main")[..., :3]
        page.locator("#class-a").select_option("3")
        page.locator("#class-b").select_option("8")
        page.locator("#mix").fill("0.5")
        page.wait_for_function("window.vaeDemo.shownY && window.vaeDemo.shownY[3] === 0.5 "
                               "&& window.vaeDemo.shownY[8] === 0.5")
        y = page.evaluate("Array.from(window.vaeDemo.shownY)")
        assert y == [0.5 if k in (3, 8) else 0.0 for k in range(decoder.num_classes)]
        after = _canvas(page, "main")[..., :3]
        assert np.abs(after - _decoded(page, decoder, latent_shape)).max() <= PIXEL_TOLERANCE
        assert np.abs(after - before).max() > 20  # the class changed the picture
    finally:
        page.close()


def test_page_refuses_a_size_off_the_stride(site, browser):
    """?size= is checked by the package, with the Python runtime's message, shown on the page
    (off the stride for a symbolic-size decoder; any other size for a fixed-size one)."""
    _, url, artifacts, _ = site
    decoder = VAEDecoder(artifacts / "decoder.onnx")
    page = browser.new_page()
    try:
        page.goto(f"{url}?size=30x48")
        page.wait_for_function("window.vaeDemo && window.vaeDemo.error", timeout=60_000)
        with pytest.raises(ValueError) as python:
            decoder.latent_shape_for([30, 48])
        assert page.evaluate("window.vaeDemo.error") == f"RuntimeInputError: {python.value}"
        assert page.evaluate("document.getElementById('status').textContent") == f"Error: {python.value}"
    finally:
        page.close()
