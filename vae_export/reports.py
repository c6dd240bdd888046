"""The machine-readable reports of `verify` and `bench` (docs/contract.md, "Reports").

CI parses these, so the JSON keys and their order are the contract: `to_json` writes exactly
what earlier versions wrote, `from_json` reads it back (a bench report is also the `--baseline`
format). Each report knows whether it passed and raises the domain error when it did not.
Torch-free.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from vae_export.abtest import CONFIDENCE, PAIRED_METHOD, REGRESSED, VERDICTS
from vae_export.artifacts import read_json
from vae_export.errors import CheckFailed, VAEExportError


def fmt_number(value: float | None, spec: str = ".2e") -> str:
    """An error statistic for people: `nan/inf` where the output was not finite (None)."""
    return "nan/inf" if value is None else format(value, spec)


def _known(cls: type, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a JSON row into the dataclass's fields and the keys it does not know (kept)."""
    names = {f.name for f in fields(cls)} - {"extra"}
    return {k: v for k, v in data.items() if k in names}, {k: v for k, v in data.items() if k not in names}


# ---- verify ----------------------------------------------------------------------------------

@dataclass
class CheckRow:
    """One graph x variant x output x batch comparison (parity.py's docstring has the rule)."""

    graph: str
    variant: str
    file: str
    output: str
    batch: int
    input: str
    passed: bool
    max_abs: float | None
    max_rel: float | None
    mean_abs: float | None
    min_atol: float | None
    nonfinite: int
    atol: float
    rtol: float
    psnr_db: float | None
    psnr_min_db: float | None
    gated_on: str
    error: str | None = None  # a shape mismatch, when there is one
    size: list[int] | None = None  # [H, W], for graphs with a symbolic size
    # classifier rows: the fraction of images whose ONNX Runtime argmax is PyTorch's
    argmax_agreement: float | None = None
    engine: str | None = None  # the engine checked, when not ONNX Runtime (verify --engine)
    precision: str | None = None  # a reduced engine precision (verify --engine NAME:bf16); None: fp32
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        extra, error, size = data.pop("extra"), data.pop("error"), data.pop("size")
        agreement, engine, precision = data.pop("argmax_agreement"), data.pop("engine"), data.pop("precision")
        out: dict[str, Any] = {}
        for key, value in data.items():
            out[key] = value
            if key == "passed" and error is not None:
                out["error"] = error  # where earlier versions put it
        return {**out, **({"size": size} if size is not None else {}),
                **({"argmax_agreement": agreement} if agreement is not None else {}),
                **({"engine": engine} if engine is not None else {}),
                **({"precision": precision} if precision is not None else {}), **extra}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckRow:
        known, extra = _known(cls, data)
        return cls(**known, extra=extra)


@dataclass
class VerifyReport:
    integrity: list[dict[str, Any]]
    checkpoint: dict[str, Any]
    checks: list[CheckRow]
    thresholds: dict[str, Any]
    inputs: dict[str, Any]
    batch_sizes: list[int]
    device: str
    sizes: list[list[int]] | None = None  # the image sizes checked, for graphs with a symbolic size
    engines: list[str] | None = None  # verify --engine: the engines checked (None: ONNX Runtime)

    @property
    def bad_files(self) -> list[str]:
        return [r["file"] for r in self.integrity if not r["sha256_ok"]]

    @property
    def failed(self) -> list[CheckRow]:
        return [c for c in self.checks if not c.passed]

    @property
    def passed(self) -> bool:
        return not self.bad_files and not self.failed

    def raise_if_failed(self) -> None:
        if self.bad_files:
            raise CheckFailed(f"integrity check failed: sha256 of {', '.join(self.bad_files)} does not match the manifest")
        overflowed = [c for c in self.failed if c.nonfinite and c.variant.startswith("fp16")]
        if overflowed:  # the known failure of large conv decoders in float16 (activations past 65504)
            c = overflowed[0]
            raise CheckFailed(f"parity failed: {c.file} overflowed in float16: {c.output} holds {c.nonfinite} NaN/Inf "
                              f"values at batch {c.batch} (an activation beyond float16's 65504); use the fp32 graph "
                              "or export --variant fp16-mixed, which keeps the overflowing nodes in float32")
        if self.failed:
            worst = self.failed[0]
            raise CheckFailed(f"parity failed: {len(self.failed)} of {len(self.checks)} checks, first "
                              f"{worst.file} {worst.output} at batch {worst.batch} (max_abs {fmt_number(worst.max_abs)})")

    def summary(self) -> dict[str, Any]:
        """What the manifest keeps of a verify report."""
        worst: dict[str, float | None] = {}
        for c in self.checks:
            key = f"{c.graph}.{c.variant}.{c.output}"
            if key in worst and worst[key] is None:
                continue  # a non-finite output stays the worst
            worst[key] = None if c.max_abs is None else max(c.max_abs, worst.get(key) or 0.0)
        return {
            "passed": self.passed,
            "checks": len(self.checks),
            "failed": len(self.failed),
            "integrity_ok": not self.bad_files,
            "device": self.device,
            "batch_sizes": self.batch_sizes,
            "worst_max_abs": worst,
        }

    def to_json(self) -> dict[str, Any]:
        data = {"passed": self.passed, "integrity": self.integrity, "checkpoint": self.checkpoint,
                "checks": [c.to_json() for c in self.checks], "thresholds": self.thresholds,
                "inputs": self.inputs, "batch_sizes": self.batch_sizes, "device": self.device}
        return {**data, **({"sizes": self.sizes} if self.sizes is not None else {}),
                **({"engines": self.engines} if self.engines is not None else {})}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VerifyReport:
        return cls(integrity=data["integrity"], checkpoint=data["checkpoint"],
                   checks=[CheckRow.from_json(c) for c in data["checks"]], thresholds=data["thresholds"],
                   inputs=data["inputs"], batch_sizes=data["batch_sizes"], device=data["device"],
                   sizes=data.get("sizes"), engines=data.get("engines"))


