"""The memory a PyTorch call would take, found by running it on the meta device first.

A model built on the `meta` device has shapes and no data: running it propagates every
intermediate tensor's shape and allocates nothing. `peak_bytes` runs a call that way under a
dispatch mode that counts each new tensor's bytes from the op that makes it until the last
Python reference to it goes (as the real run frees it), and returns the most alive at once.
It is how a model from an untrusted config is sized before its trial runs: a 40 KB
AutoencoderTiny config whose decoder upsamples 256x per block asked for 8 GiB in its first
trial decode, which this finds in milliseconds.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class _LiveBytes(TorchDispatchMode):
    """Counts the bytes of tensors that ops create (not views, not in-place results)."""

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0

    def _free(self, nbytes: int) -> None:
        self.current -= nbytes

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        inputs = {id(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor) and id(tensor) not in inputs and not tensor._is_view():
                nbytes = tensor.numel() * tensor.element_size()
                self.current += nbytes
                self.peak = max(self.peak, self.current)
                weakref.finalize(tensor, self._free, nbytes)
        return out


def peak_bytes(call: Callable[[], Any]) -> int:
    """The most bytes of tensors alive at once while `call` runs (on meta tensors: nothing is
    allocated), the tensors it returns included. Parameters and the inputs made before the
    call are not counted."""
    mode = _LiveBytes()
    with torch.inference_mode(), mode:
        result = call()
    peak = mode.peak
    del result
    return peak
