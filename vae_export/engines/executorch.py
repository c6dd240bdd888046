"""ExecuTorch (`pip install 'vae-export[executorch]'`): the .pte programs of the `executorch`
and `executorch-int8` variants, run by ExecuTorch's runtime with the XNNPACK delegate, opened
through the runtime's checked loader (`vae_export_runtime.pte`, the one the Python runtime
opens .pte files with).

- Integrity: the manifest's sha256 is passed to the loader (`Target.sha256`), so the bytes are
  compared before ExecuTorch parses them (commands check the manifest first anyway).
- Bounds: a batch larger than the program's exported bound runs as consecutive calls of at
  most the bound, concatenated, in `run` and in the timed call alike: what an app does, and
  what the time of such a row means. Sizes beyond the bound are refused
  (`PteInputError`); verify and bench skip the sizes an artifact's recorded `bounds` exclude.
- Threads: ExecuTorch's thread pool is process-wide (`set_threads`: XNNPACK's workers); bench
  sets it to `--threads`, as it gives ONNX Runtime and PyTorch.
- The timed call is ExecuTorch's `forward` on the bound inputs (torch tensors sharing the numpy
  feeds' memory), outputs returned as numpy arrays sharing the result's memory: what an app
  calls, with the runtime's per-call input checks (~10 us, FINDINGS) done once outside it, as
  ONNX Runtime's bound call does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vae_export.engines.base import GRAPH, Engine, Feeds, Runner, Target
from vae_export_runtime.contract import PTE_SUFFIX
from vae_export_runtime.session import check_names, check_signature

NAME = "executorch"
INSTALL_HINT = "pip install 'vae-export[executorch]'"


class ExecuTorchRunner(Runner):
    engine = NAME
    provider = "XNNPACK"

    def __init__(self, target: Target, threads: int | None) -> None:
        from vae_export_runtime.pte import PteBackend

        assert target.path is not None
        self.spec, self.path = target.spec, target.path
        self.backend = PteBackend(target.path, threads, expected_sha256=target.sha256)
        check_names(self.backend, self.spec, self.path)
        if target.shapes is not None:
            check_signature(self.backend, self.spec, self.path, target.shapes)

    def run(self, feeds: Feeds) -> list[np.ndarray]:
        return self.backend.run(self.spec.output_names, feeds)

    def timed_call(self, feeds: Feeds) -> Callable[[], Any]:
        program = self.backend.program
        rows = len(feeds[self.spec.input_name])
        if rows > program.max_batch:  # chunked, as `run` does
            def chunked() -> Any:
                return self.backend.run(self.spec.output_names, feeds)
            return chunked
        program.run(feeds)  # once outside the timed calls: a failure is reported here
        return program.bound_call(feeds)


class ExecuTorchEngine(Engine):
    name = NAME
    kind = GRAPH
    package = "executorch"
    install_hint = INSTALL_HINT
    # Timed by bench when installed, without being asked (it runs only .pte files, which an
    # export writes only when asked for them).
    peer = True

    def accepts(self, variant: str, path: Path) -> bool:
        return path.suffix == PTE_SUFFIX

    def open(self, target: Target, device: str = "cpu", threads: int | None = None) -> Runner:
        if threads is not None:
            from vae_export_runtime.pte import set_threads

            set_threads(threads)
        return ExecuTorchRunner(target, None)
