"""`manifest.json`: the one owner of its format (docs/contract.md, "manifest.json").

Read, validated, written atomically, and the checkpoint it records resolved, all here; every
other module works on the typed `Manifest`. Torch-free (the runtime and `inspect` may use it).

A manifest is read back from a directory that may have travelled (CI uploads, app downloads),
so it is untrusted input: `Manifest.read` validates every field's type and bounds, and that every
listed file is a plain name inside the directory, before any of it is used. Every failure is one
`VAEExportError` naming the file and the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vae_export.artifacts import atomic_write_json, directory_lock, sha256_file
from vae_export.errors import CheckFailed, UsageError, VAEExportError
from vae_export.variants import LISTED_VARIANTS
from vae_export_runtime.contract import GRAPHS, Geometry
from vae_export_runtime.limits import MAX_ELEMENTS

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
# Bounds on what a manifest may claim, so that no size read from it can ask for absurd memory
# before a check runs: MAX_ELEMENTS values (1 GiB of float32) per image or latent, 255-byte names.
MAX_NAME = 255
MAX_ARTIFACTS = 64
MAX_BYTES = 16 << 20  # a manifest is a few KiB; refuse to parse a huge one
_SHA256 = re.compile(r"[0-9a-f]{64}")


class _Fields:
    """Typed access to one JSON object of the manifest; errors name the file and the field."""

    def __init__(self, data: Any, where: str, path: Path) -> None:
        self.where, self.path = where, path
        if not isinstance(data, dict):
            self.fail(where or "(top level)", "a JSON object", data)
        self.data: dict[str, Any] = data

    def fail(self, name: str, expected: str, found: Any) -> None:
        shown = json.dumps(found)[:60] if _jsonable(found) else type(found).__name__
        raise VAEExportError(f"{self.path}: field {name}: expected {expected}, found {shown}")

    def name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, kind: type | tuple[type, ...], expected: str, optional: bool = False) -> Any:
        if key not in self.data:
            if optional:
                return None
            raise VAEExportError(f"{self.path}: field {self.name(key)} is missing")
        value = self.data[key]
        if optional and value is None:
            return None
        # bool is an int in Python; JSON true is not a count
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _tuple(kind)):
            self.fail(self.name(key), expected, value)
        return value

    def text(self, key: str, optional: bool = False, limit: int = 4096) -> Any:
        value = self.get(key, str, "a string", optional)
        if value is not None and len(value) > limit:
            self.fail(self.name(key), f"a string of at most {limit} characters", f"{len(value)} characters")
        return value

    def count(self, key: str, low: int = 0, high: int = MAX_ELEMENTS, optional: bool = False) -> Any:
        value = self.get(key, int, "an integer", optional)
        if value is not None and not low <= value <= high:
            self.fail(self.name(key), f"an integer from {low} to {high}", value)
        return value

    def shape(self, key: str, rank: int | None = None) -> tuple[int, ...]:
        value = self.get(key, list, "a list of positive integers")
        if (rank is not None and len(value) != rank) or not value or not all(
                isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_ELEMENTS for v in value):
            self.fail(self.name(key), f"a list of {rank or 'some'} positive integers", value)
        total = 1
        for v in value:
            total *= v
        if total > MAX_ELEMENTS:
            self.fail(self.name(key), f"at most {MAX_ELEMENTS} values", f"{total} values")
        return tuple(value)

    def obj(self, key: str, optional: bool = False) -> Any:
        value = self.get(key, dict, "a JSON object", optional)
        return None if value is None else _Fields(value, self.name(key), self.path)


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, list, dict))


def plain_file_name(name: str) -> bool:
    """A file name inside the artifacts directory: no separators, no `..`, not hidden."""
    return bool(name) and len(name) <= MAX_NAME and "/" not in name and "\\" not in name and "\0" not in name \
        and not name.startswith(".") and name.isprintable()


@dataclass(frozen=True)
class ArtifactEntry:
    """One listed graph file: its role, variant, hash, size and I/O signature. Files with
    bounded shapes (ExecuTorch programs) also record `bounds`, every input's and output's
    largest shape, batch included (by name), and `executorch` (`planned_bytes`, the arena the
    program allocates when it loads, and `undelegated_ops`, the kernels it needs outside
    XNNPACK). Both keys are absent for ONNX files, as in manifests written before them."""

    file: str
    graph: str
    variant: str
    sha256: str
    bytes: int
    opset: int | None
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    bounds: dict[str, list[int]] | None = None
    executorch: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data = {"file": self.file, "graph": self.graph, "variant": self.variant, "sha256": self.sha256,
                "bytes": self.bytes, "opset": self.opset, "inputs": self.inputs, "outputs": self.outputs}
        return {**data, **({"bounds": self.bounds} if self.bounds is not None else {}),
                **({"executorch": self.executorch} if self.executorch is not None else {})}

    def admits(self, shapes: dict[str, tuple[int, ...]]) -> bool:
        """Whether values of these shapes (without the batch, by name) are within the file's
        `bounds` (always, for a file without bounds). The batch is not asked: engines split a
        larger one into calls within the bound."""
        if self.bounds is None:
            return True
        return all(all(s <= b for s, b in zip(shape, self.bounds[name][1:]))
                   for name, shape in shapes.items() if name in self.bounds)

    @classmethod
    def from_json(cls, data: Any, where: str, path: Path) -> ArtifactEntry:
        f = _Fields(data, where, path)
        name = f.text("file", limit=MAX_NAME)
        if not plain_file_name(name):
            f.fail(f.name("file"), "a plain file name inside the artifacts directory", name)
        graph = f.text("graph")
        if graph not in GRAPHS:
            f.fail(f.name("graph"), f"one of {', '.join(GRAPHS)}", graph)
        variant = f.text("variant")
        if variant not in LISTED_VARIANTS:
            f.fail(f.name("variant"), f"one of {', '.join(LISTED_VARIANTS)}", variant)
        digest = f.text("sha256")
        if not _SHA256.fullmatch(digest):
            f.fail(f.name("sha256"), "64 lowercase hex digits", digest)
        inputs, outputs = _signature(f, "inputs"), _signature(f, "outputs")
        return cls(
            file=name, graph=graph, variant=variant, sha256=digest,
            bytes=f.count("bytes", high=1 << 40), opset=f.count("opset", high=1000, optional=True),
            inputs=inputs, outputs=outputs, bounds=_bounds(f, [*inputs, *outputs]), executorch=_executorch(f),
        )


def _signature(f: _Fields, key: str) -> list[dict[str, Any]]:
    values = f.get(key, list, "a list of {name, dtype, shape}")
    for i, value in enumerate(values[:16]):
        v = _Fields(value, f"{f.name(key)}[{i}]", f.path)
        v.text("name", limit=MAX_NAME)
        v.text("dtype", limit=32)
        v.get("shape", list, "a list")
    if len(values) > 16:
        f.fail(f.name(key), "at most 16 values", f"{len(values)} values")
    return values


def _bounds(f: _Fields, values: list[dict[str, Any]]) -> dict[str, list[int]] | None:
    """`bounds`: for every listed input and output, its largest shape (positive integers, the
    signature's rank, its fixed sizes where it has them)."""
    bounds = f.obj("bounds", optional=True)
    if bounds is None:
        return None
    signature = {v["name"]: v["shape"] for v in values}
    if set(bounds.data) != set(signature):
        bounds.fail(f.name("bounds"), f"the largest shape of each of {', '.join(signature)}", sorted(bounds.data))
    out = {}
    for name, shape in signature.items():
        largest = bounds.shape(name, rank=len(shape))
        if any(isinstance(d, int) and d != b for d, b in zip(shape, largest)):
            bounds.fail(bounds.name(name), f"the fixed sizes of the signature {shape}", list(largest))
        out[name] = list(largest)
    return out


def _executorch(f: _Fields) -> dict[str, Any] | None:
    facts = f.obj("executorch", optional=True)
    if facts is None:
        return None
    ops = facts.get("undelegated_ops", list, "a list of operator names")
    if len(ops) > 256 or not all(isinstance(op, str) and 0 < len(op) <= 255 and op.isprintable() for op in ops):
        facts.fail(facts.name("undelegated_ops"), "at most 256 operator names", ops)
    return {"planned_bytes": facts.count("planned_bytes", high=1 << 40), "undelegated_ops": ops}


@dataclass(frozen=True)
class ModelInfo:
    """What the manifest says of the model. Models v1 could describe (flat latent, one size)
    keep the v1 keys (`latent_dim`); others record `latent_shape`, `dynamic_size`, `stride`."""

    config: dict[str, Any]
    source: str
    geometry: Geometry

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.geometry.image_shape

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return self.geometry.latent_shape

    def to_json(self) -> dict[str, Any]:
        g = self.geometry
        data: dict[str, Any] = {"config": self.config, "source": self.source, "image_shape": list(g.image_shape)}
        if g.flat and not g.dynamic_size:
            data["latent_dim"] = g.latent_shape[0]
        else:
            data.update(latent_shape=list(g.latent_shape), dynamic_size=g.dynamic_size, stride=g.stride)
        if g.conditional:
            data.update(num_classes=g.num_classes, classifier=g.classifier)
        return data

    @classmethod
    def from_json(cls, f: _Fields) -> ModelInfo:
        image = f.shape("image_shape", rank=3)
        if "latent_shape" in f.data:
            latent = f.shape("latent_shape")
            if len(latent) not in (1, 3):
                f.fail(f.name("latent_shape"), "a list of 1 or 3 positive integers", list(latent))
            dynamic = f.get("dynamic_size", bool, "true or false")
            stride = f.count("stride", low=1, high=1024, optional=True)
            if dynamic and (stride is None or len(latent) != 3):
                f.fail(f.name("stride"), "a stride for a spatial latent of a dynamic-size model", stride)
        else:
            latent, dynamic, stride = (f.count("latent_dim", low=1),), False, None
        classes = f.count("num_classes", low=2, high=1000, optional=True) or 0
        classifier = bool(classes) and f.get("classifier", bool, "true or false")
        return cls(config=f.get("config", dict, "a JSON object"), source=f.text("source", limit=MAX_NAME),
                   geometry=Geometry(image, latent, dynamic, stride, classes, classifier))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Manifest:
    """The typed manifest. `to_json` writes exactly the layout earlier versions wrote."""

    vae_export_version: str
    model: ModelInfo
    checkpoint_path: str  # relative to the artifacts directory, or absolute
    checkpoint_sha256: str
    opset: int
    exporter: str
    versions: dict[str, str]
    artifacts: tuple[ArtifactEntry, ...]
    parity: dict[str, Any] | None = None
    bench: dict[str, Any] | None = None
    # `bench --recommend`: the fastest verified engine per graph, size and batch on the machine
    # that measured it (vae_export_runtime.recommend owns and validates the format)
    recommendation: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys a newer version added: kept as they are

    # ---- reading ------------------------------------------------------------------------

    @classmethod
    def read(cls, artifacts: Path) -> Manifest:
        path = artifacts / MANIFEST_NAME
        if not path.is_file():
            raise UsageError(f"{path}: no manifest; run `vae-export export --artifacts {artifacts}` first")
        try:
            if path.stat().st_size > MAX_BYTES:
                raise VAEExportError(f"{path}: not a valid manifest (larger than {MAX_BYTES} bytes)")
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise VAEExportError(f"{path}: not a valid manifest ({exc})") from None
        except RecursionError:
            raise VAEExportError(f"{path}: not a valid manifest (JSON nested too deeply)") from None
        return cls.from_json(data, path)

    @classmethod
    def from_json(cls, data: Any, path: Path) -> Manifest:
        f = _Fields(data, "", path)
        if f.data.get("format") != MANIFEST_FORMAT:
            f.fail("format", f"{MANIFEST_FORMAT} (a vae-export manifest)", f.data.get("format"))
        model = f.obj("model")
        checkpoint = f.obj("checkpoint")
        digest = checkpoint.text("sha256")
        if not _SHA256.fullmatch(digest):
            checkpoint.fail("checkpoint.sha256", "64 lowercase hex digits", digest)
        entries = f.get("artifacts", list, "a list of artifact entries")
        if not 1 <= len(entries) <= MAX_ARTIFACTS:  # a manifest listing nothing verifies nothing
            f.fail("artifacts", f"from 1 to {MAX_ARTIFACTS} entries", f"{len(entries)} entries")
        artifacts = tuple(ArtifactEntry.from_json(e, f"artifacts[{i}]", path) for i, e in enumerate(entries))
        names = [e.file for e in artifacts]
        if len(set(names)) != len(names):
            f.fail("artifacts", "each file listed once", sorted({n for n in names if names.count(n) > 1}))
        versions = f.get("versions", dict, "a JSON object of strings")
        known = {"format", "vae_export_version", "model", "checkpoint", "opset", "exporter", "versions",
                 "artifacts", "parity", "bench", "recommendation"}
        recommendation = f.get("recommendation", dict, "a JSON object", optional=True)
        if recommendation is not None:
            from vae_export_runtime.recommend import Recommendation
            from vae_export_runtime.errors import RuntimeInputError

            try:
                Recommendation.from_json(recommendation, str(path))
            except RuntimeInputError as exc:
                raise VAEExportError(str(exc)) from None
        return cls(
            vae_export_version=f.text("vae_export_version", limit=64),
            model=ModelInfo.from_json(model),
            checkpoint_path=checkpoint.text("path"),
            checkpoint_sha256=digest,
            opset=f.count("opset", high=1000),
            exporter=f.text("exporter", limit=64),
            versions=versions,
            artifacts=artifacts,
            parity=f.get("parity", dict, "a JSON object", optional=True),
            bench=f.get("bench", dict, "a JSON object", optional=True),
            recommendation=recommendation,
            extra={k: v for k, v in f.data.items() if k not in known},
        )

    # ---- writing ------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "vae_export_version": self.vae_export_version,
            "model": self.model.to_json(),
            "checkpoint": {"path": self.checkpoint_path, "sha256": self.checkpoint_sha256},
            "opset": self.opset,
            "exporter": self.exporter,
            "versions": self.versions,
            "artifacts": [e.to_json() for e in self.artifacts],
            **self.extra,
        }
        for key in ("parity", "bench", "recommendation"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return data

    def write(self, artifacts: Path) -> None:
        atomic_write_json(artifacts / MANIFEST_NAME, self.to_json())

    def with_summary(self, key: str, summary: dict[str, Any]) -> Manifest:
        """A copy with a later command's summary (`parity`, `bench` or `recommendation`)."""
        return replace(self, **{key: summary})

    # ---- what readers ask of it ---------------------------------------------------------

    def entries(self, graphs: Iterable[str] | None = None, variants: Iterable[str] | None = None) -> list[ArtifactEntry]:
        graphs = None if graphs is None else set(graphs)
        variants = None if variants is None else set(variants)
        return [e for e in self.artifacts
                if (graphs is None or e.graph in graphs) and (variants is None or e.variant in variants)]

    def checkpoint(self, artifacts: Path) -> Path:
        """The checkpoint it records: relative to the artifacts directory (so the directory
        can move as a whole), or absolute."""
        return artifacts / self.checkpoint_path  # an absolute reference stays absolute under "/"

    def check_integrity(self, artifacts: Path) -> list[dict[str, Any]]:
        """Raise CheckFailed (exit 1) unless every listed file is present, a regular file in
        the directory (not a symlink, which could lead anywhere) and of the recorded size and
        sha256; else return verify's integrity rows, {"file", "sha256_ok"} per artifact.
        Commands call this once, before any listed graph is opened."""
        problems = [p for e in self.artifacts if (p := integrity_problem(artifacts, e)) is not None]
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise CheckFailed(f"integrity check failed: {'; '.join(problems[:3])}{more}, "
                              f"against {artifacts / MANIFEST_NAME}; nothing was run")
        return [{"file": entry.file, "sha256_ok": True} for entry in self.artifacts]


def escaped(name: str) -> str:
    """A name read from a file, as it can be printed: plain ASCII names as they are, anything
    else quoted with non-ASCII and control characters escaped, so that a hostile name cannot
    rewrite the terminal."""
    return name if name.isascii() and name.isprintable() and " " not in name else json.dumps(name)


def integrity_problem(artifacts: Path, entry: ArtifactEntry) -> str | None:
    """Why a listed artifact fails its integrity check, or None; the size is compared before
    hashing, so a huge substitute is not read."""
    path, name = artifacts / entry.file, escaped(entry.file)
    if path.is_symlink():
        return f"{name} is a symlink (listed artifacts must be files in the directory); refused"
    if not path.exists():
        return f"{name} is missing"
    if not path.is_file():
        return f"{name} is not a regular file"
    if path.stat().st_size != entry.bytes or sha256_file(path) != entry.sha256:
        return f"sha256 of {name} does not match the manifest"
    return None


def checkpoint_reference(checkpoint: Path, artifacts_dir: Path) -> str:
    """Relative to the artifacts directory when the checkpoint lives in it, else absolute;
    `Manifest.checkpoint` reads it back."""
    checkpoint, artifacts_dir = checkpoint.resolve(), artifacts_dir.resolve()
    return str(checkpoint.relative_to(artifacts_dir)) if artifacts_dir in checkpoint.parents else str(checkpoint)


def record_summary(artifacts: Path, key: str, summary: dict[str, Any]) -> None:
    """Record a later command's summary (parity, bench) in the manifest, under the
    directory's lock so that it cannot interleave with an export."""
    with directory_lock(artifacts):
        Manifest.read(artifacts).with_summary(key, summary).write(artifacts)
