"""Loading and saving models, safely.

Three sources, one result (`LoadedModel`):
- our safetensors checkpoints, whose metadata holds the `VAEConfig` that rebuilds them;
- the seed's plain PyTorch state dicts (`torch.save(model.state_dict(), path)`), loaded with
  `weights_only=True` passed explicitly, sizes inferred from the tensor shapes;
- a user's own class (`--model package.module:ClassOrFactory`) plus its weights.

Nothing is unpickled beyond tensors, and every tensor is checked (keys, shapes, finiteness)
before any artifact is written.
"""

from __future__ import annotations

import importlib
import json
import math
import pickle
import sys
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vae_export import __version__
from vae_export.artifacts import atomic_write_bytes, sha256_file
from vae_export.contract import Geometry
from vae_export.errors import UsageError, VAEExportError, first_line
from vae_export.manifest import MAX_ELEMENTS
from vae_export.model import VAE, VAEConfig

CONFIG_KEY = "vae_export.config"
# Bounds on what a checkpoint may hold, checked before any tensor is touched: 2^28 values per
# tensor (1 GiB of float32) and 2^30 in all; sizes from metadata are bounded by the same
# per-tensor figure (manifest.MAX_ELEMENTS), so no number read from a file can ask for more.
MAX_TENSOR_ELEMENTS = MAX_ELEMENTS
MAX_TOTAL_ELEMENTS = 1 << 30
SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pt", ".pth", ".bin")

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


