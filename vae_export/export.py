"""Split + ONNX export of every graph (encoder, decoder, and a semi-supervised model's
classifier), with checks, metadata and the manifest.

Each graph is exported from its own module (no surgery), with one symbolic dimension,
`batch`, on every input and output (the same one on `y` as on `x`/`z`), and no random node:
sampling z happens outside.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from vae_export import __version__
from vae_export.artifacts import sha256_file
from vae_export.compare import CHECK_ATOL, CHECK_RTOL, compare
from vae_export.errors import UsageError, VAEExportError, first_line
from vae_export.families.base import LoadedModel
from vae_export.graphs import graph_metadata, torch_outputs
from vae_export.inputs import with_labels
from vae_export.manifest import MANIFEST_NAME, ArtifactEntry, Manifest, ModelInfo, checkpoint_reference
from vae_export.onnxinfo import load_onnx, opset, ort_signature, set_metadata, signature
from vae_export.options import DEFAULT_OPSET, EXPORTERS
from vae_export.variants import PTE_VARIANTS
from vae_export.quiet import quiet_exporter
from vae_export_runtime.contract import (BATCH_DIM, FP32, LATENT_HEIGHT_DIM, LATENT_WIDTH_DIM, ROLES, Y_NAME, Geometry,
                                         GraphSpec, Shape, graph_filename, symbolic_names)
from vae_export_runtime.session import make_session, run_limited

# torch.export turns a batch of 1 into a constant, so the example batch must be larger.
EXAMPLE_BATCH = 2
# The check run uses batch sizes other than the example's, to prove the axis is dynamic.
CHECK_BATCHES = (1, 3)

STACK_TRACE_KEY = "pkg.torch.onnx.stack_trace"
RANGE_CONSTRAINTS_KEY = "pkg.torch.export.ExportedProgram.range_constraints"
_RANGE = re.compile(r"([^,{}\s][^:{}]*): (VR\[[^\]]*\])")


@dataclass
class ExportResult:
    artifacts_dir: Path
    files: list[Path]
    manifest: Manifest
    seconds: float
    removed: list[Path] = field(default_factory=list)
    # Variants that could not be built ("variant executorch: encoder: aten.erfinv.default does not
    # lower (...)"): everything else was written, the manifest included. The caller decides
    # what that means (`raise_if_failed`: exit 1, as the CLI does after listing the files).
    failed: list[str] = field(default_factory=list)

    def raise_if_failed(self) -> None:
        if self.failed:
            more = f" (and {len(self.failed) - 1} more)" if len(self.failed) > 1 else ""
            raise VAEExportError(f"{self.failed[0]}{more}; the other graphs and variants were exported")


def _dynamic_dims(spec: GraphSpec, geometry: Geometry) -> tuple[Any, ...]:
    """torch.export dims of every input, positionally: one shared batch, and for --dynamic-size
    the spatial axes of the primary input (an image as stride x the latent's, so torch.export
    knows they divide). `y` [batch, K] has only the batch; it is the graph wrappers' `*y`
    argument, hence a tuple of one."""
    batch = torch.export.Dim(BATCH_DIM, min=1)
    dims: dict[int, Any] = {0: batch}
    if geometry.dynamic_size:
        h = torch.export.Dim(LATENT_HEIGHT_DIM, min=1, max=4096)
        w = torch.export.Dim(LATENT_WIDTH_DIM, min=1, max=4096)
        stride = geometry.stride or 1
        dims[2], dims[3] = (stride * h, stride * w) if spec.input_name == "x" else (h, w)
    return (dims, ({0: batch},)) if Y_NAME in spec.input_names else (dims,)


def _export_one(
    module: torch.nn.Module, spec: GraphSpec, examples: tuple[torch.Tensor, ...], opset_version: int, exporter: str,
    geometry: Geometry,
) -> onnx.ModelProto:
    with quiet_exporter(), torch.no_grad():
        if exporter == "dynamo":
            program = torch.onnx.export(
                module,
                examples,
                dynamo=True,
                input_names=list(spec.input_names),
                output_names=list(spec.output_names),
                dynamic_shapes=_dynamic_dims(spec, geometry),
                opset_version=opset_version,
                optimize=True,
                verbose=False,
            )
            return program.model_proto
        buffer = io.BytesIO()
        dims = geometry.dims()
        names = (*spec.input_names, *spec.output_names)
        axes = {name: {0: BATCH_DIM} for name in names}
        if geometry.dynamic_size:
            axes = {name: dict(enumerate(symbolic_names(name, 1 + len(dims[name])))) for name in names}
            axes = {name: {i: n for i, n in a.items() if n} for name, a in axes.items()}
        torch.onnx.export(
            module,
            examples,
            buffer,
            dynamo=False,
            input_names=list(spec.input_names),
            output_names=list(spec.output_names),
            dynamic_axes=axes,
            opset_version=opset_version,
        )
        return onnx.load_from_string(buffer.getvalue())


def _pin_shapes(model: onnx.ModelProto, spec: GraphSpec, shapes: dict[str, Shape]) -> None:
    """Name the symbolic dimensions of every input and output (`batch`, and `height`/`width`,
    `latent_height`/`latent_width` for --dynamic-size) and fix every other dimension to the size
    PyTorch produced (the TorchScript exporter leaves some symbolic); refuse a fixed dimension
    that should be symbolic, or a fixed size that disagrees with PyTorch."""
    values = [v for v in model.graph.input if v.name in spec.input_names] + list(model.graph.output)
    names = [v.name for v in values]
    if names != [*spec.input_names, *spec.output_names]:
        raise VAEExportError(f"{spec.role}: exported graph has inputs/outputs {names}, expected "
                             f"{[*spec.input_names, *spec.output_names]}")
    for value in values:
        dims = value.type.tensor_type.shape.dim
        expected = (None, *shapes[value.name])
        if len(dims) != len(expected):
            raise VAEExportError(f"{spec.role}: {value.name} has rank {len(dims)}, PyTorch gives {len(expected)}")
        for dim, size, name in zip(dims, expected, symbolic_names(value.name, len(expected))):
            if size is None:
                if dim.HasField("dim_value"):
                    raise VAEExportError(f"{spec.role}: {value.name} has a fixed {name} dimension; "
                                         "export failed to keep it dynamic")
                dim.dim_param = name
                continue
            if dim.HasField("dim_value") and dim.dim_value != size:
                raise VAEExportError(f"{spec.role}: {value.name} has size {dim.dim_value} where PyTorch gives {size}")
            dim.dim_value = size
    # Intermediate shapes may refer to the exporter's own symbols; drop them and let shape
    # inference (run in check_graph) recompute them from the pinned inputs.
    del model.graph.value_info[:]


def _reproducible_provenance(model: onnx.ModelProto) -> None:
    """The exporter's debugging metadata, kept where it helps, made reproducible:

    - each node's Python stack trace goes: it holds the absolute paths of the exporting
      machine's source files, which discloses a user's directories in an artifact meant to
      travel, and makes the bytes depend on where the code is installed. The other
      `pkg.torch.onnx.*` entries (module names, scopes) stay.
    - the graph's `range_constraints` (the symbolic sizes' bounds) are written by torch.export
      in the iteration order of a dict keyed by sympy symbols, which follows Python's string
      hashing: the bytes of a symbolic-size graph changed from one run to the next. Sorted."""
    for prop in model.graph.metadata_props:
        if prop.key == RANGE_CONSTRAINTS_KEY and prop.value.startswith("{"):
            pairs = _RANGE.findall(prop.value)
            if ", ".join(f"{k}: {v}" for k, v in pairs) == prop.value[1:-1]:  # parsed whole: safe to reorder
                prop.value = "{" + ", ".join(f"{k}: {v}" for k, v in sorted(pairs)) + "}"
    for node in model.graph.node:
        kept = [(p.key, p.value) for p in node.metadata_props if p.key != STACK_TRACE_KEY]
        if len(kept) != len(node.metadata_props):
            del node.metadata_props[:]
            for key, value in kept:
                entry = node.metadata_props.add()
                entry.key, entry.value = key, value


def _no_random_nodes(model: onnx.ModelProto, spec: GraphSpec) -> None:
    random = {n.op_type for n in model.graph.node if n.op_type.startswith("Random") or n.op_type == "Multinomial"}
    if random:
        raise VAEExportError(f"{spec.role}: graph contains random nodes {sorted(random)}; sampling must happen outside")


def check_graph(path: Path, spec: GraphSpec, module: torch.nn.Module | None, geometry: Geometry) -> None:
    """Full checker, strict shape inference, and ORT runs at batch sizes other than the
    example's, and for --dynamic-size at a second image size (compared with PyTorch when the
    module is given)."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
        onnx.shape_inference.infer_shapes(onnx.load(str(path)), check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise VAEExportError(f"{path.name}: exported graph fails the ONNX checker ({first_line(exc)})") from None
    session = make_session(path, spec=spec)  # the checker above has run
    rng = np.random.default_rng(0)
    cases = [(batch, geometry.size) for batch in CHECK_BATCHES]
    if geometry.dynamic_size:
        cases.append((2, geometry.default_sizes()[-1]))
    for batch, size in cases:
        shape = geometry.input_shapes(spec, size)[spec.input_name]
        feeds = with_labels(spec.input_names, rng.random((batch, *shape), dtype=np.float32), geometry.num_classes)
        outputs = run_limited(session, None, feeds, path)
        if any(o.shape[0] != batch for o in outputs):
            raise VAEExportError(f"{path.name}: ONNX Runtime returned batch {outputs[0].shape[0]} for input batch {batch}")
        if module is not None:
            for name, got, want in zip(spec.output_names, outputs, torch_outputs(module, spec.input_names, feeds)):
                if not compare(got, want, CHECK_ATOL, CHECK_RTOL)["passed"]:
                    raise VAEExportError(f"{path.name}: {name} differs from PyTorch at batch {batch}, "
                                         f"size {size[0]}x{size[1]} right after export")


def artifact_entry(path: Path, graph: str, variant: str, lowered: Any = None, geometry: Geometry | None = None
                   ) -> ArtifactEntry:
    if lowered is not None:  # an ExecuTorch program: the contract's signature, its bounds and its facts
        assert geometry is not None
        spec, dims = geometry.spec(graph), geometry.dims()
        sig = {key: [{"name": name, "dtype": "float",
                      "shape": [d if d is not None else n for d, n in zip((None, *dims[name]),
                                                                           symbolic_names(name, 1 + len(dims[name])))]}
                     for name in names]
               for key, names in (("inputs", spec.input_names), ("outputs", spec.output_names))}
        return ArtifactEntry(file=path.name, graph=graph, variant=variant, sha256=sha256_file(path),
                             bytes=path.stat().st_size, opset=None, inputs=sig["inputs"], outputs=sig["outputs"],
                             bounds=lowered.bounds(), executorch={"planned_bytes": lowered.planned_bytes,
                                                                  "undelegated_ops": list(lowered.undelegated_ops)})
    if path.suffix == ".onnx":
        model = load_onnx(path)  # every listed graph, variants included, passes the checker
        opset_version: int | None = opset(model)
        sig = signature(model)
    else:  # .ort is a flatbuffer, not an ONNX proto: ONNX Runtime reports its signature
        ort_sig = ort_signature(path)
        opset_version, sig = None, {k: ort_sig[k] for k in ("inputs", "outputs")}
    return ArtifactEntry(file=path.name, graph=graph, variant=variant, sha256=sha256_file(path),
                         bytes=path.stat().st_size, opset=opset_version, inputs=sig["inputs"], outputs=sig["outputs"])


def library_versions(executorch: bool = False) -> dict[str, str]:
    """The versions that made the artifacts (ExecuTorch's when it lowered some of them)."""
    import onnxruntime as ort

    versions = {"vae-export": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                "onnxruntime": ort.__version__}
    if executorch:
        from executorch.version import __version__ as et_version

        versions["executorch"] = et_version
    return versions


def export_graph(
    loaded: LoadedModel, spec: GraphSpec, out_dir: Path, opset_version: int = DEFAULT_OPSET, exporter: str = "dynamo"
) -> Path:
    """Export one fp32 graph into out_dir and check it."""
    g = loaded.geometry
    module = loaded.module(spec.role)
    primary = torch.rand(EXAMPLE_BATCH, *g.input_shapes(spec)[spec.input_name], generator=torch.Generator().manual_seed(0))
    feeds = with_labels(spec.input_names, primary.numpy(), g.num_classes)
    examples = tuple(torch.from_numpy(feeds[name]) for name in spec.input_names)
    try:
        model = _export_one(module, spec, examples, opset_version, exporter, g)
    except VAEExportError:
        raise
    except Exception as exc:  # the exporter's own errors are long; keep the first line
        raise VAEExportError(f"{spec.role}: torch.onnx export failed ({type(exc).__name__}: {first_line(exc)})") from None
    _pin_shapes(model, spec, g.dims())
    _no_random_nodes(model, spec)
    _reproducible_provenance(model)
    set_metadata(model, graph_metadata(spec, loaded, opset_version, exporter))
    model.producer_name, model.producer_version = "vae-export", __version__
    model.doc_string = f"vae-export {spec.role}: {', '.join(spec.input_names)} -> {', '.join(spec.output_names)}"
    path = out_dir / graph_filename(spec.role)
    # Self-contained single file: weights inline, never a side .data file (graphs < 2 GiB).
    onnx.save_model(model, str(path), save_as_external_data=False)
    check_graph(path, spec, module, g)
    return path


def build_manifest(loaded: LoadedModel, entries: list[ArtifactEntry], opset_version: int, exporter: str,
                   artifacts_dir: Path) -> Manifest:
    return Manifest(
        vae_export_version=__version__,
        model=ModelInfo(config=loaded.config, source=loaded.source, geometry=loaded.geometry),
        checkpoint_path=checkpoint_reference(loaded.checkpoint, artifacts_dir),
        checkpoint_sha256=loaded.checkpoint_sha256,
        opset=opset_version,
        exporter=exporter,
        versions=library_versions(executorch=any(e.variant in PTE_VARIANTS for e in entries)),
        artifacts=tuple(entries),
    )


def export(
    loaded: LoadedModel,
    artifacts_dir: Path,
    opset_version: int = DEFAULT_OPSET,
    exporter: str = "dynamo",
    variants: tuple[str, ...] = (),
    calibration: Any = None,
) -> ExportResult:
    """Export both graphs (and variants) into a staging directory, check everything, then
    move the files into place and write the manifest last. A failure at any step leaves
    the previous artifacts as they were and no temporary files behind."""
    import time

    from vae_export.lowering import LoweringError
    from vae_export.variant_builders import build_variant
    from vae_export.variants import LISTED_VARIANTS, VARIANTS, missing_package

    if exporter not in EXPORTERS:
        raise UsageError(f"--exporter {exporter!r}: expected one of {', '.join(EXPORTERS)}")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise UsageError(f"--variant {unknown[0]!r}: expected one of {', '.join(VARIANTS)}")
    missing = [reason for v in variants if (reason := missing_package(v))]
    if missing:
        raise UsageError(missing[0])
    failed: list[str] = []
    started = time.perf_counter()
    try:
        staging = Path(tempfile.mkdtemp(dir=artifacts_dir, prefix=".export-"))
    except OSError as exc:
        raise VAEExportError(f"--artifacts {artifacts_dir}: cannot write there ({exc.strerror or exc})") from None
    try:
        entries: list[ArtifactEntry] = []
        staged: list[Path] = []
        for spec in loaded.geometry.specs():
            path = export_graph(loaded, spec, staging, opset_version, exporter)
            staged.append(path)
            entries.append(artifact_entry(path, spec.role, FP32))
        for variant in variants:
            for spec in loaded.geometry.specs():
                try:
                    built = build_variant(variant, staging / graph_filename(spec.role), spec, loaded, calibration)
                except LoweringError as exc:
                    # This graph of this variant only (an op ExecuTorch cannot export or run):
                    # the rest of the export goes on, and the caller exits non-zero.
                    failed.append(f"variant {variant}: {spec.role}: {exc}")
                    continue
                for b in built:
                    staged.append(b.path)
                    entries.append(artifact_entry(b.path, spec.role, b.variant, b.lowered, loaded.geometry))
        manifest = build_manifest(loaded, entries, opset_version, exporter, artifacts_dir)
        stale = _stale_files(artifacts_dir, {p.name for p in staged}, LISTED_VARIANTS)
        # Everything, the manifest included, is written and checked in staging first: a
        # full disk or a failed check surfaces before any old artifact is replaced. What
        # follows are renames within one directory, which need no space.
        manifest.write(staging)
        files = []
        for path in [*staged, staging / MANIFEST_NAME]:
            target = artifacts_dir / path.name
            os.replace(path, target)
            files.append(target)
    except OSError as exc:
        raise VAEExportError(f"--artifacts {artifacts_dir}: cannot write the artifacts ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    # Only once the new manifest is in place: graphs of the previous export that this one did
    # not rebuild would otherwise sit beside the new ones, from another checkpoint.
    removed = []
    for path in stale:
        with contextlib.suppress(OSError):  # already gone, or cannot be removed: not a failed export
            path.unlink()
            removed.append(path)
    return ExportResult(artifacts_dir, files[:-1], manifest, time.perf_counter() - started, removed, failed)


def _stale_files(artifacts_dir: Path, written: set[str], variants: tuple[str, ...]) -> list[Path]:
    """Graph files the previous manifest lists and this export did not write (say
    decoder.int8.onnx after an export without --variant int8). Only names this tool writes
    are candidates, so a tampered manifest cannot point the removal anywhere else."""
    try:
        previous = Manifest.read(artifacts_dir)
    except VAEExportError:  # no manifest, or not a valid one: nothing is known to be stale
        return []
    ours = {graph_filename(role, v) for role in ROLES for v in variants} - written
    listed = {e.file for e in previous.artifacts}
    return [artifacts_dir / name for name in sorted(ours & listed)]
