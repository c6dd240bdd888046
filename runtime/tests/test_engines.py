"""The runtime's engines: names, reduced precisions, a missing package, the OpenVINO plugin,
and engine="auto" reading the recommendation recorded beside a graph (real graphs, real
sessions; the recommendation is written as `vae-export bench --recommend` writes it)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from vae_export_runtime import VAEDecoder
from vae_export_runtime import backends, ort_openvino
from vae_export_runtime.backends import EngineFallbackWarning
from vae_export_runtime.cpu import cpu_flags, cpu_model, fingerprint
from vae_export_runtime.errors import RuntimeInputError
from vae_export_runtime.recommend import Candidate, Recommendation, Row


def _copy(root: Path, kind: str, tmp_path: Path) -> Path:
    target = tmp_path / kind
    shutil.copytree(root / kind, target)
    return target


def _record(directory: Path, ranking: list[Candidate], print_: str | None = None, graph: str = "decoder") -> None:
    """A manifest beside the graphs with a recommendation (fingerprint: this CPU unless given)."""
    manifest = directory / "manifest.json"
    data = json.loads(manifest.read_text()) if manifest.is_file() else {}
    rec = Recommendation(cpu=cpu_model(), cpu_flags=cpu_flags(), fingerprint=print_ or fingerprint(), threads=1,
                         noise=0.05, rows=(Row(graph, None, 1, tuple(ranking), 1.0),))
    data["recommendation"] = rec.to_json()
    manifest.write_text(json.dumps(data))


def _z(decoder: VAEDecoder) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((2, *decoder.latent_shape_for())).astype(np.float32)


def test_an_unknown_engine_name_is_refused_with_the_known_ones(root):
    for bad in ("tensorrt", "openvino:fp8:x", "auto:bf16", 3):
        with pytest.raises(RuntimeInputError, match="engine: expected"):
            VAEDecoder(root / "flat" / "decoder.onnx", engine=bad)
    with pytest.raises(RuntimeInputError) as refused:
        VAEDecoder(root / "flat" / "decoder.onnx", engine="tensorrt")
    for name in ("onnxruntime", "executorch", "onnxruntime-openvino", "openvino", "auto", "auto:any"):
        assert f" {name}," in str(refused.value) or f" {name} " in str(refused.value), name


def test_an_engine_whose_package_is_missing_says_which(root):
    backends.register_engine("needs-missing", "no_such_package_for_vae_export.backend:open_backend")
    try:
        with pytest.raises(RuntimeInputError, match="engine needs-missing needs a package that is not installed "
                                                    "\\(no_such_package_for_vae_export\\)"):
            VAEDecoder(root / "flat" / "decoder.onnx", engine="needs-missing")
    finally:
        backends._OPENERS.pop("needs-missing")


def test_onnxruntime_openvino_runs_or_says_why_not(root):
    """With the plugin and a device it offers: the same outputs as ONNX Runtime's CPU provider
    (pinned f32). Without the package, or on a CPU the plugin offers no device for (it lists
    Intel devices only): one error with the reason, never a silent fall back."""
    path = root / "conv" / "decoder.onnx"
    reason = ort_openvino.unavailable()
    if reason is None:
        decoder = VAEDecoder(path, engine="onnxruntime-openvino")
        assert decoder.engine == "onnxruntime-openvino" and decoder.precision == "fp32"
        z = _z(decoder)
        np.testing.assert_allclose(decoder.decode(z), VAEDecoder(path).decode(z), atol=1e-4)
        return
    if importlib.util.find_spec("onnxruntime_ep_openvino") is None:
        assert "pip install onnxruntime-ep-openvino" in reason
    else:
        assert "offers no CPU device on this machine" in reason and cpu_model() in reason
    with pytest.raises(RuntimeInputError) as info:
        VAEDecoder(path, engine="onnxruntime-openvino")
    assert str(info.value) == reason


HAS_OPENVINO = importlib.util.find_spec("openvino") is not None


def test_native_openvino_reads_our_metadata_and_matches_onnxruntime(root):
    """With openvino installed: the same metadata and outputs as ONNX Runtime; without it (the
    runtime installed alone): one error naming the package."""
    path = root / "conv" / "decoder.onnx"
    if not HAS_OPENVINO:
        with pytest.raises(RuntimeInputError, match="engine openvino needs the openvino package"):
            VAEDecoder(path, engine="openvino")
        return
    decoder = VAEDecoder(path, engine="openvino")
    reference = VAEDecoder(path)
    assert decoder.engine == "openvino" and decoder.meta == reference.meta
    z = _z(decoder)
    np.testing.assert_allclose(decoder.decode(z), reference.decode(z), atol=1e-4)


def test_auto_without_a_recommendation_is_onnxruntime_cpu(root, tmp_path):
    directory = _copy(root, "flat", tmp_path)
    (directory / "manifest.json").unlink(missing_ok=True)
    decoder = VAEDecoder(directory / "decoder.onnx", engine="auto")
    assert decoder.engine == "onnxruntime" and "no recorded recommendation" in decoder.engine_reason


def test_auto_opens_the_recorded_fp32_recommendation_for_this_cpu(root, tmp_path):
    directory = _copy(root, "conv", tmp_path)
    _record(directory, [Candidate("openvino", "bf16", "fp32", "decoder.onnx", 1.0),
                        Candidate("torch", "fp32", "fp32", None, 1.5),  # the runtime cannot open PyTorch
                        Candidate("openvino", "fp32", "fp32", "decoder.onnx", 2.0),
                        Candidate("onnxruntime", "fp32", "fp32", "decoder.onnx", 3.0)])
    decoder = VAEDecoder(directory / "decoder.onnx", engine="auto")
    # auto: fp32 arithmetic only; an engine not installed here (openvino, runtime alone) is passed over
    assert (decoder.engine, decoder.precision) == ("openvino" if HAS_OPENVINO else "onnxruntime", "fp32")
    assert "recommended for decoder.onnx on this CPU" in decoder.engine_reason
    z = _z(decoder)
    np.testing.assert_allclose(decoder.decode(z), VAEDecoder(directory / "decoder.onnx").decode(z), atol=1e-4)
    if HAS_OPENVINO and ("avx512_bf16" in cpu_flags() or "amx_bf16" in cpu_flags()):
        reduced = VAEDecoder(directory / "decoder.onnx", engine="auto:any")
        assert (reduced.engine, reduced.precision) == ("openvino", "bf16")


def test_auto_on_a_manifest_recorded_on_another_cpu_falls_back_and_says_so(root, tmp_path):
    directory = _copy(root, "flat", tmp_path)
    _record(directory, [Candidate("openvino", "fp32", "fp32", "decoder.onnx", 1.0)], print_="0123456789abcdef")
    with pytest.warns(EngineFallbackWarning, match="measured on another CPU"):
        decoder = VAEDecoder(directory / "decoder.onnx", engine="auto")
    assert decoder.engine == "onnxruntime"
    assert "another CPU" in decoder.engine_reason and fingerprint() in decoder.engine_reason


def test_auto_refuses_a_malformed_or_oversized_recommendation(root, tmp_path):
    directory = _copy(root, "flat", tmp_path)
    manifest = directory / "manifest.json"
    data = json.loads(manifest.read_text())
    data["recommendation"] = {"format": 1, "cpu": "x", "cpu_flags": [], "fingerprint": fingerprint(), "threads": 1,
                              "noise": None, "rows": [{"graph": "decoder", "size": None, "batch": 1,
                                                       "ranking": [{"engine": "openvino", "precision": "fp32",
                                                                    "variant": "fp32", "file": "decoder.onnx",
                                                                    "p50_ms": "fast"}]}]}
    manifest.write_text(json.dumps(data))
    with pytest.raises(RuntimeInputError, match=r"field recommendation.rows\[0\].ranking\[0\].p50_ms: expected a finite"):
        VAEDecoder(directory / "decoder.onnx", engine="auto")
    manifest.write_text(" " * (16 << 20) + "{}")
    with pytest.raises(RuntimeInputError, match="larger than"):
        VAEDecoder(directory / "decoder.onnx", engine="auto")


def test_the_recommendation_round_trips():
    rec = Recommendation(cpu="c", cpu_flags=("avx2",), fingerprint="f" * 16, threads=2, noise=None,
                         rows=(Row("decoder", (64, 96), 3, (Candidate("onnxruntime", "fp32", "int8", "decoder.int8.onnx",
                                                                      1.5, 10.0),), 2.0),))
    assert Recommendation.from_json(json.loads(json.dumps(rec.to_json())), "m") == rec