# ---- bench -----------------------------------------------------------------------------------

MAX_BASELINE_ROWS = 100_000
_TEXT_FIELDS = ("graph", "variant", "engine", "provider")
_COUNT_FIELDS = ("batch", "threads", "iterations")
_TIME_FIELDS = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "throughput_per_s")


def check_row_types(row: dict[str, Any], where: str) -> None:
    """A baseline travels (CI artifacts): every field the gate reads must have its type, and
    times must be finite and non-negative (a NaN p50 would make a gate that cannot fail)."""
    def fail(name: str, expected: str) -> None:
        value = row[name]
        shown = repr(value)[:60] if isinstance(value, (str, int, float, bool, type(None))) else type(value).__name__
        raise VAEExportError(f"{where}.{name}: expected {expected}, found {shown}")

    for name in _TEXT_FIELDS:
        if not isinstance(row[name], str) or len(row[name]) > 255:
            fail(name, "a string of at most 255 characters")
    if row["file"] is not None and not (isinstance(row["file"], str) and len(row["file"]) <= 255):
        fail("file", "a string or null")
    for name in _COUNT_FIELDS:
        if isinstance(row[name], bool) or not isinstance(row[name], int) or not 0 <= row[name] <= 1 << 40:
            fail(name, "a non-negative integer")
    for name in _TIME_FIELDS:
        value = row[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            fail(name, "a finite non-negative number")
    if "precision" in row and (not isinstance(row["precision"], str) or len(row["precision"]) > 32):
        fail("precision", "a string of at most 32 characters")
    if row.get("speedup_vs_torch") is not None:
        value = row["speedup_vs_torch"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            fail("speedup_vs_torch", "a finite number or null")


MATCH_KEYS = ("graph", "engine", "variant", "precision", "provider", "batch", "threads", "size")


@dataclass
class BenchRow:
    """One graph x engine x variant x batch timing; times in ms, throughput at p50."""

    graph: str
    batch: int
    threads: int
    variant: str
    engine: str  # "onnxruntime" or "torch"
    provider: str
    file: str | None
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    throughput_per_s: float
    iterations: int
    speedup_vs_torch: float | None = None
    size: list[int] | None = None  # [H, W], for graphs with a symbolic size
    ms_per_megapixel: float | None = None  # p50 per million pixels of the batch, with `size`
    round_p50_ms: list[float] | None = None  # per-round medians: what a later run's gate compares
    # the arithmetic the engine ran at: "fp32", or a reduced precision ("bf16"), never hidden;
    # bench always writes it; None only in a report read from a version before it existed (fp32)
    precision: str | None = None
    # memory (MiB; bench.py's docstring says how measured): the call's peak RSS above the loaded
    # session (its arena's earlier growth included), and the session's own size when opened
    peak_mib: float | None = None
    session_mib: float | None = None
    # the in-run check against PyTorch fp32 on the same feeds (None: no PyTorch row), and
    # whether `verify` passed for this engine, precision and file on this CPU
    psnr_db: float | None = None
    check_passed: bool | None = None
    verified: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.size is not None and self.ms_per_megapixel is None:
            self.ms_per_megapixel = self.megapixel_ms()

    def megapixel_ms(self, image_shape: list[int] | None = None) -> float | None:
        """p50 per million pixels of the batch: at the row's `size`, else at `image_shape`
        (C, H, W: a fixed-size graph's, from the report's env); None when neither is known."""
        h, w = self.size if self.size else (image_shape or [0, 0, 0])[1:3]
        pixels = self.batch * h * w
        return self.p50_ms / (pixels / 1e6) if pixels else None

    @property
    def arithmetic(self) -> str:
        return self.precision or "fp32"

    def key(self) -> tuple[Any, ...]:
        values = [self.arithmetic if k == "precision" else getattr(self, k) for k in MATCH_KEYS]
        return tuple(tuple(v) if isinstance(v, list) else v for v in values)

    def label(self) -> str:
        size = f" {self.size[0]}x{self.size[1]}" if self.size else ""
        return f"{self.graph} {self.variant} {self.engine_label}{size} batch {self.batch}"

    @property
    def engine_label(self) -> str:
        """"engine" at fp32, "engine:precision" otherwise (how --engine names it)."""
        return self.engine if self.arithmetic == "fp32" else f"{self.engine}:{self.arithmetic}"

    def shape(self) -> tuple[Any, ...]:
        """The workload: graph, size and batch (rows of one shape compete)."""
        return (self.graph, tuple(self.size or ()), self.batch)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        if data["size"] is None:  # fixed-size graphs: the v1 row, unchanged
            del data["size"], data["ms_per_megapixel"]
        if data["round_p50_ms"] is None:
            del data["round_p50_ms"]
        for key in ("precision", "peak_mib", "session_mib", "psnr_db", "check_passed", "verified"):
            if data[key] is None:  # not measured: absent, as before these existed
                del data[key]
        return {**data, **extra}

    @classmethod
    def from_json(cls, data: Any, where: str = "results") -> BenchRow:
        if not isinstance(data, dict):
            raise VAEExportError(f"{where}: expected a JSON object, found {type(data).__name__}")
        known, extra = _known(cls, data)
        optional = ("speedup_vs_torch", "size", "ms_per_megapixel", "round_p50_ms", "extra", "precision",
                    "peak_mib", "session_mib", "psnr_db", "check_passed", "verified")
        missing = [f.name for f in fields(cls) if f.name not in known and f.name not in optional]
        if missing:
            raise VAEExportError(f"{where}: missing {', '.join(missing)}")
        check_row_types(known, where)
        return cls(**known, extra=extra)


@dataclass
class BenchReport:
    env: dict[str, Any]
    warmup: int
    iterations: int
    min_time_s: float
    results: list[BenchRow]
    rounds: int | None = None
    calibration: dict[str, Any] | None = None  # the same-run matmul rate (calibration.py)
    # the fastest verified (engine, variant, precision) per graph, size and batch (recommend.py)
    recommendations: list[dict[str, Any]] | None = None
    noise: float | None = None  # the run's own noise: median relative spread of round p50s

    def add_speedups(self) -> None:
        """speedup_vs_torch = PyTorch eager fp32 p50 / this row's p50, for every other row
        (PyTorch's bf16 rows included: reduced precision against the fp32 baseline)."""
        def shape(r: BenchRow) -> tuple[Any, ...]:
            return (r.graph, r.batch, tuple(r.size or ()))

        torch_p50 = {shape(r): r.p50_ms for r in self.results if r.engine == "torch" and r.arithmetic == "fp32"}
        for row in self.results:
            ref = torch_p50.get(shape(row))
            baseline = row.engine == "torch" and row.arithmetic == "fp32"
            row.speedup_vs_torch = (ref / row.p50_ms) if ref and not baseline else None

    def summary(self) -> dict[str, Any]:
        """What the manifest keeps: p50 per row and the environment's essentials."""
        env = self.env
        return {
            "cpu": env["cpu"], "device": env["device"], "threads": env["threads"],
            "onnxruntime": env["onnxruntime"], "torch": env["torch"],
            "p50_ms": {f"{r.graph}.{r.variant}.{r.engine_label}.b{r.batch}" + (f".{r.size[0]}x{r.size[1]}" if r.size else ""):
                       round(r.p50_ms, 5) for r in self.results},
        }

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"env": self.env, "warmup": self.warmup, "iterations": self.iterations,
                                "min_time_s": self.min_time_s}
        if self.rounds is not None:
            data.update(rounds=self.rounds, calibration=self.calibration)
        data = {**data, "results": [r.to_json() for r in self.results]}
        if self.recommendations is not None:
            data.update(noise=self.noise, recommendations=self.recommendations)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchReport:
        rows = data.get("results")
        if not isinstance(rows, list):
            raise VAEExportError("not a bench report (no 'results' list)")
        if len(rows) > MAX_BASELINE_ROWS:
            raise VAEExportError(f"results: at most {MAX_BASELINE_ROWS} rows, found {len(rows)}")
        from vae_export.baselines import check_baseline

        check_baseline(data)  # lengths, total work, then every value the gate computes with
        return cls(env=data.get("env", {}), warmup=data.get("warmup", 0), iterations=data.get("iterations", 0),
                   min_time_s=data.get("min_time_s", 0.0),
                   results=[BenchRow.from_json(r, f"results[{i}]") for i, r in enumerate(rows)],
                   rounds=data.get("rounds"), calibration=data.get("calibration"),
                   recommendations=data.get("recommendations") if isinstance(data.get("recommendations"), list) else None,
                   noise=data.get("noise") if isinstance(data.get("noise"), (int, float)) else None)

    @classmethod
    def read(cls, path: Path, option: str = "--baseline") -> BenchReport:
        try:
            data = read_json(path, "bench report")
        except VAEExportError as exc:  # already names the file; say which option it came from
            raise type(exc)(f"{option} {exc}") from None
        try:
            return cls.from_json(data)
        except VAEExportError as exc:
            raise VAEExportError(f"{option} {path}: {exc}") from None


@dataclass(frozen=True)
class Regression:
    row: BenchRow
    baseline_p50_ms: float
    ratio: float


@dataclass
class GateResult:
    """The regression gate: rows of a run against the matching rows of a baseline."""

    baseline: str
    max_regression: float
    compared: int
    regressions: list[Regression]
    unmatched: list[BenchRow]
    machines: dict[str, Any] | None = None  # statistical verdicts (abtest.judge_baseline), when both runs allow
    rows: list[dict[str, Any]] | None = None

    @property
    def passed(self) -> bool:
        return not self.regressions

    def raise_if_failed(self) -> None:
        if not self.passed:
            raise CheckFailed(f"{len(self.regressions)} of {self.compared} rows slower than "
                              f"{self.max_regression:g}x the baseline {self.baseline}")


# ---- bench --against -------------------------------------------------------------------------

@dataclass
class AgainstReport:
    """`bench --against OLD`: NEW's bench rows with the OLD side, each row's paired ratio, its
    interval and verdict (`abtest.paired`); it passed when no row regressed. `to_json` writes
    the keys earlier versions wrote (docs/contract.md)."""

    env: dict[str, Any]
    against: str
    artifacts: str
    max_regression: float
    rounds: int
    min_time_s: float
    warmup: int
    iterations: int
    results: list[dict[str, Any]]
    unmatched: list[str]
    sessions: int | None = None  # session groups per row (the interval's units)

    @property
    def counts(self) -> dict[str, int]:
        verdicts = [r["verdict"] for r in self.results]
        return {v: verdicts.count(v) for v in VERDICTS}

    @property
    def passed(self) -> bool:
        return not self.counts[REGRESSED]

    def raise_if_failed(self) -> None:
        """The gate's verdict as the domain error: exit 1 when any row regressed."""
        if not self.passed:
            counts = ", ".join(f"{n} {v}" for v, n in self.counts.items() if n)
            raise CheckFailed(f"{self.counts[REGRESSED]} of {len(self.results)} rows regressed beyond "
                              f"{self.max_regression:g}x {self.against} ({counts})")

    def to_json(self) -> dict[str, Any]:
        return {"env": self.env, "against": self.against, "artifacts": self.artifacts,
                "max_regression": self.max_regression, "confidence": CONFIDENCE, "rounds": self.rounds,
                **({"sessions": self.sessions} if self.sessions is not None else {}),
                "min_time_s": self.min_time_s, "warmup": self.warmup, "iterations": self.iterations,
                "method": PAIRED_METHOD, "results": self.results, "unmatched": self.unmatched,
                "counts": self.counts, "passed": self.passed}
