"""Cross-host parity: the npm package `vae-export-runtime` (js/, on onnxruntime-node) against
Python on the same exported graphs (issue 25).

The toolkit exports a flat MLP model, a conv model with --dynamic-size, a conditional model,
an M2 model and a tiny diffusers AutoencoderKL (js/test/make_fixtures.py); one Node process
(js/test/parity_dump.mjs) makes a plan of calls on them and writes the results; Python makes
the same calls and compares:

- sample: the latents bit for bit (the package's priorLatents against the portable generator,
  vae_export_runtime.sampling) and the images within 1e-5 of the Python runtime's
  `VAEDecoder.sample` with the same arguments;
- decode (plain and tiled), interpolate, encode, classify, reconstruct, anomaly scores (each
  host drawing eps from the portable generator for the seed): the Python runtime's results
  within 1e-5 (scores: rtol 1e-5);
- bad inputs: the same RuntimeInputError message, word for word, from both runtimes; metadata:
  both codecs read every case alike (these two need the Python runtime of issue 24,
  vae_export_runtime with its graphs and codec, and skip without it).

    /work/main/.venv/bin/python -m pytest tests/test_js_runtime.py -s   # -s prints the parity table

Skips only when `node` is not installed; installs js/node_modules with `npm ci` when missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
JS = REPO / "js"


def _checkout_module(name: str, path: Path) -> Any:
    """A module of this checkout by its path: the parity test compares this checkout's two hosts,
    whatever version of the runtime distribution the venv has installed."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# numpy only, no package-relative imports: loadable on its own
_sampling = _checkout_module("_checkout_sampling", REPO / "runtime" / "vae_export_runtime" / "sampling.py")
normal_latents, scaled = _sampling.normal_latents, _sampling.scaled

pytestmark = pytest.mark.skipif(shutil.which("node") is None,
                                reason="node is not installed (the JavaScript package's parity test runs it)")

ATOL = 1e-5  # fp32 graphs, two builds of ONNX Runtime
SCORE_RTOL = 1e-5  # anomaly scores: sums over every pixel of float32 decodes


# ---- the two hosts ----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def js_package() -> Path:
    """js/ with node_modules: `npm ci` from the lock file when they are missing. onnxruntime-node's
    install script would download CUDA binaries on linux/x64; the bundled CPU binaries are what
    the tests use, so it is told to skip (onnxruntime-node's ONNXRUNTIME_NODE_INSTALL=skip)."""
    if not (JS / "node_modules" / "onnxruntime-node" / "package.json").is_file():
        npm = shutil.which("npm")
        assert npm is not None, "npm is needed to install js/node_modules (npm ci)"
        result = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS, capture_output=True, text=True,
                                env={**os.environ, "ONNXRUNTIME_NODE_INSTALL": "skip"}, timeout=900, check=False)
        assert result.returncode == 0, f"npm ci failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return JS


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory) -> Path:
    """Every model kind, exported by the toolkit (read-only). $VAE_EXPORT_FIXTURES, when set,
    names a directory to re-use (the kinds missing there are exported into it), as the package's
    own graph tests do; else a fresh temporary one."""
    make = _checkout_module("_make_fixtures", JS / "test" / "make_fixtures.py")
    given = os.environ.get("VAE_EXPORT_FIXTURES")
    # the sets the Python runtime's suite runs on (conftest.runtime_sets), plus variants/
    return make.make_fixtures(Path(given) if given else tmp_path_factory.getbasetemp() / "runtime-artifacts")


def python_runtime() -> Any:
    """The Python runtime: the runtime distribution when it has the graphs (issue 24), else the
    toolkit's vae_export.runtime (which re-exports it once it does)."""
    try:
        import vae_export_runtime

        if hasattr(vae_export_runtime, "VAEDecoder"):
            return vae_export_runtime
    except ImportError:
        pass
    import vae_export.runtime

    return vae_export.runtime


# ---- the plan ---------------------------------------------------------------------------------

class Normal(tuple):
    """A float32 N(0, 1) input of this shape (numpy's generator: any numbers do)."""


class Images(tuple):
    """A float32 image batch of this shape, uniform in [0, 1)."""


