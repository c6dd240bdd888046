"""How much memory running a graph at a given input shape takes, estimated before it runs,
and the check that a command's sizes and batches fit in the memory available now.

The pixel bound (`vae_export_runtime.limits.MAX_PIXELS`) keeps a size from overflowing
anything; it cannot say whether a decode at that size fits this machine, which depends on the
model (a 28x28 MLP and a 512-channel diffusers decoder differ by 10^4 per pixel). So commands
that take --sizes ask the graph itself: `peak_bytes` replays the graph's nodes in order on the
concrete shapes that ONNX shape inference gives for the requested input shape, each value
alive from the node that makes it to the last node that reads it, and returns the largest
total alive at once (what ONNX Runtime's memory planner and PyTorch eager, which free a value
after its last use, both come close to), plus the scratch buffer of the node running then
(a convolution's im2col or a transposed convolution's col2im buffer, one image at a time: on
the reference conv decoder at 2048x2048 that buffer is 256 MiB beside 96 MiB of values, and
measured peak RSS was 388 MiB). Weights are not counted: they are loaded already.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vae_export.errors import UsageError

SMALL_INITIALIZER = 4096  # elements: shape constants and the like keep their values for inference
GIB = 1 << 30


def available_memory() -> int:
    """Bytes of memory this process can still take: the smaller of the kernel's MemAvailable
    and what the cgroup (a container's limit) leaves; the physical memory when neither is known."""
    candidates = []
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            candidates.append(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    return max(min(candidates), 0) if candidates else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _skeleton(model: Any, shapes: Mapping[str, tuple[int, ...]]) -> Any:
    """The graph without its weights' values (large initializers become typed inputs, so that
    inference needs no copy of the weights) and with the inputs at `shapes`."""
    import onnx
    from onnx import helper

    graph = model.graph
    inputs = []
    for value in graph.input:
        if value.name in shapes:
            elem = value.type.tensor_type.elem_type
            inputs.append(helper.make_tensor_value_info(value.name, elem, list(shapes[value.name])))
    small, large = [], []
    for tensor in graph.initializer:
        (small if math.prod(tensor.dims) <= SMALL_INITIALIZER else large).append(tensor)
    inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in large]
    skeleton = helper.make_graph(list(graph.node), graph.name, inputs, list(graph.output), small)
    out = helper.make_model(skeleton, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    for function in model.functions:
        out.functions.append(function)
    return onnx.shape_inference.infer_shapes(out, check_type=False, strict_mode=False, data_prop=True)


def _value_bytes(value: Any) -> int | None:
    from onnx import helper

    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    if None in dims:
        return None
    try:
        itemsize = helper.tensor_dtype_to_np_dtype(tensor.elem_type).itemsize
    except (KeyError, ValueError, TypeError):
        itemsize = 4
    return math.prod(dims) * itemsize


def _dims(value: Any) -> list[int] | None:
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    return None if None in dims else dims


def _scratch(node: Any, shapes: Mapping[str, list[int] | None], weights: Mapping[str, list[int]]) -> int:
    """Bytes of the working buffer a Conv (im2col: C_in/g * kh * kw * H_out * W_out) or a
    ConvTranspose (col2im: C_out/g * kh * kw * H_in * W_in) allocates for one image, float32."""
    if node.op_type not in ("Conv", "ConvTranspose") or len(node.input) < 2:
        return 0
    weight = weights.get(node.input[1]) or shapes.get(node.input[1])
    source = shapes.get(node.input[0] if node.op_type == "ConvTranspose" else node.output[0])
    if not weight or not source or len(weight) < 3 or len(source) < 3:
        return 0
    # The weight is [C_out, C_in/g, kh, kw] for Conv and [C_in, C_out/g, kh, kw] for
    # ConvTranspose: weight[1] is the buffer's channel count either way.
    return 4 * weight[1] * math.prod(weight[2:]) * math.prod(source[2:])


def peak_bytes(model: Any, shapes: Mapping[str, tuple[int, ...]]) -> int:
    """The most bytes of values alive at once when `model` (an onnx.ModelProto) runs on inputs
    of `shapes` (by input name), inputs and outputs included, weights not. A value whose shape
    inference cannot make concrete counts as large as the largest one it could (a guess on
    the safe side)."""
    inferred = _skeleton(model, shapes)
    graph = inferred.graph
    weights = {t.name for t in model.graph.initializer}
    sizes: dict[str, int | None] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        if value.name not in weights:
            sizes[value.name] = _value_bytes(value)
    known = [s for s in sizes.values() if s is not None]
    fallback = max(known, default=0)
    size = {name: fallback if s is None else s for name, s in sizes.items()}
    shapes_of = {v.name: _dims(v) for v in [*graph.input, *graph.value_info, *graph.output]}
    dims_of = {t.name: list(t.dims) for t in model.graph.initializer}
    last_use: dict[str, int] = {}
    for i, node in enumerate(graph.node):
        for name in node.input:
            last_use[name] = i
    outputs = {v.name for v in graph.output}
    alive = {v.name for v in graph.input if v.name in shapes}
    current = sum(size.get(name, 0) for name in alive)
    peak = current
    for i, node in enumerate(graph.node):
        for name in node.output:
            if name and name not in alive:
                alive.add(name)
                current += size.get(name, fallback)
        peak = max(peak, current + _scratch(node, shapes_of, dims_of))
        for name in set(node.input) | set(node.output):
            if name in alive and name not in outputs and last_use.get(name, -1) <= i:
                alive.discard(name)
                current -= size.get(name, fallback)
    return peak


def io_bytes(model: Any, shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, int]:
    """(input bytes, output bytes) of one run at `shapes`."""
    graph = _skeleton(model, shapes).graph
    inputs = sum(_value_bytes(v) or 0 for v in graph.input if v.name in shapes)
    return inputs, sum(_value_bytes(v) or 0 for v in graph.output)


@dataclass(frozen=True)
class Footprint:
    """Bytes of one run of a graph at one size as a function of the batch: values and scratch
    grow with the batch (linear, from batches 1 and 2), weights are already loaded."""

    peak_1: int
    peak_2: int
    inputs_1: int
    outputs_1: int

    def peak(self, batch: int) -> int:
        return self.peak_1 + (batch - 1) * max(self.peak_2 - self.peak_1, 0)

    def inputs(self, batch: int) -> int:
        return batch * self.inputs_1

    def outputs(self, batch: int) -> int:
        return batch * self.outputs_1


def footprint(model: Any, shapes_at: Callable[[int], Mapping[str, tuple[int, ...]]]) -> Footprint:
    """The graph's footprint; `shapes_at(batch)` gives its input shapes at a batch."""
    inputs, outputs = io_bytes(model, shapes_at(1))
    return Footprint(peak_bytes(model, shapes_at(1)), peak_bytes(model, shapes_at(2)), inputs, outputs)


def check_fits(need: int, what: str, option: str, hint: str) -> None:
    """UsageError naming `option` when `need` bytes exceed the memory available now."""
    have = available_memory()
    if need > have:
        raise UsageError(f"{option}: {what} needs about {need / GIB:.1f} GiB, more than the {have / GIB:.1f} GiB of "
                         f"memory available now; {hint}")


# Running a graph takes more than its values: ONNX Runtime's arena grows in chunks, and
# kernels keep other buffers (measured on the conv reference at 2048x2048, batch 3: ONNX
# Runtime 674 MiB and PyTorch 670 MiB for an estimate of 544 MiB, 1.24x).
SLACK = 1.5


def check_runs_fit(artifacts: Path, manifest: Any, sizes: Sequence[tuple[int, int]], batch_sizes: Sequence[int],
                   engines: int, held_outputs: int, command: str, size_option: str | None,
                   edge_batches: Mapping[str, int] | None = None) -> None:
    """UsageError unless every graph of the manifest (its fp32 file: variants are no larger)
    runs at every size and batch in the memory available now. `engines`: runs whose memory
    is held at once (ONNX Runtime keeps its arena at the peak after a run, so verify's PyTorch
    run comes on top of it, and bench keeps every engine's session open), each with its own
    copy of the weights; `held_outputs`: copies of the outputs the command keeps (verify
    compares PyTorch's with each engine's); `size_option`: what names the sizes (None: a
    fixed-size model); `edge_batches`: per role, the batch of verify's edge inputs."""
    import onnx

    from vae_export.limits import MAX_ELEMENTS
    from vae_export.onnxinfo import check_static_sizes

    g = manifest.model.geometry
    for entry in manifest.entries(variants=("fp32",)):
        model = onnx.load(str(artifacts / entry.file), load_external_data=False)
        # A graph with a node that allocates gigabytes whatever the input is a bad file (exit
        # 1, as when a session opens it), not a size or batch the user could make smaller.
        check_static_sizes(model, artifacts / entry.file, MAX_ELEMENTS)
        spec = g.spec(entry.graph)
        labels = {b: f"batch {b}" for b in batch_sizes}
        edge = (edge_batches or {}).get(entry.graph)
        if edge is not None:
            labels.setdefault(edge, f"batch {edge} (verify's edge inputs)")
        for size in sizes:
            def shapes_at(batch: int, size: tuple[int, int] = size) -> dict[str, tuple[int, ...]]:
                return {name: (batch, *shape) for name, shape in g.input_shapes(spec, size).items()}

            fp = footprint(model, shapes_at)
            at = f"{size[0]}x{size[1]}"
            for batch in sorted(labels, reverse=True):  # the largest first: it is the one to drop
                need = int(engines * (SLACK * fp.peak(batch) + entry.bytes) + fp.inputs(batch)
                           + held_outputs * fp.outputs(batch))
                edge_only = batch == edge and batch not in batch_sizes
                if size_option:
                    option = f"{size_option} {at}"
                    hint = f"pass smaller {'--sizes' if edge_only else '--sizes or --batch-sizes'}"
                elif not edge_only:
                    option, hint = f"--batch-sizes {batch}", "pass smaller --batch-sizes"
                else:  # a fixed-size graph at verify's own edge batch: no option makes it smaller
                    option, hint = entry.file, "verify's edge inputs run at this batch whatever --batch-sizes says"
                check_fits(need, f"{command} {entry.file} at {at}, {labels[batch]},", option, hint)
