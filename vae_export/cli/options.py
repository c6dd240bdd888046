"""Options shared by several commands, defined once so that their names and meanings never
drift; every command module (built-in and scale-out) takes them from here."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from vae_export.options import ARCHS, DATASETS, TrainOptions
from vae_export.limits import DEVICES, MAX_BATCH, MAX_ELEMENTS, MAX_PIXELS

MAX_SIZES = 64  # sizes in one --sizes list, as for --batch-sizes
MAX_SIDE_DIGITS = 9  # digits of one side: more cannot be within MAX_PIXELS anyway
_SIZE = re.compile(rf"([0-9]{{1,{MAX_SIDE_DIGITS}}})x([0-9]{{1,{MAX_SIDE_DIGITS}}})", re.ASCII)


def _shown(value: Any) -> str:
    """An option's value for an error line: short, and escaped (no terminal control codes)."""
    text = str(value)
    return repr(text[:40] + ("..." if len(text) > 40 else ""))


class Finite(click.FloatRange):
    """A FloatRange that also refuses NaN and infinities (FloatRange lets NaN through every
    bound: a NaN --max-regression made a gate that could not fail)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"expected a finite number, found {value!r}", param, ctx)
        return number


class BatchSizes(click.ParamType):
    name = "N,N,..."

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        try:
            sizes = tuple(int(v) for v in str(value).split(",") if v.strip())
        except ValueError:
            self.fail(f"expected comma-separated integers like 1,8,64, found {value!r}", param, ctx)
        if not sizes or min(sizes) < 1:
            self.fail(f"expected batch sizes of at least 1, found {value!r}", param, ctx)
        if max(sizes) > MAX_BATCH or len(sizes) > 64:
            self.fail(f"expected at most 64 batch sizes of at most {MAX_BATCH}, found {value!r}", param, ctx)
        return sizes


class Sizes(click.ParamType):
    """HxW[,HxW...]: ASCII digits only (int() also reads superscript, Arabic-Indic and fullwidth
    digits, or fails on them), each at most MAX_SIDE_DIGITS long (a 5,000-digit side is past
    int()'s own limit), H x W at most `limits.MAX_PIXELS`, at most MAX_SIZES sizes. Whether a
    size also fits in memory depends on the model: the commands check it (`footprint.py`)."""

    name = "HxW,..."

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[tuple[int, int], ...]:
        if isinstance(value, tuple):
            return value
        parts = str(value).split(",")
        sizes = []
        for part in parts if len(parts) <= MAX_SIZES else ():
            match = _SIZE.fullmatch(part.strip().lower())
            if match is None or not 0 < int(match[1]) * int(match[2]) <= MAX_PIXELS:
                break
            sizes.append((int(match[1]), int(match[2])))
        else:
            if sizes:
                return tuple(sizes)
        self.fail(f"expected sizes like 28x28,56x56,32x48 (at most {MAX_SIZES}, positive, at most {MAX_PIXELS} pixels), "
                  f"found {_shown(value)}", param, ctx)


class ImageShape(click.ParamType):
    name = "C,H,W"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, int, int]:
        if isinstance(value, tuple):
            return value
        try:
            shape = tuple(int(v) for v in str(value).split(","))
        except ValueError:
            shape = ()
        if len(shape) != 3 or min(shape) < 1:
            self.fail(f"expected three positive integers C,H,W like 1,28,28, found {value!r}", param, ctx)
        if math.prod(shape) > MAX_ELEMENTS:
            self.fail(f"expected at most {MAX_ELEMENTS} values per image, found {value!r}", param, ctx)
        return shape  # type: ignore[return-value]


def options(*decorators: Callable) -> Callable:
    def apply(f: Callable) -> Callable:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f
    return apply


artifacts_option = click.option(
    "--artifacts", type=click.Path(file_okay=False, path_type=Path), default=Path("artifacts"),
    show_default=True, help="Directory the artifacts are written to and read from.")
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress output.")
json_option = click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
                           help="Also write the machine-readable report to FILE.")
device_option = click.option("--device", type=click.Choice(DEVICES), default=DEVICES[0], show_default=True,
                             help="Run ONNX Runtime (and PyTorch) on this device; cuda needs onnxruntime-gpu.")
model_options = options(
    click.option("--checkpoint", type=click.Path(path_type=Path),
                 help="Weights: our .safetensors, or a plain state dict (.pt/.pth) loaded with weights_only=True; "
                      "for diffusers:CLASS a save_pretrained directory (or a pipeline's, with vae/)."),
    click.option("--model", "model_ref", metavar="MODULE:ATTR",
                 help="Your own VAE class or factory (encode(x) -> (mu, logvar), decode(z) -> x_hat), or "
                      "diffusers:AutoencoderKL / diffusers:AutoencoderTiny (pip install vae-export[diffusers])."),
    click.option("--image-shape", type=ImageShape(),
                 help="C,H,W for checkpoints that do not record it (default 1,28,28)."),
)
dataset_options = options(
    click.option("--dataset", type=click.Choice(DATASETS), default=TrainOptions.dataset,
                 show_default=True, help="digits is embedded (offline); mnist/fashion-mnist read IDX files."),
    click.option("--data-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
                 help="Directory with the four IDX files (raw or .gz)."),
    click.option("--download", is_flag=True,
                 help="Fetch the IDX files (sha256-verified) into $VAE_EXPORT_DATA or ~/.cache/vae-export."),
)


conditional_option = click.option(
    "--conditional", is_flag=True,
    help="Conditional VAE: q(z|x,y) and p(x|z,y) on the dataset's labels; the graphs take y (one-hot rows).")
arch_option = click.option("--arch", type=click.Choice(ARCHS), default=TrainOptions.arch, show_default=True,
                           help="mlp: the seed's MLP VAE; conv: fully convolutional, spatial latent [4, H/4, W/4].")
sizes_option = click.option("--sizes", type=Sizes(),
                            help="Image sizes for graphs exported with --dynamic-size (default: the export size, "
                                 "twice it, and a non-square one, e.g. 28x28,56x56,32x48).")


def batch_sizes_option(default: tuple[int, ...]) -> Callable:
    return click.option("--batch-sizes", type=BatchSizes(), default=",".join(map(str, default)), show_default=True,
                        help="Comma-separated batch sizes.")


def progress(quiet: bool) -> Any:
    from vae_export.progress import Progress

    return Progress(quiet=quiet)


def write_json(path: Path | None, data: dict[str, Any]) -> None:
    if path is not None:
        from vae_export.artifacts import atomic_write_json

        atomic_write_json(path, data)
