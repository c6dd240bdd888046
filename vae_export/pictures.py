"""The pictures: a sample grid from the decoder (`vae-export sample`, with the torch-free
runtime only), and the pictures `run` draws from the exported graphs and the bench report.
Torch-free: `sample` imports neither torch nor onnx."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vae_export.artifacts import ensure_dir
from vae_export.errors import UsageError
from vae_export.manifest import Manifest
from vae_export.reports import BenchReport
from vae_export_runtime.contract import graph_filename

PICTURE_TEMPERATURE = 0.7  # class pictures: typical samples of each class, not the prior's tails
# What the grid holds per value of the decoded images: the float32 images, the float32 canvas,
# its uint8 pixels and the 2x-scaled picture (4 bytes per value).
GRID_BYTES_PER_VALUE = 4 + 4 + 1 + 4
# Up to this many values (16 MiB of images) no decoder this tool exports comes near the memory
# of a machine, and `sample` stays torch- and onnx-free; past it the decoder's graph is read
# for its footprint (`footprint.py`).
SMALL_SAMPLE_VALUES = 1 << 22


def _check_memory(path: Path, decoder: Any, count: int, calls: int, size: tuple[int, int] | None) -> None:
    """UsageError unless decoding `calls` batches of `count` images at `size` and drawing
    their grid fit in the memory available now (the decoder runs one batch at a time)."""
    shape = decoder.latent_shape_for(size)  # refuses a size the decoder cannot make (RuntimeInputError)
    h, w = size or decoder.default_size
    images = count * calls
    values = images * int(decoder.image_shape[0]) * h * w
    if values <= SMALL_SAMPLE_VALUES:
        return
    need = values * GRID_BYTES_PER_VALUE
    from vae_export import footprint

    try:
        import onnx
    except ImportError:  # the runtime alone, without the onnx package: the grid is what can be counted
        onnx = None
    if onnx is not None:
        model = onnx.load(str(path), load_external_data=False)
        k = decoder.num_classes

        def shapes_at(batch: int) -> dict[str, tuple[int, ...]]:
            return {"z": (batch, *shape), **({"y": (batch, k)} if k else {})}

        need += int(footprint.SLACK * footprint.footprint(model, shapes_at).peak(count))
    option = f"--size {h}x{w}" if size else f"-n {count}"
    footprint.check_fits(need, f"sampling {images} images at {h}x{w}", option, "pass a smaller --size or -n")


def sample_png(artifacts: Path, count: int = 64, seed: int = 0, variant: str = "fp32", output: Path | None = None,
               size: tuple[int, int] | None = None, *, temperature: float = 1.0, label: int | None = None,
               per_class: bool = False) -> Path:
    """A PNG grid of decoder samples from z ~ N(0, temperature^2 I), drawn with the torch-free
    runtime; `size` for a decoder with a symbolic size (default: the runtime's `default_size`,
    the size it was exported at).
    A conditional decoder draws class `label`, or with `per_class` one row of `count` per class."""
    from vae_export_runtime import VAEDecoder

    from vae_export.images import grid, save_png

    if per_class and label is not None:
        raise UsageError("--per-class: pass --label or --per-class, not both")
    decoder_path = artifacts / graph_filename("decoder", variant)
    if not decoder_path.is_file():
        raise UsageError(f"{decoder_path}: not found; run `vae-export export` first")
    output = output or artifacts / "samples.png"
    ensure_dir(output.parent, "--output")
    decoder = VAEDecoder(decoder_path)
    k = decoder.num_classes
    if not k and (label is not None or per_class):
        raise UsageError(f"{'--label' if label is not None else '--per-class'}: {decoder_path.name} is not conditional "
                         "(it takes no class)")
    if k and label is None and not per_class:
        raise UsageError(f"--label: {decoder_path.name} is conditional on {k} classes; pass --label K (0..{k - 1}) "
                         "or --per-class")
    if label is not None and label >= k:
        raise UsageError(f"--label {label}: expected a class 0..{k - 1} of {decoder_path.name}")
    try:
        _check_memory(decoder_path, decoder, count, k if per_class else 1, size)
        if per_class:
            images = np.concatenate([decoder.sample(count, seed, size, label=c, temperature=temperature)
                                     for c in range(k)])
        else:
            images = decoder.sample(count, seed, size, label=label, temperature=temperature)
    except ValueError as exc:  # RuntimeInputError: a size that does not fit the decoder
        raise UsageError(f"--size: {exc}") from None
    save_png(grid(images, columns=count if per_class else None), output)
    return output


def draw_pictures(
    artifacts: Path, bench_report: BenchReport, dataset: str = "digits", data_dir: Path | None = None, seed: int = 0
) -> list[Path]:
    """samples.png, reconstructions.png (originals beside reconstructions), interpolation.png
    and latency.png (from the bench report), all from the exported graphs; for a conditional
    model also classes.png (a row of samples per class) and class_interpolation.png (one z
    moved from each class to the next)."""
    from vae_export_runtime import VAE
    from vae_export_runtime.graphs import prior_latents

    from vae_export.data import load_dataset
    from vae_export.images import grid, save_png

    vae = VAE.open(artifacts)
    k = vae.num_classes
    test = load_dataset(dataset, data_dir)
    originals = test.test[:16].numpy()
    labels = test.test_labels[:16].numpy() if k and test.test_labels is not None else None
    # A conditional model's samples.png shows class 0; classes.png below shows every class.
    paths = [sample_png(artifacts, 64, seed, "fp32", artifacts / "samples.png", label=0 if k else None)]
    pairs = np.stack([originals, vae.reconstruct(originals, labels=labels)], axis=1).reshape(-1, *originals.shape[1:])
    save_png(grid(pairs, columns=8), artifacts / "reconstructions.png")
    mu, _ = vae.encoder.encode(originals[:2], labels=None if labels is None else labels[:2])
    ends = {} if labels is None else {"y0": int(labels[0]), "y1": int(labels[1])}
    save_png(grid(vae.decoder.interpolate(mu[0], mu[1], steps=10, **ends), columns=10), artifacts / "interpolation.png")
    paths += [artifacts / n for n in ("reconstructions.png", "interpolation.png")]
    if k:
        paths.append(sample_png(artifacts, 10, seed, "fp32", artifacts / "classes.png",
                                temperature=PICTURE_TEMPERATURE, per_class=True))
        z = prior_latents(1, vae.decoder.latent_shape_for(), seed, PICTURE_TEMPERATURE)[0]
        strips = [vae.decoder.interpolate(z, z, steps=10, y0=c, y1=(c + 1) % k) for c in range(k)]
        save_png(grid(np.concatenate(strips), columns=10), artifacts / "class_interpolation.png")
        paths.append(artifacts / "class_interpolation.png")
    paths.append(_latency_png(artifacts, bench_report))
    return paths


def _latency_png(artifacts: Path, bench_report: BenchReport) -> Path:
    from vae_export.images import latency_plot, save_png

    # One size per plot: the size the graphs were exported at (--dynamic-size reports several).
    size = list(Manifest.read(artifacts).model.geometry.size)
    save_png(latency_plot([r for r in bench_report.results if r.size in (None, size)]), artifacts / "latency.png")
    return artifacts / "latency.png"
