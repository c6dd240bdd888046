"""The diffusers family: diffusers' autoencoders (`--model diffusers:AutoencoderKL`,
`diffusers:AutoencoderTiny`, ...), loaded safely from a local directory, behind the contract's
graph API.

Loading (`DiffusersFamily.load`), every check before any weight is read into a model:
- `--model diffusers:NAME` resolves only classes of the `diffusers` package whose name starts
  with `Autoencoder` and that have `encode` and `decode` (a manifest may record the name: it is
  never code to import beyond this allow-list).
- `--checkpoint DIR` is a `save_pretrained` directory (config.json + safetensors) or a pipeline
  directory with a `vae/` subfolder. Local files only: the hub is never asked.
- safetensors only: a directory with only `diffusion_pytorch_model.bin` (a pickle) is refused.
- config.json: keys diffusers would silently ignore are refused (a typo such as
  `latent_channel` would otherwise export a model of the default size); numbers and lists are
  bounded; `_class_name`, when present, must name the requested class.
- the parameter count, from the model built on the `meta` device (no memory), times 4 bytes
  must fit in the memory available now.
- the tensors go through the project's checks (`checkpoint.read_state_dict`: plain dense
  tensors, bounded sizes; finite values; exact keys and shapes).

Graphs (docs/contract.md): pixels in [0, 1] at both ends, the [-1, 1] maps
inside. Encoder: `x -> encode(2x - 1)`; AutoencoderKL gives `latent_dist.mean` and
`latent_dist.logvar` as diffusers computes them (logvar clamped to [-30, 20] by diffusers'
DiagonalGaussianDistribution); AutoencoderTiny is deterministic (no variance): `mu` is its
latent and `logvar` the constant `TINY_LOGVAR` = -30 (diffusers' own lower clamp: std 3e-7, so
z = mu + eps * std is mu to float32 precision). Decoder: `z -> clamp((decode(z).sample + 1) / 2,
0, 1)`, as diffusers' image processor post-processes. The pipeline's `scaling_factor` and
`shift_factor` are NOT applied: they are in the metadata for the pipeline to apply.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vae_export.artifacts import sha256_file
from vae_export.errors import UsageError, VAEExportError, first_line
from vae_export.families.base import Family, LoadedModel, LoadRequest, PteBounds
from vae_export.footprint import available_memory
from vae_export.graphs import split
from vae_export.limits import MAX_PIXELS
from vae_export.meta_trial import peak_bytes
from vae_export.tensors import check_finite, check_keys, read_state_dict

PREFIX = "diffusers:"
CLASS_PREFIX = "Autoencoder"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
PICKLE_NAME = "diffusion_pytorch_model.bin"
PIPELINE_SUBFOLDER = "vae"
NATIVE_RANGE = "[-1, 1]"
TINY_LOGVAR = -30.0  # diffusers' DiagonalGaussianDistribution clamps logvar to [-30, 20]
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_INT = 1 << 16  # channels, blocks, sizes: the SD VAE's largest is 512
MAX_CONFIG_LIST = 64
EXPORT_SIZE_LATENT = 8  # default export size: 8 latent cells a side (64x64 for a stride-8 VAE)
MIN_EXPORT_SIZE = 64
# fp32 parity on verify's edge inputs (all-zero and all-one images, z at +-4 sigma): GroupNorm
# of a near-constant feature map divides by a standard deviation near 0 (eps 1e-6), amplifying
# float32 rounding up to 1000x. Measured on random-weight AutoencoderKL configs: max abs 2e-5 at
# 64x64, 3.7e-4 at 128x128 (random inputs: 1e-6). Optimum's single check uses 3e-4 everywhere.
EDGE_FP32_ATOL = 1e-3
# The real trial runs take more than their tensors (allocator rounding, kernel scratch).
TRIAL_SLACK = 1.5
# .pte bounds (Family.pte_bounds). Attention blocks (AutoencoderKL's mid block) stay outside
# XNNPACK, and ExecuTorch plans their scores tensor at batch x (latent H x W)^2 float32: at the
# default 64 x 64 x 64 that is 64 GiB; at 8 and 32 it is 32 MiB (the tiny test config's whole
# plan: 97 MiB). diffusers' Upsample2D branches on `batch >= 64` (a CUDA workaround), which
# torch.export refuses for a batch bound of 64: 63 for models that have it.
ATTENTION_PTE_BOUNDS = PteBounds(max_batch=8, max_latent_side=32)
UPSAMPLE2D_MAX_BATCH = 63


def resolve_class(model_ref: str) -> type:
    """`diffusers:AutoencoderKL` -> the class; only diffusers' own autoencoders qualify."""
    name = model_ref[len(PREFIX):]
    try:
        import diffusers
    except ImportError:
        raise UsageError(f"--model {model_ref}: diffusers is not installed; pip install 'vae-export[diffusers]'") from None
    if not name.startswith(CLASS_PREFIX) or not name.isidentifier():
        raise UsageError(f"--model {model_ref!r}: expected diffusers:{CLASS_PREFIX}<Name>, e.g. diffusers:AutoencoderKL "
                         "or diffusers:AutoencoderTiny")
    cls = getattr(diffusers, name, None)
    if not isinstance(cls, type) or not issubclass(cls, diffusers.ModelMixin) \
            or not (callable(getattr(cls, "encode", None)) and callable(getattr(cls, "decode", None))):
        known = sorted(n for n in dir(diffusers) if n.startswith(CLASS_PREFIX))
        raise UsageError(f"--model {model_ref!r}: diffusers {diffusers.__version__} has no autoencoder {name!r} with "
                         f"encode/decode (found {', '.join(known[:6])} ...)")
    return cls


