"""`vae-export web`: a static page that runs the decoder in the browser with onnxruntime-web.

The site is plain files: index.html and app.js (the page), vae-export-runtime.js (the npm
package of js/ as one ES module, which reads the graph's own metadata, checks every call and
draws the seeded samples: the page re-implements none of the contract), decoder.onnx, page.json
(what to show: the size) and the vendored onnxruntime-web runtime. Any static host serves it;
nothing is fetched from a CDN at run time and nothing is built: the page's files are copied from
this package's data (vae_export/webapp/, which the wheel carries; vae-export-runtime.js there is
generated from js/src by js/scripts/bundle.mjs and tests keep it current). onnxruntime-web comes
from the npm registry at build time (`npm install`, cached in $VAE_EXPORT_DATA/npm or
~/.cache/vae-export/npm), or from `--ort-web DIR`, an installed `onnxruntime-web` package
directory.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from vae_export.artifacts import atomic_write_bytes, cache_dir, ensure_dir
from vae_export.errors import UsageError, VAEExportError
from vae_export_runtime import VAEDecoder
from vae_export_runtime.contract import graph_filename

ORT_WEB_VERSION = "1.30.0"
# The WASM-only build: one script, and the SIMD module it loads next to itself.
ORT_WEB_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
# The page, and the npm package vae-export-runtime in one file (index.html's import map names it).
APP_FILES = ("index.html", "app.js", "vae-export-runtime.js")


def _npm_install(version: str) -> Path:
    prefix = cache_dir() / "npm" / f"onnxruntime-web-{version}"
    package = prefix / "node_modules" / "onnxruntime-web"
    if (package / "dist" / ORT_WEB_FILES[0]).is_file():
        return package
    npm = shutil.which("npm")
    if npm is None:
        raise VAEExportError(
            "vae-export web needs onnxruntime-web: install Node.js/npm, or pass --ort-web DIR "
            "(an installed onnxruntime-web package)"
        )
    prefix.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [npm, "install", "--prefix", str(prefix), "--no-save", "--no-audit", "--no-fund", "--ignore-scripts",
         f"onnxruntime-web@{version}"],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["npm failed"])[-1]
        raise VAEExportError(f"npm install onnxruntime-web@{version} failed ({last})")
    return package


def ort_web_package(ort_web: Path | None) -> Path:
    package = ort_web if ort_web is not None else _npm_install(ORT_WEB_VERSION)
    missing = [f for f in ORT_WEB_FILES if not (package / "dist" / f).is_file()]
    if missing:
        raise UsageError(f"--ort-web {package}: not an onnxruntime-web package (missing dist/{missing[0]})")
    return package


def build_site(artifacts: Path, out: Path, ort_web: Path | None = None, variant: str = "fp32",
               size: tuple[int, int] | None = None) -> list[Path]:
    """Write the page into `out`; returns the files written. A decoder with a symbolic size is
    shown at `size` (default: the runtime's `default_size`, the size it was exported at); the
    decoder and the size are checked here, before anything is written, as the page checks them."""
    decoder_path = artifacts / graph_filename("decoder", variant)
    if not decoder_path.is_file():
        raise UsageError(f"{decoder_path}: not found; run `vae-export export` first")
    decoder = VAEDecoder(decoder_path)  # validates the graph before anything is written
    try:
        decoder.latent_shape_for(size)
    except ValueError as exc:  # RuntimeInputError
        raise UsageError(f"--size: {exc}") from None
    package = ort_web_package(ort_web)
    ensure_dir(out, "--out")
    written = []
    for name in ORT_WEB_FILES:
        atomic_write_bytes(out / name, (package / "dist" / name).read_bytes())
        written.append(out / name)
    atomic_write_bytes(out / "decoder.onnx", decoder_path.read_bytes())
    written.append(out / "decoder.onnx")
    # What to show, not what the graph is: the page reads that from decoder.onnx itself.
    page = {"size": None if size is None else [int(size[0]), int(size[1])]}
    atomic_write_bytes(out / "page.json", json.dumps(page).encode())
    written.append(out / "page.json")
    app = resources.files("vae_export") / "webapp"
    for name in APP_FILES:
        atomic_write_bytes(out / name, app.joinpath(name).read_bytes())
        written.append(out / name)
    return written
