"""The engine recommendation `vae-export bench --recommend` records in manifest.json, and how
the runtime's `engine="auto"` uses it. This module owns the format: the toolkit writes it with
`Recommendation.to_json`, apps read it with `read_beside`.

    "recommendation": {
      "format": 1, "cpu": "AMD EPYC", "cpu_flags": ["avx2", ...], "fingerprint": "1f2e...",
      "threads": 2, "noise": 0.06,
      "rows": [{"graph": "decoder", "size": [512, 512], "batch": 1, "torch_p50_ms": 3.1e4,
                "ranking": [{"engine": "openvino", "precision": "bf16", "variant": "fp32",
                             "file": "decoder.onnx", "p50_ms": 7.6e3, "peak_mib": 910.0}, ...]}]}

`ranking`: the candidates that passed verification on that machine, fastest first (the first
is the recommendation). A manifest travels with its graphs, so it is read as untrusted input:
at most MAX_BYTES, every field's type and bound checked, one RuntimeInputError naming the file
and the field otherwise.

`engine="auto"` (see `choose`): among the rows of the opened graph, the candidates for that
very file that the runtime can open here (no PyTorch; an engine whose package is not installed
in this environment is passed over for the next) at float32 arithmetic ("auto:any" also takes
reduced precisions such as bf16); the one first in the most rows wins (ties: the one that
wins the largest workload). No manifest, no recommendation or no candidate: ONNX Runtime's CPU
provider. A recommendation recorded on another CPU (its fingerprint differs) is not used: ONNX
Runtime's CPU provider runs, and the reason is given (a warning, and the graph's
`engine_reason`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vae_export_runtime.errors import RuntimeInputError

FORMAT = 1
MANIFEST = "manifest.json"
MAX_BYTES = 16 << 20  # the toolkit's own cap on a manifest
MAX_ROWS, MAX_RANKING, MAX_TEXT = 4096, 64, 255
RUNTIME_ENGINES = ("onnxruntime", "onnxruntime-openvino", "openvino")  # what the runtime can open
FALLBACK = ("onnxruntime", "fp32")


@dataclass(frozen=True)
class Candidate:
    engine: str
    precision: str
    variant: str
    file: str | None
    p50_ms: float
    peak_mib: float | None = None


@dataclass(frozen=True)
class Row:
    graph: str
    size: tuple[int, int] | None
    batch: int
    ranking: tuple[Candidate, ...]
    torch_p50_ms: float | None = None

    def workload(self) -> int:
        h, w = self.size or (1, 1)
        return self.batch * h * w


@dataclass(frozen=True)
class Recommendation:
    cpu: str
    cpu_flags: tuple[str, ...]
    fingerprint: str
    threads: int
    noise: float | None
    rows: tuple[Row, ...]

    def to_json(self) -> dict[str, Any]:
        rows = [{"graph": r.graph, "size": list(r.size) if r.size else None, "batch": r.batch,
                 "torch_p50_ms": r.torch_p50_ms, "ranking": [asdict(c) for c in r.ranking]} for r in self.rows]
        return {"format": FORMAT, "cpu": self.cpu, "cpu_flags": list(self.cpu_flags), "fingerprint": self.fingerprint,
                "threads": self.threads, "noise": self.noise, "rows": rows}

    @classmethod
    def from_json(cls, data: Any, where: str) -> Recommendation:
        f = _Checked(where)
        data = f.obj(data, "recommendation")
        if data.get("format") != FORMAT:
            f.fail("recommendation.format", str(FORMAT), data.get("format"))
        rows = f.items(data, "rows", MAX_ROWS, "recommendation")
        return cls(cpu=f.text(data, "cpu", "recommendation"),
                   cpu_flags=tuple(f.text({"v": v}, "v", "recommendation.cpu_flags[]")
                                   for v in f.items(data, "cpu_flags", 64, "recommendation")),
                   fingerprint=f.text(data, "fingerprint", "recommendation"),
                   threads=f.integer(data, "threads", "recommendation", 1, 4096),
                   noise=f.number(data, "noise", "recommendation", optional=True),
                   rows=tuple(_row(f, r, f"recommendation.rows[{i}]") for i, r in enumerate(rows)))


def _row(f: _Checked, data: Any, where: str) -> Row:
    data = f.obj(data, where)
    size = data.get("size")
    if size is not None:
        if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) and 1 <= v <= 1 << 20 for v in size)):
            f.fail(f"{where}.size", "null or [height, width]", size)
        size = (size[0], size[1])
    ranking = []
    for i, c in enumerate(f.items(data, "ranking", MAX_RANKING, where)):
        at = f"{where}.ranking[{i}]"
        c = f.obj(c, at)
        ranking.append(Candidate(engine=f.text(c, "engine", at), precision=f.text(c, "precision", at),
                                 variant=f.text(c, "variant", at), file=f.text(c, "file", at, optional=True),
                                 p50_ms=f.number(c, "p50_ms", at), peak_mib=f.number(c, "peak_mib", at, optional=True)))
    return Row(graph=f.text(data, "graph", where), size=size, batch=f.integer(data, "batch", where, 1, 1 << 20),
               ranking=tuple(ranking), torch_p50_ms=f.number(data, "torch_p50_ms", where, optional=True))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class _Checked:
    """Typed reads of JSON values; every failure names the file and the field."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, field: str, expected: str, found: Any) -> None:
        shown = json.dumps(found)[:60] if isinstance(found, (str, int, float, bool, type(None))) else type(found).__name__
        raise RuntimeInputError(f"{self.where}: field {field}: expected {expected}, found {shown}")

    def obj(self, value: Any, field: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(field, "a JSON object", value)
        return value  # type: ignore[no-any-return]

    def items(self, data: dict[str, Any], key: str, limit: int, where: str) -> list[Any]:
        value = data.get(key)
        if not isinstance(value, list) or len(value) > limit:
            self.fail(f"{where}.{key}", f"a list of at most {limit} items", value)
        return value  # type: ignore[no-any-return]

    def text(self, data: dict[str, Any], key: str, where: str, optional: bool = False) -> Any:
        value = data.get(key)
        if optional and value is None:
            return None
        if not isinstance(value, str) or not value or len(value) > MAX_TEXT or not value.isprintable():
            self.fail(f"{where}.{key}", f"a printable string of 1 to {MAX_TEXT} characters", value)
        return value

    def integer(self, data: dict[str, Any], key: str, where: str, low: int, high: int) -> int:
        value = data.get(key)
        if not _is_int(value) or not low <= value <= high:
            self.fail(f"{where}.{key}", f"an integer from {low} to {high}", value)
        return value  # type: ignore[no-any-return]

    def number(self, data: dict[str, Any], key: str, where: str, optional: bool = False) -> Any:
        value = data.get(key)
        if optional and value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            self.fail(f"{where}.{key}", "a finite non-negative number", value)
        return float(value)


def read_beside(graph: Path) -> Recommendation | None:
    """The recommendation in manifest.json beside `graph`; None when there is no manifest or
    it records none. A manifest that cannot be read, or a malformed recommendation, is a
    RuntimeInputError (an app asked for the recorded choice; a broken record is not silently
    replaced)."""
    path = graph.parent / MANIFEST
    if not path.is_file():
        return None
    try:
        if path.stat().st_size > MAX_BYTES:
            raise RuntimeInputError(f"{path}: larger than {MAX_BYTES} bytes; not a manifest")
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise RuntimeInputError(f"{path}: not a valid manifest ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise RuntimeInputError(f"{path}: not a valid manifest (not a JSON object)")
    if data.get("recommendation") is None:
        return None
    return Recommendation.from_json(data["recommendation"], str(path))


def _installed(engine: str) -> bool:
    """Whether the runtime can open `engine` in this environment (its package is there; the
    OpenVINO plugin also offers a device)."""
    import importlib.util

    if engine == "openvino":
        return importlib.util.find_spec("openvino") is not None
    if engine == "onnxruntime-openvino":
        from vae_export_runtime.ort_openvino import unavailable

        return unavailable() is None
    return True


@dataclass(frozen=True)
class Choice:
    engine: str
    precision: str
    reason: str
    fallback: bool  # True: the recorded choice was not used (another CPU, nothing recorded)


def choose(graph: Path, role: str, any_precision: bool = False) -> Choice:
    """What `engine="auto"` opens `graph` (a graph of `role`) with; the module docstring has the rule."""
    from vae_export_runtime.cpu import cpu_model, fingerprint

    rec = read_beside(graph)
    if rec is None:
        return Choice(*FALLBACK, f"no recorded recommendation beside {graph.name}; ONNX Runtime CPU", True)
    if rec.fingerprint != fingerprint():
        return Choice(*FALLBACK, f"the recommendation in {graph.parent / MANIFEST} was measured on another CPU "
                      f"({rec.cpu}, {rec.fingerprint}), not this one ({cpu_model()}, {fingerprint()}); "
                      "using ONNX Runtime CPU; run `vae-export bench --recommend` here to measure this one", True)
    wins: dict[tuple[str, str], list[int]] = {}
    for row in rec.rows:
        if row.graph != role:
            continue
        for c in row.ranking:
            if c.file == graph.name and c.engine in RUNTIME_ENGINES and (any_precision or c.precision == "fp32") \
                    and _installed(c.engine):
                wins.setdefault((c.engine, c.precision), []).append(row.workload())
                break
    if not wins:
        return Choice(*FALLBACK, f"no recorded candidate for {graph.name} the runtime can open; ONNX Runtime CPU", True)
    (engine, precision), won = max(wins.items(), key=lambda kv: (len(kv[1]), max(kv[1])))
    return Choice(engine, precision, f"recommended for {graph.name} on this CPU in {len(won)} of "
                  f"{sum(len(v) for v in wins.values())} measured rows", False)