def model_directory(checkpoint: Path) -> Path:
    """The directory holding config.json: DIR itself, or a pipeline's DIR/vae."""
    if not checkpoint.is_dir():
        what = "not found" if not checkpoint.exists() else "a file"
        raise UsageError(f"--checkpoint {checkpoint}: {what}; a diffusers model is a directory (save_pretrained, "
                         f"with {CONFIG_NAME} and {WEIGHTS_NAME}) or a pipeline directory with {PIPELINE_SUBFOLDER}/")
    for directory in (checkpoint, checkpoint / PIPELINE_SUBFOLDER):
        if (directory / CONFIG_NAME).is_file():
            return directory
    raise UsageError(f"--checkpoint {checkpoint}: expected {CONFIG_NAME} in it or in {PIPELINE_SUBFOLDER}/, found neither")


def weights_file(directory: Path) -> Path:
    path = directory / WEIGHTS_NAME
    if path.is_file():
        return path
    if (directory / PICKLE_NAME).is_file():
        raise VAEExportError(f"--checkpoint {directory}: only {PICKLE_NAME} (a pickle, which can run code) found; "
                             f"refused: save the model with safe_serialization=True to get {WEIGHTS_NAME}")
    others = sorted(p.name for p in directory.glob("*.safetensors"))
    found = f"found {', '.join(others)}" if others else "found no .safetensors file"
    raise VAEExportError(f"--checkpoint {directory}: expected {WEIGHTS_NAME}, {found}")


def read_config(path: Path, cls: type) -> dict[str, Any]:
    """config.json, bounded and checked for the class it names."""
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ValueError(f"larger than {MAX_CONFIG_BYTES} bytes")
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise VAEExportError(f"{path}: not a valid config ({first_line(exc)})") from None
    if not isinstance(config, dict):
        raise VAEExportError(f"{path}: expected a JSON object, found {type(config).__name__}")
    named = config.get("_class_name")
    if named is not None and named != cls.__name__:
        raise VAEExportError(f"{path}: _class_name is {json.dumps(named)[:60]}, but --model asks for "
                             f"diffusers:{cls.__name__}")
    for key, value in config.items():
        _check_value(path, key, value)
    return config