# (kind, call, arguments): what both hosts run; Normal/Images become float32 files.
NUMERIC = [
    ("flat", "sample", {"n": 5, "seed": 0}),
    ("flat", "sample", {"n": 3, "seed": {"bigint": str(2**63 - 1)}, "temperature": 0.7}),
    ("flat", "decode", {"z": Normal((4, 16))}),
    ("flat", "interpolate", {"z0": Normal((16,)), "z1": Normal((16,)), "steps": 5}),
    ("flat", "encode", {"x": Images((3, 1, 28, 28))}),
    ("flat", "anomaly", {"x": Images((2, 1, 28, 28)), "samples": 2, "seed": 3}),
    ("conv", "sample", {"n": 2, "seed": 1, "size": [32, 48]}),
    ("conv", "decode", {"z": Normal((2, 4, 5, 6))}),
    ("conv", "encode", {"x": Images((2, 1, 32, 24))}),
    ("cond", "sample", {"n": 4, "seed": 0, "label": 7, "temperature": 0.5}),
    ("cond", "sample", {"n": 3, "seed": 5, "labels": [1, 2, 3]}),
    ("cond", "interpolate", {"z0": Normal((8,)), "z1": Normal((8,)), "steps": 4, "y0": 1, "y1": 3}),
    ("cond", "anomaly", {"x": Images((2, 1, 28, 28)), "samples": 1, "seed": 4}),  # marginalised: log-sum-exp
    ("cond", "anomaly", {"x": Images((2, 1, 28, 28)), "seed": 4, "labels": [2, 5]}),
    ("m2", "sample", {"n": 4, "seed": 9, "labels": [0, 1, 2, 3]}),
    ("m2", "classify", {"x": Images((3, 1, 28, 28))}),
    ("m2", "reconstruct", {"x": Images((2, 1, 28, 28))}),  # the classifier's q(y | x) rows
    ("m2", "anomaly", {"x": Images((2, 1, 28, 28)), "samples": 2, "seed": 6}),  # marginalised with q(y | x)
    ("kl", "sample", {"n": 2, "seed": 0, "size": [32, 32]}),
    ("kl", "decode", {"z": Normal((1, 4, 6, 10))}),
    ("kl", "decode", {"z": Normal((1, 4, 16, 24)), "tile": 8}),  # 2 x 3 tiles of 8 cells, blended
    ("kl", "encode", {"x": Images((1, 3, 32, 32))}),
]
NUMERIC_IDS = [f"{kind}-{call}-{i}" for i, (kind, call, _) in enumerate(NUMERIC)]


def numeric_calls(out: Path) -> list[dict[str, Any]]:
    """NUMERIC as plan entries, their inputs written to `out` as float32 files."""
    rng = np.random.default_rng(25)
    calls = []
    for call_id, (kind, call, args) in zip(NUMERIC_IDS, NUMERIC):
        plain = {}
        for name, v in args.items():
            if isinstance(v, (Normal, Images)):
                array = rng.standard_normal(v) if isinstance(v, Normal) else rng.random(v)
                file = f"{call_id}.{name}.bin"
                (out / file).write_bytes(np.ascontiguousarray(array, dtype="<f4").tobytes())
                v = {"file": file, "dims": list(v)}
            plain[name] = v
        calls.append({"id": call_id, "kind": kind, "call": call, "args": plain})
    return calls


