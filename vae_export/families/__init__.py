"""The model-family registry: which family loads a model reference, and which family a
manifest's recorded source came from.

Built in: `reference` (our safetensors checkpoints), `diffusers` (diffusers' autoencoders),
and the two fallbacks, `state-dict` (plain state dicts) and `user` (`--model module:attr`).
Code outside the package adds a family with `register(MyFamily())`, or with an entry point in
the group `vae_export.families` naming a `Family` subclass or instance:

    [project.entry-points."vae_export.families"]
    mine = "my_package.vae:MyFamily"

Families are asked in order (registered ones first, then the built-ins, the fallbacks last);
the first whose `claims` (or `owns`) says yes loads it.
"""

from __future__ import annotations

from pathlib import Path

from vae_export.errors import UsageError, VAEExportError
from vae_export.families.base import Family, LoadedModel, LoadRequest
from vae_export.registry import Registry

ENTRY_POINT_GROUP = "vae_export.families"


def _builtins() -> list[Family]:
    # Imported here, not at the top: they import torch, and the registry itself stays light.
    from vae_export.families.diffusers import DiffusersFamily
    from vae_export.families.reference import ReferenceFamily
    from vae_export.families.state_dict import StateDictFamily
    from vae_export.families.user import UserFamily

    return [ReferenceFamily(), DiffusersFamily(), StateDictFamily(), UserFamily()]


_REGISTRY = Registry(Family, ENTRY_POINT_GROUP, _builtins)
register, unregister = _REGISTRY.register, _REGISTRY.unregister


def families() -> list[Family]:
    """Every family in the order they are asked: registered, built-in, then the fallbacks."""
    ordered = _REGISTRY.entries()
    return [f for f in ordered if not f.fallback] + [f for f in ordered if f.fallback]


def get(name: str) -> Family:
    for family in families():
        if family.name == name:
            return family
    raise UsageError(f"family {name!r}: not registered (known: {', '.join(f.name for f in families())})")


def resolve(request: LoadRequest) -> Family:
    """The family that loads `request`."""
    for family in families():
        if family.claims(request):
            return family
    raise UsageError(f"--model {request.model_ref!r}: no model family loads it")


def for_source(source: str) -> Family:
    """The family a manifest's recorded `model.source` came from."""
    for family in families():
        if family.owns(source):
            return family
    raise VAEExportError(f"model source {source!r}: no model family owns it")


def load_model(checkpoint: Path, model_ref: str | None = None, image_shape: tuple[int, int, int] | None = None,
               dynamic_size: bool = False) -> LoadedModel:
    """Load any supported source and split it into its graphs (`graphs.split`): the family
    that claims it does the loading and its checks; the latent shape comes from a trial encode,
    and with `dynamic_size` a second size must run (exit 2 otherwise)."""
    request = LoadRequest(checkpoint, model_ref, image_shape, dynamic_size)
    return resolve(request).load(request)


__all__ = ["ENTRY_POINT_GROUP", "Family", "LoadRequest", "LoadedModel", "families", "for_source", "get", "load_model",
           "register", "resolve", "unregister"]
