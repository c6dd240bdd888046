"""One library call per CLI command, working on an artifacts directory.

The CLI parses options and formats results; everything it runs is here, so the same steps
are usable from Python (and `vae-export run` chains them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from vae_export.artifacts import CHECKPOINT_NAME, TRAIN_METRICS_NAME, atomic_write_json, ensure_dir, load_manifest
from vae_export.checkpoint import LoadedModel, load_model
from vae_export.contract import graph_filename
from vae_export.errors import UsageError
from vae_export import bench, parity
from vae_export.export import DEFAULT_OPSET, ExportResult, export, resolve_checkpoint
from vae_export.progress import SILENT, Progress

CALIBRATION_IMAGES = 256


def read_train_metrics(artifacts: Path) -> dict[str, Any] | None:
    """train_metrics.json if present and readable: it names the dataset training used."""
    path = artifacts / TRAIN_METRICS_NAME
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def train_into(
    artifacts: Path,
    dataset: str = "digits",
    data_dir: Path | None = None,
    download: bool = False,
    epochs: int | None = None,
    batch_size: int = 128,
    lr: float = 3e-3,
    latent_dim: int = 32,
    hidden_dim: int = 400,
    beta: float = 1.0,
    seed: int = 0,
    progress: Progress = SILENT,
) -> dict[str, Any]:
    """Train the reference VAE; write vae.safetensors and train_metrics.json; return the metrics."""
    from vae_export.checkpoint import save_checkpoint
    from vae_export.data import load_dataset
    from vae_export.model import VAEConfig
    from vae_export.train import DEFAULT_EPOCHS, TrainConfig, train

    ensure_dir(artifacts)
    data = load_dataset(dataset, data_dir, download)
    config = TrainConfig(epochs=epochs or DEFAULT_EPOCHS[dataset], batch_size=batch_size, lr=lr, beta=beta, seed=seed)
    model_config = VAEConfig(image_shape=(1, 28, 28), hidden_dim=hidden_dim, latent_dim=latent_dim)
    progress(f"train {dataset}: {len(data.train)} train / {len(data.test)} test images, {config.epochs} epochs")

    def on_epoch(row: dict[str, Any]) -> None:
        progress(f"  epoch {row['epoch']:>3}/{config.epochs}  train {row['train_loss']:8.2f}  "
                 f"test {row['test_loss']:8.2f} nats/image  ({row['seconds']:.1f} s)")

    result = train(data, model_config, config, on_epoch)
    result.metrics["data_dir"] = str(data_dir.resolve()) if data_dir else None
    save_checkpoint(result.model, artifacts / CHECKPOINT_NAME)
    atomic_write_json(artifacts / TRAIN_METRICS_NAME, result.metrics)
    return result.metrics


def export_into(
    artifacts: Path,
    checkpoint: Path | None = None,
    model_ref: str | None = None,
    image_shape: tuple[int, int, int] | None = None,
    opset: int = DEFAULT_OPSET,
    exporter: str = "dynamo",
    variants: tuple[str, ...] = (),
) -> ExportResult:
    """Load the checkpoint (default ARTIFACTS/vae.safetensors) and export graphs + manifest."""
    ensure_dir(artifacts)
    loaded = load_model(checkpoint or artifacts / CHECKPOINT_NAME, model_ref, image_shape)
    calibration = None
    if "int8-static" in variants:
        from vae_export.data import reference_images

        calibration, _ = reference_images(read_train_metrics(artifacts), loaded.image_shape, split="train")
        if calibration is None:  # user models of other shapes: calibrate on uniform noise
            shape = (CALIBRATION_IMAGES, *loaded.image_shape)
            calibration = np.random.default_rng(0).random(shape, dtype=np.float32)
    return export(loaded, artifacts, opset, exporter, variants, calibration)


def load_for_manifest(
    artifacts: Path,
    checkpoint: Path | None = None,
    model_ref: str | None = None,
    image_shape: tuple[int, int, int] | None = None,
) -> LoadedModel:
    """The PyTorch side of a comparison: the manifest's checkpoint (and class) unless overridden."""
    manifest = load_manifest(artifacts)
    recorded = manifest["model"]["source"]
    if model_ref is None and recorded not in ("vae-export", "state-dict"):
        model_ref = recorded
    if image_shape is None:
        image_shape = tuple(manifest["model"]["image_shape"])  # type: ignore[assignment]
    path = checkpoint or resolve_checkpoint(manifest["checkpoint"]["path"], artifacts)
    if checkpoint is None and not path.is_file():
        raise UsageError(f"{artifacts / 'manifest.json'}: the checkpoint it records, {path}, is gone; pass --checkpoint")
    return load_model(path, model_ref, image_shape)