def error_calls() -> list[dict[str, Any]]:
    """Bad inputs, each refused by both runtimes with one message."""
    cases = [
        ("wrong-length", "flat", "decode", {"z": {"zeros": [1, 31]}}),
        ("wrong-rank", "flat", "decode", {"z": {"zeros": [16]}}),
        ("nan", "flat", "decode", {"z": {"full": [[1, 16], "nan"]}}),
        ("empty-batch", "flat", "decode", {"z": {"zeros": [0, 16]}}),
        ("label-out-of-range", "cond", "sample", {"n": 2, "seed": 0, "label": 10}),
        ("labels-float", "cond", "decode", {"z": {"zeros": [2, 8]}, "labels": [1.5, 2]}),
        ("labels-count", "cond", "decode", {"z": {"zeros": [2, 8]}, "labels": [1, 2, 3]}),
        ("no-label", "cond", "sample", {"n": 2, "seed": 0}),
        ("label-unconditional", "flat", "sample", {"n": 2, "seed": 0, "label": 1}),
        ("label-and-labels", "cond", "sample", {"n": 2, "seed": 0, "label": 1, "labels": [1, 2]}),
        ("y-sum", "cond", "decode", {"z": {"zeros": [2, 8]}, "y": {"full": [[2, 10], 0.2]}}),
        ("y-shape", "cond", "decode", {"z": {"zeros": [2, 8]}, "y": {"full": [[2, 9], 0.2]}}),
        ("y-negative", "cond", "decode", {"z": {"zeros": [1, 8]}, "y": [[-1, 2, 0, 0, 0, 0, 0, 0, 0, 0]]}),
        ("size-stride", "conv", "sample", {"n": 1, "seed": 0, "size": [30, 28]}),
        ("size-fixed", "flat", "sample", {"n": 1, "seed": 0, "size": [56, 56]}),
        ("n-zero", "flat", "sample", {"n": 0, "seed": 0}),
        ("n-float", "flat", "sample", {"n": 2.5, "seed": 0}),
        ("n-big", "flat", "sample", {"n": 70000, "seed": 0}),
        ("seed-negative", "flat", "sample", {"n": 1, "seed": -1}),
        ("seed-float", "flat", "sample", {"n": 1, "seed": 1.5}),
        ("seed-too-big", "flat", "sample", {"n": 1, "seed": {"bigint": str(2**63)}}),
        ("temperature-zero", "flat", "sample", {"n": 1, "seed": 0, "temperature": 0}),
        ("temperature-big", "flat", "sample", {"n": 1, "seed": 0, "temperature": 11.5}),
        ("steps", "flat", "interpolate", {"z0": {"zeros": [16]}, "z1": {"zeros": [16]}, "steps": 1}),
        ("z1-shape", "conv", "interpolate", {"z0": {"zeros": [4, 2, 2]}, "z1": {"zeros": [4, 3, 3]}, "steps": 2}),
        ("y0-missing", "cond", "interpolate", {"z0": {"zeros": [8]}, "z1": {"zeros": [8]}, "steps": 2}),
        ("tile-flat", "flat", "decode", {"z": {"zeros": [1, 16]}, "tile": 8}),
        ("tile-uneven", "kl", "decode", {"z": {"zeros": [1, 4, 16, 16]}, "tile": 7}),
        ("overlap", "kl", "decode", {"z": {"zeros": [1, 4, 16, 16]}, "tile": 8, "overlap": 1.0}),
        ("image-stride", "conv", "encode", {"x": {"zeros": [1, 1, 30, 28]}}),
        ("image-channels", "kl", "encode", {"x": {"zeros": [1, 1, 32, 32]}}),
        ("classify-without-classifier", "flat", "classify", {"x": {"zeros": [1, 1, 28, 28]}}),
        ("samples", "m2", "anomaly", {"x": {"zeros": [1, 1, 28, 28]}, "samples": 0}),
        ("eps-shape", "flat", "anomaly", {"x": {"zeros": [1, 1, 28, 28]}, "samples": 2, "eps": {"zeros": [1, 1, 16]}}),
        ("not-ours", None, "load", {"path": "variants/flat-not-ours.onnx"}),
        ("wrong-role", None, "load", {"path": "flat/encoder.onnx"}),
        ("no-export-size", None, "load-sample", {"path": "variants/conv-without-export-size.onnx", "n": 1, "seed": 0}),
        ("latent-dim-spatial", "conv", "latent_dim", {}),
        ("missing-file", None, "load", {"path": "flat/nothing.onnx"}),
        ("classes-disagree", None, "pair", {"encoder": "flat/encoder.onnx", "decoder": "cond/decoder.onnx"}),
    ]
    return [{"id": f"error-{name}", "kind": kind, "call": call, "args": args} for name, kind, call, args in cases]


_FLAT = {"role": "decoder", "latent_dim": "32", "image_shape": "1,28,28", "latent_shape": "[32]",
         "likelihood": "bernoulli", "version": "0.1.0", "variant": "fp32"}