def _check_value(path: Path, key: str, value: Any) -> None:
    """Bounds on every number and list: sizes that would take the model past any real VAE
    are refused before anything is built, even on the meta device."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or abs(value) > MAX_CONFIG_INT:
            raise VAEExportError(f"{path}: {key} = {value} is out of range (at most {MAX_CONFIG_INT} in magnitude)")
        return
    if isinstance(value, list):
        if len(value) > MAX_CONFIG_LIST:
            raise VAEExportError(f"{path}: {key} has {len(value)} entries, more than {MAX_CONFIG_LIST}")
        for item in value:
            _check_value(path, key, item)
        return
    raise VAEExportError(f"{path}: {key} holds {type(value).__name__}; expected numbers, strings or lists")


@contextlib.contextmanager
def _quiet_diffusers() -> Iterator[None]:
    """diffusers logs ignored config keys as a warning; we refuse them instead."""
    logger = logging.getLogger("diffusers")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def build_meta(cls: type, config: dict[str, Any], path: Path) -> nn.Module:
    """The model from its config on the meta device (no memory): refuses unknown keys and a
    parameter count past the memory available. diffusers' `_use_default_values` (keys its
    loader should ignore and default instead; save_pretrained never writes it) is dropped
    first: it would hide a key from the unknown-key check and make the export record the
    class default (scaling_factor 1.0) where the config says 0.5."""
    config = {k: v for k, v in config.items() if k != "_use_default_values"}
    with _quiet_diffusers():
        init, _unused, _hidden = cls.extract_init_dict(dict(config))
        try:
            with torch.device("meta"):
                meta = cls(**init)
        except Exception as exc:  # diffusers' own checks (block counts that disagree, ...)
            raise VAEExportError(f"{path}: diffusers cannot build {cls.__name__} from it ({first_line(exc)})") from None
    # Keys the class writes itself (AutoencoderTiny registers block_out_channels) are known too.
    known = set(init) | set(meta.config)
    unknown = sorted(k for k in config if not k.startswith("_") and k not in known)
    if unknown:
        raise VAEExportError(f"{path}: unknown config keys {', '.join(unknown[:4])} (diffusers would ignore them "
                             f"silently); expected keys of {cls.__name__}: {', '.join(sorted(init)[:8])} ...")
    params = sum(p.numel() for p in meta.parameters())
    need, have = params * 4, available_memory()
    if need > have:
        raise VAEExportError(f"{path}: the config asks for {params:,} parameters ({need / 2**30:.1f} GiB in float32), "
                             f"more than the {have / 2**30:.1f} GiB of memory available; refused")
    return meta


def check_trial_memory(meta: nn.Module, image_shape: tuple[int, int, int], path: Path) -> None:
    """Refuse a config whose trial runs (`graphs.split`: encode and decode a batch of 2 at the
    export size and at twice it) would not fit in the memory available now, sized on the
    meta model before anything is allocated. Export then runs the graphs in ONNX Runtime
    beside the model: the weights count three times."""
    c, h, w = image_shape
    if h * w > MAX_PIXELS:
        raise VAEExportError(f"{path}: the config implies an export size of {h}x{w} (8 latent cells a side at its "
                             f"stride), more than {MAX_PIXELS} pixels; refused")
    module = DiffusersVAE(meta.eval())
    worst = 0
    for side in (1, 2):  # the export size, then the second size of --dynamic-size
        x = torch.zeros(2, c, side * h, side * w, device="meta")
        try:
            worst = max(worst, peak_bytes(lambda: module.encode(x)))
            with torch.inference_mode():
                mu, _ = module.encode(x)
            worst = max(worst, peak_bytes(lambda: module.decode(torch.zeros_like(mu))))
        except Exception:  # noqa: BLE001 - a model that cannot run: its trial run says why, in its words
            return
    weights = 4 * sum(p.numel() for p in meta.parameters())
    need, have = int(TRIAL_SLACK * worst) + 3 * weights, available_memory()
    if need > have:
        raise VAEExportError(f"{path}: the config's trial runs (a batch of 2 at {h}x{w} and {2 * h}x{2 * w}) would take "
                             f"about {need / 2**30:.1f} GiB, more than the {have / 2**30:.1f} GiB of memory available; "
                             "refused")


def build_model(cls: type, config: dict[str, Any], path: Path) -> nn.Module:
    """The model from its config, for real, once the meta build has passed (`build_meta`)."""
    config = {k: v for k, v in config.items() if k != "_use_default_values"}
    with _quiet_diffusers():
        init, _unused, _hidden = cls.extract_init_dict(dict(config))
        return cls(**init)


def checkpoint_digest(config_path: Path, weights: Path) -> str:
    """One sha256 for the directory's two files (config and weights): a changed config (a
    different scaling_factor, say) changes it too."""
    lines = f"{CONFIG_NAME} {sha256_file(config_path)}\n{WEIGHTS_NAME} {sha256_file(weights)}\n"
    return hashlib.sha256(lines.encode()).hexdigest()


def load_weights(model: nn.Module, weights: Path) -> None:
    """The tensors through the project's checks, diffusers' renames of old attention keys
    (query/key/value -> to_q/to_k/to_v, as its own loader does), then a strict load."""
    state, _ = read_state_dict(weights)
    check_finite(state, weights)
    state = dict(state)
    fix = getattr(model, "_fix_state_dict_keys_on_load", None)
    if callable(fix):
        fix(state)
    check_keys(state, model.state_dict(), weights)
    model.load_state_dict(state, strict=True)


class DiffusersVAE(nn.Module):
    """A diffusers autoencoder behind the contract's API: encode(x in [0, 1]) -> (mu, logvar),
    decode(z) -> x_hat in [0, 1]. Export, verify and bench all run this same module."""

    def __init__(self, vae: nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.vae.encode(2.0 * x - 1.0)
        dist = getattr(out, "latent_dist", None)
        if dist is not None:
            return dist.mean, dist.logvar
        mu = out.latents if hasattr(out, "latents") else out[0]
        return mu, torch.full_like(mu, TINY_LOGVAR)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return ((self.vae.decode(z).sample + 1.0) / 2.0).clamp(0.0, 1.0)


def _stride(cls: type, config: dict[str, Any]) -> int:
    """Image size over latent size, from the config (the trial encodes confirm it)."""
    blocks = config.get("block_out_channels") or config.get("decoder_block_out_channels") or (0,)
    return 2 ** max(len(blocks) - 1, 0)


def metadata(cls: type, config: dict[str, Any]) -> dict[str, str]:
    """The graphs' extra metadata (docs/contract.md): native range and the pipeline's latent
    scaling, recorded, not applied."""
    shift = config.get("shift_factor")
    return {
        "native_range": NATIVE_RANGE,
        "scaling_factor": json.dumps(config.get("scaling_factor", getattr(cls, "scaling_factor", None))),
        "shift_factor": json.dumps(shift),
    }


class DiffusersFamily(Family):
    """diffusers' autoencoders. Their graphs always have a symbolic height and width (the
    autoencoders are fully convolutional): the export size defaults to 8 latent cells a side,
    at least 64x64. Verify and bench rebuild them from the recorded source (an allow-listed
    diffusers class, never arbitrary code) and directory."""

    name = "diffusers"
    # Trained on pixel reconstruction in [-1, 1] (an L1/L2 loss, not a Bernoulli one).
    likelihood = "gaussian"

    def claims(self, request: LoadRequest) -> bool:
        return request.model_ref is not None and request.model_ref.startswith(PREFIX)

    def owns(self, source: str) -> bool:
        return source.startswith(PREFIX)

    def model_ref_for(self, source: str) -> str | None:
        return source  # diffusers:<Class>: resolve_class allows only diffusers' own autoencoders

    def edge_atol(self, atol: float) -> float:
        # GroupNorm of a near-constant feature map divides by a standard deviation near 0
        return max(atol, EDGE_FP32_ATOL)

    def pte_bounds(self, loaded: LoadedModel) -> PteBounds:
        """Smaller than the default where the model's blocks need it (see ATTENTION_PTE_BOUNDS):
        asked of the modules themselves, so any diffusers autoencoder with attention or
        Upsample2D blocks gets them."""
        from diffusers.models.attention_processor import Attention
        from diffusers.models.upsampling import Upsample2D

        modules = [m for role in ("encoder", "decoder") for m in loaded.module(role).modules()]
        if any(isinstance(m, Attention) for m in modules):
            return ATTENTION_PTE_BOUNDS
        if any(isinstance(m, Upsample2D) for m in modules):
            return PteBounds(max_batch=UPSAMPLE2D_MAX_BATCH)
        return PteBounds()

    def load(self, request: LoadRequest) -> LoadedModel:
        assert request.model_ref is not None
        cls = resolve_class(request.model_ref)
        directory = model_directory(request.checkpoint)
        weights = weights_file(directory)
        config_path = directory / CONFIG_NAME
        config = read_config(config_path, cls)
        meta = build_meta(cls, config, config_path)
        image_shape = request.image_shape
        if image_shape is None:
            side = max(MIN_EXPORT_SIZE, EXPORT_SIZE_LATENT * _stride(cls, config))
            image_shape = (int(meta.config.get("in_channels", 3)), side, side)
        check_trial_memory(meta, image_shape, config_path)
        vae = build_model(cls, config, config_path)
        load_weights(vae, weights)
        module = DiffusersVAE(vae.eval()).eval()
        public = {k: v for k, v in vae.config.items() if not k.startswith("_")}
        return split(module, image_shape, family=self, checkpoint=directory,
                     checkpoint_sha256=checkpoint_digest(config_path, weights), source=f"{PREFIX}{cls.__name__}",
                     config={"diffusers": public, "class": cls.__name__, "image_shape": list(image_shape)},
                     dynamic_size=True, extra_metadata=metadata(cls, public))
