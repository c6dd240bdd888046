import json
import shutil

import numpy as np
import pytest

from vae_export.cli import main
from vae_export.runtime import VAEDecoder

VARIANT_FILES = {
    "int8": ("encoder.int8.onnx", "decoder.int8.onnx"),
    "int8-static": ("encoder.int8-static.onnx", "decoder.int8-static.onnx"),
    "fp16": ("encoder.fp16.onnx", "decoder.fp16.onnx"),
    "fp16-mixed": ("encoder.fp16-mixed.onnx", "decoder.fp16-mixed.onnx"),
    "optimized": ("encoder.optimized.onnx", "decoder.optimized.onnx"),
    "ort": ("encoder.ort", "decoder.ort"),
}


def test_every_variant_listed_in_manifest(variants_dir):
    manifest = json.loads((variants_dir / "manifest.json").read_text())
    listed = {(e["variant"], e["file"]) for e in manifest["artifacts"]}
    for variant, files in VARIANT_FILES.items():
        for name in files:
            assert (variant, name) in listed
            assert (variants_dir / name).is_file()
    sizes = {e["file"]: e["bytes"] for e in manifest["artifacts"]}
    assert sizes["decoder.int8.onnx"] < 0.35 * sizes["decoder.onnx"]
    assert sizes["decoder.fp16.onnx"] < 0.55 * sizes["decoder.onnx"]


def test_every_variant_passes_verify(variants_dir, tmp_path, runner):
    d = tmp_path / "v"
    shutil.copytree(variants_dir, d)
    result = runner.invoke(main, ["verify", "--artifacts", str(d), "--checkpoint", str(d / "vae.safetensors"),
                                  "--batch-sizes", "1,64", "--json", str(tmp_path / "v.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "v.json").read_text())
    seen = {c["variant"] for c in report["checks"]}
    assert seen == {"fp32", *VARIANT_FILES}
    for c in report["checks"]:
        if c["variant"] in ("int8", "int8-static", "fp16", "fp16-mixed") and c["graph"] == "decoder":
            assert c["gated_on"] == "psnr" and c["psnr_db"] >= (20.0 if c["input"] == "edge" else 30.0)
        if c["variant"] in ("optimized", "ort"):
            assert c["gated_on"] == "atol/rtol"


@pytest.mark.parametrize("variant", ["int8", "int8-static", "fp16", "optimized"])
def test_runtime_reads_variants(variants_dir, variant):
    decoder = VAEDecoder(variants_dir / f"decoder.{variant}.onnx")
    assert decoder.latent_dim == 32 and decoder.metadata["variant"] == variant
    images = decoder.sample(4, seed=0)
    reference = VAEDecoder(variants_dir / "decoder.onnx").sample(4, seed=0)
    assert images.dtype == np.float32 and images.shape == (4, 1, 28, 28)
    assert np.abs(images - reference).mean() < 0.02


def test_ort_format_runs(variants_dir):
    decoder = VAEDecoder(variants_dir / "decoder.ort")
    np.testing.assert_allclose(decoder.sample(3, seed=1), VAEDecoder(variants_dir / "decoder.onnx").sample(3, seed=1),
                               atol=1e-5)


def test_inspect_ort_file(variants_dir, runner):
    from vae_export.cli import main

    result = runner.invoke(main, ["inspect", str(variants_dir / "decoder.ort")])
    assert result.exit_code == 0, result.output
    assert "ORT format" in result.output and "input  z" in result.output
    assert "vae_export.role = decoder" in result.output


def test_reexport_with_fewer_variants_removes_their_files(variants_dir, tmp_path, runner):
    d = tmp_path / "v"
    shutil.copytree(variants_dir, d)
    (d / "notes.onnx").write_bytes(b"the user's own file")
    result = runner.invoke(main, ["export", "--artifacts", str(d), "--variant", "fp16"])
    assert result.exit_code == 0, result.output
    for variant, files in VARIANT_FILES.items():
        for name in files:
            assert (d / name).is_file() == (variant == "fp16"), name
            assert (f"removed {name} " in result.output) == (variant != "fp16")
    manifest = json.loads((d / "manifest.json").read_text())
    assert {e["variant"] for e in manifest["artifacts"]} == {"fp32", "fp16"}
    assert (d / "notes.onnx").read_bytes() == b"the user's own file"  # never ours, never touched
    assert (d / "vae.safetensors").is_file()


def test_tampered_manifest_cannot_direct_the_removal(artifacts, tmp_path, runner):
    outside = tmp_path / "outside.onnx"
    outside.write_bytes(b"keep")
    manifest = json.loads((artifacts / "manifest.json").read_text())
    manifest["artifacts"] += [{"file": "../outside.onnx"}, {"file": str(outside)}, {"file": "vae.safetensors"}]
    (artifacts / "manifest.json").write_text(json.dumps(manifest))
    result = runner.invoke(main, ["export", "--artifacts", str(artifacts)])
    assert result.exit_code == 0, result.output
    assert "removed" not in result.output
    assert outside.read_bytes() == b"keep" and (artifacts / "vae.safetensors").is_file()


def test_registry_drives_choices_and_thresholds():
    from vae_export.cli import main
    from vae_export.parity import REDUCED_MU
    from vae_export.variants import LISTED_VARIANTS, REGISTRY, VARIANTS

    option = next(p for p in main.commands["export"].params if p.name == "variants")
    assert tuple(option.type.choices) == VARIANTS == ("int8", "int8-static", "fp16", "fp16-mixed", "ort",
                                                      "executorch", "executorch-int8")
    assert set(LISTED_VARIANTS) == {"fp32", *VARIANTS, "optimized"}
    assert REDUCED_MU == {"int8": (0.25, 0.05), "int8-static": (0.25, 0.05), "fp16": (1e-2, 1e-2),
                          "fp16-mixed": (1e-2, 1e-2), "executorch-int8": (0.25, 0.05)}
    assert all(REGISTRY[v].builder for v in VARIANTS)


def test_calibration_covers_exactly_the_edge_cases_verify_checks(digits):
    from vae_export.inputs import calibration_inputs, edge_inputs

    for role, images in (("decoder", None), ("encoder", digits.train.numpy())):
        edges = edge_inputs(role, (32,), (1, 28, 28))
        data = calibration_inputs(role, (32,), (1, 28, 28), images)
        assert len(data) == 256 + len(edges)
        np.testing.assert_array_equal(data[-len(edges):], edges)
    mixed = edge_inputs("decoder", (32,), (1, 28, 28))[2]
    assert set(np.abs(mixed).tolist()) == {4.0} and 0 < (mixed > 0).sum() < 32
