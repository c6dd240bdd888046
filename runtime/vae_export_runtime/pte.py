"""ExecuTorch programs (.pte) with the runtime's API: a checked loader, and the backend
`graphs.py` runs them on (engine "executorch", chosen for a `.pte` path by `backends.py`).

    from vae_export_runtime import VAEDecoder
    images = VAEDecoder("artifacts/decoder.pte").sample(16, seed=0)   # needs `pip install executorch`

A .pte written by `vae-export export --variant executorch` has one `forward` method with the
inputs, outputs and meaning of the .onnx graph (pixels in [0, 1]; `y` second on conditional
graphs), lowered to XNNPACK, and a constant method `vae_export_metadata` that returns one JSON
object: the graph's `vae_export.*` metadata as the codec writes it, plus three keys a .pte
needs because its inputs and outputs are positional: `vae_export.input_names`,
`vae_export.output_names` (JSON lists) and `vae_export.dims` (JSON {name: [null | int, ...]},
null for a symbolic dimension, batch included).

What a .pte does differently from an .onnx, and what this module does about it:

* **Bounds are memory.** ExecuTorch plans every input and output at the upper bound of its
  symbolic dims and allocates that arena when the method loads; the planned sizes are the
  bounds (`MethodMeta.input_tensor_meta(i).sizes()`). `PteProgram` reads them; the backend
  splits a batch larger than the bound into calls of at most the bound (as an app does), and
  refuses a height or width beyond it (a decoder can decode larger latents with `tile=`).
* **ExecuTorch checks element counts, not dims**: a [1, 4, 40, 5] latent fits a
  [32, 4, 16, 16] plan and runs. `PteProgram.check_feeds` checks every dim first.
* **The loader is not an integrity check**: flipped weight bytes load and run with other
  outputs. Given the manifest's sha256 (`expected_sha256`, as the toolkit's verify and bench
  pass it), the bytes are compared before ExecuTorch parses them.
* **A corrupted file can abort the process** inside ExecuTorch's Python bindings (a log line
  read from the file, decoded as UTF-8 inside C++: std::terminate, SIGABRT). Without a sha256
  to vouch for the bytes, the program and its methods are first loaded in a forked child
  (`probe_load`), where an abort costs only the child. No fork on Windows: there, pass the
  manifest's sha256 or trust the file.

Written against executorch 1.5.1 (`pip install executorch`, which brings torch: the bindings
link libtorch and take torch tensors). This module imports numpy at the top and ExecuTorch
and torch only when a program is opened, so `vae_export_runtime` keeps importing nothing
beyond numpy and onnxruntime.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vae_export_runtime.codec import PREFIX
from vae_export_runtime.contract import symbolic_names
from vae_export_runtime.errors import RuntimeInputError, VAEExportError, first_line

ENGINE = "executorch"
PACKAGE = "executorch"
INSTALL_HINT = "pip install executorch (or pip install 'vae-export-runtime[executorch]')"
METADATA_METHOD = "vae_export_metadata"  # constant method: one JSON object of strings
FORWARD = "forward"
INPUT_NAMES_KEY = PREFIX + "input_names"  # JSON list, the positional order of forward's inputs
OUTPUT_NAMES_KEY = PREFIX + "output_names"
DIMS_KEY = PREFIX + "dims"  # JSON {name: [null | int, ...]}: null marks a symbolic dim, batch included
# Files beyond this are refused before reading (our programs are KB to a few hundred MB).
MAX_PTE_BYTES = 2 * 1024**3
MAX_METADATA_CHARS = 1 << 20
# Seconds the forked probe may take to load a program (our programs load in milliseconds).
PROBE_TIMEOUT_S = 60.0
FLOAT = 6  # ExecuTorch's ScalarType of float32

# ExecuTorch's runtime Error codes (runtime/core/error.h), to name them in messages.
ET_ERRORS = {
    0x01: "Internal", 0x02: "InvalidState", 0x03: "EndOfMethod", 0x04: "AlreadyLoaded",
    0x10: "NotSupported", 0x11: "NotImplemented", 0x12: "InvalidArgument", 0x13: "InvalidType",
    0x14: "OperatorMissing", 0x20: "NotFound", 0x21: "MemoryAllocationFailed", 0x22: "AccessFailed",
    0x23: "InvalidProgram", 0x24: "InvalidExternalData", 0x25: "OutOfResources",
    0x30: "DelegateInvalidCompatibility", 0x31: "DelegateMemoryAllocationFailed", 0x32: "DelegateInvalidHandle",
}


class PteLoadError(RuntimeInputError):
    """A .pte that is missing, truncated, tampered with, not ours, or refused by ExecuTorch."""


class PteInputError(RuntimeInputError):
    """Feeds that do not fit the program's contract or its exported bounds."""