_CONV = {"role": "decoder", "image_shape": "null", "latent_shape": "[4, null, null]", "stride": "4"}
# Metadata both codecs read (keys without the prefix): what they make of it, or their message.
METADATA = [
    ("flat", _FLAT),
    ("v1", {"role": "encoder", "latent_dim": "16", "image_shape": "1, 28, 28"}),
    ("symbolic", _CONV),
    ("export-size", {**_CONV, "export_size": "[28, 36]"}),
    ("classes", {**_FLAT, "num_classes": "3", "class_names": '["a", "b", "c"]'}),
    ("names-malformed", {**_FLAT, "num_classes": "3", "class_names": '["a", "b"]'}),
    ("extra-keys", {**_FLAT, "native_range": "[-1, 1]", "scaling_factor": "0.18215"}),
    ("not-ours", {"role": "decoder", "image_shape": "1,28,28"}),
    ("role", {**_FLAT, "role": "generator"}),
    ("latent-zero", {**_FLAT, "latent_shape": "[0]"}),
    ("latent-float", {**_FLAT, "latent_shape": "[1.0]"}),
    ("latent-rank", {**_FLAT, "latent_shape": "[2, 3]"}),
    ("latent-bool", {**_FLAT, "latent_shape": "[true]"}),
    ("latent-huge", {**_FLAT, "latent_shape": "[65536, 65536, 65536]"}),
    ("image-rank", {**_FLAT, "image_shape": "1,28"}),
    ("image-symbolic-list", {**_FLAT, "image_shape": "[1, null, null]"}),
    ("latent-dim", {"role": "decoder", "latent_dim": "x", "image_shape": "1,28,28"}),
    ("likelihood", {**_FLAT, "likelihood": "poisson"}),
    ("stride", {**_FLAT, "stride": "0"}),
    ("export-size-stride", {**_FLAT, "stride": "4", "export_size": "[30, 28]"}),
    ("export-size-rank", {**_FLAT, "export_size": "[28]"}),
    ("symbolic-flat", {"role": "decoder", "image_shape": "null", "latent_shape": "[32]"}),
    ("classes-one", {**_FLAT, "num_classes": "1"}),
    ("classes-unicode-digits", {**_FLAT, "num_classes": "\uff11\uff10"}),
    ("long-value", {**_FLAT, "role": "x" * 100}),
    # surrounding whitespace: Python's str.strip() set (U+001C..U+001F and U+0085 in, U+FEFF out)
    ("null-info-separator", {**_CONV, "image_shape": "\x1cnull"}),
    ("null-next-line", {**_CONV, "image_shape": "\x85null\u3000"}),
    ("null-bom", {**_CONV, "image_shape": "\ufeffnull"}),
    ("csv-unicode-space", {**_FLAT, "image_shape": "1,\u300028\x85,28"}),
    ("json-next-line", {**_FLAT, "latent_shape": "\x85[32]"}),
    # numbers int() alone would mishandle: refused by the rule, with the key named
    ("csv-info-separator", {**_FLAT, "image_shape": "1,\x1c28,28"}),
    ("count-5000-digits", {"role": "decoder", "latent_dim": "1" * 5000, "image_shape": "1,28,28"}),
    ("csv-5000-digits", {**_FLAT, "image_shape": "1,28," + "9" * 5000}),
]


def metadata_calls() -> list[dict[str, Any]]:
    return [{"id": f"metadata-{name}", "kind": None, "call": "metadata",
             "args": {"props": {f"vae_export.{k}": v for k, v in props.items()}}} for name, props in METADATA]


