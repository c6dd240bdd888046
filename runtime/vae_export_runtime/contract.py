"""The graph contract apps build on (docs/contract.md), in one place.

Contract v2: a graph has one or two inputs (`x`/`z`, and `y` for conditional models), latents
of any shape (`[latent]` flat, `[c, h, w]` spatial), and optionally symbolic `height`/`width`.
The v1 contract (flat, unconditional, one size) is the special case.

numpy-free and torch-free: the runtime, export, verify and bench all read names and shapes
from here so they never drift. The graphs' metadata keys are `codec.py`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

BATCH_DIM = "batch"
HEIGHT_DIM, WIDTH_DIM = "height", "width"
LATENT_HEIGHT_DIM, LATENT_WIDTH_DIM = "latent_height", "latent_width"
FP32 = "fp32"
ORT_FORMAT = "ort"  # the variant whose file is a .ort flatbuffer, not an .onnx
# The ExecuTorch variants: .pte programs (XNNPACK) with the same inputs, outputs and meaning.
EXECUTORCH, EXECUTORCH_INT8 = "executorch", "executorch-int8"
PTE_SUFFIX = ".pte"
_PTE_FILES = {EXECUTORCH: "{role}.pte", EXECUTORCH_INT8: "{role}.int8.pte"}

Shape = tuple[int | None, ...]  # None: a symbolic dimension


@dataclass(frozen=True)
class GraphSpec:
    """One exported graph: its role, its inputs and its outputs, in order."""

    role: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]

    @property
    def input_name(self) -> str:
        """The primary input (`x` or `z`); `y`, when present, comes second."""
        return self.input_names[0]


Y_NAME = "y"  # the condition: float32 [batch, num_classes], one-hot rows or mixes summing to 1
ENCODER = GraphSpec("encoder", ("x",), ("mu", "logvar"))
DECODER = GraphSpec("decoder", ("z",), ("x_hat",))
CLASSIFIER = GraphSpec("classifier", ("x",), ("logits",))  # semi-supervised models only
# Conditional models take y as a second input on both graphs.
ENCODER_Y = GraphSpec("encoder", ("x", Y_NAME), ("mu", "logvar"))
DECODER_Y = GraphSpec("decoder", ("z", Y_NAME), ("x_hat",))
GRAPHS = {spec.role: spec for spec in (ENCODER, DECODER, CLASSIFIER)}
ROLES = tuple(GRAPHS)


def graph_spec(role: str, conditional: bool = False) -> GraphSpec:
    """The spec of a role, with `y` for conditional models (the classifier never takes y)."""
    if conditional and role != CLASSIFIER.role:
        return ENCODER_Y if role == ENCODER.role else DECODER_Y
    return GRAPHS[role]


def value_shapes(latent: Sequence[int | None], image: Sequence[int | None],
                 num_classes: int = 0) -> dict[str, tuple[int | None, ...]]:
    """Every contract value's dimensions after `batch`, by name."""
    latent, image = tuple(latent), tuple(image)
    return {"x": image, "x_hat": image, "z": latent, "mu": latent, "logvar": latent,
            **({Y_NAME: (num_classes,), "logits": (num_classes,)} if num_classes else {})}


def graph_filename(role: str, variant: str = FP32) -> str:
    """encoder.onnx for fp32, encoder.int8.onnx for a variant, encoder.ort for the ORT
    format, encoder.pte and encoder.int8.pte for the ExecuTorch programs (fp32 and int8: the
    suffix names the format, as .ort does; docs/contract.md, "Variants")."""
    if variant == FP32:
        return f"{role}.onnx"
    if variant in _PTE_FILES:
        return _PTE_FILES[variant].format(role=role)
    return f"{role}.ort" if variant == ORT_FORMAT else f"{role}.{variant}.onnx"