def et_error(exc: BaseException) -> str:
    """ExecuTorch's bindings raise RuntimeError('... error: 0x:23') or '... error 0x23'; the
    first line with the code's name added ('InvalidProgram', not a number)."""
    text = first_line(exc)
    match = re.search(r"0x:?([0-9a-fA-F]+)", text)
    if match:
        name = ET_ERRORS.get(int(match.group(1), 16))
        if name:
            text += f" ({name})"
    return text


def installed() -> bool:
    return importlib.util.find_spec(PACKAGE) is not None


@contextlib.contextmanager
def _silenced() -> Iterator[None]:
    """Standard output and the standard error descriptor discarded: ExecuTorch's first use
    prints lines nobody can act on (torchao's 'Failed to load ..._C_mxfp8...so', its CUDA
    kernels; the C++ runtime's '[cpuinfo_utils.cpp:...]' lines when its thread pool starts).
    Errors still come back as exceptions."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            os.dup2(null.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


_started = False


def runtime() -> Any:
    """ExecuTorch's runtime, started quietly once (PteLoadError with the install hint when
    it is not installed)."""
    global _started
    try:
        if _started:
            from executorch.runtime import Runtime
        else:
            with _silenced():
                from executorch.extension.pybindings import portable_lib
                from executorch.runtime import Runtime

                Runtime.get()
                portable_lib._threadpool_get_thread_count()  # starts the pool (and its cpuinfo log lines)
            _started = True
    except ImportError as exc:
        raise PteLoadError(f"ExecuTorch is not installed ({first_line(exc)}): {INSTALL_HINT}") from None
    return Runtime.get()


def load_program(data: bytes, where: str) -> Any:
    """The program, loaded with ExecuTorch's internal-consistency verification."""
    rt = runtime()
    from executorch.runtime import Verification

    try:
        return rt.load_program(data, verification=Verification.InternalConsistency)
    except RuntimeError as exc:
        raise PteLoadError(f"{where}: ExecuTorch cannot load it ({et_error(exc)})") from None
    except MemoryError as exc:  # the planned arena does not fit in memory (std::bad_alloc)
        raise PteLoadError(f"{where}: ExecuTorch cannot allocate its planned buffers ({first_line(exc)})") from None


