"""Reading tensors from checkpoint files, safely: nothing is unpickled beyond tensors, and
every tensor is checked (layout, device, dtype, size, storage) before anything reads its
values. Shared by every model family."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from vae_export.errors import UsageError, VAEExportError, first_line
from vae_export_runtime.limits import MAX_ELEMENTS

# Bounds on what a checkpoint may hold, checked before any tensor is touched: 2^28 values per
# tensor (1 GiB of float32) and 2^30 in all; sizes from metadata are bounded by the same
# per-tensor figure (limits.MAX_ELEMENTS), so no number read from a file can ask for more.
MAX_TENSOR_ELEMENTS = MAX_ELEMENTS
MAX_TOTAL_ELEMENTS = 1 << 30
SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pt", ".pth", ".bin")


def read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read tensors (and safetensors metadata) without running any code from the file."""
    if path.is_dir():
        raise UsageError(f"--checkpoint {path}: a directory; expected a checkpoint file (a directory is for "
                         "--model diffusers:CLASS)")
    if not path.is_file():
        raise UsageError(f"--checkpoint {path}: file not found")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return validate_state_dict(*_read_safetensors(path), path=path)
    if suffix in TORCH_SUFFIXES:
        return validate_state_dict(_read_torch(path), {}, path=path)
    raise UsageError(
        f"--checkpoint {path}: unknown format {suffix or '(no suffix)'}; expected "
        f"{', '.join(SAFETENSORS_SUFFIXES + TORCH_SUFFIXES)}"
    )


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    # safetensors itself refuses oversized headers, files too small for their header and
    # bytes past the last tensor ("file not fully covered").
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise VAEExportError(f"--checkpoint {path}: not a valid safetensors file ({first_line(exc)})") from None
    return tensors, metadata


def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    try:
        # weights_only=True is passed explicitly: it is what refuses pickles that would run
        # code, even when TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 is set in the environment.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, zipfile.BadZipFile, OSError) as exc:
        raise VAEExportError(
            f"--checkpoint {path}: not a plain tensor state dict; refused to load it "
            f"({first_line(exc)})"
        ) from None
    if not isinstance(state, dict) or not state:
        raise VAEExportError(
            f"--checkpoint {path}: expected a state dict of tensors, found {type(state).__name__}"
            + (" (empty)" if isinstance(state, dict) else "")
        )
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise VAEExportError(
                f"--checkpoint {path}: expected a state dict of tensors, found key {key!r} "
                f"holding {type(value).__name__}"
            )
    return dict(state)


def validate_state_dict(
    state: dict[str, torch.Tensor], metadata: dict[str, str], path: Path
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Refuse tensors that are not plain dense real arrays backed by their own bytes, before
    anything reads their values: complex (the finiteness check and ONNX's float graphs are for
    real numbers), meta (no data), sparse or quantized layouts, views whose elements exceed
    their storage (a stride-0 `expand` of one float claiming 5e9 elements: reading it would
    allocate gigabytes), and sizes past the bounds."""
    total = 0
    for key, t in state.items():
        what = f"--checkpoint {path}: tensor {key!r}"
        if t.layout != torch.strided or t.is_quantized:
            raise VAEExportError(f"{what}: expected a dense tensor, found layout {t.layout}"
                                 + (" (quantized)" if t.is_quantized else ""))
        if t.is_meta or t.device.type != "cpu":
            raise VAEExportError(f"{what}: expected a tensor with data on the CPU, found device {t.device}")
        if t.is_complex():
            raise VAEExportError(f"{what}: expected a real dtype (float or integer), found {t.dtype}")
        numel = t.numel()
        if numel > MAX_TENSOR_ELEMENTS:
            raise VAEExportError(f"{what}: {numel} values, more than the limit of {MAX_TENSOR_ELEMENTS}")
        needed = (t.storage_offset() + numel) * t.element_size()
        if numel and (needed > t.untyped_storage().nbytes()
                      or any(step == 0 and size > 1 for step, size in zip(t.stride(), t.shape))):
            raise VAEExportError(f"{what}: an expanded or overlapping view ({numel} values over "
                                 f"{t.untyped_storage().nbytes()} bytes of storage); save plain tensors (.contiguous())")
        total += numel
        if total > MAX_TOTAL_ELEMENTS:
            raise VAEExportError(f"--checkpoint {path}: more than {MAX_TOTAL_ELEMENTS} values in all; refused")
    return state, metadata


def check_finite(state: dict[str, torch.Tensor], path: Path) -> None:
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise VAEExportError(f"--checkpoint {path}: tensor {key!r} holds NaN or Inf values")


def check_keys(
    found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path: Path
) -> None:
    """Refuse missing or unknown keys and size mismatches, naming the first few."""
    missing = sorted(set(expected) - set(found))
    unknown = sorted(set(found) - set(expected))
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing keys {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
        if unknown:
            parts.append(f"unknown keys {', '.join(unknown[:4])}{' ...' if len(unknown) > 4 else ''}")
        raise VAEExportError(f"--checkpoint {path}: {'; '.join(parts)}")
    for key, tensor in expected.items():
        if tuple(found[key].shape) != tuple(tensor.shape):
            raise VAEExportError(
                f"--checkpoint {path}: size mismatch for {key!r}: expected "
                f"{list(tensor.shape)}, found {list(found[key].shape)}"
            )
