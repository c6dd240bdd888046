"""ONNX Runtime sessions configured one way for apps, verify and bench (numpy + onnxruntime).

A graph read back from disk is untrusted input: `make_session` checks it against the
contract's signature (names, float32, a symbolic batch, every other dimension the size the
manifest or the graph's own metadata says) before anything runs it, and `run_limited` stops a
run that exceeds a time limit (a `Loop` with no trip count would otherwise never return).
The toolkit validates a graph with the onnx package first (external data, value sizes); this
module needs neither onnx nor torch.
"""

from __future__ import annotations

import heapq
import itertools
import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from vae_export_runtime.codec import GraphMetadata
from vae_export_runtime.contract import GraphSpec, value_shapes
from vae_export_runtime.errors import RuntimeInputError, UsageError, VAEExportError, first_line
from vae_export_runtime.limits import DEVICES, MAX_ELEMENTS

RUN_TIME_LIMIT_ENV = "VAE_EXPORT_RUN_TIMEOUT"
# Our graphs answer in milliseconds; a minute is far past any honest run, even at batch
# 65536 on a slow CPU, and short enough that a hanging graph is reported, not waited on.
DEFAULT_RUN_TIME_LIMIT_S = 60.0

GPU_INSTALL_HINT = (
    "install the GPU build of ONNX Runtime instead of the CPU one: "
    "pip uninstall -y onnxruntime && pip install onnxruntime-gpu (see README, 'GPU')"
)


def providers_for(device: str) -> list[str]:
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise UsageError(f"--device cuda: ONNX Runtime has no CUDA execution provider; {GPU_INSTALL_HINT}")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise UsageError(f"--device {device!r}: expected one of {', '.join(DEVICES)}")


def session_options(threads: int | None = None, *, low_memory: bool = False) -> ort.SessionOptions:
    """Latency-tuned options: full graph optimisation; a fixed intra-op pool when asked
    (the same count PyTorch gets); sequential execution, since these graphs are chains
    with no branches to run in parallel; no spinning inter-op pool.

    `low_memory`: no CPU memory arena and no memory pattern. The arena keeps every block it
    ever allocated (sized up to the next power of two) for reuse, and the pattern plans one
    buffer per shape: both trade resident memory for allocation time, which a memory budget
    (`VAEDecoder.decode(max_memory_mb=...)`) cannot afford on large images."""
    options = ort.SessionOptions()
    if low_memory:
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads:
        options.intra_op_num_threads = threads
    # Fatal only: ORT's warnings are about its own graph rewrites, and its errors come back as
    # exceptions that we report in one line (its own log line would come first on stderr).
    options.log_severity_level = 4
    return options


def make_session(
    path: Path,
    device: str = "cpu",
    threads: int | None = None,
    spec: GraphSpec | None = None,
    *,
    providers: Sequence[str] | None = None,
    shapes: Mapping[str, tuple[int | None, ...]] | None = None,
    options: ort.SessionOptions | None = None,
) -> ort.InferenceSession:
    """The one way a graph is opened in ONNX Runtime (apps, verify, bench, export's checks,
    inspect): `session_options` (or `options`), the device's providers (or `providers` as
    given), and, with `spec`, the signature checked against the contract (`check_signature`:
    against `shapes`, the sizes a manifest records, else against the graph's own metadata).
    ONNX Runtime (1.20+) itself refuses external data outside the model's directory."""
    chosen = list(providers) if providers is not None else providers_for(device)
    try:
        session = ort.InferenceSession(str(path), sess_options=options or session_options(threads), providers=chosen)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
        raise RuntimeInputError(f"{path}: ONNX Runtime cannot load it ({first_line(exc)})") from None
    if spec is not None:
        check_names(session, spec, path)
        if shapes is None:
            meta = GraphMetadata.from_props(session.get_modelmeta().custom_metadata_map, str(path))
            shapes = metadata_shapes(session, meta, spec, path)
        check_signature(session, spec, path, shapes)
    return session


def check_names(session: Any, spec: GraphSpec, path: Path) -> None:
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    if inputs != list(spec.input_names) or outputs != list(spec.output_names):
        raise RuntimeInputError(
            f"{path}: expected a {spec.role} graph {', '.join(spec.input_names)} -> {', '.join(spec.output_names)}, "
            f"found {', '.join(inputs) or '(no inputs)'} -> {', '.join(outputs)}"
        )


# ---- the signature check -------------------------------------------------------------------

def expected_shapes(spec: GraphSpec, latent_shape: Sequence[int | None], image_shape: Sequence[int | None],
                    num_classes: int = 0) -> dict[str, tuple[int | None, ...]]:
    """Each input's and output's dimensions after `batch`, by name: the contract's shapes
    (None: a symbolic dimension, --dynamic-size)."""
    shapes = value_shapes(latent_shape, image_shape, num_classes)
    return {name: shapes.get(name, ()) for name in (*spec.input_names, *spec.output_names)}