def probe_load(data: bytes, where: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Load `data` (the program and every method) in a forked child; PteLoadError when the
    child dies of a signal, fails, or hangs. A no-op where fork is unavailable (Windows)."""
    if not hasattr(os, "fork"):
        return
    runtime()  # the install hint here, not an opaque failure in the child
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code
        code = 1
        try:
            import faulthandler

            faulthandler.disable()  # an abort here is the expected outcome, not a bug to dump
            os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # ExecuTorch's log lines are the parent's business
            program = load_program(data, where)
            for name in program.method_names:
                program.load_method(name)
            code = 0
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise PteLoadError(f"{where}: ExecuTorch did not finish loading it in {timeout_s:.0f} s")
        time.sleep(0.005)
    if os.WIFSIGNALED(status):
        raise PteLoadError(f"{where}: ExecuTorch crashes loading it (signal {os.WTERMSIG(status)}): "
                           "the file is corrupted")
    if os.WEXITSTATUS(status) != 0:
        load_program(data, where)  # fails here too, with ExecuTorch's own error for the message
        raise PteLoadError(f"{where}: ExecuTorch cannot load its methods")


def set_threads(count: int) -> int:
    """Size ExecuTorch's CPU thread pool (XNNPACK's and the optimized kernels' workers) and
    return the count in force. The pool is process-wide (no per-program option; ExecuTorch
    starts it with one thread per core); the binding is `_unsafe_reset_threadpool`, never to
    be called while a method runs on another thread."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise RuntimeInputError(f"threads: expected a positive integer, found {count!r}")
    runtime()
    from executorch.extension.pybindings import portable_lib

    if portable_lib._threadpool_get_thread_count() != count:
        with _silenced():  # it logs "[threadpool.cpp:66] Resetting threadpool to N threads."
            portable_lib._unsafe_reset_threadpool(count)
    return int(portable_lib._threadpool_get_thread_count())


def check_header(data: bytes, where: str) -> None:
    """The .pte's own framing, checked before ExecuTorch parses anything: the flatbuffer file
    identifier 'ET' + 2-digit schema version at bytes 4..8, the extended header 'eh00' at
    8..12, and the sizes it declares (flatbuffer size, segment offset and size) against the
    file's length, so that truncation or padding is named as such."""
    if len(data) < 40:
        raise PteLoadError(f"{where}: not an ExecuTorch program ({len(data)} bytes, truncated or empty)")
    if not re.fullmatch(rb"ET\d\d", data[4:8]):
        raise PteLoadError(f"{where}: not an ExecuTorch program (no 'ET' file identifier)")
    if data[8:12] != b"eh00":
        raise PteLoadError(f"{where}: not an ExecuTorch program with an extended header ('eh00' missing)")
    header_length = int.from_bytes(data[12:16], "little")
    program_size = int.from_bytes(data[16:24], "little")
    segment_base = int.from_bytes(data[24:32], "little")
    segment_size = int.from_bytes(data[32:40], "little") if header_length >= 32 else 0
    if program_size > len(data) or segment_base > len(data):
        raise PteLoadError(f"{where}: truncated ({len(data)} bytes; its header declares a {program_size}-byte "
                           f"program and segments from byte {segment_base})")
    if segment_base and segment_size and segment_base + segment_size != len(data):
        state = "truncated" if segment_base + segment_size > len(data) else "has trailing bytes"
        raise PteLoadError(f"{where}: {state} ({len(data)} bytes; its header declares {segment_base + segment_size})")


@dataclass(frozen=True)
class TensorMeta:
    """One input or output of `forward`, under the contract's name."""

    name: str
    dims: tuple[int | None, ...]  # None: symbolic (batch; height/width of --dynamic-size graphs)
    bounds: tuple[int, ...]  # the planned (maximum) size of each dim

    def shape(self) -> list[int | str]:
        """As ONNX Runtime reports a shape: fixed sizes, names for the symbolic dims."""
        names = symbolic_names(self.name, len(self.dims))
        return [d if d is not None else n or "?" for d, n in zip(self.dims, names)]


class PteProgram:
    """A vae-export .pte, loaded through `executorch.runtime`, with checked inputs.

    Order of checks: size cap, sha256 against `expected_sha256` (the manifest's), the header,
    a forked probe load when no sha256 vouches for the bytes, ExecuTorch's load with its
    internal-consistency verification, both methods, the metadata against the planned shapes.
    A program without `vae_export_metadata` is not ours and refused (as the runtimes refuse an
    .onnx without `vae_export.role`). `threads` sets ExecuTorch's process-wide pool."""

    def __init__(self, path: str | os.PathLike[str], *, expected_sha256: str | None = None,
                 threads: int | None = None) -> None:
        self.path = Path(path)
        where = str(self.path)
        try:
            size = self.path.stat().st_size
            if size > MAX_PTE_BYTES:
                raise PteLoadError(f"{where}: {size} bytes, over the {MAX_PTE_BYTES}-byte limit")
            data = self.path.read_bytes()
        except OSError as exc:
            raise PteLoadError(f"{where}: cannot read it ({exc.strerror or exc})") from None
        self.bytes = len(data)
        self.sha256 = hashlib.sha256(data).hexdigest()
        if expected_sha256 is not None and self.sha256 != expected_sha256.lower():
            raise PteLoadError(f"{where}: sha256 {self.sha256[:12]}... does not match the manifest's "
                               f"{expected_sha256[:12]}... (modified or corrupted)")
        check_header(data, where)
        if expected_sha256 is None:
            probe_load(data, where)  # bytes no manifest vouches for: load them in a child first
        if threads is not None:
            set_threads(threads)
        self._program = load_program(data, where)
        methods = set(self._program.method_names)
        if FORWARD not in methods or METADATA_METHOD not in methods:
            raise PteLoadError(f"{where}: not a vae-export program (methods {', '.join(sorted(methods))}; "
                               f"expected {FORWARD} and {METADATA_METHOD}); export it with vae-export")
        try:
            raw = self._program.load_method(METADATA_METHOD).execute(())
            text = raw[0]
            if not isinstance(text, str) or len(text) > MAX_METADATA_CHARS:
                raise ValueError(f"expected a JSON string of at most {MAX_METADATA_CHARS} characters")
            metadata = json.loads(text)
            if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                         for k, v in metadata.items()):
                raise ValueError("expected a JSON object of strings")
            in_names = json.loads(metadata[INPUT_NAMES_KEY])
            out_names = json.loads(metadata[OUTPUT_NAMES_KEY])
            dims = json.loads(metadata[DIMS_KEY])
            if not (isinstance(in_names, list) and isinstance(out_names, list) and isinstance(dims, dict)):
                raise ValueError("names must be lists and dims an object")
            self._method = self._program.load_method(FORWARD)
        except RuntimeError as exc:
            raise PteLoadError(f"{where}: ExecuTorch cannot load it ({et_error(exc)})") from None
        except (KeyError, ValueError, TypeError, IndexError, RecursionError) as exc:
            raise PteLoadError(f"{where}: its {METADATA_METHOD} is not vae-export metadata ({first_line(exc)})") from None
        self.metadata: dict[str, str] = metadata
        meta = self._method.metadata
        if meta.num_inputs() != len(in_names) or meta.num_outputs() != len(out_names):
            raise PteLoadError(f"{where}: forward has {meta.num_inputs()} inputs and {meta.num_outputs()} outputs; "
                               f"its metadata names {in_names} -> {out_names}")
        self.inputs = tuple(self._tensor_meta(str(n), dims, meta.input_tensor_meta(i)) for i, n in enumerate(in_names))
        self.outputs = tuple(self._tensor_meta(str(n), dims, meta.output_tensor_meta(i))
                             for i, n in enumerate(out_names))
        try:
            self.stride = int(metadata.get(PREFIX + "stride", "1"))
        except ValueError:
            raise PteLoadError(f"{where}: metadata {PREFIX}stride is not an integer") from None

    def _tensor_meta(self, name: str, dims: Mapping[str, Any], info: Any) -> TensorMeta:
        bounds = tuple(int(b) for b in info.sizes())
        declared = dims.get(name)
        if not isinstance(declared, list) or len(declared) != len(bounds) or len(bounds) < 1 or declared[0] is not None \
                or any(d is not None and (type(d) is not int or d != b) for d, b in zip(declared, bounds)):
            raise PteLoadError(f"{self.path}: {name} is planned as {list(bounds)} but its metadata says {declared!r}")
        if int(info.dtype()) != FLOAT:
            raise PteLoadError(f"{self.path}: {name} is not float32 (ExecuTorch dtype {info.dtype()})")
        return TensorMeta(name, tuple(declared), bounds)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)

    @property
    def max_batch(self) -> int:
        return self.inputs[0].bounds[0]

    def io_bytes(self) -> int:
        """The planned size of the inputs and outputs (the whole arena when fully delegated)."""
        return sum(4 * math.prod(t.bounds) for t in (*self.inputs, *self.outputs))

    def check_feeds(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The feeds as `forward` takes them, positionally, or PteInputError naming the rule.
        Every dim is checked against the contract and the bounds: ExecuTorch's own check
        compares element counts with the planned capacity only."""
        if set(feeds) != set(self.input_names):
            raise PteInputError(f"expected inputs {', '.join(self.input_names)}, got {', '.join(sorted(feeds)) or 'none'}")
        arrays = []
        batch = None
        for meta in self.inputs:
            array = feeds[meta.name]
            if not isinstance(array, np.ndarray) or array.dtype != np.float32:
                raise PteInputError(f"{meta.name}: expected a float32 numpy array, found "
                                    f"{getattr(array, 'dtype', type(array).__name__)}")
            shape = array.shape
            if len(shape) != len(meta.dims):
                raise PteInputError(f"{meta.name}: expected rank {len(meta.dims)} {_fmt(meta.dims)}, found shape "
                                    f"{list(shape)}")
            if not 1 <= shape[0] <= meta.bounds[0]:
                raise PteInputError(f"{meta.name}: batch {shape[0]} is outside this program's exported bound "
                                    f"1..{meta.bounds[0]} (call in chunks of at most {meta.bounds[0]})")
            if batch is not None and shape[0] != batch:
                raise PteInputError(f"{meta.name}: batch {shape[0]} differs from the first input's {batch}")
            batch = shape[0]
            for axis, (size, dim, bound) in enumerate(zip(shape[1:], meta.dims[1:], meta.bounds[1:]), start=1):
                if dim is not None and size != dim:
                    raise PteInputError(f"{meta.name}: expected shape {_fmt(meta.dims)}, found {list(shape)}")
                if dim is None and not 1 <= size <= bound:
                    hint = (f"; decode(z, tile={bound}) decodes larger latents in tiles"
                            if meta.name == "z" and len(meta.dims) == 4 else "")
                    raise PteInputError(f"{meta.name}: size {size} on axis {axis} is outside this program's exported "
                                        f"bound 1..{bound} (shape {list(shape)}, bounds {list(meta.bounds)}){hint}")
            if meta.name == "x" and self.stride > 1 and any(d is None for d in meta.dims[2:]):
                if shape[2] % self.stride or shape[3] % self.stride:
                    raise PteInputError(f"x: height and width must be multiples of the model's stride {self.stride}, "
                                        f"found {shape[2]}x{shape[3]}")
            if not np.isfinite(array).all():
                raise PteInputError(f"{meta.name}: contains NaN or Inf")
            arrays.append(np.ascontiguousarray(array))
        return arrays

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """forward on `feeds` (by the contract's names, within the bounds), outputs in the
        contract's order."""
        import torch

        arrays = self.check_feeds(feeds)
        try:
            outputs = self._method.execute(tuple(torch.from_numpy(a) for a in arrays))
        except RuntimeError as exc:
            raise VAEExportError(f"{self.path}: ExecuTorch failed to run it ({et_error(exc)})") from None
        return [o.numpy() if isinstance(o, torch.Tensor) else np.asarray(o) for o in outputs]

    def bound_call(self, feeds: Mapping[str, np.ndarray]) -> Callable[[], list[np.ndarray]]:
        """A zero-argument call of forward on `feeds`, checked once here: each call is
        ExecuTorch's execute on tensors sharing the feeds' memory, and the outputs as numpy
        arrays sharing the results' (what the toolkit's bench times)."""
        import torch

        tensors = tuple(torch.from_numpy(a) for a in self.check_feeds(feeds))
        execute = self._method.execute

        def call() -> list[np.ndarray]:
            return [o.numpy() for o in execute(tensors)]

        call.keepalive = tensors  # type: ignore[attr-defined]
        return call


def _fmt(dims: Sequence[int | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


class _Value:
    """A value as ONNX Runtime's NodeArg describes it (what `graphs.py` and the signature check read)."""

    def __init__(self, meta: TensorMeta) -> None:
        self.name, self.type, self.shape = meta.name, "tensor(float)", meta.shape()


class PteBackend:
    """A .pte behind the runtime's `Backend` interface. A batch larger than the program's
    bound runs as consecutive calls of at most the bound, concatenated (what an app on a
    phone does too); sizes beyond the bound are refused (`PteProgram.check_feeds`)."""

    engine = ENGINE

    def __init__(self, path: Path, threads: int | None = None, expected_sha256: str | None = None) -> None:
        self.path = Path(path)
        self.program = PteProgram(path, expected_sha256=expected_sha256, threads=threads)

    def get_inputs(self) -> Sequence[Any]:
        return [_Value(t) for t in self.program.inputs]

    def get_outputs(self) -> Sequence[Any]:
        return [_Value(t) for t in self.program.outputs]

    def metadata_map(self) -> Mapping[str, str]:
        return self.program.metadata

    @property
    def max_batch(self) -> int:
        return self.program.max_batch

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        rows = {len(v) for v in feeds.values() if isinstance(v, np.ndarray) and v.ndim}
        if len(rows) > 1:
            raise PteInputError(f"inputs: expected one batch size across {', '.join(feeds)}, found {sorted(rows)}")
        n, step = (rows.pop() if rows else 0), self.program.max_batch
        if n <= step:
            outputs = self.program.run(feeds)
        else:
            parts = [self.program.run({k: v[i:i + step] for k, v in feeds.items()}) for i in range(0, n, step)]
            outputs = [np.concatenate(chunks) for chunks in zip(*parts)]
        if output_names is None:
            return outputs
        index = {name: i for i, name in enumerate(self.program.output_names)}
        return [outputs[index[name]] for name in output_names]


def open_backend(path: Path, providers: Sequence[str] | None = None, threads: int | None = None) -> PteBackend:
    """The opener `backends.py` registers for engine "executorch": CPU only (XNNPACK)."""
    if providers is not None and any(p != "CPUExecutionProvider" for p in providers):
        raise RuntimeInputError(f"providers: ExecuTorch runs {Path(path).name} on the CPU (XNNPACK); found "
                                f"{', '.join(map(str, providers))}")
    if not installed():
        raise RuntimeInputError(f"{path}: an ExecuTorch program; opening it needs ExecuTorch: {INSTALL_HINT}")
    return PteBackend(Path(path), threads)
