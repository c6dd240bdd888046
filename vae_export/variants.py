"""The variant registry: one record per variant, from which everything else is derived.

The CLI's `--variant` choices, the names a manifest may list, verify's thresholds, which
variants need calibration data and the benchmark sweep all read these records; the builders
that write the files live in `variant_builders.py` (they import onnx and ONNX Runtime's tools,
this module imports nothing heavy, so the CLI can build its choices from it).

| variant       | file                      | what                                                    | verify gates on |
| ------------- | ------------------------- | ------------------------------------------------------- | --------------- |
| `fp32`        | `<graph>.onnx`            | the exported graph                                      | atol/rtol |
| `int8`        | `<graph>.int8.onnx`       | dynamic int8 weights (quantize_dynamic)                 | PSNR, mu bounds |
| `int8-static` | `<graph>.int8-static.onnx`| static QDQ int8, calibrated (quantize_static)           | PSNR, mu bounds |
| `fp16`        | `<graph>.fp16.onnx`       | float16 weights and compute, float32 I/O                | PSNR, mu bounds |
| `fp16-mixed`  | `<graph>.fp16-mixed.onnx` | fp16, overflowing nodes (measured) kept in float32      | PSNR, mu bounds |
| `ort`         | `<graph>.ort`             | ORT format for mobile/minimal builds                    | atol/rtol |
| `optimized`   | `<graph>.optimized.onnx`  | the offline-optimised ONNX, written by `--variant ort`  | atol/rtol |
| `executorch`  | `<graph>.pte`             | ExecuTorch program lowered to XNNPACK (`lowering.py`)   | atol/rtol |
| `executorch-int8` | `<graph>.int8.pte`    | ExecuTorch, XNNPACK int8 (PT2E static, calibrated)      | PSNR, mu bounds |

The ExecuTorch programs need `pip install 'vae-export[executorch]'` (`package`) and run on the
`executorch` engine; their bounds (largest batch and latent side) come from the family.
"""

from __future__ import annotations

from dataclasses import dataclass

from vae_export_runtime.contract import EXECUTORCH, EXECUTORCH_INT8, FP32, ORT_FORMAT


@dataclass(frozen=True)
class Variant:
    name: str
    summary: str
    built_by: str | None  # the `--variant` value whose builder writes it (None: the export itself)
    builder: str | None = None  # function in variant_builders.py (the `built_by` record's)
    reduced: bool = False  # reduced precision: verify gates on decoder PSNR and encoder mu bounds
    mu_tol: tuple[float, float] | None = None  # (atol, rtol) on encoder mu, reduced variants
    mu_edge_tol: tuple[float, float] | None = None  # the same on the all-zero and all-one images
    calibrated: bool = False  # needs calibration images (int8 static ranges)
    format: str = "onnx"  # the file's kind: "onnx", "ort" (ORT's flatbuffer) or "pte" (an ExecuTorch program)
    package: str | None = None  # the import its builder needs beyond the core (None: always there)
    install_hint: str = ""


_ET_HINT = "pip install 'vae-export[executorch]'"
# Bounds on encoder mu for reduced-precision variants (mu of a trained model is O(1)); the
# all-zero and all-one images lie far outside the data int8 ranges are calibrated on.
REGISTRY: dict[str, Variant] = {v.name: v for v in (
    Variant(FP32, "the exported fp32 graph", built_by=None),
    Variant("int8", "dynamic int8 weights, activations quantised at run time", built_by="int8",
            builder="int8_dynamic", reduced=True, mu_tol=(0.25, 0.05), mu_edge_tol=(0.5, 0.05)),
    Variant("int8-static", "static QDQ int8, calibrated on training images and prior z", built_by="int8-static",
            builder="int8_static", reduced=True, mu_tol=(0.25, 0.05), mu_edge_tol=(0.5, 0.05), calibrated=True),
    Variant("fp16", "float16 weights and compute, float32 inputs and outputs", built_by="fp16",
            builder="fp16", reduced=True, mu_tol=(1e-2, 1e-2), mu_edge_tol=(1e-2, 1e-2)),
    # Same bounds as fp16: the nodes that would overflow run in float32, the rest in float16.
    Variant("fp16-mixed", "float16, with the nodes whose activations exceed float16's range kept in float32",
            built_by="fp16-mixed", builder="fp16_mixed", reduced=True, mu_tol=(1e-2, 1e-2), mu_edge_tol=(1e-2, 1e-2)),
    Variant(ORT_FORMAT, "ORT format for ONNX Runtime mobile/minimal builds", built_by=ORT_FORMAT, builder="ort_format",
            format="ort"),
    Variant("optimized", "offline-optimised ONNX, written beside the .ort file", built_by=ORT_FORMAT),
    Variant(EXECUTORCH, "ExecuTorch program lowered to XNNPACK (phones, embedded CPUs)", built_by=EXECUTORCH,
            builder="executorch", format="pte", package="executorch", install_hint=_ET_HINT),
    # XNNPACK's symmetric int8 (per-channel weights, static activations calibrated on what
    # int8-static calibrates on), held to int8-static's bounds. Measured on the reference MLP,
    # seed state dict, conv, conditional, M2 and AutoencoderTiny models (RESULTS.md, "ExecuTorch"):
    # decoder PSNR 46-55 dB (AutoencoderKL's decoder 37.7 dB; its encoder does not lower in int8),
    # encoder mu max abs 0.003-0.37 (the MLP's largest mu pass on the rtol part), 0.001-0.036 on
    # the all-zero and all-one images.
    Variant(EXECUTORCH_INT8, "ExecuTorch program, XNNPACK int8 (PT2E static, calibrated like int8-static)",
            built_by=EXECUTORCH_INT8, builder="executorch", reduced=True, mu_tol=(0.25, 0.05),
            mu_edge_tol=(0.5, 0.05), calibrated=True, format="pte", package="executorch", install_hint=_ET_HINT),
)}
OPTIMIZED = "optimized"
# What `--variant` accepts: the records that have a builder, in registry order.
VARIANTS = tuple(v.name for v in REGISTRY.values() if v.builder is not None)
# Every variant name a manifest can list.
LISTED_VARIANTS = tuple(REGISTRY)
REDUCED = tuple(v.name for v in REGISTRY.values() if v.reduced)
# The variants whose files are ExecuTorch programs (.pte), not ONNX Runtime's.
PTE_VARIANTS = tuple(v.name for v in REGISTRY.values() if v.format == "pte")
# The variants whose files are ONNX graphs (.onnx): what Triton's ONNX Runtime backend and the
# web page load.
ONNX_VARIANTS = tuple(v.name for v in REGISTRY.values() if v.format == "onnx")


def needs_calibration(variants: tuple[str, ...]) -> bool:
    return any(REGISTRY[v].calibrated for v in variants if v in REGISTRY)


def missing_package(variant: str) -> str | None:
    """Why `--variant` cannot be built here (its package is absent), or None."""
    import importlib.util

    record = REGISTRY[variant]
    if record.package and importlib.util.find_spec(record.package) is None:
        return f"--variant {variant} needs the {record.package} package; {record.install_hint}".rstrip("; ")
    return None