@pytest.fixture(scope="session")
def dump(js_package, fixtures, tmp_path_factory) -> tuple[Path, list[dict[str, Any]], dict[str, Any]]:
    """One Node process runs every call; returns (its output directory, the calls, its results)."""
    out = tmp_path_factory.mktemp("js-dump")
    calls = numeric_calls(out) + error_calls() + metadata_calls()
    (out / "plan.json").write_text(json.dumps({"fixtures": str(fixtures), "calls": calls}))
    result = subprocess.run(["node", str(JS / "test" / "parity_dump.mjs"), str(out / "plan.json"), str(out)],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    return out, calls, json.loads((out / "results.json").read_text())


# ---- Python's side ------------------------------------------------------------------------------

def _value(v: Any, out: Path) -> Any:
    if not isinstance(v, dict):
        return v
    if "bigint" in v:
        return int(v["bigint"])
    if "file" in v:
        return np.fromfile(out / v["file"], dtype="<f4").reshape(v["dims"])
    dims, fill = (v["zeros"], 0.0) if "zeros" in v else v["full"]
    return np.full(dims, np.nan if fill == "nan" else fill, dtype=np.float32)


class PythonHost:
    """The same calls in Python, on the runtime's graphs."""

    def __init__(self, fixtures: Path, out: Path, runtime: Any) -> None:
        self.fixtures, self.out, self.rt = fixtures, out, runtime
        self._cache: dict[tuple[str, str], Any] = {}

    def open(self, kind: str, role: str) -> Any:
        key = (kind, role)
        if key not in self._cache:
            d = self.fixtures / kind
            rt = self.rt
            self._cache[key] = {
                "decoder": lambda: rt.VAEDecoder(d / "decoder.onnx"),
                "encoder": lambda: rt.VAEEncoder(d / "encoder.onnx"),
                "vae": lambda: rt.VAE(d / "encoder.onnx", d / "decoder.onnx", classifier_path=(
                    d / "classifier.onnx" if (d / "classifier.onnx").is_file() else None)),
            }[role]()
        return self._cache[key]

    def sample(self, kind: str, n: int, seed: int, size: list[int] | None = None, temperature: float = 1.0,
               label: int | None = None, labels: list[int] | None = None) -> dict[str, np.ndarray]:
        """The runtime's sample, and the latents it decodes (the spec's steps 1-6)."""
        decoder = self.open(kind, "decoder")
        size_ = tuple(size) if size else None
        images = decoder.sample(n, seed=seed, size=size_, label=label, labels=labels, temperature=temperature)
        z = scaled(normal_latents((n, *decoder.latent_shape_for(size_)), seed), temperature)
        return {"images": images, "latents": z}

    def call(self, entry: dict[str, Any]) -> dict[str, np.ndarray] | None:
        kind, call = entry["kind"], entry["call"]
        a = {k: _value(v, self.out) for k, v in entry["args"].items()}
        if call == "sample" and entry["id"].startswith("error-"):  # bad arguments: the runtime's own checks
            return {"images": self.open(kind, "decoder").sample(a.pop("n"), **a)}
        if call == "sample":
            return self.sample(kind, **a)
        if call == "decode":
            return {"images": self.open(kind, "decoder").decode(a.pop("z"), **a)}
        if call == "interpolate":
            return {"images": self.open(kind, "decoder").interpolate(a.pop("z0"), a.pop("z1"), **a)}
        if call == "encode":
            mu, logvar = self.open(kind, "encoder").encode(a.pop("x"), **a)
            return {"mu": mu, "logvar": logvar}
        if call == "classify":
            return {"probabilities": self.open(kind, "vae").classify(a["x"])}
        if call == "reconstruct":
            return {"images": self.open(kind, "vae").reconstruct(a.pop("x"), **a)}
        if call == "anomaly":
            vae, x = self.open(kind, "vae"), a.pop("x")
            samples, seed = a.pop("samples", 1), a.pop("seed", 0)
            return {"scores": vae.anomaly_score(x, samples=samples, seed=seed, **a)}
        if call == "load":
            getattr(self.rt, "VAEEncoder" if a.get("role") == "encoder" else "VAEDecoder")(self.fixtures / a["path"])
            return None
        if call == "load-sample":
            self.rt.VAEDecoder(self.fixtures / a.pop("path")).sample(**a)
            return None
        if call == "pair":
            self.rt.VAE(self.fixtures / a["encoder"], self.fixtures / a["decoder"])
            return None
        if call == "latent_dim":
            return self.open(kind, "decoder").latent_dim
        raise AssertionError(f"unknown call {call}")


def _js_outputs(result: dict[str, Any], out: Path) -> dict[str, np.ndarray]:
    assert "error" not in result, result.get("error")
    return {name: np.fromfile(out / o["file"], dtype="<f8" if o["dtype"] == "float64" else "<f4").reshape(o["dims"])
            for name, o in result["outputs"].items()}


# ---- the tests ----------------------------------------------------------------------------------

def _compare(entry: dict[str, Any], js: dict[str, np.ndarray], py: dict[str, np.ndarray]) -> dict[str, Any]:
    """One parity row: max abs difference per output; latents compared bit for bit."""
    row: dict[str, Any] = {"id": entry["id"], "kind": entry["kind"], "call": entry["call"]}
    assert set(js) == set(py), (sorted(js), sorted(py))
    for name, value in py.items():
        p, j = np.asarray(value), js[name]
        assert j.shape == p.shape, (name, j.shape, p.shape)
        if name == "latents":
            row["latents_identical"] = bool(np.array_equal(j.view(np.uint32), p.astype(np.float32).view(np.uint32)))
        else:
            row[f"{name}_max_abs"] = float(np.max(np.abs(j.astype(np.float64) - p.astype(np.float64))))
    return row


_ROWS: list[dict[str, Any]] = []


@pytest.mark.parametrize("call_id", NUMERIC_IDS)
def test_same_results_in_node_and_python(dump, fixtures, call_id):
    out, calls, results = dump
    entry = next(c for c in calls if c["id"] == call_id)
    py = PythonHost(fixtures, out, python_runtime()).call(entry)
    js = _js_outputs(results[entry["id"]], out)
    row = _compare(entry, js, py)
    _ROWS.append(row)
    if entry["call"] == "sample":
        assert row["latents_identical"], row
    for name in py:
        if name == "scores":
            np.testing.assert_allclose(js[name], py[name], rtol=SCORE_RTOL, err_msg=entry["id"])
        elif name != "latents":
            assert row[f"{name}_max_abs"] <= ATOL, row


def test_bad_inputs_have_python_s_messages(dump, fixtures):
    """Every bad input is refused in Node with the Python runtime's RuntimeInputError message."""
    runtime = python_runtime()
    if not hasattr(runtime, "RuntimeInputError") or runtime.__name__ != "vae_export_runtime":
        pytest.skip("the Python runtime of issue 24 (vae_export_runtime with its graphs) is not in this checkout")
    out, calls, results = dump
    host = PythonHost(fixtures, out, runtime)
    mismatches = []
    for entry in (c for c in calls if c["id"].startswith("error-")):
        try:
            host.call(entry)
            python = "no error"
        except Exception as exc:  # noqa: BLE001 - the message is what is compared
            python = f"{type(exc).__name__}: {exc}"
        node = results[entry["id"]].get("error", "no error")
        if node != python:
            mismatches.append(f"{entry['id']}:\n  node:   {node}\n  python: {python}")
    assert not mismatches, "\n".join(mismatches)


def test_parity_table(dump):
    """The parity table (printed with pytest -s): model kind x call, max abs difference, latents
    identical; every row within 1e-4 (images are within 1e-5 in their own tests) and every
    sampled latent identical."""
    assert _ROWS, "no parity rows: the parity tests above must run first (run the whole file)"
    assert all(row.get("latents_identical", True) is True for row in _ROWS)
    assert all(v <= 1e-4 for row in _ROWS for k, v in row.items() if k.endswith("_max_abs"))
    print("\n| kind | call | output: max abs difference | latents identical |\n| --- | --- | --- | --- |")
    for row in _ROWS:
        diffs = ", ".join(f"{k.removesuffix('_max_abs')} {v:.1e}" for k, v in row.items() if k.endswith("_max_abs"))
        print(f"| {row['kind']} | {row['call']} | {diffs} | {row.get('latents_identical', '')} |")


@pytest.mark.parametrize("name", [name for name, _ in METADATA])
def test_metadata_is_read_alike(dump, name):
    """The package's codec (metadata.js) and the Python runtime's (codec.py) read every case
    alike: the same values, or the same message."""
    from vae_export_runtime import codec
    _, calls, results = dump
    entry = next(c for c in calls if c["id"] == f"metadata-{name}")
    try:
        m = codec.GraphMetadata.from_props(entry["args"]["props"], "g.onnx")
        python: Any = {
            "role": m.role, "latentShape": list(m.latent_shape),
            "imageShape": None if m.image_shape is None else list(m.image_shape), "likelihood": m.likelihood,
            "variant": m.variant, "stride": m.stride,
            "exportSize": None if m.export_size is None else list(m.export_size), "numClasses": m.num_classes,
            "classNames": list(m.class_names), "extra": dict(m.extra)}
    except Exception as exc:  # noqa: BLE001 - the message is what is compared
        python = f"{type(exc).__name__}: {exc}"
    result = results[entry["id"]]
    if "error" in result or not isinstance(python, dict):
        node = result.get("error", result.get("value"))
    else:
        node = {k: result["value"].get(k) for k in python}
    assert node == python


def test_the_package_s_own_suite_passes(js_package, fixtures):
    """Node's own test runner on js/test (sampling vectors, codec, checks, tiling, graphs on the
    exported sets), as `npm test` runs it."""
    result = subprocess.run(["npm", "test", "--silent"], cwd=JS, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "VAE_EXPORT_FIXTURES": str(fixtures)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    counts = dict(re.findall(r"^# (pass|fail|cancelled) (\d+)$", result.stdout, re.M))
    assert int(counts["pass"]) >= 50 and counts["fail"] == "0" and counts["cancelled"] == "0", counts