def metadata_shapes(graph: Any, meta: GraphMetadata, spec: GraphSpec, path: Path) -> dict[str, tuple[int | None, ...]]:
    """The contract's shapes as the graph's own metadata states them. A symbolic image size
    (`image_shape` null) takes its channel count from the graph (`graph`: an ONNX Runtime
    session, or any backend that reports its values the same way)."""
    image = meta.image_shape
    if image is None:
        values = {v.name: v for v in [*graph.get_inputs(), *graph.get_outputs()]}
        pixels = values.get("x") or values.get("x_hat")
        channels = pixels.shape[1] if pixels is not None and len(pixels.shape) == 4 else None
        if not isinstance(channels, int):
            raise RuntimeInputError(f"{path}: a symbolic-size graph must fix its channel count, found "
                                    f"{_shown(pixels) if pixels is not None else 'no image value'}")
        image = (channels, None, None)
    return expected_shapes(spec, meta.latent_shape, image, meta.num_classes)


def _shown(value: Any) -> str:
    dims = ", ".join(str(d) if isinstance(d, int) else (d or "?") for d in value.shape)
    return f"{value.name} {value.type.removeprefix('tensor(').rstrip(')')} [{dims}]"


def check_signature(session: Any, spec: GraphSpec, path: Path,
                    shapes: Mapping[str, tuple[int | None, ...]]) -> None:
    """Refuse a graph whose inputs and outputs are not float32 [batch, *shape] with the
    contract's `shapes` (None: a symbolic dimension). Names are `check_names`' job. The
    message shows the expected and the found signature."""
    values = [*session.get_inputs(), *session.get_outputs()]
    found = "; ".join(_shown(v) for v in values)
    for v in values:
        want = shapes.get(v.name)
        ok = (want is not None and v.type == "tensor(float)" and len(v.shape) == 1 + len(want)
              and not isinstance(v.shape[0], int)  # batch is symbolic (a name, or None)
              # a fixed size where the contract has one; a symbolic one (--dynamic-size) where it has None
              and all((not isinstance(d, int)) if w is None else (d == w and w >= 1) for d, w in zip(v.shape[1:], want))
              and math.prod(w for w in want if w is not None) <= MAX_ELEMENTS)
        if not ok:
            expected = "; ".join(f"{name} float [batch, {', '.join('?' if d is None else str(d) for d in dims)}]"
                                 for name, dims in shapes.items())
            raise RuntimeInputError(f"{path}: not the {spec.role} signature of the contract: expected {expected}, "
                                    f"found {found}")


# ---- runs with a time limit --------------------------------------------------------------------

def run_time_limit() -> float:
    """Seconds a single run may take: $VAE_EXPORT_RUN_TIMEOUT, else DEFAULT_RUN_TIME_LIMIT_S."""
    text = os.environ.get(RUN_TIME_LIMIT_ENV)
    try:
        limit = float(text) if text else DEFAULT_RUN_TIME_LIMIT_S
    except ValueError:
        limit = math.nan
    if not (math.isfinite(limit) and limit > 0):
        raise UsageError(f"${RUN_TIME_LIMIT_ENV}: expected a positive number of seconds, found {text!r}")
    return limit


class _Watchdog:
    """One daemon thread that sets `RunOptions.terminate` on runs past their deadline (ONNX
    Runtime checks the flag between nodes and inside Loop bodies). One thread for the process,
    so a run costs a heap push, not a thread start."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, ort.RunOptions]] = []
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._wake_at = math.inf  # when the thread wakes next on its own

    def watch(self, options: ort.RunOptions, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        with self._cond:
            heapq.heappush(self._heap, (deadline, next(self._ids), options))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="vae-export-watchdog", daemon=True)
                self._thread.start()
            # Wake the thread only when it would sleep past this deadline: with one limit for
            # every run that is rare, and a wake-up per run would cost the run its GIL.
            if deadline < self._wake_at:
                self._cond.notify()

    def done(self, options: ort.RunOptions) -> None:
        with self._cond:
            self._heap = [item for item in self._heap if item[2] is not options]
            heapq.heapify(self._heap)

    def _loop(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    heapq.heappop(self._heap)[2].terminate = True
                self._wake_at = self._heap[0][0] if self._heap else math.inf
                self._cond.wait(timeout=(self._wake_at - now) if self._heap else None)


_WATCHDOG = _Watchdog()


def run_limited(session: ort.InferenceSession, output_names: Sequence[str] | None, feeds: Mapping[str, np.ndarray],
                path: Path, limit_s: float | None = None) -> list[np.ndarray]:
    """`session.run` stopped after `limit_s` (default `run_time_limit()`); a failed or
    stopped run is one VAEExportError naming the file."""
    limit = run_time_limit() if limit_s is None else limit_s
    options = ort.RunOptions()
    options.log_severity_level = 4  # the exception says it; no log line before ours
    _WATCHDOG.watch(options, limit)
    try:
        return session.run(list(output_names) if output_names is not None else None, dict(feeds), options)
    except Exception as exc:  # ORT raises its own Fail/RuntimeException/... types
        if options.terminate:
            raise VAEExportError(f"{path}: a run took longer than {limit:g} s and was stopped "
                                 f"(${RUN_TIME_LIMIT_ENV} sets the limit)") from None
        raise VAEExportError(f"{path}: ONNX Runtime failed to run it ({first_line(exc)})") from None
    finally:
        _WATCHDOG.done(options)
