"""Reading .onnx files safely: load, check, signature, metadata, op counts (no torch), and the
toolkit's way to open a graph in ONNX Runtime (`validated_session`: the onnx package's checks
first, then the runtime's session with its signature check)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto

from vae_export.errors import UsageError, VAEExportError, first_line
from vae_export_runtime.codec import GraphMetadata
from vae_export_runtime.contract import PTE_SUFFIX, GraphSpec
from vae_export_runtime.limits import MAX_ELEMENTS
from vae_export_runtime.session import make_session


def _all_tensors(graph: onnx.GraphProto) -> list[TensorProto]:
    """Initializers and tensor attributes of this graph and every subgraph."""
    tensors = list(graph.initializer)
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                tensors.append(attr.t)
            tensors.extend(attr.tensors)
            if attr.HasField("g"):
                tensors.extend(_all_tensors(attr.g))
            for sub in attr.graphs:
                tensors.extend(_all_tensors(sub))
    return tensors


def _external_locations(model: onnx.ModelProto) -> list[str]:
    return [
        entry.value
        for tensor in _all_tensors(model.graph)
        if tensor.data_location == TensorProto.EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location"
    ]


def check_external_data(model: onnx.ModelProto, path: Path) -> None:
    """Refuse external data that resolves outside the model's directory (../x, /abs, symlinks).

    ONNX Runtime would otherwise read any file the process can, so this runs before it loads.
    """
    base = path.resolve().parent
    for location in _external_locations(model):
        target = (base / location).resolve()  # resolve() follows symlinks
        if os.path.isabs(location) or base not in target.parents:
            raise VAEExportError(
                f"{path}: external data {location!r} points outside the model's directory; refused"
            )


def check_static_sizes(model: onnx.ModelProto, path: Path, limit: int) -> None:
    """Refuse a graph with a value whose size, as shape inference gives it (symbolic
    dimensions counted as 1), exceeds `limit` elements: a node that allocates gigabytes
    (ConstantOfShape, Expand, Tile of a constant shape) is refused before ONNX Runtime runs it."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False)
    except Exception:  # noqa: BLE001 - inference is best effort here; the checker has already run
        return
    graph = inferred.graph
    for value in [*graph.value_info, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        size = _numel(d.dim_value if d.HasField("dim_value") else 1 for d in dims)
        if size > limit:
            raise VAEExportError(f"{path}: value {value.name!r} would hold {size} elements (more than the limit of "
                                 f"{limit}); refused")


def load_onnx(path: Path, check: bool = True) -> onnx.ModelProto:
    """Load (without external data) and validate; every failure names the file."""
    if not path.is_file():
        raise UsageError(f"{path}: file not found")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError, RuntimeError, ... for bad bytes
        raise VAEExportError(f"{path}: not a valid ONNX model ({type(exc).__name__}: {exc})") from None
    check_external_data(model, path)
    if check:
        try:
            # onnx.load accepts an empty file as an empty model; the checker does not.
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as exc:
            raise VAEExportError(f"{path}: not a valid ONNX model ({first_line(exc, 'invalid model')})") from None
    return model


_DTYPES = {v: k for k, v in TensorProto.DataType.items()}
_FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE,
                TensorProto.INT8, TensorProto.UINT8}  # int8 weights of quantised graphs count too


def _value_signature(value: onnx.ValueInfoProto) -> dict[str, Any]:
    tensor = value.type.tensor_type
    shape = [d.dim_param if d.HasField("dim_param") else d.dim_value for d in tensor.shape.dim]
    return {"name": value.name, "dtype": _DTYPES.get(tensor.elem_type, "?").lower(), "shape": shape}


def signature(model: onnx.ModelProto) -> dict[str, list[dict[str, Any]]]:
    initializers = {t.name for t in model.graph.initializer}
    return {
        "inputs": [_value_signature(v) for v in model.graph.input if v.name not in initializers],
        "outputs": [_value_signature(v) for v in model.graph.output],
    }


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def graph_metadata(model: onnx.ModelProto, path: Path) -> GraphMetadata:
    """The contract's metadata of a graph, read through the codec."""
    return GraphMetadata.from_props(metadata(model), str(path))


def set_metadata(model: onnx.ModelProto, meta: GraphMetadata) -> None:
    """Replace a graph's metadata_props with `meta`'s (the codec's keys, in its order)."""
    del model.metadata_props[:]
    for key, value in meta.to_props().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    return dict(sorted(Counter(node.op_type for node in model.graph.node).items()))


def validated_session(path: Path, device: str = "cpu", threads: int | None = None, spec: GraphSpec | None = None,
                      shapes: Mapping[str, tuple[int | None, ...]] | None = None) -> Any:
    """An ONNX Runtime session of an artifact the toolkit reads back (untrusted): an .onnx is
    first loaded with the onnx package, which refuses external data outside its directory and
    values past MAX_ELEMENTS (`check_static_sizes`); then the runtime's `make_session` checks
    the signature against `shapes` (a manifest's) or the graph's own metadata."""
    if path.suffix == ".onnx":
        check_static_sizes(load_onnx(path), path, MAX_ELEMENTS)
    return make_session(path, device, threads, spec, shapes=shapes)


def ort_signature(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Signature of a .ort file (a flatbuffer, not an ONNX proto), as ONNX Runtime reports it."""
    session = make_session(path)  # .ort: ONNX Runtime itself is the validator

    def values(items: Any) -> list[dict[str, Any]]:
        return [{"name": v.name, "dtype": v.type.removeprefix("tensor(").rstrip(")"), "shape": list(v.shape)} for v in items]

    return {"inputs": values(session.get_inputs()), "outputs": values(session.get_outputs()),
            "metadata": dict(session.get_modelmeta().custom_metadata_map)}


def describe(path: Path) -> dict[str, Any]:
    """What `vae-export inspect` shows: signature, opset, metadata, size, op counts (for .ort
    files: what ONNX Runtime reports, the signature and metadata)."""
    if path.suffix == ".ort":
        return {"file": str(path), "bytes": path.stat().st_size, "format": "ort", **ort_signature(path)}
    if path.suffix == PTE_SUFFIX:  # an ExecuTorch program: its runtime reports it (the bounds are its plan)
        from vae_export_runtime.pte import PteBackend, open_backend

        backend: PteBackend = open_backend(path)
        program = backend.program

        def values(items: Any) -> list[dict[str, Any]]:
            return [{"name": t.name, "dtype": "float", "shape": t.shape(), "bounds": list(t.bounds)} for t in items]

        return {"file": str(path), "bytes": program.bytes, "format": "pte", "inputs": values(program.inputs),
                "outputs": values(program.outputs), "metadata": dict(program.metadata)}
    model = load_onnx(path)
    return {
        "file": str(path),
        "bytes": path.stat().st_size,
        "opset": opset(model),
        "ir_version": model.ir_version,
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        **signature(model),
        "metadata": metadata(model),
        "initializers": len(model.graph.initializer),
        # weights only: integer initializers are shape constants, not parameters
        "parameters": sum(_numel(t.dims) for t in model.graph.initializer if t.data_type in _FLOAT_TYPES),
        "ops": op_counts(model),
    }


def _numel(dims: Any) -> int:
    n = 1
    for d in dims:
        n *= d
    return n