def verify_artifacts(
    artifacts: Path,
    checkpoint: Path | None = None,
    model_ref: str | None = None,
    image_shape: tuple[int, int, int] | None = None,
    batch_sizes: tuple[int, ...] = parity.DEFAULT_BATCH_SIZES,
    atol: float = parity.FP32_ATOL,
    rtol: float = parity.FP32_RTOL,
    device: str = "cpu",
    progress: Progress = SILENT,
) -> dict[str, Any]:
    """Parity of every graph and variant; the summary goes into the manifest."""
    from vae_export.data import reference_images

    loaded = load_for_manifest(artifacts, checkpoint, model_ref, image_shape)
    images, source = reference_images(read_train_metrics(artifacts), loaded.image_shape)
    report = parity.verify(artifacts, loaded, batch_sizes, atol, rtol, device, images, source, progress)
    parity.record(artifacts, report)
    return report


def bench_artifacts(
    artifacts: Path,
    checkpoint: Path | None = None,
    model_ref: str | None = None,
    image_shape: tuple[int, int, int] | None = None,
    device: str = "cpu",
    batch_sizes: tuple[int, ...] = bench.DEFAULT_BATCH_SIZES,
    threads: int = 1,
    warmup: int = bench.DEFAULT_WARMUP,
    iterations: int = bench.DEFAULT_ITERATIONS,
    with_torch: bool = True,
    progress: Progress = SILENT,
    min_time_s: float = 0.0,
    rounds: int | None = None,
) -> dict[str, Any]:
    """The latency sweep; the summary goes into the manifest."""
    from vae_export.ortsession import providers_for

    providers_for(device)  # a missing CUDA provider is a usage error before any loading
    loaded = load_for_manifest(artifacts, checkpoint, model_ref, image_shape) if with_torch else None
    if device == "cuda" and loaded is not None:
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda: this PyTorch build has no CUDA; install a CUDA build or pass --no-torch")
    report = bench.bench(artifacts, loaded, device, batch_sizes, threads, warmup, iterations, progress=progress,
                         min_time_s=min_time_s, rounds=rounds or bench.ROUNDS)
    bench.record(artifacts, report)
    return report


def sample_png(artifacts: Path, count: int = 64, seed: int = 0, variant: str = "fp32", output: Path | None = None) -> Path:
    """A PNG grid of decoder samples from the prior, drawn with the torch-free runtime."""
    from vae_export.images import grid, save_png
    from vae_export.runtime import VAEDecoder

    decoder_path = artifacts / graph_filename("decoder", variant)
    if not decoder_path.is_file():
        raise UsageError(f"{decoder_path}: not found; run `vae-export export` first")
    output = output or artifacts / "samples.png"
    ensure_dir(output.parent, "--output")
    save_png(grid(VAEDecoder(decoder_path).sample(count, seed)), output)
    return output


def draw_pictures(
    artifacts: Path, bench_report: dict[str, Any], dataset: str = "digits", data_dir: Path | None = None, seed: int = 0
) -> list[Path]:
    """samples.png, reconstructions.png (originals beside reconstructions), interpolation.png
    and latency.png (from the bench report), all from the exported graphs."""
    from vae_export.data import load_dataset
    from vae_export.images import grid, latency_plot, save_png
    from vae_export.runtime import VAE

    vae = VAE(artifacts / "encoder.onnx", artifacts / "decoder.onnx")
    paths = [sample_png(artifacts, 64, seed, "fp32", artifacts / "samples.png")]
    originals = load_dataset(dataset, data_dir).test[:16].numpy()
    pairs = np.stack([originals, vae.reconstruct(originals)], axis=1).reshape(-1, *originals.shape[1:])
    save_png(grid(pairs, columns=8), artifacts / "reconstructions.png")
    mu, _ = vae.encoder.encode(originals[:2])
    save_png(grid(vae.decoder.interpolate(mu[0], mu[1], steps=10), columns=10), artifacts / "interpolation.png")
    save_png(latency_plot(bench_report["results"]), artifacts / "latency.png")
    return paths + [artifacts / n for n in ("reconstructions.png", "interpolation.png", "latency.png")]
