"""The builders of the variants in the registry (`variants.py`), each with ONNX Runtime's own
tools: quantize_dynamic, quantize_static, the float16 converter, the .ort converter; and the
ExecuTorch programs, lowered from the PyTorch module (`lowering.py`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from vae_export.artifacts import atomic_write_bytes
from vae_export.errors import VAEExportError
from vae_export.inputs import calibration_inputs, with_labels
from vae_export.onnxinfo import graph_metadata, set_metadata
from vae_export.variants import OPTIMIZED, REGISTRY
from vae_export_runtime.contract import ORT_FORMAT, GraphSpec, graph_filename
from vae_export_runtime.session import make_session


def _retag(path: Path, source: Path, variant: str) -> None:
    """Carry the fp32 graph's metadata (the contract) over, marking the variant."""
    model = onnx.load(str(path))
    set_metadata(model, graph_metadata(onnx.load(str(source), load_external_data=False), source).with_variant(variant))
    onnx.save_model(model, str(path), save_as_external_data=False)


def _preprocess(src: Path) -> Path:
    """ORT's recommended step before quantising: shape inference and graph optimisation, so
    the quantiser sees fused ops and known shapes."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src = src.resolve()
    dst = src.with_name(f".{src.stem}.pre.onnx")
    # When its symbolic shape inference gives up, ORT saves a debug copy of the model (with a
    # side .data file as large as the weights: 136 MB for the SD encoder) into the current
    # directory; run it from a scratch directory so that nothing lands in the user's.
    with tempfile.TemporaryDirectory(prefix=".quant-", dir=src.parent) as scratch, contextlib.chdir(scratch):
        try:
            quant_pre_process(src, dst)
        except Exception as exc:  # ORT raises a bare Exception for this one
            if "symbolic shape inference" not in str(exc):
                raise
            # ORT's symbolic shape inference gives up on some symbolic-size graphs (the
            # SD-sized AutoencoderKL encoder: "Incomplete symbolic shape inference"); ONNX's own
            # shape inference and the graph optimisation still run, and the quantised graph
            # still verifies (SD encoder mu within 0.034 of fp32, decoder 38.7 dB at 64x64).
            quant_pre_process(src, dst, skip_symbolic_shape=True)
    return dst


def int8_dynamic(src: Path, dst: Path, spec: GraphSpec, loaded: Any, images: np.ndarray | None) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Full 8-bit weights, not reduce_range: without VNNI, ORT's u8 x s8 kernel can saturate
    # its int16 pair sums, which 7-bit weights avoid, but on the MNIST decoder the 7-bit
    # weights cost more (PSNR vs fp32 over 512 prior z: mean 34.5 dB, worst 30.2) than the
    # saturation does (mean 39.8 dB, worst 36.3), at the same speed.
    quantize_dynamic(_preprocess(src), dst, weight_type=QuantType.QInt8)


class _ArrayReader:
    """onnxruntime.quantization.CalibrationDataReader over one array, in batches (with the
    label rows a conditional graph also takes)."""

    def __init__(self, input_names: tuple[str, ...], data: np.ndarray, num_classes: int, batch: int = 32) -> None:
        self._batches = iter([with_labels(input_names, data[i : i + batch], num_classes)
                              for i in range(0, len(data), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def int8_static(src: Path, dst: Path, spec: GraphSpec, loaded: Any, images: np.ndarray | None) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if spec.role != "decoder" and images is None:
        raise VAEExportError(f"int8-static needs calibration images for the {spec.role}")
    data = calibration_inputs(spec.role, loaded.latent_shape, loaded.image_shape, images)
    reader = type("Reader", (_ArrayReader, CalibrationDataReader), {})(spec.input_names, data,
                                                                        loaded.geometry.num_classes)
    quantize_static(
        _preprocess(src),
        dst,
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        # No QuantizeLinear right after a Gemm: the encoder's mu and logvar come out in float
        # (their error gates verify). In the decoder the logits still get quantised once,
        # after the Reshape and before the Sigmoid; weights and Gemm inputs stay int8.
        extra_options={"OpTypesToExcludeOutputQuantization": ["Gemm"]},
    )


def fp16(src: Path, dst: Path, spec: GraphSpec, loaded: Any, images: np.ndarray | None) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    # The converter appends the float32 I/O casts after the nodes that use them; ORT copes,
    # but the ONNX checker (which verify runs) requires topological order.
    wrapper = OnnxModel(model)
    wrapper.topological_sort()
    onnx.save_model(wrapper.model, str(dst), save_as_external_data=False)


def ort_format(src: Path, spec: GraphSpec) -> list[tuple[Path, str]]:
    """The .ort file and the offline-optimised ONNX, from ORT's converter (fixed style:
    optimisations applied now, so a minimal build needs no optimiser)."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    work = Path(tempfile.mkdtemp(dir=src.parent, prefix=".ort-"))
    try:
        shutil.copy2(src, work / src.name)
        converter_log = logging.getLogger("ort_format_model.utils")
        level = converter_log.level
        converter_log.setLevel(logging.WARNING)  # it logs each config file it writes at INFO
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                convert_onnx_models_to_ort(
                    work / src.name, output_dir=work, optimization_styles=[OptimizationStyle.Fixed],
                    save_optimized_onnx_model=True,
                )
        finally:
            converter_log.setLevel(level)
        ort_files = list(work.glob("*.ort"))
        optimized = list(work.glob("*.optimized.onnx"))
        if len(ort_files) != 1 or len(optimized) != 1:
            raise VAEExportError(f"{src.name}: ONNX Runtime's .ort converter produced {[p.name for p in work.iterdir()]}")
        ort_path = src.parent / graph_filename(spec.role, ORT_FORMAT)
        opt_path = src.parent / graph_filename(spec.role, OPTIMIZED)
        ort_files[0].replace(ort_path)
        optimized[0].replace(opt_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _retag(opt_path, src, OPTIMIZED)
    return [(opt_path, OPTIMIZED), (ort_path, ORT_FORMAT)]


def executorch(variant: str, dst: Path, spec: GraphSpec, loaded: Any, images: np.ndarray | None) -> Any:
    """The graph as an ExecuTorch program for XNNPACK (`executorch`; `executorch-int8`
    quantised with XNNPACK's PT2E quantizer), lowered from the PyTorch module within the
    family's bounds; returns the `lowering.Lowered` facts the manifest records. Raises
    `lowering.LoweringError` naming the op when the model does not lower."""
    from vae_export.lowering import lower_graph

    lowered = lower_graph(loaded, spec, variant, images)
    atomic_write_bytes(dst, lowered.data)
    return lowered


@dataclass(frozen=True)
class Built:
    """One file a builder wrote: its path, its variant, and for a .pte its lowering facts."""

    path: Path
    variant: str
    lowered: Any = None  # lowering.Lowered for ExecuTorch programs


def build_variant(variant: str, src: Path, spec: GraphSpec, loaded: Any, images: np.ndarray | None) -> list[Built]:
    """Build one registered variant of the fp32 graph at `src` beside it; returns each file
    written (`ort` also writes the `optimized` ONNX)."""
    record = REGISTRY[variant]
    builder = globals()[record.builder]  # type: ignore[index]
    if variant == ORT_FORMAT:
        return [Built(path, name) for path, name in builder(src, spec)]
    dst = src.parent / graph_filename(spec.role, variant)
    if record.format == "pte":  # lowered from the PyTorch module, not converted from the .onnx
        return [Built(dst, variant, builder(variant, dst, spec, loaded, images))]
    try:
        builder(src, dst, spec, loaded, images)
    except VAEExportError:
        raise
    except Exception as exc:  # ORT tool errors: keep the first line, name the variant
        raise VAEExportError(f"--variant {variant}: building {dst.name} failed ({type(exc).__name__}: {exc})") from None
    _retag(dst, src, variant)
    return [Built(dst, variant)]


# fp16-mixed: a node runs in float32 when any float tensor it reads or writes reached more than
# FP16_SAFE_MAX on the probe inputs: float16 overflows at 65504, and the margin of 4x covers
# inputs a little past the probes (larger images, other latents) without keeping every node.
FP16_MAX = 65504.0
FP16_SAFE_MAX = FP16_MAX / 4
PROBE_BATCH = 4


def overflow_nodes(model: onnx.ModelProto, spec: GraphSpec, loaded: Any) -> tuple[list[str], float]:
    """Names of the nodes whose float inputs or outputs exceed FP16_SAFE_MAX when the fp32
    graph runs on probe inputs (verify's: prior z and the +-4 sigma edge z, or uniform and
    all-zero/all-one images, at the export size and twice it), and the largest magnitude seen.
    Every intermediate tensor is made a graph output for one ONNX Runtime run per probe."""
    from vae_export.inputs import edge_inputs, prior_z

    inferred = onnx.shape_inference.infer_shapes(model)
    floats = {v.name: v for v in inferred.graph.value_info if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {o.name for o in probe.graph.output}
    probe.graph.output.extend(v for name, v in floats.items() if name not in existing)
    g = loaded.geometry
    sizes = [g.size] + ([(2 * g.size[0], 2 * g.size[1])] if g.dynamic_size else [])
    peak: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "probe.onnx"
        onnx.save_model(probe, str(path), save_as_external_data=False)
        session = make_session(path)
        names = [o.name for o in session.get_outputs()]
        rng = np.random.default_rng(0)
        for size in sizes:
            latent, image = g.latent_at(size), g.image_at(size)
            if spec.role == "decoder":
                x = np.concatenate([prior_z(PROBE_BATCH, latent, rng), edge_inputs("decoder", latent, image)])
            else:
                x = np.concatenate([rng.random((PROBE_BATCH, *image), dtype=np.float32),
                                    edge_inputs("encoder", latent, image)])
            for name, value in zip(names, session.run(names, with_labels(spec.input_names, x, g.num_classes))):
                if value.dtype == np.float32 and value.size:
                    with np.errstate(invalid="ignore"):
                        top = float(np.nanmax(np.abs(value))) if np.isfinite(value).all() else float("inf")
                    peak[name] = max(peak.get(name, 0.0), top)
    blocked = [n.name for n in model.graph.node
               if any(peak.get(t, 0.0) > FP16_SAFE_MAX for t in (*n.input, *n.output))]
    return blocked, max(peak.values(), default=0.0)


def fp16_mixed(src: Path, dst: Path, spec: GraphSpec, loaded: Any, images: np.ndarray | None) -> None:
    """float16 except the nodes `overflow_nodes` finds, which ONNX Runtime's converter keeps in
    float32 (node_block_list) with casts around them."""
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = onnx.load(str(src))
    for i, node in enumerate(model.graph.node):  # the converter's block list works on node names
        if not node.name:
            node.name = f"{node.op_type}_{i}"
    blocked, _ = overflow_nodes(model, spec, loaded)
    model = convert_float_to_float16(model, keep_io_types=True, node_block_list=blocked)
    wrapper = OnnxModel(model)
    _drop_round_trips(wrapper)
    wrapper.topological_sort()
    onnx.save_model(wrapper.model, str(dst), save_as_external_data=False)


def _drop_round_trips(wrapper: Any) -> None:
    """The converter casts every blocked node's output to float16 and back to float32 for the
    next blocked node: the round trip is the very overflow the block list avoids (an activation
    of 186,000 became inf between two float32 nodes). A Cast to float32 reading a Cast to
    float16 (or the reverse) reads the first Cast's input instead; the Casts left without a
    reader, or from a type to itself, are removed."""
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    producers = wrapper.output_name_to_node()
    for node in wrapper.nodes():
        parent = producers.get(node.input[0]) if node.op_type == "Cast" and node.input else None
        if parent is not None and parent.op_type == "Cast":
            to = {a.name: a.i for a in node.attribute}.get("to")
            parent_to = {a.name: a.i for a in parent.attribute}.get("to")
            if {to, parent_to} == floats:
                node.input[0] = parent.input[0]
    wrapper.prune_graph()
    wrapper.remove_useless_cast_nodes()
