"""The user family: a user's own VAE class (`--model package.module:ClassOrFactory`) with its
weights. Its graphs are verified and timed with the user's own `--model` again: a manifest
never names code to run."""

from __future__ import annotations

from vae_export.artifacts import sha256_file
from vae_export.families.base import Family, LoadedModel, LoadRequest
from vae_export.families.reference import metadata_image_shape
from vae_export.families.state_dict import DEFAULT_IMAGE_SHAPE
from vae_export.graphs import split
from vae_export.tensors import check_finite, check_keys, read_state_dict
from vae_export.usercode import import_model_ref


class UserFamily(Family):
    """Any model reference no other family claims (a fallback), and any recorded source no
    other family owns."""

    name = "user"
    fallback = True
    rebuilds_from_manifest = False

    def claims(self, request: LoadRequest) -> bool:
        return request.model_ref is not None

    def owns(self, source: str) -> bool:
        return True

    def load(self, request: LoadRequest) -> LoadedModel:
        assert request.model_ref is not None
        path = request.checkpoint
        state, metadata = read_state_dict(path)
        check_finite(state, path)
        module = import_model_ref(request.model_ref)
        check_keys(state, module.state_dict(), path)
        module.load_state_dict(state, strict=True)
        module.eval()
        shape = request.image_shape or metadata_image_shape(metadata, path) or DEFAULT_IMAGE_SHAPE
        return split(module, shape, family=self, checkpoint=path, checkpoint_sha256=sha256_file(path),
                     source=request.model_ref, config={"image_shape": list(shape), "model": request.model_ref},
                     dynamic_size=request.dynamic_size)
