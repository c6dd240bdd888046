"""ExecuTorch lowering: one graph of the contract as a `.pte` program for XNNPACK (the
`executorch` and `executorch-int8` variants; `variant_builders.executorch` calls `lower_graph`).

The program is the same graph module the ONNX exporter exports (same inputs in the same order,
conditional `y` second, same outputs and meaning, pixels in [0, 1]), through torch.export
(non-strict), optionally XNNPACK's PT2E int8 quantizer, `to_edge_transform_and_lower` with the
`XnnpackPartitioner`, and `to_executorch`. The graph's metadata is written through the codec
(`GraphMetadata.to_props`, the keys the .onnx carries, with `variant` and `exporter` set) into
a constant method, `vae_export_metadata`, with the three keys a positional program needs
(`vae_export_runtime.pte`: input names, output names, dims).

Bounds. ExecuTorch memory-plans every input and output at the upper bound of its symbolic
dims and allocates that arena when the app loads the program, so the bounds are memory, paid
on every phone whatever batch it runs: a batch of `max_batch` (default 64, the largest batch
verify and bench use) and, for `--dynamic-size` models, a latent height and width of
`max_latent_side` (default 64: 256-pixel images at the conv reference's stride 4, 512 at an
SD-style stride 8). The ONNX exporter's latent bound of 4096 would plan 80 GiB for the conv
decoder. The family chooses its bounds (`Family.pte_bounds`): AutoencoderKL's attention keeps
a scores tensor of batch x (latent H x W)^2 outside XNNPACK, so the diffusers family asks for
smaller ones. `lower_program` refuses a plan over `PLANNED_BYTES_LIMIT` (256 MiB) and a bound
a trace guard narrowed.

Pitfalls handled here (FINDINGS of the prototype, each covered by tests/test_executorch.py):
torch's CPU conv-backend selection guards `batch < 16` while ExecuTorch re-traces, which
silently planned a conv decoder for batch 15 (`_no_cpu_conv_backend_guards`); EXIR's argument
validator pins the symbolic length of `split_with_sizes_copy`'s output (AutoencoderKL's
encoder) and so its batch, hence a second lowering without the verifier from a fresh export;
PT2E's exported module asserts its range guards, so calibration is fed in chunks of the bound;
the quantized GraphModule takes its inputs flat (z, y), not as forward(z, *y).

Written against torch 2.13 and executorch 1.5.1 (`pip install 'vae-export[executorch]'`);
ExecuTorch and torchao are imported only when a graph is lowered.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vae_export.errors import VAEExportError, first_line
from vae_export.families.base import PteBounds
from vae_export.limits import PTE_MAX_BATCH as DEFAULT_MAX_BATCH
from vae_export.limits import PTE_MAX_LATENT_SIDE as DEFAULT_MAX_LATENT_SIDE
from vae_export_runtime.contract import EXECUTORCH_INT8, GraphSpec
from vae_export_runtime.pte import DIMS_KEY, FORWARD, INPUT_NAMES_KEY, METADATA_METHOD, OUTPUT_NAMES_KEY, et_error

if TYPE_CHECKING:
    from vae_export.families.base import LoadedModel

# `lower_program` refuses bounds whose planned arena exceeds this: a program that cannot be
# loaded on a phone is worse than a clear error at export time.
PLANNED_BYTES_LIMIT = 256 * 1024 * 1024
EXAMPLE_BATCH = 2  # torch.export specialises a batch (or a side) of 1
CALIBRATION_BATCH = 32  # as ONNX's int8-static reader
INSTALL_HINT = "pip install 'vae-export[executorch]'"


class LoweringError(VAEExportError):
    """A model does not lower. `op` names the operator when one is to blame (one torch.export
    cannot trace, one the Edge dialect refuses, one left outside XNNPACK without a kernel in
    the runtime), else None; `stage` says which step failed. The message starts with the op."""

    def __init__(self, message: str, op: str | None = None, stage: str = "lower") -> None:
        super().__init__(message)
        self.op = op
        self.stage = stage


@dataclass(frozen=True)
class Lowered:
    """A lowered program and what the manifest records about it."""

    data: bytes
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    input_bounds: tuple[tuple[int, ...], ...]  # each input's planned (maximum) sizes, batch included
    output_bounds: tuple[tuple[int, ...], ...]
    planned_bytes: int  # the arena the app allocates when `forward` loads
    undelegated_ops: tuple[str, ...]  # ops outside XNNPACK: the app's runtime must have their kernels
    quantized: bool
    ir_verified: bool = True  # False: lowered without EXIR's verifier (see lower_program)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def bounds(self) -> dict[str, list[int]]:
        """What the manifest's `bounds` holds: every input's and output's largest shape."""
        return {name: list(b) for name, b in zip((*self.input_names, *self.output_names),
                                                 (*self.input_bounds, *self.output_bounds))}


