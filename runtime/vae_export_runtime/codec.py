"""The graph metadata codec: the one place that writes and reads the `vae_export.*` keys of a
graph's `metadata_props` (docs/contract.md, "Metadata", is the language-neutral specification;
the JavaScript package implements the same reading).

Every value is a string. Structural keys (what a host needs to run the graph: role, shapes,
stride, export size, classes, likelihood) are validated strictly, and a graph without them is
not one of ours; informational keys (version, source, hashes) are kept as they are; a
malformed `class_names` reads as no names, since it only labels classes. Keys this version
does not know (a newer exporter's, or a family's own such as diffusers' `native_range`) are
kept in order and written back unchanged, so a variant carries its fp32 graph's metadata.

`to_props` writes the keys in one fixed order: the bytes of a graph depend on it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from vae_export_runtime.contract import FP32, ROLES, Shape
from vae_export_runtime.errors import RuntimeInputError
from vae_export_runtime.limits import MAX_ELEMENTS

PREFIX = "vae_export."
LIKELIHOODS = ("bernoulli", "gaussian")
MAX_CLASSES = 1000
MAX_STRIDE = 1024
MAX_VALUE_CHARS = 1 << 16  # class names of 1000 classes fit; a megabyte of metadata is refused

# The keys this codec writes, in the order it writes them (v1 keys first, as v1 wrote them).
_KNOWN = ("role", "latent_dim", "image_shape", "version", "checkpoint_sha256", "source", "opset", "exporter",
          "variant", "latent_shape", "likelihood", "stride", "export_size", "num_classes", "class_names")


@dataclass(frozen=True)
class GraphMetadata:
    """What a graph's metadata says, typed. Shapes are without the batch axis; None marks a
    symbolic dimension, and `image_shape` None a symbolic image size (the channel count is then
    the graph's own)."""

    role: str
    latent_shape: Shape
    image_shape: Shape | None
    likelihood: str = "bernoulli"
    variant: str = FP32
    stride: int | None = None  # symbolic sizes: image size / latent size
    export_size: tuple[int, int] | None = None  # symbolic sizes: the size it was exported at (the default)
    num_classes: int = 0  # > 0: conditional, the graph takes y [batch, num_classes]
    class_names: tuple[str, ...] = ()
    version: str = ""
    checkpoint_sha256: str = ""
    source: str = ""
    opset: str = ""
    exporter: str = ""
    extra: tuple[tuple[str, str], ...] = ()  # other keys (without the prefix), in order

    @property
    def symbolic_size(self) -> bool:
        return self.image_shape is None

    def with_variant(self, variant: str) -> GraphMetadata:
        return replace(self, variant=variant)

    def extras(self) -> dict[str, str]:
        return dict(self.extra)

    # ---- writing --------------------------------------------------------------------------------

    def to_props(self) -> dict[str, str]:
        """The metadata_props entries, prefixed, in the codec's fixed order."""
        flat = len(self.latent_shape) == 1
        props = {
            "role": self.role,
            **({"latent_dim": str(self.latent_shape[0])} if flat else {}),
            "image_shape": "null" if self.image_shape is None else ",".join(map(str, self.image_shape)),
            "version": self.version,
            "checkpoint_sha256": self.checkpoint_sha256,
            "source": self.source,
            "opset": self.opset,
            "exporter": self.exporter,
            "variant": self.variant,
            "latent_shape": json.dumps(list(self.latent_shape)),
            "likelihood": self.likelihood,
            **({"stride": str(self.stride)} if self.stride is not None else {}),
            **({"export_size": json.dumps(list(self.export_size))} if self.export_size is not None else {}),
            **({"num_classes": str(self.num_classes), "class_names": json.dumps(list(self.class_names))}
               if self.num_classes else {}),
            **dict(self.extra),
        }
        return {PREFIX + key: value for key, value in props.items()}

    # ---- reading --------------------------------------------------------------------------------

    @classmethod
    def from_props(cls, props: Mapping[str, str], where: str) -> GraphMetadata:
        """Read a graph's metadata_props; `where` (the file) prefixes every error. Raises
        RuntimeInputError naming the key and the rule."""
        ours = {k[len(PREFIX):]: v for k, v in props.items() if k.startswith(PREFIX)}
        if "role" not in ours or not ({"latent_shape", "latent_dim"} & ours.keys()) or "image_shape" not in ours:
            raise RuntimeInputError(f"{where}: not a vae-export graph (no {PREFIX}role, {PREFIX}latent_shape and "
                                    f"{PREFIX}image_shape metadata); export it with vae-export")
        return _Reader(ours, where).read()


class _Reader:
    """One graph's keys, read with errors that name the file and the key."""

    def __init__(self, ours: dict[str, str], where: str) -> None:
        self.ours, self.where = ours, where

    def fail(self, key: str, expected: str) -> RuntimeInputError:
        value = self.ours.get(key, "")
        shown = json.dumps(value[:60] + ("..." if len(value) > 60 else ""))
        return RuntimeInputError(f"{self.where}: metadata {PREFIX}{key}: expected {expected}, found {shown}")

    def json(self, key: str) -> Any:
        text = self.ours[key]
        if len(text) > MAX_VALUE_CHARS:
            raise self.fail(key, f"at most {MAX_VALUE_CHARS} characters")
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            return _INVALID

    def count(self, key: str, low: int, high: int) -> int | None:
        text = self.ours.get(key)
        if text is None:
            return None
        value = _decimal(text)
        if value is None or not low <= value <= high:
            raise self.fail(key, f"an integer from {low} to {high}")
        return value

    def shape(self, key: str, ranks: tuple[int, ...], symbolic: bool) -> Shape:
        """A JSON list of positive integers (None allowed where `symbolic`), or the v1 `C,H,W`."""
        text = self.ours[key].strip()
        value = self.json(key) if text.startswith("[") else _csv_ints(text)
        ok = isinstance(value, list) and len(value) in ranks and all(
            (v is None and symbolic) or (type(v) is int and 1 <= v <= MAX_ELEMENTS) for v in value)
        if not ok or math.prod(v for v in value if v is not None) > MAX_ELEMENTS:
            dims = " or ".join(str(r) for r in ranks)
            raise self.fail(key, f"a list of {dims} positive integers{' (null for symbolic)' if symbolic else ''} "
                                 f"of at most {MAX_ELEMENTS} values")
        return tuple(value)

    def read(self) -> GraphMetadata:
        o = self.ours
        role = o["role"]
        if role not in ROLES:
            raise self.fail("role", f"one of {', '.join(ROLES)}")
        if "latent_shape" in o:
            latent = self.shape("latent_shape", (1, 3), symbolic=True)
        else:  # v1 graphs: a flat latent, its size in latent_dim
            latent = (self.count("latent_dim", 1, MAX_ELEMENTS),)  # type: ignore[assignment]
        image = None if o["image_shape"].strip() == "null" else self.shape("image_shape", (3,), symbolic=False)
        likelihood = o.get("likelihood", "bernoulli")
        if likelihood not in LIKELIHOODS:
            raise self.fail("likelihood", f"one of {', '.join(LIKELIHOODS)}")
        stride = self.count("stride", 1, MAX_STRIDE)
        export_size = None
        if "export_size" in o:
            value = self.json("export_size")
            if not (isinstance(value, list) and len(value) == 2 and all(type(v) is int and v >= 1 for v in value)
                    and value[0] * value[1] <= MAX_ELEMENTS and all(v % (stride or 1) == 0 for v in value)):
                raise self.fail("export_size", f"[height, width], positive multiples of the stride {stride or 1}")
            export_size = (value[0], value[1])
        if image is None and (len(latent) != 3 or latent[1:] != (None, None)):
            raise self.fail("latent_shape", "[c, null, null] for a graph with a symbolic image size")
        classes = self.count("num_classes", 2, MAX_CLASSES) or 0
        names: tuple[str, ...] = ()
        if classes and "class_names" in o:
            value = self.json("class_names")
            if isinstance(value, list) and len(value) == classes and all(isinstance(n, str) for n in value):
                names = tuple(value)  # otherwise no names: they only label the classes
        return GraphMetadata(
            role=role, latent_shape=latent, image_shape=image, likelihood=likelihood, variant=o.get("variant", FP32),
            stride=stride, export_size=export_size, num_classes=classes, class_names=names,
            version=o.get("version", ""), checkpoint_sha256=o.get("checkpoint_sha256", ""),
            source=o.get("source", ""), opset=o.get("opset", ""), exporter=o.get("exporter", ""),
            extra=tuple((k, v) for k, v in o.items() if k not in _KNOWN),
        )


_INVALID = object()  # a JSON value that did not parse (fails every check)


MAX_DIGITS = 12  # every bound here fits; a longer number is refused before int() reads it


def _decimal(text: str) -> int | None:
    """A non-negative decimal integer of ASCII digits (leading zeros allowed, at most
    MAX_DIGITS significant ones), else None: `int()` alone would take other digits, signs,
    underscores, and would spend quadratic time (or refuse) on thousands of digits."""
    digits = text.lstrip("0") or "0"
    if not (text.isascii() and text.isdigit() and len(digits) <= MAX_DIGITS):
        return None
    return int(digits)


def _csv_ints(text: str) -> list[int] | object:
    values = [_decimal(p.strip()) for p in text.split(",")]
    return _INVALID if None in values else values


def shape_text(shape: Sequence[int | None]) -> str:
    """A shape as the metadata writes it (JSON, null for symbolic dims)."""
    return json.dumps(list(shape))
