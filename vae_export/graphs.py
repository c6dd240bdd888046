"""A PyTorch model split into the contract's graphs: the wrappers each graph is exported from
(encoder x (, y) -> (mu, logvar); decoder z (, y) -> x_hat [B, C, H, W]; classifier x -> logits),
and the trial runs that find the latent shape, whether the decoder needs a reshape, and for
--dynamic-size whether the model runs at a second size. Every family ends here (`split`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vae_export import __version__
from vae_export.errors import UsageError, VAEExportError, first_line
from vae_export.families.base import Family, LoadedModel
from vae_export.model import VAEConfig
from vae_export_runtime.codec import GraphMetadata
from vae_export_runtime.contract import FP32, Geometry, GraphSpec


class EncodeGraph(nn.Module):
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


class DecodeGraph(nn.Module):
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


class ClassifyGraph(nn.Module):
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


def split(module: nn.Module, image_shape: tuple[int, int, int], *, family: Family, checkpoint: Path,
          checkpoint_sha256: str, source: str, config: dict[str, Any], dynamic_size: bool = False,
          extra_metadata: Mapping[str, str] | None = None) -> LoadedModel:
    """Split a loaded module (eval mode, weights in) into its graphs, finding by trial runs the
    latent shape (one encode of a zero batch), whether decode's output needs a reshape to
    [B, C, H, W], the stride with `dynamic_size` (a second size must run), and the classes of a
    conditional model (`_conditioning`). `config` is what the manifest records of the model;
    the latent's sizes are added to it."""
    config = dict(config)
    classes, names, classify = _conditioning(module, checkpoint)
    if classes:
        config.update(num_classes=classes, classifier=classify, class_names=list(names))
    y = trial_labels(classes)
    encoder = EncodeGraph(module).eval()
    latent = _trial_encode(encoder, image_shape, checkpoint, y)
    reshape = _trial_decode(module, latent, image_shape, checkpoint, y)
    stride = _trial_second_size(encoder, module, image_shape, latent, reshape, checkpoint, y) if dynamic_size else None
    classifier = ClassifyGraph(module).eval() if classify else None
    if classifier is not None:
        _trial_classify(classifier, image_shape, classes, checkpoint)
    if len(latent) == 1:
        config["latent_dim"] = latent[0]
    else:  # the MLP's sizes mean nothing here
        config = {k: v for k, v in config.items() if k not in ("latent_dim", "hidden_dim")}
        config["latent_shape"] = list(latent)
    config["image_shape"] = list(image_shape)
    return LoadedModel(
        encoder=encoder,
        decoder=DecodeGraph(module, image_shape, reshape=reshape).eval(),
        geometry=Geometry(image_shape, latent, dynamic_size, stride, classes, classify),
        checkpoint=checkpoint,
        checkpoint_sha256=checkpoint_sha256,
        source=source,
        config=config,
        family=family,
        classifier=classifier,
        class_names=names,
        extra_metadata=dict(extra_metadata or {}),
    )


def torch_outputs(module: nn.Module, input_names: tuple[str, ...], feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """A graph module's outputs on the feeds an engine gets (by input name), as arrays."""
    with torch.inference_mode():
        out = module(*(torch.from_numpy(feeds[name]) for name in input_names))
    return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


def _conditioning(module: nn.Module, path: Path) -> tuple[int, tuple[str, ...], bool]:
    """(num_classes, class_names, has a classifier) of a model: our config, or a user class's
    `num_classes` attribute (docs/contract.md), optional `class_names` and `classify`."""
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


def _trial_classify(classifier: ClassifyGraph, shape: tuple[int, int, int], classes: int, path: Path) -> None:
    try:
        with torch.inference_mode():
            logits = classifier(torch.zeros(2, *shape))
    except Exception as exc:  # the user's model failed on a well-formed input
        raise VAEExportError(f"--checkpoint {path}: classify failed on a zero batch of shape {[2, *shape]} "
                             f"({first_line(exc)})") from None
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (2, classes):
        found = list(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise VAEExportError(f"--checkpoint {path}: classify(x) must return logits [batch, {classes}], found {found}")


def _encode_once(encoder: EncodeGraph, x: torch.Tensor, y: tuple[torch.Tensor, ...]) -> Any:
    with torch.inference_mode():
        module = encoder.module
        return module.encode(x, *y) if hasattr(module, "encode") else encoder(x)


def _trial_encode(encoder: EncodeGraph, shape: tuple[int, int, int], path: Path,
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


def _trial_second_size(encoder: EncodeGraph, module: nn.Module, shape: tuple[int, int, int],
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


def graph_metadata(spec: GraphSpec, loaded: LoadedModel, opset_version: int, exporter: str) -> GraphMetadata:
    """The contract's metadata of an fp32 graph (docs/contract.md, `vae_export_runtime.codec`):
    shapes and classes from the model's geometry, the likelihood and extra keys from its family."""
    g = loaded.geometry
    return GraphMetadata(
        role=spec.role, latent_shape=g.latent_dims(), image_shape=None if g.dynamic_size else g.image_shape,
        likelihood=loaded.family.likelihood, variant=FP32, stride=g.stride if g.dynamic_size else None,
        export_size=g.size if g.dynamic_size else None, num_classes=g.num_classes, class_names=loaded.class_names,
        version=__version__, checkpoint_sha256=loaded.checkpoint_sha256, source=loaded.source,
        opset=str(opset_version), exporter=exporter, extra=tuple(loaded.extra_metadata.items()),
    )