class _EncodeGraph(nn.Module):
    """x (, y) -> (mu, logvar) through a user module's `encode`, or the seed's attributes."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def eager(self) -> Callable[..., Any]:
        """What an app would call in PyTorch (the model's own encode), for fair timings."""
        return self.module.encode if hasattr(self.module, "encode") else self

    def forward(self, x: torch.Tensor, *y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if hasattr(self.module, "encode"):
            out = self.module.encode(x, *y)
        else:
            h = self.module.encoder(x)
            out = (self.module.fc_mu(h), self.module.fc_logvar(h))
        mu, logvar = out  # exactly two outputs is the contract; checked once at load time
        return mu, logvar


def _decode_fn(module: nn.Module) -> Callable[..., torch.Tensor]:
    """The user's decode(z), or the seed's `decoder` attribute."""
    return module.decode if hasattr(module, "decode") else module.decoder


class _DecodeGraph(nn.Module):
    """z -> x_hat [B, C, H, W]; the reshape makes flat user decoders meet the contract."""

    def __init__(self, module: nn.Module, image_shape: tuple[int, int, int], reshape: bool = True) -> None:
        super().__init__()
        self.module = module
        self.image_shape = image_shape
        # False when decode already returns [B, C, H, W] (known from a trial decode): a no-op
        # Reshape at the end of the graph would still copy x_hat on every ONNX Runtime call.
        self.reshape = reshape

    def eager(self) -> Callable[..., Any]:
        """What an app would call in PyTorch (the model's own decode), for fair timings."""
        return self.module.decode if hasattr(self.module, "decode") and not self.reshape else self

    def forward(self, z: torch.Tensor, *y: torch.Tensor) -> torch.Tensor:
        x_hat = _decode_fn(self.module)(z, *y)
        return x_hat.reshape(-1, *self.image_shape) if self.reshape else x_hat


class _ClassifyGraph(nn.Module):
    """x -> logits [B, K] through the module's `classify` (semi-supervised models)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def eager(self) -> Callable[..., Any]:
        return self.module.classify

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.classify(x)


def trial_labels(num_classes: int, n: int = 2) -> tuple[torch.Tensor, ...]:
    """The y a conditional model's trial runs take (one-hot rows of different classes); () for
    an unconditional model."""
    if not num_classes:
        return ()
    return (torch.nn.functional.one_hot(torch.arange(n) % num_classes, num_classes).to(torch.float32),)


@dataclass
class LoadedModel:
    """A model split into its graphs, with what the manifest needs to know about it."""

    encoder: nn.Module  # x (, y) -> (mu, logvar)
    decoder: nn.Module  # z (, y) -> x_hat [B, C, H, W]
    geometry: Geometry
    checkpoint: Path
    checkpoint_sha256: str
    source: str  # "vae-export", "state-dict" or "module:attr"
    config: dict[str, Any]
    classifier: nn.Module | None = None  # x -> logits [B, K], semi-supervised models
    class_names: tuple[str, ...] = ()
    # More `vae_export.` metadata for the graphs (diffusers: native_range, scaling_factor, shift_factor).
    extra_metadata: dict[str, str] = field(default_factory=dict)

    def module(self, role: str) -> nn.Module:
        """The PyTorch module of a graph role."""
        module = {"encoder": self.encoder, "decoder": self.decoder, "classifier": self.classifier}[role]
        if module is None:
            raise VAEExportError(f"{self.checkpoint}: the model has no {role}")
        return module

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.geometry.image_shape

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return self.geometry.latent_shape

    @property
    def latent_dim(self) -> int:
        """The latent size of a flat latent (v1 models)."""
        if not self.geometry.flat:
            raise ValueError(f"latent_dim: the latent {list(self.latent_shape)} is not flat")
        return self.latent_shape[0]


def save_checkpoint(model: VAE, path: Path) -> None:
    """Write our safetensors checkpoint atomically, with the config in its metadata."""
    from safetensors.torch import save

    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {CONFIG_KEY: model.config.to_json(), "vae_export.version": __version__, "format": "pt"}
    atomic_write_bytes(path, save(tensors, metadata=metadata))


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


def load_reference(
    path: Path, image_shape: tuple[int, int, int] | None = None
) -> tuple[VAE, str]:
    """Our safetensors or a seed state dict -> (VAE in eval mode, source kind)."""
    state, metadata = read_state_dict(path)
    check_finite(state, path)
    if CONFIG_KEY in metadata:
        try:
            config = VAEConfig.from_dict(json.loads(metadata[CONFIG_KEY]))
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise VAEExportError(f"--checkpoint {path}: bad {CONFIG_KEY} metadata ({first_line(exc)})") from None
        check_config(config, state, path)
        source = "vae-export"
    else:
        state = _to_our_keys(state)
        config = infer_config(state, image_shape or (1, 28, 28), path)
        source = "state-dict"
    model = VAE(config)
    check_keys(state, model.state_dict(), path)
    model.load_state_dict(state, strict=True)
    return model.eval(), source


def import_model_ref(ref: str) -> nn.Module:
    """`package.module:ClassOrFactory` -> an instance, called with no arguments."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"--model {ref!r}: expected package.module:ClassOrFactory")
    # Like `python -m`, resolve modules from the working directory first.
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"--model {ref!r}: cannot import {module_name} ({exc})") from None
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise UsageError(f"--model {ref!r}: {module_name} has no attribute {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise UsageError(f"--model {ref!r}: {attr} is not a class or factory")
    instance = target()
    if not isinstance(instance, nn.Module):
        raise UsageError(f"--model {ref!r}: {attr}() returned {type(instance).__name__}, not an nn.Module")
    has_api = callable(getattr(instance, "encode", None)) and callable(getattr(instance, "decode", None))
    has_seed = all(hasattr(instance, a) for a in ("encoder", "fc_mu", "fc_logvar", "decoder"))
    if not (has_api or has_seed):
        raise UsageError(
            f"--model {ref!r}: the module needs encode(x) -> (mu, logvar) and decode(z) -> x_hat, "
            "or the attributes encoder, fc_mu, fc_logvar, decoder"
        )
    return instance


def load_model(
    checkpoint: Path,
    model_ref: str | None = None,
    image_shape: tuple[int, int, int] | None = None,
    dynamic_size: bool = False,
) -> LoadedModel:
    """Load any supported source and split it into its encoder and decoder graphs.

    The latent shape comes from a trial encode of a zero batch. With `dynamic_size`, a second
    trial at twice the height and width decides whether the model runs at other sizes, and its
    stride (image size / latent size); a model that does not is refused (exit 2)."""
    if model_ref is not None and model_ref.startswith("diffusers:"):  # a directory, loaded by vae_export.hf
        from vae_export.hf import load_diffusers

        return load_diffusers(checkpoint, model_ref, image_shape, dynamic_size)  # type: ignore[no-any-return]
    if model_ref is None:
        vae, source = load_reference(checkpoint, image_shape)
        module: nn.Module = vae
        shape = vae.config.image_shape
        config: dict[str, Any] = asdict(vae.config)
    else:
        state, metadata = read_state_dict(checkpoint)
        check_finite(state, checkpoint)
        module = import_model_ref(model_ref)
        check_keys(state, module.state_dict(), checkpoint)
        module.load_state_dict(state, strict=True)
        module.eval()
        if image_shape is None:
            image_shape = metadata_image_shape(metadata, checkpoint)
        shape = image_shape or (1, 28, 28)
        source = model_ref
        config = {"image_shape": list(shape), "model": model_ref}
    classes, names, classify = _conditioning(module, checkpoint)
    if classes:
        config.update(num_classes=classes, classifier=classify, class_names=list(names))
    y = trial_labels(classes)
    encoder = _EncodeGraph(module).eval()
    latent = _trial_encode(encoder, shape, checkpoint, y)
    reshape = _trial_decode(module, latent, shape, checkpoint, y)
    stride = _trial_second_size(encoder, module, shape, latent, reshape, checkpoint, y) if dynamic_size else None
    decoder = _DecodeGraph(module, shape, reshape=reshape).eval()
    classifier = _ClassifyGraph(module).eval() if classify else None
    if classifier is not None:
        _trial_classify(classifier, shape, classes, checkpoint)
    if len(latent) == 1:
        config["latent_dim"] = latent[0]
    else:  # the MLP's sizes mean nothing here
        config = {k: v for k, v in config.items() if k not in ("latent_dim", "hidden_dim")}
        config["latent_shape"] = list(latent)
    config["image_shape"] = list(shape)
    return LoadedModel(
        encoder=encoder,
        decoder=decoder,
        geometry=Geometry(shape, latent, dynamic_size, stride, classes, classify),
        checkpoint=checkpoint,
        checkpoint_sha256=sha256_file(checkpoint),
        source=source,
        config=config,
        classifier=classifier,
        class_names=names,
    )


def _conditioning(module: nn.Module, path: Path) -> tuple[int, tuple[str, ...], bool]:
    """(num_classes, class_names, has a classifier) of a model: our config, or a user class's
    `num_classes` attribute (DESIGN.md section 4), optional `class_names` and `classify`."""
    config = getattr(module, "config", None)
    if isinstance(config, VAEConfig):
        return config.num_classes, config.class_names, config.classifier
    classes = getattr(module, "num_classes", 0)
    if classes is None or classes == 0:
        return 0, (), False
    if type(classes) is not int or not 1 < classes <= 1000:
        raise VAEExportError(f"--checkpoint {path}: the model's num_classes must be an integer 2..1000, "
                             f"found {str(classes)[:40]!r}")
    names = getattr(module, "class_names", ())
    if not (isinstance(names, (list, tuple)) and len(names) in (0, classes) and all(isinstance(n, str) for n in names)):
        raise VAEExportError(f"--checkpoint {path}: the model's class_names must be {classes} strings")
    return classes, tuple(names), callable(getattr(module, "classify", None))


def _trial_classify(classifier: _ClassifyGraph, shape: tuple[int, int, int], classes: int, path: Path) -> None:
    try:
        with torch.inference_mode():
            logits = classifier(torch.zeros(2, *shape))
    except Exception as exc:  # the user's model failed on a well-formed input
        raise VAEExportError(f"--checkpoint {path}: classify failed on a zero batch of shape {[2, *shape]} "
                             f"({first_line(exc)})") from None
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (2, classes):
        found = list(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise VAEExportError(f"--checkpoint {path}: classify(x) must return logits [batch, {classes}], found {found}")


def _encode_once(encoder: _EncodeGraph, x: torch.Tensor, y: tuple[torch.Tensor, ...]) -> Any:
    with torch.inference_mode():
        module = encoder.module
        return module.encode(x, *y) if hasattr(module, "encode") else encoder(x)


def _trial_encode(encoder: _EncodeGraph, shape: tuple[int, int, int], path: Path,
                  y: tuple[torch.Tensor, ...] = ()) -> tuple[int, ...]:
    """The latent shape, from one encode of a zero batch; also proves the graphs run."""
    try:
        out = _encode_once(encoder, torch.zeros(2, *shape), y)
    except Exception as exc:  # the user's model failed on a well-formed input
        raise VAEExportError(
            f"--checkpoint {path}: encode failed on a zero batch of shape "
            f"{[2, *shape]} ({first_line(exc)}); check --image-shape"
        ) from None
    if not (isinstance(out, (tuple, list)) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)):
        raise VAEExportError(f"--checkpoint {path}: encode(x) must return (mu, logvar), two tensors")
    mu, logvar = out
    if mu.ndim not in (2, 4) or mu.shape != logvar.shape or mu.shape[0] != 2:
        raise VAEExportError(
            f"--checkpoint {path}: encode(x) must return mu and logvar of shape [batch, latent] or "
            f"[batch, c, h, w], found {list(mu.shape)} and {list(logvar.shape)}"
        )
    return tuple(int(d) for d in mu.shape[1:])


def _trial_decode(module: nn.Module, latent: tuple[int, ...], shape: tuple[int, int, int], path: Path,
                  y: tuple[torch.Tensor, ...] = ()) -> bool:
    """Decode a zero batch; returns whether x_hat needs reshaping to [B, C, H, W]."""
    try:
        with torch.inference_mode():
            x_hat = _decode_fn(module)(torch.zeros(2, *latent), *y)
    except Exception as exc:  # the user's model failed on a well-formed input
        raise VAEExportError(f"--checkpoint {path}: decode failed on a zero batch of shape {[2, *latent]} "
                             f"({first_line(exc)})") from None
    if not isinstance(x_hat, torch.Tensor) or x_hat.shape[0] != 2 or x_hat.numel() != 2 * math.prod(shape):
        found = list(x_hat.shape) if isinstance(x_hat, torch.Tensor) else type(x_hat).__name__
        raise VAEExportError(
            f"--checkpoint {path}: decode(z) must return x_hat with {math.prod(shape)} values per image "
            f"(image shape {','.join(map(str, shape))}), found {found}"
        )
    return tuple(x_hat.shape[1:]) != shape


def _trial_second_size(encoder: _EncodeGraph, module: nn.Module, shape: tuple[int, int, int],
                       latent: tuple[int, ...], reshape: bool, path: Path, y: tuple[torch.Tensor, ...] = ()) -> int:
    """--dynamic-size: encode and decode at twice the height and width. The model qualifies when
    both run, the latent is spatial and scales with the image, and decode returns the larger
    image; the stride is image size / latent size. Decided by running the model, not by
    guessing from its layer types."""
    c, h, w = shape
    big = (c, 2 * h, 2 * w)
    refuse = f"--dynamic-size: the model does not run at a second size ({2 * h}x{2 * w} after {h}x{w}): "
    try:
        mu, _ = _encode_once(encoder, torch.zeros(2, *big), y)
    except Exception as exc:  # an MLP's first Linear, say, cannot take more pixels
        raise UsageError(refuse + f"encode failed ({first_line(exc)})") from None
    found = tuple(int(d) for d in mu.shape[1:])
    if len(latent) != 3 or found != (latent[0], 2 * latent[1], 2 * latent[2]):
        raise UsageError(refuse + f"its latent {list(latent)} became {list(found)}, not a spatial latent that "
                         "scales with the image")
    if h % latent[1] or w % latent[2] or h // latent[1] != w // latent[2]:
        raise UsageError(refuse + f"image {h}x{w} over latent {latent[1]}x{latent[2]} is not one integer stride")
    try:
        with torch.inference_mode():
            x_hat = _decode_fn(module)(torch.zeros(2, *found), *y)
    except Exception as exc:
        raise UsageError(refuse + f"decode failed ({first_line(exc)})") from None
    if reshape or tuple(x_hat.shape[1:]) != big:
        raise UsageError(refuse + f"decode returned {list(x_hat.shape)}, expected {[2, *big]}")
    return h // latent[1]
