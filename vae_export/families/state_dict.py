"""The state-dict family: the seed's plain PyTorch state dicts (`torch.save(model.state_dict(),
path)`, loaded with `weights_only=True` passed explicitly), and our architecture's tensors
saved without a config; sizes are inferred from the tensor shapes."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import torch

from vae_export.artifacts import sha256_file
from vae_export.errors import VAEExportError
from vae_export.families.base import Family, LoadedModel, LoadRequest
from vae_export.graphs import split
from vae_export.model import VAE, VAEConfig
from vae_export.tensors import check_finite, check_keys, read_state_dict

SOURCE = "state-dict"
DEFAULT_IMAGE_SHAPE = (1, 28, 28)

# The seed's SimpleVAE keeps fc_mu/fc_logvar beside its encoder Sequential; ours nests them
# inside Encoder so the encoder graph is one module, and names the decoder's layers.
SEED_TO_OURS = {
    "encoder.1.weight": "encoder.hidden.1.weight",
    "encoder.1.bias": "encoder.hidden.1.bias",
    "fc_mu.weight": "encoder.fc_mu.weight",
    "fc_mu.bias": "encoder.fc_mu.bias",
    "fc_logvar.weight": "encoder.fc_logvar.weight",
    "fc_logvar.bias": "encoder.fc_logvar.bias",
    "decoder.0.weight": "decoder.hidden.0.weight",
    "decoder.0.bias": "decoder.hidden.0.bias",
    "decoder.2.weight": "decoder.out.weight",
    "decoder.2.bias": "decoder.out.bias",
}



class StateDictFamily(Family):
    """Any checkpoint without a model reference that no other family claims (a fallback)."""

    name = "state-dict"
    fallback = True

    def claims(self, request: LoadRequest) -> bool:
        return request.model_ref is None

    def owns(self, source: str) -> bool:
        return source == SOURCE

    def load(self, request: LoadRequest) -> LoadedModel:
        path = request.checkpoint
        state, _ = read_state_dict(path)
        check_finite(state, path)
        state = _to_our_keys(state)
        config = infer_config(state, request.image_shape or DEFAULT_IMAGE_SHAPE, path)
        model = VAE(config)
        check_keys(state, model.state_dict(), path)
        model.load_state_dict(state, strict=True)
        return split(model.eval(), config.image_shape, family=self, checkpoint=path, checkpoint_sha256=sha256_file(path),
                     source=SOURCE, config=asdict(config), dynamic_size=request.dynamic_size)


def infer_config(state: dict[str, torch.Tensor], image_shape: tuple[int, int, int], path: Path) -> VAEConfig:
    """Hidden and latent sizes from the tensor shapes; image shape from the caller."""
    try:
        hidden, input_dim = state["encoder.hidden.1.weight"].shape
        latent = state["encoder.fc_mu.weight"].shape[0]
    except (KeyError, ValueError):
        raise VAEExportError(
            f"--checkpoint {path}: not a reference VAE state dict (expected keys "
            f"{', '.join(sorted(SEED_TO_OURS)[:3])} ...); use --model for your own class"
        ) from None
    if input_dim != math.prod(image_shape):
        raise VAEExportError(
            f"--checkpoint {path}: encoder takes {input_dim} inputs but --image-shape "
            f"{','.join(map(str, image_shape))} has {math.prod(image_shape)}"
        )
    return VAEConfig(image_shape=image_shape, hidden_dim=int(hidden), latent_dim=int(latent))


def _to_our_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if "fc_mu.weight" in state and "encoder.1.weight" in state:
        return {SEED_TO_OURS.get(k, k): v for k, v in state.items()}
    return state
