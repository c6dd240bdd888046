"""PyTorch eager: the model itself, as an app would call it (the model's own encode/decode,
not our export wrapper), under `torch.inference_mode()`; on CUDA each timed call ends with
`torch.cuda.synchronize()`. The reference every other engine is verified against.

`torch:bf16` runs the same calls under `torch.autocast(device, dtype=torch.bfloat16)`
(PyTorch's own reduced precision: convolutions and matrix products in bfloat16, the rest in
float32), outputs returned as float32, so that reduced-precision engines are compared with
PyTorch's reduced precision in the same table. It is verified on PSNR like any reduced
precision (`verify --engine torch:bf16`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import contextlib

from vae_export.engines.base import BF16, MODEL, Engine, Feeds, Runner, Target
from vae_export_runtime.contract import FP32

NAME = "torch"


class TorchRunner(Runner):
    engine = NAME

    def __init__(self, target: Target, device: str) -> None:
        import torch

        if device == "cuda" and not torch.cuda.is_available():
            from vae_export.errors import UsageError

            raise UsageError("--device cuda: this PyTorch build has no CUDA; install a CUDA build or pass --no-torch")
        self.spec, self.device, self.provider = target.spec, device, device
        self.precision = target.precision
        self.module = target.module.to(device)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        import torch

        if self.precision == BF16:
            return torch.autocast(self.device, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def run(self, feeds: Feeds) -> list[np.ndarray]:
        import torch

        with torch.inference_mode(), self._autocast():
            out = self.module(*(torch.from_numpy(np.asarray(feeds[n])).to(self.device) for n in self.spec.input_names))
        return [t.float().cpu().numpy() for t in (out if isinstance(out, tuple) else (out,))]

    def timed_call(self, feeds: Feeds) -> Callable[[], Any]:
        import torch

        eager = getattr(self.module, "eager", None)
        run = eager() if callable(eager) else self.module
        tensors = [torch.from_numpy(np.asarray(feeds[n])).to(self.device) for n in self.spec.input_names]
        autocast = self._autocast
        if self.device == "cuda":
            def call() -> Any:
                with torch.inference_mode(), autocast():
                    out = run(*tensors)
                torch.cuda.synchronize()
                return out
            return call

        def call_cpu() -> Any:
            with torch.inference_mode(), autocast():
                return run(*tensors)
        return call_cpu

    def close(self) -> None:
        self.module.to("cpu")


class TorchEngine(Engine):
    name = NAME
    kind = MODEL
    package = "torch"
    devices = ("cpu", "cuda")
    precisions = (FP32, BF16)

    def open(self, target: Target, device: str = "cpu", threads: int | None = None) -> Runner:
        return TorchRunner(target, device)