# ---- dynamic shapes ---------------------------------------------------------------------------

def dynamic_shapes(input_names: Sequence[str], *, dynamic_size: bool = False, stride: int | None = None,
                   bounds: PteBounds = PteBounds()) -> tuple[dict[int, Any], ...]:
    """torch.export dims of a graph's inputs, positionally: one shared `batch` in
    [1, max_batch] on every input (y too); with `dynamic_size`, the primary input's last two
    axes: a latent side in [1, max_latent_side], an image side stride x that (so torch.export
    knows image sizes are multiples of the stride, as the ONNX exporter does)."""
    if not 1 <= bounds.max_batch <= 2**31 - 1 or not 1 <= bounds.max_latent_side <= 2**31 - 1:
        raise ValueError(f"{bounds}: expected bounds from 1 to 2^31-1")
    batch = torch.export.Dim("batch", min=1, max=bounds.max_batch)
    dims: dict[int, Any] = {0: batch}
    if dynamic_size:
        h = torch.export.Dim("latent_height", min=1, max=bounds.max_latent_side)
        w = torch.export.Dim("latent_width", min=1, max=bounds.max_latent_side)
        s = stride or 1
        dims[2], dims[3] = (s * h, s * w) if input_names[0] == "x" else (h, w)
    return (dims, *({0: batch} for _ in input_names[1:]))


@contextlib.contextmanager
def _no_cpu_conv_backend_guards() -> Iterator[None]:
    """torch's fake-tensor convolution asks ATen which CPU backend it would pick
    (`_select_conv_backend`: mkldnn / nnpack only for batch >= 16), which guards on the
    symbolic batch; ExecuTorch re-traces with the example's batch (2), and the guard narrows
    the batch to [2, 15]. With both backends disabled the selection never looks at the batch.
    Only tracing is affected: the program's kernels are XNNPACK's."""
    with warnings.catch_warnings():
        # Setting the mkldnn flags also re-sets TF32 for oneDNN, which warns on CPU-only builds.
        warnings.filterwarnings("ignore", message=".*TF32 acceleration on top of oneDNN.*")
        with torch.backends.mkldnn.flags(enabled=False), torch.backends.nnpack.flags(enabled=False):
            yield


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The chatter of torch.export, PT2E and EXIR (deprecation notices, 'Failed to load
    _C_mxfp8' of torchao's CUDA kernels) that a user cannot act on; errors still propagate."""
    from vae_export.quiet import quiet_exporter

    with quiet_exporter(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"(executorch|torchao)(\.|$)")
        warnings.filterwarnings("ignore", category=UserWarning)
        yield


# ---- lowering ---------------------------------------------------------------------------------

_OP_NAME = re.compile(r"(aten[.:]{1,2}[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?)")
# Other namespaces, as EXIR names them ("Missing out variants: {'quantized_decomposed::dequantize_per_channel'}")
_NAMESPACED_OP = re.compile(r"\b([a-z][a-z0-9_]*::[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?)")


def _op_from_exception(exc: BaseException) -> str | None:
    """The operator an export or lowering exception is about, when it says."""
    func = getattr(exc, "func", None)  # fake tensor's UnsupportedOperatorException / DynamicOutputShapeException
    if func is not None:
        return str(func)
    match = _OP_NAME.search(str(exc)) or _NAMESPACED_OP.search(str(exc))
    return match.group(1).replace("::", ".") if match else None


def _lowering_error(exc: BaseException, stage: str) -> LoweringError:
    """One line naming the op (when the exception says which) and the step that failed; a
    torch.export constraint violation also carries torch's suggested bound."""
    op = _op_from_exception(exc)
    what = f"{op} does not lower" if op else "it does not lower"
    hint = re.search(r"Suggested fixes:\s*\n\s*(.+)", str(exc))
    extra = f"; torch.export suggests {hint.group(1).strip()}" if hint else ""
    return LoweringError(f"{what} ({stage}: {type(exc).__name__}: {first_line(exc)[:300]}{extra})", op=op, stage=stage)


