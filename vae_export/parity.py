"""Parity of every graph and variant in the manifest against PyTorch, on any engine (by
default each file on the engine that runs it: ONNX Runtime for .onnx and .ort, ExecuTorch for
.pte; `verify --engine NAME` checks the files another graph engine runs, with the same rules).

Comparison semantics (the one place they are defined; `verify --help` repeats them; the
arithmetic is `compare.py`'s):

- An element fails when ``|engine - torch| > atol + rtol * |torch|`` (numpy.isclose's rule).
- NaN or Inf anywhere in an engine's output always fails, whatever the tolerances.
- Every row reports max abs, max rel and mean abs error, and ``min_atol``: the smallest atol
  that would have passed at the given rtol.
- Decoder rows also report PSNR (dB) of x_hat against the fp32 PyTorch output (peak 1.0).
- fp32 graphs (`fp32`, `optimized`, `ort`) pass on atol/rtol (defaults 1e-5 / 1e-4).
- Classifier rows (semi-supervised models) compare `logits` and also report
  ``argmax_agreement``, the fraction of images whose predicted class is PyTorch's. fp32 logits
  pass on atol/rtol; reduced-precision logits pass when every image PyTorch classifies with a
  margin of at least `ARGMAX_MARGIN` between its top two logits gets the same class (a
  near-tie may flip; that is the precision, not a broken graph).
- Reduced-precision variants (`fp16`, `int8`, `int8-static`, `executorch-int8`) pass on decoder PSNR >= 30 dB
  (>= 20 dB on the +-4 sigma edge-case z, far outside the prior that static int8 calibrates
  its activation ranges on) and, for the encoder, on atol/rtol bounds on `mu` per variant
  (`REDUCED_MU`; `REDUCED_MU_EDGE` for the all-zero and all-one images); their
  `logvar` is reported but gated only on being finite, since quantisation error in a log
  variance says little about the decoded image.
- Files with recorded `bounds` (ExecuTorch programs) are checked at the sizes within them; a
  batch beyond the bound runs in calls within it (the engine splits it).
- Reduced engine precisions (`verify --engine openvino:bf16`, `torch:bf16`, ...: an engine that
  computes an fp32 graph in bfloat16) pass on the same rules as reduced variants: decoder PSNR
  >= 30 dB (20 dB on the edge z), encoder mu within `PRECISION_MU` (bf16 keeps 8 significant
  bits against fp16's 11, so its bound is 8x fp16's: atol 0.08 rtol 0.08; 0.25 on the edge
  images). Rows carry `precision`. A model engine (PyTorch) is verifiable only at a reduced
  precision: at fp32 it is the reference itself.
- A passed verify records, per engine, precision and file, that it passed on this CPU
  (`verified_entries`: the file's sha256 and the CPU's fingerprint): what `bench` counts as
  verified when it recommends an engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vae_export.compare import compare, psnr_db
from vae_export.engines import BF16, DEFAULT, FP32, GRAPH, MODEL, Choice, Target, for_artifact, resolve
from vae_export.errors import UsageError
from vae_export.families.base import LoadedModel
from vae_export.graphs import torch_outputs
from vae_export.inputs import EDGE_SIGMA, LABEL_ROWS, SEED, edge_inputs, fits_images, parity_inputs, with_labels
from vae_export.manifest import Manifest
from vae_export.options import VerifyOptions
from vae_export.progress import SILENT, Progress
from vae_export.reports import CheckRow, VerifyReport
from vae_export.variants import REDUCED, REGISTRY
from vae_export_runtime.session import expected_shapes

FP32_ATOL, FP32_RTOL = VerifyOptions.atol, VerifyOptions.rtol
PSNR_MIN_DB = 30.0
EDGE_PSNR_MIN_DB = 20.0
ARGMAX_MARGIN = 1.0
# Bounds on encoder mu per reduced-precision variant, from the registry (variants.py).
REDUCED_MU = {v.name: v.mu_tol for v in REGISTRY.values() if v.reduced}
REDUCED_MU_EDGE = {v.name: v.mu_edge_tol for v in REGISTRY.values() if v.reduced}
# Bounds on encoder mu per reduced engine precision: (atol, rtol), and on the edge images.
PRECISION_MU = {BF16: ((0.08, 0.08), (0.25, 0.08))}
DEFAULT_BATCH_SIZES = VerifyOptions.batch_sizes


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    gated: bool = True  # False: report only (NaN/Inf still fails)
    psnr_min: float | None = None  # decoder images of reduced variants pass on PSNR
    argmax: bool = False  # classifier logits of reduced variants pass on confident argmax agreement


def tolerance_for(variant: str, graph: str, output: str, atol: float, rtol: float, edge: bool = False,
                  precision: str = FP32) -> Tolerance:
    reduced_precision = precision != FP32
    if variant not in REDUCED and not reduced_precision:
        return Tolerance(atol, rtol)
    if graph == "decoder":
        return Tolerance(atol, rtol, gated=False, psnr_min=EDGE_PSNR_MIN_DB if edge else PSNR_MIN_DB)
    if graph == "classifier":
        return Tolerance(atol, rtol, gated=False, argmax=True)
    if output == "mu":
        if reduced_precision:  # the coarser of the variant's and the precision's bounds
            mu_atol, mu_rtol = PRECISION_MU[precision][1 if edge else 0]
            if variant in REDUCED:
                v_atol, v_rtol = (REDUCED_MU_EDGE if edge else REDUCED_MU)[variant]  # type: ignore[misc]
                mu_atol, mu_rtol = max(mu_atol, v_atol), max(mu_rtol, v_rtol)
        else:
            mu_atol, mu_rtol = (REDUCED_MU_EDGE if edge else REDUCED_MU)[variant]  # type: ignore[misc]
        return Tolerance(mu_atol, mu_rtol)
    return Tolerance(atol, rtol, gated=False)


def verify(
    artifacts: Path,
    manifest: Manifest,
    integrity: list[dict[str, Any]],
    loaded: LoadedModel,
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES,
    atol: float = FP32_ATOL,
    rtol: float = FP32_RTOL,
    device: str = "cpu",
    images: np.ndarray | None = None,
    images_source: str = "uniform [0, 1]",
    progress: Progress = SILENT,
    sizes: tuple[tuple[int, int], ...] | None = None,
    engine_names: tuple[str, ...] = (),
) -> VerifyReport:
    """Run every check and return the report (docs/contract.md, `verify --json`): each listed
    artifact on each of `engine_names` that runs it (none named: on the engine that runs it,
    `engines_for`), against PyTorch on the same feeds.
    `manifest` has been read and its `integrity` rows checked by the caller. A graph with a
    symbolic size is checked at each of `sizes` (default: `Geometry.default_sizes`), and its
    rows carry `size`."""
    chosen = engines_for(manifest, artifacts, engine_names, device)
    g = loaded.geometry
    sizes = sizes or g.default_sizes()
    checks: list[CheckRow] = []
    recorded = manifest.model.geometry
    for entry in manifest.artifacts:
        spec = recorded.spec(entry.graph)
        path = artifacts / entry.file
        shapes = expected_shapes(spec, recorded.latent_dims(), recorded.image_dims(), recorded.num_classes)
        module = loaded.module(spec.role)
        runners = [(c.engine.open(Target(spec, entry.variant, path, shapes=shapes, module=module, sha256=entry.sha256,
                                         precision=c.precision), device), c)
                   for c in chosen[entry.file]]
        if not runners:
            continue
        progress(f"verify {entry.file}" + "".join(f" ({c.label})" for _, c in runners if c.label != DEFAULT))
        for size in sizes:
            if not entry.admits(g.input_shapes(spec, size)):
                progress(f"  {entry.file}: {size[0]}x{size[1]} is beyond its exported bounds; not checked there")
                continue
            image_shape, latent_shape = g.image_at(size), g.latent_at(size)
            real = fits_images(images, image_shape)
            cases = [(b, "random" if spec.role == "decoder" or not real else "images",
                      parity_inputs(spec.role, b, latent_shape, image_shape, images)) for b in batch_sizes]
            edge = edge_inputs(spec.role, latent_shape, image_shape)
            cases.append((len(edge), "edge", edge))
            for batch, kind, x in cases:
                feeds = with_labels(spec.input_names, x, g.num_classes)
                expected = torch_outputs(module, spec.input_names, feeds)
                row_atol = loaded.family.edge_atol(atol) if kind == "edge" else atol
                for runner, choice in runners:
                    got = runner.run(feeds)
                    for output, a, e in zip(spec.output_names, got, expected):
                        checks.append(_check_row(entry.variant, spec.role, entry.file, output, batch, kind, a, e,
                                                 row_atol, rtol, list(size) if g.dynamic_size else None,
                                                 None if choice.label == DEFAULT else choice.label, choice.precision))
        for runner, _ in runners:
            runner.close()
    checkpoint_ok = loaded.checkpoint_sha256 == manifest.checkpoint_sha256
    return VerifyReport(
        integrity=integrity,
        checkpoint={"path": str(loaded.checkpoint), "sha256": loaded.checkpoint_sha256,
                    "matches_manifest": checkpoint_ok},
        checks=checks,
        thresholds={
            "fp32": {"atol": atol, "rtol": rtol},
            "reduced": {"decoder_psnr_min_db": PSNR_MIN_DB, "decoder_edge_psnr_min_db": EDGE_PSNR_MIN_DB,
                        "encoder_mu": {k: {"atol": a, "rtol": r} for k, (a, r) in REDUCED_MU.items()},
                        "encoder_mu_edge": {k: {"atol": a, "rtol": r} for k, (a, r) in REDUCED_MU_EDGE.items()},
                        "classifier_argmax_margin": ARGMAX_MARGIN},
            "rule": "fail when |onnx - torch| > atol + rtol * |torch|; NaN/Inf always fails",
        },
        inputs={"seed": SEED, "encoder": images_source, "decoder": "z ~ N(0, I)",
                "edge": f"encoder: all zeros, all ones; decoder: z at +-{EDGE_SIGMA:g} sigma",
                **({"y": LABEL_ROWS} if g.conditional else {})},
        batch_sizes=list(batch_sizes),
        device=device,
        sizes=[list(z) for z in sizes] if g.dynamic_size else None,
        engines=None if tuple(engine_names) in ((), (DEFAULT,)) else list(engine_names),
    )


def engines_for(manifest: Manifest, artifacts: Path, engine_names: tuple[str, ...], device: str
                ) -> dict[str, list[Choice]]:
    """Listed file -> the engines (at their precisions) verify runs it on: those of
    `engine_names` that run it (`_runs`), or with none named the engine that runs its kind
    (`engines.for_artifact`), which must be installed and run on `device` (UsageError naming
    the file otherwise). Called before anything loads."""
    if engine_names:
        named = [check_engine(name, device) for name in engine_names]
        return {e.file: [c for c in named if _runs(c, e.variant, artifacts / e.file)] for e in manifest.artifacts}
    chosen: dict[str, list[Choice]] = {}
    for entry in manifest.artifacts:
        engine = for_artifact(entry.variant, artifacts / entry.file)
        if engine is not None:
            try:
                engine.check(device)
            except UsageError as exc:
                raise UsageError(f"{entry.file}: {exc}; or pass --engine onnxruntime to check the ONNX graphs only") \
                    from None
        chosen[entry.file] = [Choice(engine)] if engine is not None else []
    return chosen


def _runs(choice: Choice, variant: str, path: Path) -> bool:
    """Whether verify runs this artifact on `choice`: graph engines on the files they accept;
    a model engine (at a reduced precision) once per graph, on the fp32 entry."""
    if choice.engine.kind == MODEL:
        return variant == FP32
    return choice.engine.accepts(variant, path)


def check_engine(name: str, device: str) -> Choice:
    """The engine (and precision) `verify --engine NAME[:PRECISION]` names, able to run here
    (UsageError otherwise)."""
    choice = resolve(name)
    engine = choice.engine
    if engine.kind != GRAPH and choice.precision == FP32:
        raise UsageError(f"--engine {name}: verify checks engines that run the exported graphs against PyTorch; "
                         f"{name} runs the PyTorch model itself (its reduced precisions, e.g. {name}:bf16, "
                         "are verifiable)")
    engine.check(device)
    return choice


def verified_entries(report: VerifyReport, manifest: Manifest) -> dict[str, dict[str, Any]]:
    """What a passed verify proves, keyed "ENGINE[:PRECISION]|FILE": the file's sha256 and this
    CPU's fingerprint (bench's `verified` is a match on both), and the worst decoder PSNR."""
    from vae_export_runtime.cpu import fingerprint

    if not report.passed:
        return {}
    sha = {e.file: e.sha256 for e in manifest.artifacts}
    out: dict[str, dict[str, Any]] = {}
    for c in report.checks:
        key = f"{c.engine or DEFAULT}|{c.file}"
        entry = out.setdefault(key, {"sha256": sha.get(c.file), "fingerprint": fingerprint(), "checks": 0,
                                     "min_psnr_db": None})
        entry["checks"] += 1
        if c.psnr_db is not None and c.input != "edge":
            entry["min_psnr_db"] = c.psnr_db if entry["min_psnr_db"] is None else min(entry["min_psnr_db"], c.psnr_db)
    return out


def _check_row(variant: str, role: str, file: str, output: str, batch: int, kind: str, actual: np.ndarray,
               expected: np.ndarray, atol: float, rtol: float, size: list[int] | None,
               engine: str | None = None, precision: str = FP32) -> CheckRow:
    tol = tolerance_for(variant, role, output, atol, rtol, edge=kind == "edge", precision=precision)
    stats = compare(actual, expected, tol.atol, tol.rtol)
    psnr = psnr_db(actual, expected) if role == "decoder" else None
    agreement = confident = None
    if role == "classifier" and stats["nonfinite"] == 0 and actual.shape == expected.shape:
        agreement = float(np.mean(actual.argmax(1) == expected.argmax(1)))
        top2 = np.sort(expected, axis=1)[:, -2:]
        sure = (top2[:, 1] - top2[:, 0]) >= ARGMAX_MARGIN if expected.shape[1] > 1 else np.ones(len(expected), bool)
        confident = bool(np.all(actual.argmax(1)[sure] == expected.argmax(1)[sure]))
    if tol.psnr_min is not None:
        passed = psnr is not None and psnr >= tol.psnr_min
    elif tol.argmax:
        passed = bool(confident)
    elif tol.gated:
        passed = stats["passed"]
    else:
        passed = stats["nonfinite"] == 0
    stats["passed"] = bool(passed and stats["nonfinite"] == 0)
    return CheckRow(graph=role, variant=variant, file=file, output=output, batch=batch, input=kind, **stats,
                    atol=tol.atol, rtol=tol.rtol, psnr_db=psnr, psnr_min_db=tol.psnr_min, gated_on=_gate_name(tol),
                    size=size, argmax_agreement=agreement, engine=engine,
                    precision=None if precision == FP32 else precision)


def _gate_name(tol: Tolerance) -> str:
    if tol.psnr_min is not None:
        return "psnr"
    if tol.argmax:
        return "argmax"
    return "atol/rtol" if tol.gated else "finite"
