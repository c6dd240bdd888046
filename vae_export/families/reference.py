"""The reference family: the VAEs this project trains (`model.py`), saved as safetensors
checkpoints whose metadata holds the `VAEConfig` that rebuilds them."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import torch

from vae_export import __version__
from vae_export.artifacts import atomic_write_bytes, sha256_file
from vae_export.errors import VAEExportError, first_line
from vae_export.families.base import Family, LoadedModel, LoadRequest
from vae_export.graphs import split
from vae_export.model import VAE, VAEConfig
from vae_export.tensors import SAFETENSORS_SUFFIXES, check_finite, check_keys, read_state_dict
from vae_export_runtime.limits import MAX_ELEMENTS

CONFIG_KEY = "vae_export.config"
SOURCE = "vae-export"
MAX_HEADER_BYTES = 1 << 24  # a safetensors header is KiB; a config-only peek reads no more


class ReferenceFamily(Family):
    """Our own checkpoints: the config in the file rebuilds the architecture (MLP or conv,
    conditional or semi-supervised), checked against the tensors before anything is built."""

    name = "reference"

    def claims(self, request: LoadRequest) -> bool:
        return request.model_ref is None and CONFIG_KEY in _safetensors_metadata(request.checkpoint)

    def owns(self, source: str) -> bool:
        return source == SOURCE

    def load(self, request: LoadRequest) -> LoadedModel:
        path = request.checkpoint
        state, metadata = read_state_dict(path)
        check_finite(state, path)
        try:
            config = VAEConfig.from_dict(json.loads(metadata[CONFIG_KEY]))
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise VAEExportError(f"--checkpoint {path}: bad {CONFIG_KEY} metadata ({first_line(exc)})") from None
        check_config(config, state, path)
        model = VAE(config)
        check_keys(state, model.state_dict(), path)
        model.load_state_dict(state, strict=True)
        return split(model.eval(), config.image_shape, family=self, checkpoint=path, checkpoint_sha256=sha256_file(path),
                     source=SOURCE, config=asdict(config), dynamic_size=request.dynamic_size)


def _safetensors_metadata(path: Path) -> dict[str, str]:
    """The `__metadata__` of a safetensors file's header, read without loading a tensor; {} when
    the file is not a readable safetensors file (the family that claims it reports why)."""
    if path.suffix.lower() not in SAFETENSORS_SUFFIXES or not path.is_file():
        return {}
    try:
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if not 0 < size <= MAX_HEADER_BYTES:
                return {}
            header = json.loads(fh.read(size))
    except (OSError, ValueError, RecursionError):
        return {}
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return metadata if isinstance(metadata, dict) else {}


def save_checkpoint(model: VAE, path: Path) -> None:
    """Write our safetensors checkpoint atomically, with the config in its metadata."""
    from safetensors.torch import save

    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {CONFIG_KEY: model.config.to_json(), "vae_export.version": __version__, "format": "pt"}
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def check_config(config: VAEConfig, state: dict[str, torch.Tensor], path: Path) -> None:
    """A config read from a checkpoint's metadata must describe the tensors actually in the
    file, checked before the model is built: a 1 KB file whose config asks for a 3,000,000-wide
    layer would otherwise allocate gigabytes first. The expected shapes come from the model
    built on the meta device (no memory)."""
    sizes = {"image_shape": math.prod(config.image_shape), "hidden_dim": config.hidden_dim,
             "latent_dim": config.latent_dim}
    for name, size in sizes.items():
        if size > MAX_ELEMENTS:
            raise VAEExportError(f"--checkpoint {path}: {CONFIG_KEY} {name} asks for {size} values, more than "
                                 f"the limit of {MAX_ELEMENTS}")
    with torch.device("meta"):
        expected = VAE(config).state_dict()
    check_keys(state, expected, path)


def metadata_image_shape(metadata: dict[str, str], path: Path) -> tuple[int, int, int] | None:
    """The image shape a checkpoint's config records (for user classes), validated and bounded."""
    if CONFIG_KEY not in metadata:
        return None
    try:
        shape = tuple(json.loads(metadata[CONFIG_KEY])["image_shape"])
        if len(shape) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape):
            raise ValueError(f"expected three positive integers, found {list(shape)}")
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise VAEExportError(f"--checkpoint {path}: bad {CONFIG_KEY} metadata ({first_line(exc)})") from None
    if math.prod(shape) > MAX_ELEMENTS:
        raise VAEExportError(f"--checkpoint {path}: {CONFIG_KEY} image_shape has {math.prod(shape)} values, "
                             f"more than the limit of {MAX_ELEMENTS}")
    return shape  # type: ignore[return-value]