def _concrete(shape: Sequence[Any]) -> list[int | None]:
    return [d if isinstance(d, int) else None for d in shape]


def _graph_dims(program: Any, names: Sequence[str], outputs: bool) -> dict[str, list[int | None]]:
    """Each user input's (or output's) dims, None where torch.export kept them symbolic."""
    nodes = list(program.graph.nodes)
    if outputs:
        values = [arg.meta["val"] for arg in nodes[-1].args[0]]
    else:
        user = set(program.graph_signature.user_inputs)
        values = [n.meta["val"] for n in nodes if n.op == "placeholder" and n.name in user]
    if len(values) != len(names):
        raise LoweringError(f"the program has {len(values)} {'outputs' if outputs else 'inputs'}, the contract "
                            f"names {len(names)} ({', '.join(names)})", stage="export")
    return {name: _concrete(v.shape) for name, v in zip(names, values)}


def _undelegated_ops(program: Any) -> tuple[str, ...]:
    """Operators of the final program that run outside a delegate, as the runtime's registry
    names them ('aten::add.out'); ExecuTorch's own memory/view bookkeeping excluded."""
    ops: set[str] = set()
    for module in program.graph_module.modules():
        if not isinstance(module, torch.fx.GraphModule):
            continue
        for node in module.graph.nodes:
            if node.op != "call_function":
                continue
            target = node.target
            name = str(getattr(target, "_name", None) or getattr(target, "__name__", None) or target)
            if name in ("getitem", "executorch_call_delegate") or "executorch_call_delegate" in str(target):
                continue
            if str(getattr(target, "__module__", "")).startswith(("executorch.exir.memory", "_operator")):
                continue
            schema = getattr(target, "_schema", None)
            if schema is not None:  # an out-variant OpOverload: named as the runtime registry does
                overload = schema.overload_name
                ops.add(schema.name + (f".{overload}" if overload else ""))
            elif not name.startswith(("alloc", "view", "free")):
                ops.add(name)
    return tuple(sorted(ops))


def _dim_max(dim: Any) -> int | None:
    """A torch.export Dim's (or derived Dim's, stride x Dim) upper bound."""
    if hasattr(dim, "max") and isinstance(dim.max, int):
        return dim.max if dim.max < 2**62 else None
    root, fn = getattr(dim, "root", None), getattr(dim, "fn", None)
    if root is not None and fn is not None:
        inner = _dim_max(root)
        return None if inner is None else int(fn(inner))
    return None


def _fit_to_signature(module: torch.nn.Module, flat: tuple[dict[int, Any], ...]) -> tuple[Any, ...]:
    """torch.export wants `dynamic_shapes` shaped like forward's parameters: the graph wrappers
    take the condition as `*y` (forward(z, *y)), so the specs landing in the var-positional
    parameter go in one tuple."""
    params = list(inspect.signature(module.forward).parameters.values())
    for index, param in enumerate(params):
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            return (*flat[:index], tuple(flat[index:])) if len(flat) > index else flat
    return flat


