"""The graph contract apps build on (docs/contract.md), in one place.

Torch-free: the runtime, export, verify and bench all read names from here so they never drift.
"""

from __future__ import annotations

from dataclasses import dataclass

BATCH_DIM = "batch"
FP32 = "fp32"
ORT_FORMAT = "ort"  # the variant whose file is a .ort flatbuffer, not an .onnx
META_PREFIX = "vae_export."


@dataclass(frozen=True)
class GraphSpec:
    """One exported graph: its role, its single input and its outputs, in order."""

    role: str
    input_name: str
    output_names: tuple[str, ...]


ENCODER = GraphSpec("encoder", "x", ("mu", "logvar"))
DECODER = GraphSpec("decoder", "z", ("x_hat",))
GRAPHS = {spec.role: spec for spec in (ENCODER, DECODER)}


def graph_filename(role: str, variant: str = FP32) -> str:
    """encoder.onnx for fp32, encoder.int8.onnx for a variant, encoder.ort for the ORT
    format (docs/contract.md, "Variants")."""
    if variant == FP32:
        return f"{role}.onnx"
    return f"{role}.ort" if variant == ORT_FORMAT else f"{role}.{variant}.onnx"
