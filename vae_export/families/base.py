"""What a model family is: how a kind of model loads, and what its graphs mean (tolerances,
likelihood, extra metadata, whether a manifest alone can rebuild it). `vae_export.families`
holds the registry; each built-in family is one module beside this one.

Generic stages (export, verify, bench) never test which family they hold: they ask
`LoadedModel.family`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from vae_export.errors import VAEExportError
from vae_export.limits import PTE_MAX_BATCH, PTE_MAX_LATENT_SIDE
from vae_export_runtime.contract import Geometry


@dataclass(frozen=True)
class PteBounds:
    """The largest batch, and for --dynamic-size graphs the largest latent height and width,
    that a family's ExecuTorch programs accept (their buffers are planned at them)."""

    max_batch: int = PTE_MAX_BATCH
    max_latent_side: int = PTE_MAX_LATENT_SIDE


@dataclass(frozen=True)
class LoadRequest:
    """What the user (or a manifest) names: the weights, and optionally the model reference
    (`--model`), the image shape and whether the graphs get a symbolic size."""

    checkpoint: Path
    model_ref: str | None = None
    image_shape: tuple[int, int, int] | None = None
    dynamic_size: bool = False


class Family:
    """A kind of model. Subclass it, set the class attributes, implement `claims`, `owns` and
    `load`, and register an instance (`vae_export.families.register`, or the entry point group
    `vae_export.families`)."""

    name: str = ""
    likelihood: str = "bernoulli"  # what the anomaly score uses (docs/contract.md, "likelihood")
    # Whether verify and bench can rebuild the PyTorch model from a manifest's recorded source
    # alone; False for code the user names (a manifest never names code to run).
    rebuilds_from_manifest: bool = True
    # Asked after every other family: the catch-alls (plain state dicts, user classes).
    fallback: bool = False

    def claims(self, request: LoadRequest) -> bool:
        """Whether this family loads `request` (cheap: names and headers, not weights)."""
        raise NotImplementedError

    def owns(self, source: str) -> bool:
        """Whether a manifest's recorded `model.source` came from this family."""
        raise NotImplementedError

    def model_ref_for(self, source: str) -> str | None:
        """The model reference that rebuilds a recorded source (None: the checkpoint alone)."""
        return None

    def load(self, request: LoadRequest) -> LoadedModel:
        raise NotImplementedError

    def edge_atol(self, atol: float) -> float:
        """verify's fp32 atol on the edge inputs (all-zero and all-one images, z at +-4 sigma)."""
        return atol

    def pte_bounds(self, loaded: LoadedModel) -> PteBounds:
        """The bounds of the .pte programs `export --variant executorch` writes: the largest
        batch, and for --dynamic-size graphs the largest latent height and width (ExecuTorch
        plans every buffer at them, and the app allocates that when it loads the program; see
        `vae_export.lowering`). Default: batch 64, latent side 64."""
        return PteBounds()

    def __repr__(self) -> str:
        return f"<family {self.name}>"


@dataclass
class LoadedModel:
    """A model split into its graphs, with what the manifest needs to know about it."""

    encoder: nn.Module  # x (, y) -> (mu, logvar)
    decoder: nn.Module  # z (, y) -> x_hat [B, C, H, W]
    geometry: Geometry
    checkpoint: Path
    checkpoint_sha256: str
    source: str  # what the manifest records: "vae-export", "state-dict", "module:attr", "diffusers:Class", ...
    config: dict[str, Any]
    family: Family  # how it loaded and what it means (tolerances, likelihood): vae_export.families
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