def _quantize(module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], shapes: Any,
              calibration: Sequence[tuple[torch.Tensor, ...]], max_batch: int) -> torch.nn.Module:
    """XNNPACK's PT2E flow: symmetric int8, per-channel weights, static activations calibrated
    on `calibration` (fed in chunks of the batch bound: the exported module asserts it)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                          get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    graph = torch.export.export(module, example_inputs, dynamic_shapes=shapes, strict=False).module()
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for batch in calibration:
            for start in range(0, len(batch[0]), max_batch):
                prepared(*(t[start:start + max_batch] for t in batch))
    return convert_pt2e(prepared)  # type: ignore[no-any-return]


def _planned_shapes(program: Any, num_inputs: int) -> tuple[tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...]]:
    """The memory-planned (maximum) shape of each user input and output of the final program
    (what MethodMeta reports once loaded), read without loading (loading allocates the arena)."""
    user = set(program.graph_signature.user_inputs)
    nodes = list(program.graph.nodes)
    inputs = [n for n in nodes if n.op == "placeholder" and n.name in user]
    outputs = list(nodes[-1].args[0])
    if len(inputs) != num_inputs:
        raise LoweringError(f"the lowered program has {len(inputs)} inputs, expected {num_inputs}", stage="bounds")

    def shape(node: Any) -> tuple[int, ...]:
        return tuple(int(d) for d in node.meta["spec"].shape)

    return tuple(shape(n) for n in inputs), tuple(shape(n) for n in outputs)


def _to_executorch(exported: Any, constant_methods: dict[str, Any], num_inputs: int, verify_ir: bool) -> Any:
    """to_edge_transform_and_lower (XNNPACK) + to_executorch, and the planned I/O shapes."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    stage = "to_edge"
    with _no_cpu_conv_backend_guards(), torch.no_grad():
        try:
            edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()],
                                               constant_methods=constant_methods,
                                               compile_config=EdgeCompileConfig(_check_ir_validity=verify_ir))
            stage = "to_executorch"
            program = edge.to_executorch()
        except LoweringError:
            raise
        except Exception as exc:  # EXIR raises many types; the first line names the problem
            raise _lowering_error(exc, stage) from None
    return (program, *_planned_shapes(program.exported_program(), num_inputs))


def _narrowed(names: Sequence[str], shapes: Sequence[dict[int, Any]], bounds: Sequence[tuple[int, ...]]) -> str | None:
    """A message when a planned bound is not the requested one, else None."""
    for index, (name, spec) in enumerate(zip(names, shapes)):
        for axis, dim in spec.items():
            wanted = _dim_max(dim)
            got = bounds[index][axis]
            if wanted is not None and got != wanted:
                return (f"{name} axis {axis}: the lowered program is planned for at most {got}, not the requested "
                        f"{wanted} (a trace guard narrowed the range)")
    return None


