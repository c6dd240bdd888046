"""One library call per CLI command, working on an artifacts directory.

The CLI parses options into the dataclasses of `options.py`, calls one function here and
formats what it returns; everything it runs is here, so the same steps are usable from Python
and `run` chains them. Reports come back typed (`reports.py`) and know whether they passed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from vae_export.artifacts import CHECKPOINT_NAME, TRAIN_METRICS_NAME, atomic_write_json, directory_lock, ensure_dir
from vae_export.errors import UsageError
from vae_export.export import ExportResult, export
from vae_export.families import for_source, load_model
from vae_export.families.base import LoadedModel
from vae_export.inputs import CALIBRATION_SAMPLES
from vae_export.manifest import MANIFEST_NAME, Manifest, escaped, record_summary
from vae_export.options import (AgainstOptions, BenchOptions, ExportOptions, ModelSource, RunOptions, TrainOptions,
                                VerifyOptions)
from vae_export.pictures import draw_pictures
from vae_export.progress import SILENT, Progress
from vae_export.reports import AgainstReport, BenchReport, GateResult, VerifyReport
from vae_export.variants import needs_calibration
from vae_export_runtime.contract import Geometry

VERIFY_REPORT = "verify.json"
BENCH_REPORT = "bench.json"


def read_train_metrics(artifacts: Path) -> dict[str, Any] | None:
    """train_metrics.json if present and readable: it names the dataset training used."""
    path = artifacts / TRAIN_METRICS_NAME
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def train_into(artifacts: Path, options: TrainOptions = TrainOptions(), progress: Progress = SILENT) -> dict[str, Any]:
    """Train the reference VAE; write vae.safetensors and train_metrics.json; return the metrics."""
    from vae_export.data import load_dataset
    from vae_export.families.reference import save_checkpoint
    from vae_export.model import VAEConfig
    from vae_export.train import train
    from vae_export.training import DEFAULT_EPOCHS, DEFAULT_M2_EPOCHS, TrainConfig

    ensure_dir(artifacts)
    o = options
    data = load_dataset(o.dataset, o.data_dir, o.download)
    semi = o.labels is not None
    if (o.conditional or semi) and data.train_labels is None:
        option = "--labels" if semi else "--conditional"
        raise UsageError(f"{option}: dataset {o.dataset!r} in {o.data_dir} has no labels (the two *-labels-idx1-ubyte "
                         "files); train without it, or add them")
    classes = data.class_names if o.conditional or semi else ()
    default_epochs = (DEFAULT_M2_EPOCHS if semi else DEFAULT_EPOCHS)[o.dataset]
    config = TrainConfig(epochs=o.epochs or default_epochs, batch_size=o.batch_size, lr=o.lr,
                         beta=o.beta, seed=o.seed, labels=o.labels)
    model_config = VAEConfig(image_shape=(1, 28, 28), hidden_dim=o.hidden_dim, latent_dim=o.latent_dim, arch=o.arch,
                             channels=o.channels, latent_channels=o.latent_channels, num_classes=len(classes),
                             classifier=semi, class_names=classes)
    kind = f"semi-supervised ({o.labels} labels) " if semi else "conditional " if o.conditional else ""
    progress(f"train {kind}{o.arch} on {o.dataset}: {len(data.train)} train / {len(data.test)} test images, "
             f"{config.epochs} epochs")

    def on_epoch(row: dict[str, Any]) -> None:
        error = f"  test error {100 * row['test_error']:5.2f} %" if "test_error" in row else ""
        progress(f"  epoch {row['epoch']:>3}/{config.epochs}  train {row['train_loss']:8.2f}  "
                 f"test {row['test_loss']:8.2f} nats/image{error}  ({row['seconds']:.1f} s)")

    result = train(data, model_config, config, on_epoch)
    result.metrics["data_dir"] = str(o.data_dir.resolve()) if o.data_dir else None
    with directory_lock(artifacts):
        save_checkpoint(result.model, artifacts / CHECKPOINT_NAME)
        atomic_write_json(artifacts / TRAIN_METRICS_NAME, result.metrics)
    return result.metrics


def export_into(artifacts: Path, source: ModelSource = ModelSource(), options: ExportOptions = ExportOptions()) -> ExportResult:
    """Load the checkpoint (default ARTIFACTS/vae.safetensors) and export graphs + manifest."""
    ensure_dir(artifacts)
    loaded = load_model(source.checkpoint or artifacts / CHECKPOINT_NAME, source.model_ref, source.image_shape,
                        options.dynamic_size)
    calibration = None
    if needs_calibration(options.variants):
        from vae_export.data import reference_images

        calibration, _ = reference_images(read_train_metrics(artifacts), loaded.image_shape, split="train")
        if calibration is None:  # user models of other shapes: calibrate on uniform noise
            shape = (CALIBRATION_SAMPLES, *loaded.image_shape)
            calibration = np.random.default_rng(0).random(shape, dtype=np.float32)
    with directory_lock(artifacts):  # two exports into one directory would interleave their files
        return export(loaded, artifacts, options.opset, options.exporter, tuple(dict.fromkeys(options.variants)),
                      calibration)


def load_for_manifest(artifacts: Path, manifest: Manifest, source: ModelSource = ModelSource()) -> LoadedModel:
    """The PyTorch side of a comparison: the manifest's checkpoint, rebuilt by the family its
    recorded source came from, unless overridden. A manifest may have travelled: it never
    names code to run, so a family that cannot rebuild from it (user classes) needs the user's
    own --model (trusted: they typed it)."""
    family = for_source(manifest.model.source)
    model_ref = source.model_ref
    if model_ref is None and not family.rebuilds_from_manifest:
        raise UsageError(f"{artifacts / MANIFEST_NAME}: the graphs come from a user class "
                         f"({escaped(manifest.model.source)}); pass --model MODULE:ATTR to rebuild it "
                         "(a manifest's class is never imported)")
    if model_ref is None:
        model_ref = family.model_ref_for(manifest.model.source)
    image_shape = source.image_shape or manifest.model.image_shape
    path = source.checkpoint or manifest.checkpoint(artifacts)
    if source.checkpoint is None and not path.exists():
        raise UsageError(f"{artifacts / MANIFEST_NAME}: the checkpoint it records, {path}, is gone; pass --checkpoint")
    return load_model(path, model_ref, image_shape, manifest.model.geometry.dynamic_size)


def verify_artifacts(artifacts: Path, source: ModelSource = ModelSource(), options: VerifyOptions = VerifyOptions(),
                     progress: Progress = SILENT) -> VerifyReport:
    """Parity of every graph and variant; the summary goes into the manifest, the report to
    `options.json_path` when given. The caller decides what a failure means
    (`report.raise_if_failed()`)."""
    from vae_export import parity
    from vae_export.data import reference_images

    manifest = Manifest.read(artifacts)
    integrity = manifest.check_integrity(artifacts)  # integrity first: nothing runs on a changed file
    parity.engines_for(manifest, artifacts, options.engines, options.device)  # unknown or missing: before any loading
    # Sizes and batches must fit in memory before the model is even loaded (PyTorch, then
    # each engine, run every case). Comparing one output holds ~16 copies of it (both sides
    # in float64, the difference, relative and excess errors, their temporaries: compare.py),
    # beside PyTorch's and each engine's outputs (measured: verify of the MLP at batch 65,536
    # peaked at 3.5 GB, where counting 7 copies gave 2.5 GiB).
    _check_memory(artifacts, manifest, _check_sizes(manifest.model.geometry, options.sizes), options.batch_sizes,
                  engines=1 + len(options.engines), held_outputs=16 + len(options.engines), command="verifying",
                  edge_cases=True)
    loaded = load_for_manifest(artifacts, manifest, source)
    sizes = _check_sizes(loaded.geometry, options.sizes)
    images, images_source = reference_images(read_train_metrics(artifacts), loaded.image_shape)
    report = parity.verify(artifacts, manifest, integrity, loaded, options.batch_sizes, options.atol, options.rtol,
                           options.device, images, images_source, progress, sizes, options.engines)
    if report.passed:  # a failed check leaves the artifacts directory as it was
        record_summary(artifacts, "parity", {**report.summary(),
                                             "verified": _merged_verified(manifest, parity.verified_entries(report, manifest))})
    if options.json_path is not None:
        atomic_write_json(options.json_path, report.to_json())
    return report


MAX_VERIFIED = 256  # entries the manifest keeps of passed verify runs


def _merged_verified(manifest: Manifest, new: dict[str, Any]) -> dict[str, Any]:
    """The manifest's record of passed verify runs, with this run's added (a run of another
    engine does not erase the others'; entries of files no longer listed are dropped)."""
    old = (manifest.parity or {}).get("verified")
    listed = {e.file for e in manifest.artifacts}
    merged = {k: v for k, v in (old if isinstance(old, dict) else {}).items() if k.partition("|")[2] in listed}
    merged.update(new)
    return dict(list(merged.items())[-MAX_VERIFIED:])


@dataclass
class BenchOutcome:
    report: BenchReport
    gate: GateResult | None  # with a baseline: the regression gate's verdict

    def raise_if_failed(self) -> None:
        if self.gate is not None:
            self.gate.raise_if_failed()


def bench_artifacts(artifacts: Path, source: ModelSource = ModelSource(), options: BenchOptions = BenchOptions(),
                    progress: Progress = SILENT) -> BenchOutcome:
    """The latency sweep (and the regression gate against `options.baseline`); the summary
    goes into the manifest, the report to `options.json_path` when given."""
    from vae_export import bench

    o = options
    # an unknown or missing engine (or CUDA) fails before any loading
    graph_engines, model_engines = bench.bench_engines(o, o.with_torch)
    if o.baseline is not None:
        BenchReport.read(o.baseline)  # a malformed baseline fails before anything runs or is written
    manifest = Manifest.read(artifacts)
    manifest.check_integrity(artifacts)
    sizes = _check_sizes(manifest.model.geometry, o.sizes)
    # Every engine of a graph keeps its session (and ONNX Runtime its arena) open while the
    # others run: their footprints add up.
    _check_memory(artifacts, manifest, sizes, o.batch_sizes, engines=len(graph_engines) + len(model_engines),
                  held_outputs=len(graph_engines) + len(model_engines), command="benchmarking")
    loaded = load_for_manifest(artifacts, manifest, source) if o.with_torch else None
    report = bench.bench(artifacts, manifest, loaded, replace(o, sizes=sizes), progress)
    gate = bench.compare_baseline(report, o.baseline, o.max_regression) if o.baseline is not None else None
    if gate is None or gate.passed:  # a failed gate leaves the artifacts directory as it was
        record_summary(artifacts, "bench", report.summary())
        if o.recommend:
            from vae_export.recommend import recorded

            rec = recorded(report.recommendations or [], report.env, report.noise)
            record_summary(artifacts, "recommendation", rec.to_json())
    if o.json_path is not None:
        atomic_write_json(o.json_path, report.to_json())
    return BenchOutcome(report, gate)


def bench_against(artifacts: Path, old: Path, options: AgainstOptions = AgainstOptions(),
                  progress: Progress = SILENT) -> AgainstReport:
    """The A/B latency gate: `artifacts` (new) against `old` in one process, in paired rounds;
    the report to `options.json_path` when given. `report.raise_if_failed()` is the verdict."""
    from vae_export.against import against

    report = against(artifacts, old, options, progress=progress)
    if options.json_path is not None:
        atomic_write_json(options.json_path, report.to_json())
    return report


def _check_memory(artifacts: Path, manifest: Manifest, sizes: tuple[tuple[int, int], ...] | None,
                  batch_sizes: tuple[int, ...], engines: int, held_outputs: int, command: str,
                  edge_cases: bool = False) -> None:
    """UsageError unless every graph runs at every size and batch in the memory available now
    (`footprint.check_runs_fit`); with `edge_cases`, verify's edge inputs (2 or 3) too."""
    from vae_export.footprint import check_runs_fit
    from vae_export.inputs import edge_inputs

    g = manifest.model.geometry
    edge = {spec.role: len(edge_inputs(spec.role, (1,), (1, 1, 1))) for spec in g.specs()} if edge_cases else None
    check_runs_fit(artifacts, manifest, sizes or g.default_sizes(), batch_sizes, engines, held_outputs, command,
                   "--sizes" if g.dynamic_size else None, edge)


def _check_sizes(geometry: Geometry, sizes: tuple[tuple[int, int], ...] | None) -> tuple[tuple[int, int], ...] | None:
    """--sizes against the model: a usage error naming the rule (stride, or a fixed size)."""
    for size in sizes or ():
        try:
            geometry.check_size(size, "--sizes")
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return sizes


@dataclass
class RunResult:
    metrics: dict[str, Any]
    exported: ExportResult
    verify: VerifyReport
    bench: BenchReport
    pictures: list[Path]
    seconds: float

    def raise_if_failed(self) -> None:
        self.exported.raise_if_failed()
        self.verify.raise_if_failed()


def run(artifacts: Path, options: RunOptions = RunOptions(), progress: Progress = SILENT) -> RunResult:
    """Train on the default dataset, export, verify, bench (short) and draw pictures; the
    verify and bench reports go to ARTIFACTS/verify.json and bench.json."""
    from dataclasses import replace

    started = time.perf_counter()
    t = options.train
    progress("[1/5] train")
    metrics = train_into(artifacts, t, progress)
    progress("[2/5] export")
    exported = export_into(artifacts, ModelSource(), ExportOptions(variants=options.variants,
                                                                   dynamic_size=options.dynamic_size))
    progress("[3/5] verify")
    report = verify_artifacts(artifacts, options=VerifyOptions(json_path=artifacts / VERIFY_REPORT), progress=progress)
    progress("[4/5] bench")
    bench_report = bench_artifacts(artifacts, options=replace(options.bench, json_path=artifacts / BENCH_REPORT),
                                   progress=progress).report
    progress("[5/5] pictures")
    pictures = draw_pictures(artifacts, bench_report, t.dataset, t.data_dir, t.seed)
    return RunResult(metrics, exported, report, bench_report, pictures, time.perf_counter() - started)
