"""The scale-out commands: encode, score, generate, serve, triton (the library is
`vae_export.scale`).

They register on the same group as the built-in commands, with the same shared options. This
module imports no Ray, pyarrow or ONNX at import time (`vae-export --help` stays instant, and
the core works without the `scale` extra): each command body imports what it needs.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from vae_export.cli.group import main
from vae_export.cli.options import artifacts_option, json_option, options, quiet_option
from vae_export.errors import CheckFailed, UsageError
from vae_export.limits import (MAX_BATCH, MAX_INSTANCES, MAX_JOB_ROWS, MAX_QUEUE_DELAY_US, MAX_REPLICAS, MAX_SAMPLES,
                               MAX_SERVE_BATCH, MAX_SERVE_ROWS, MAX_TRITON_BATCH)
from vae_export.variants import LISTED_VARIANTS

SCALE_EXTRA_HINT = "install the scale extra: pip install 'vae-export[scale]'"


def _need_scale() -> None:
    try:
        import pyarrow  # noqa: F401
        import ray  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"this command needs {exc.name}; {SCALE_EXTRA_HINT}") from None


@contextlib.contextmanager
def _progress_bar(total: int, quiet: bool) -> Iterator[Callable[[int], None]]:
    """A bar on stderr, only for a person at a terminal and never under --quiet."""
    if quiet or not sys.stderr.isatty():
        yield lambda n: None
        return
    with click.progressbar(length=total, label="rows", file=sys.stderr, show_pos=True) as bar:
        yield bar.update


verbose_option = click.option("--verbose", is_flag=True,
                              help="Show Ray's own log lines (kept off the terminal by default).")
fail_fast_option = click.option("--fail-fast", is_flag=True,
                                help="Stop at the first bad row (exit 1, nothing written) instead of writing it as "
                                     "an error row.")
variant_option = click.option("--variant", type=click.Choice(LISTED_VARIANTS), default="fp32", show_default=True,
                              help="Which graph variant to run (encoder.VARIANT.onnx, decoder.VARIANT.onnx).")
job_options = options(
    artifacts_option,
    variant_option,
    click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                 help="local: in-process ONNX Runtime on every core; ray: Ray Data with an actor pool."),
    click.option("--address", metavar="ADDRESS",
                 help="Ray cluster to join (e.g. ray://head:10001; also $RAY_ADDRESS). Default: a local "
                      "Ray started for the job and shut down after."),
    click.option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=1024, show_default=True,
                 help="Rows per batch (one model call)."),
    click.option("--workers", type=click.IntRange(min=1),
                 help="Ray actors, one CPU and one ONNX Runtime session each (default: the cluster's CPUs)."),
    quiet_option,
    json_option,
    verbose_option,
)
input_argument = click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, path_type=Path))
parquet_output = click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
                              help="The output parquet file (written atomically).")
column_option = click.option("--column", default="image", show_default=True,
                             help="Parquet INPUT: the image column (encoded image bytes or pixel lists).")

@main.command()
@input_argument
@parquet_output
@column_option
@fail_fast_option
@job_options
def encode(input_path: Path, output: Path, column: str, **job: Any) -> None:
    """Encode many images to latents: one row per image with id, mu, logvar, error.

    INPUT is a folder of PNG/JPEG images (recursive; id = the relative path), a .npy
    array, an IDX file (raw or .gz), or a parquet file with an image column (id = the row
    index). An unreadable image or wrong-size row becomes a row with an error; the job
    goes on and exits 1 at the end with the count.

    \b
    Example:
        vae-export encode ../shared/data/mnist/t10k-images-idx3-ubyte.gz -o latents.parquet --engine ray
    """
    _job("encode", JobOptions(**job), input_path, output, column)

@main.command()
@input_argument
@parquet_output
@column_option
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the z draws (per row: the same whatever the batching).")
@click.option("--samples", type=click.IntRange(1, MAX_SAMPLES), default=1, show_default=True,
              help="z draws per image.")
@fail_fast_option
@job_options
def score(input_path: Path, output: Path, column: str, seed: int, samples: int, **job: Any) -> None:
    """Anomaly-score many images: one row per image with id, score (negative ELBO in nats, as
    the runtime's VAE.anomaly_score computes it; higher is more anomalous), error.

    INPUT as for `encode`.

    \b
    Example:
        vae-export score ../shared/data/mnist/train-images-idx3-ubyte.gz -o scores.parquet
    """
    _job("score", JobOptions(**job), input_path, output, column, seed=seed, samples=samples)

@main.command()
@click.option("-n", "count", type=click.IntRange(1, MAX_JOB_ROWS), required=True, help="How many samples.")
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path),
              help="FILE.parquet (id, z, x_hat), or a folder for one PNG per sample.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Same seed, same samples, however the work is split.")
@job_options
def generate(count: int, output: Path, seed: int, **job: Any) -> None:
    """Decode N samples from the prior z ~ N(0, I): a parquet file (id, z, x_hat) or PNGs.

    \b
    Example:
        vae-export generate -n 100000 --seed 1 -o samples.parquet --engine ray
    """
    _job("generate", JobOptions(**job), None, output, "image", seed=seed, count=count)

@main.command()
@artifacts_option
@variant_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(min=1, max=65535), default=8000, show_default=True)
@click.option("--replicas", type=click.IntRange(1, MAX_REPLICAS), default=1, show_default=True,
              help="Serve replicas, one CPU and one ONNX Runtime session each.")
@click.option("--max-batch-size", type=click.IntRange(1, MAX_SERVE_BATCH), default=16, show_default=True,
              help="Requests merged into one model call (1: no dynamic batching).")
@click.option("--batch-wait-ms", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="How long a batch waits to fill.")
@click.option("--max-rows", type=click.IntRange(1, MAX_SERVE_ROWS), default=1024, show_default=True,
              help="The most rows (z or images) one request may carry; more is a 413.")
@click.option("--address", metavar="ADDRESS", help="Ray cluster to join (default: a local Ray).")
@verbose_option
def serve(artifacts: Path, variant: str, host: str, port: int, replicas: int, max_batch_size: int,
          batch_wait_ms: float, max_rows: int, address: str | None, verbose: bool) -> None:
    """Serve the encoder and decoder over HTTP on Ray Serve, with dynamic batching.

    POST /decode {"z": [[...]]} -> {"x_hat": ...} (?format=png: a PNG grid);
    POST /encode {"x": [...]} -> {"mu", "logvar"}; GET /sample?n=16&seed=0;
    GET /healthz; GET /metadata (the graph contract). Bad requests get a 4xx with a JSON
    error. Ctrl-C stops it.

    \b
    Example:
        vae-export serve --port 8000 --replicas 2 --max-batch-size 32
    """
    _need_scale()
    _refuse_conditional("serve", artifacts)
    from vae_export.scale.raylog import quiet_ray
    from vae_export.scale.serve import ServeConfig, start_server, stop_server

    quiet_ray(verbose)
    config = ServeConfig(artifacts.resolve(), variant, replicas, max_batch_size, batch_wait_ms / 1000.0, max_rows)
    owned = start_server(config, host, port, address, verbose)
    # SIGTERM (a service manager) and SIGINT (Ctrl-C, even when inherited as ignored, as for
    # a background job) both stop it cleanly: without this, Ray's agents outlive the command.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _interrupt)
    click.echo(f"serving {artifacts} on http://{host}:{port} ({replicas} replica(s), max batch "
               f"{max_batch_size}, wait {batch_wait_ms:g} ms); Ctrl-C stops it")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stop_server(owned)

@main.command()
@artifacts_option
@variant_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("model_repository"),
              show_default=True, help="The model repository folder.")
@click.option("--max-batch-size", type=click.IntRange(1, MAX_TRITON_BATCH), default=256, show_default=True)
@click.option("--instances", type=click.IntRange(1, MAX_INSTANCES), default=1, show_default=True,
              help="Model instances per model (instance_group count).")
@click.option("--queue-delay-us", type=click.IntRange(0, MAX_QUEUE_DELAY_US), default=100, show_default=True,
              help="dynamic_batching max_queue_delay_microseconds.")
@click.option("--kind", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True,
              help="instance_group kind (KIND_CPU or KIND_GPU).")
def triton(artifacts: Path, variant: str, out: Path, max_batch_size: int, instances: int,
           queue_delay_us: int, kind: str) -> None:
    """Write an NVIDIA Triton model repository (ONNX Runtime backend): vae_encoder and
    vae_decoder, each 1/model.onnx and config.pbtxt.

    \b
    Example:
        vae-export triton --out model_repository
        docker run --rm -p 8000:8000 -v $PWD/model_repository:/models \\
            nvcr.io/nvidia/tritonserver:25.10-py3 tritonserver --model-repository=/models
    """
    from vae_export.scale.triton import write_repository

    written = write_repository(artifacts, out, variant, max_batch_size, instances, queue_delay_us, kind)
    click.echo(f"wrote {', '.join(str(p) for p in written)}")




def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _refuse_conditional(command: str, artifacts: Path) -> None:
    """encode, generate and serve feed no class: a conditional model's graphs need one per row.
    (score works: without labels the anomaly score marginalises over the classes.)"""
    from vae_export.errors import VAEExportError
    from vae_export.manifest import Manifest

    try:
        geometry = Manifest.read(artifacts).model.geometry
    except VAEExportError:
        return  # no manifest: the command's own checks report what is missing
    if geometry.conditional:
        raise UsageError(f"{command}: {artifacts} holds a conditional model ({geometry.num_classes} classes) and "
                         f"`{command}` takes no labels; use the runtime's labels= (vae_export_runtime), or `score`")


@dataclass(frozen=True, kw_only=True)
class JobOptions:
    """The options every batch job shares (`job_options`)."""

    artifacts: Path
    variant: str
    engine: str
    address: str | None
    batch_size: int
    workers: int | None
    quiet: bool
    json_path: Path | None
    verbose: bool
    fail_fast: bool = False


def _job(kind: str, o: JobOptions, input_path: Path | None, output: Path, column: str, seed: int = 0,
         samples: int = 1, count: int | None = None) -> None:
    _need_scale()
    if kind != "score":
        _refuse_conditional(kind, o.artifacts)
    from vae_export.artifacts import atomic_write_json, ensure_dir
    from vae_export.scale.inputs import open_source
    from vae_export.scale.jobs import run_job
    from vae_export.scale.outputs import parquet_writer, png_writer
    from vae_export.scale.tasks import make_task

    source = open_source(input_path, column) if input_path is not None else None
    task = make_task(kind, o.artifacts, source, seed, samples, o.variant)
    rows = len(source) if source is not None else int(count or 0)
    if rows == 0:
        raise UsageError(f"INPUT {input_path}: expected at least one row, found none")
    if output.suffix.lower() == ".parquet":
        ensure_dir(output.parent, "--output")
        write = parquet_writer(output, task.schema(), o.fail_fast)
    elif kind == "generate":
        write = png_writer(output, task.image_shape)
    else:
        raise UsageError(f"--output {output}: expected a .parquet file name")
    if o.engine == "ray":  # before the bar takes hold of stderr
        from vae_export.scale.raylog import quiet_ray

        quiet_ray(o.verbose)
    with _progress_bar(rows, o.quiet) as on_rows:
        result = run_job(task, rows, write, o.engine, o.address, o.batch_size, o.workers, on_rows, o.verbose)
    if o.json_path is not None:
        atomic_write_json(o.json_path, {"job": kind, "output": str(output), **result.as_dict()})
    startup = f", Ray start {result.startup_seconds:.1f} s" if o.engine == "ray" else ""
    click.echo(f"{kind}: {result.rows:,} rows in {result.seconds:.2f} s ({result.rows / result.seconds:,.0f} rows/s, "
               f"{o.engine} engine, {result.workers} worker(s){startup}); wrote {output}")
    if result.errors:
        raise CheckFailed(f"{result.errors} of {result.rows} rows failed; their reasons are in the error column "
                          f"of {output}")