def lower_program(
    module: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    shapes: tuple[dict[int, Any], ...],
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    metadata: Mapping[str, str] | None = None,
    quantize: bool = False,
    calibration: Sequence[tuple[torch.Tensor, ...]] | None = None,
    planned_bytes_limit: int = PLANNED_BYTES_LIMIT,
    check: bool = True,
) -> Lowered:
    """`module` as a .pte for XNNPACK, with the facts the manifest records.

    Steps: torch.export (the dims of `shapes`, `dynamic_shapes()`), optionally PT2E int8
    calibrated on `calibration` (tuples of inputs), to_edge_transform_and_lower with the
    XnnpackPartitioner, to_executorch. Then checks: the planned sizes are the requested bounds,
    the arena is within `planned_bytes_limit`, every op left outside XNNPACK has a kernel in
    this ExecuTorch runtime, and (`check`) the program loads and runs the example inputs here
    with PyTorch's output shapes (and, fp32, its values within export's smoke tolerance).
    `metadata` (the `vae_export.*` strings) is stored with the names and dims in the
    `vae_export_metadata` constant method. Raises LoweringError naming the op when the model
    does not lower."""
    if quantize and not calibration:
        raise ValueError("quantize=True needs calibration inputs")
    module = module.eval()
    with torch.no_grad():
        reference = module(*example_inputs)
    ref_outputs = tuple(reference) if isinstance(reference, (tuple, list)) else (reference,)
    in_names, out_names = tuple(input_names), tuple(output_names)
    if len(in_names) != len(example_inputs) or len(out_names) != len(ref_outputs):
        raise ValueError(f"names {in_names} -> {out_names} do not match {len(example_inputs)} inputs and "
                         f"{len(ref_outputs)} outputs")
    fitted = _fit_to_signature(module, shapes)
    max_batch = _dim_max(shapes[0].get(0)) or len(example_inputs[0])

    with _quiet(), _no_cpu_conv_backend_guards(), torch.no_grad():
        try:
            source = _quantize(module, example_inputs, fitted, calibration or (), max_batch) if quantize else module
            # The quantized GraphModule takes its inputs flat (z, y), not as forward(z, *y).
            source_shapes = shapes if isinstance(source, torch.fx.GraphModule) else fitted

            def export() -> Any:
                return torch.export.export(source, example_inputs, dynamic_shapes=source_shapes, strict=False)

            exported = export()
            dims = {**_graph_dims(exported, in_names, outputs=False), **_graph_dims(exported, out_names, outputs=True)}
        except LoweringError:
            raise
        except Exception as exc:
            raise _lowering_error(exc, "export") from None
    info = dict(metadata or {})
    info[INPUT_NAMES_KEY] = json.dumps(list(in_names))
    info[OUTPUT_NAMES_KEY] = json.dumps(list(out_names))
    info[DIMS_KEY] = json.dumps(dims)
    constant_methods = {METADATA_METHOD: json.dumps(info)}

    # First with EXIR's IR verifier (it names ops outside the Core ATen set). Its argument
    # validator evaluates a symbolic size as an int, which pins it to the example's value (in
    # AutoencoderKL's encoder, the length of split_with_sizes_copy's output list fixes the
    # batch at 2). When a bound comes out narrowed, lower again without the verifier from a
    # fresh export (lowering refines the program's ShapeEnv in place): the kernel-registry
    # check and the run below, and verify's parity, stand in for it.
    with _quiet():
        program, in_bounds, out_bounds = _to_executorch(exported, constant_methods, len(in_names), verify_ir=True)
        narrowed = _narrowed(in_names, shapes, in_bounds)
        verified = True
        if narrowed:
            with _no_cpu_conv_backend_guards(), torch.no_grad():
                exported = export()
            program, in_bounds, out_bounds = _to_executorch(exported, constant_methods, len(in_names), verify_ir=False)
            narrowed = _narrowed(in_names, shapes, in_bounds)
            verified = False
    if narrowed:
        raise LoweringError(narrowed, stage="bounds")

    from vae_export_runtime.pte import runtime

    undelegated = _undelegated_ops(program.exported_program())
    registry = set(runtime().operator_registry.operator_names)
    missing = [op for op in undelegated if op not in registry]
    if missing:
        raise LoweringError(f"{missing[0]} does not lower (left outside XNNPACK, and the ExecuTorch runtime has "
                            "no kernel for it)", op=missing[0], stage="kernels")
    # What loading `forward` allocates: every memory-planned buffer (non_const_buffer_sizes;
    # entry 0 is reserved). Fully delegated graphs plan only their I/O; ops outside XNNPACK
    # add each tensor between them, at its upper bound.
    plan = next(p for p in program.executorch_program.execution_plan if p.name == FORWARD)
    planned = sum(int(n) for n in plan.non_const_buffer_sizes)
    if planned > planned_bytes_limit:
        raise LoweringError(f"the bounds {[list(b) for b in in_bounds]} plan {planned / 2**20:.0f} MiB of buffers, "
                            f"over the {planned_bytes_limit / 2**20:.0f} MiB limit: lower the family's batch or "
                            "size bounds (Family.pte_bounds)", stage="bounds")
    data = bytes(program.buffer)
    if check:
        _check_runs(data, example_inputs, ref_outputs, compare_values=not quantize)
    return Lowered(data=data, input_names=in_names, output_names=out_names, input_bounds=in_bounds,
                   output_bounds=out_bounds, planned_bytes=planned, undelegated_ops=undelegated, quantized=quantize,
                   ir_verified=verified)