@dataclass(frozen=True)
class Geometry:
    """Image and latent shapes of a model (without the batch axis), and how they scale.

    `image_shape` and `latent_shape` are those at the size the model was exported (or trained)
    at. With `dynamic_size`, height and width are symbolic: an image of size (H, W) (multiples
    of `stride`) has a latent of spatial size (H / stride, W / stride).
    """

    image_shape: tuple[int, int, int]
    latent_shape: tuple[int, ...]
    dynamic_size: bool = False
    stride: int | None = None
    num_classes: int = 0  # > 0: conditional, the graphs take y [batch, num_classes]
    classifier: bool = False  # semi-supervised: classifier.onnx (x -> logits) too

    @property
    def flat(self) -> bool:
        return len(self.latent_shape) == 1

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def specs(self) -> tuple[GraphSpec, ...]:
        """The graphs this model exports, in order."""
        roles = ROLES if self.classifier else ROLES[:2]
        return tuple(self.spec(role) for role in roles)

    def spec(self, role: str) -> GraphSpec:
        return graph_spec(role, self.conditional)

    def input_shapes(self, spec: GraphSpec, size: tuple[int, int] | None = None) -> dict[str, tuple[int, ...]]:
        """Each input of `spec` at `size` (default: the export size), without the batch axis."""
        size = size or self.size
        shapes = value_shapes(self.latent_at(size), self.image_at(size), self.num_classes)
        return {name: shapes[name] for name in spec.input_names}  # type: ignore[misc]

    def dims(self) -> dict[str, tuple[int | None, ...]]:
        """Every value's symbolic dims after batch (None: symbolic), as written into graphs."""
        return value_shapes(self.latent_dims(), self.image_dims(), self.num_classes)

    @property
    def size(self) -> tuple[int, int]:
        return self.image_shape[1], self.image_shape[2]

    def check_size(self, size: tuple[int, int], option: str = "size") -> None:
        """Raises ValueError naming the rule when a size does not fit the model."""
        if not self.dynamic_size:
            if tuple(size) != self.size:
                raise ValueError(f"{option} {size[0]}x{size[1]}: this model runs at {self.size[0]}x{self.size[1]} only "
                                 "(export with --dynamic-size for other sizes)")
            return
        stride = self.stride or 1
        if min(size) < stride or size[0] % stride or size[1] % stride:
            raise ValueError(f"{option} {size[0]}x{size[1]}: height and width must be positive multiples of "
                             f"the model's stride {stride}")

    def image_at(self, size: tuple[int, int]) -> tuple[int, int, int]:
        return (self.image_shape[0], size[0], size[1])

    def latent_at(self, size: tuple[int, int]) -> tuple[int, ...]:
        """The latent shape for images of `size`."""
        if not self.dynamic_size or self.flat:
            return self.latent_shape
        stride = self.stride or 1
        return (self.latent_shape[0], size[0] // stride, size[1] // stride)

    def default_sizes(self) -> tuple[tuple[int, int], ...]:
        """verify's and bench's sizes: the export size; for symbolic sizes also twice it and a
        non-square one (28x28 -> 28x28, 56x56, 32x48 at stride 4)."""
        h, w = self.size
        if not self.dynamic_size:
            return ((h, w),)
        s = self.stride or 1
        return ((h, w), (2 * h, 2 * w), (h + s, w + 5 * s))

    # ---- the symbolic shapes written into graphs and metadata ---------------------------------

    def image_dims(self) -> Shape:
        return (self.image_shape[0], None, None) if self.dynamic_size else self.image_shape

    def latent_dims(self) -> Shape:
        if self.dynamic_size and not self.flat:
            return (self.latent_shape[0], None, None)
        return self.latent_shape


def symbolic_names(role_value: str, rank: int) -> tuple[str, ...]:
    """Names of the symbolic dims of an image (`x`, `x_hat`) or latent (`z`, `mu`, `logvar`)
    value: batch first, then height/width for the last two axes."""
    image = role_value in ("x", "x_hat")  # y and logits are [batch, K]: only batch is symbolic
    h, w = (HEIGHT_DIM, WIDTH_DIM) if image else (LATENT_HEIGHT_DIM, LATENT_WIDTH_DIM)
    names = [BATCH_DIM] + [""] * (rank - 1)
    if rank >= 3:
        names[-2], names[-1] = h, w
    return tuple(names)


def format_shape(shape: Sequence[int | str | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