def _check_runs(data: bytes, example_inputs: tuple[torch.Tensor, ...], ref_outputs: Sequence[torch.Tensor],
                compare_values: bool) -> None:
    """Load the program in this process's runtime and run the example once: a kernel missing
    at load time, a delegate that fails to build, or a wrong graph is an export-time error."""
    from vae_export.compare import compare
    from vae_export.compare import CHECK_ATOL, CHECK_RTOL
    from vae_export_runtime.pte import load_program

    program = load_program(data, "the lowered program")
    try:
        outputs = program.load_method(FORWARD).execute(tuple(t.contiguous() for t in example_inputs))
    except RuntimeError as exc:
        raise LoweringError(f"the lowered program does not run in ExecuTorch ({et_error(exc)})", stage="runtime") from None
    got = [tuple(o.shape) for o in outputs]
    want = [tuple(o.shape) for o in ref_outputs]
    if got != want:
        raise LoweringError(f"the lowered program gives shapes {got}, PyTorch {want}", stage="runtime")
    if compare_values:
        for index, (a, e) in enumerate(zip(outputs, ref_outputs)):
            if not compare(a.numpy(), e.numpy(), CHECK_ATOL, CHECK_RTOL)["passed"]:
                raise LoweringError(f"output {index} of the lowered program differs from PyTorch right after lowering",
                                    stage="runtime")


# ---- a graph of a loaded model ----------------------------------------------------------------

def example_inputs(loaded: LoadedModel, spec: GraphSpec) -> tuple[torch.Tensor, ...]:
    """The inputs torch.export traces with: batch 2 at the export size, seeded (images uniform,
    latents normal), label rows for y."""
    from vae_export.inputs import with_labels

    g = loaded.geometry
    shape = (EXAMPLE_BATCH, *g.input_shapes(spec)[spec.input_name])
    generator = torch.Generator().manual_seed(0)
    primary = torch.randn(shape, generator=generator) if spec.role == "decoder" else torch.rand(shape, generator=generator)
    feeds = with_labels(spec.input_names, primary.numpy(), g.num_classes)
    return tuple(torch.from_numpy(feeds[name]) for name in spec.input_names)


def calibration_batches(loaded: LoadedModel, spec: GraphSpec, images: np.ndarray | None
                        ) -> list[tuple[torch.Tensor, ...]]:
    """int8 calibration: exactly what int8-static calibrates on (`inputs.calibration_inputs`:
    prior z plus the edge cases for the decoder, training images plus all-0/all-1 for the
    encoder and classifier), with label rows where y is an input."""
    from vae_export.inputs import calibration_inputs, with_labels

    g = loaded.geometry
    if spec.role != "decoder" and images is None:
        raise VAEExportError(f"{EXECUTORCH_INT8} needs calibration images for the {spec.role}")
    data = calibration_inputs(spec.role, g.latent_shape, g.image_shape, images)
    batches = []
    for start in range(0, len(data), CALIBRATION_BATCH):
        feeds = with_labels(spec.input_names, data[start:start + CALIBRATION_BATCH], g.num_classes)
        batches.append(tuple(torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in spec.input_names))
    return batches


def graph_props(loaded: LoadedModel, spec: GraphSpec, variant: str) -> dict[str, str]:
    """The graph's `vae_export.*` metadata, through the codec: what the .onnx carries
    (`graphs.graph_metadata`), for this variant and exporter, without an opset."""
    from executorch.version import __version__ as et_version

    from vae_export.graphs import graph_metadata

    meta = graph_metadata(spec, loaded, 0, "executorch")
    return replace(meta, variant=variant, opset="", exporter=f"executorch {et_version}").to_props()


def lower_graph(loaded: LoadedModel, spec: GraphSpec, variant: str, images: np.ndarray | None = None) -> Lowered:
    """One graph of a loaded model as a .pte: `variant` executorch (fp32) or executorch-int8,
    within the family's bounds (`Family.pte_bounds`)."""
    g = loaded.geometry
    bounds = loaded.family.pte_bounds(loaded)
    quantize = variant == EXECUTORCH_INT8
    shapes = dynamic_shapes(spec.input_names, dynamic_size=g.dynamic_size, stride=g.stride, bounds=bounds)
    return lower_program(
        loaded.module(spec.role), example_inputs(loaded, spec), shapes, input_names=spec.input_names,
        output_names=spec.output_names, metadata=graph_props(loaded, spec, variant), quantize=quantize,
        calibration=calibration_batches(loaded, spec, images) if quantize else None)


__all__ = ["DEFAULT_MAX_BATCH", "DEFAULT_MAX_LATENT_SIDE", "INSTALL_HINT", "PLANNED_BYTES_LIMIT", "Lowered", "PteBounds",
           "LoweringError", "PteBounds", "dynamic_shapes", "lower_graph", "lower_program"]
