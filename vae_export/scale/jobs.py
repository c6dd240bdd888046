"""Batch jobs (encode, score, generate) on two engines with one output:

- `local`: in this process, one ONNX Runtime session using every core, batch after batch.
- `ray`: Ray Data. The rows stream through `map_batches` on an actor pool (one ONNX Runtime
  session per actor, with as many intra-op threads as the actor has CPUs, so actors do not
  fight over cores); the driver writes the batches to the output as they arrive, in input
  order. Ray retries the batches of an actor that dies (Ray Data gives map actors unlimited
  restarts and task retries), so every row is written exactly once.

Rows are the same whichever engine ran them: the same `Worker` turns rows into output, and
random draws are per row (`noise.py`). The output is written to a temporary file beside it
and renamed at the end: an interrupted job leaves no half-written file.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vae_export.artifacts import atomic_path
from vae_export.errors import UsageError, VAEExportError, first_line
from vae_export.scale.tasks import Task, Worker

ENGINES = ("local", "ray")
DEFAULT_BATCH_SIZE = 1024
# A local Ray for one job: no dashboard, a small object store (batches are small and
# streamed), no usage reporting.
LOCAL_RAY_OBJECT_STORE_BYTES = 256 * 1024**2


@dataclass(frozen=True)
class JobResult:
    rows: int
    errors: int
    seconds: float  # the job itself, from the first batch submitted to the file in place
    startup_seconds: float  # starting (or joining) Ray; 0 for the local engine
    engine: str
    workers: int

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "rows_per_s": self.rows / self.seconds if self.seconds else None}


def run_job(task: Task, count: int, write: Callable[[Iterator[pa.Table]], int], engine: str = "local",
            address: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE, workers: int | None = None,
            on_rows: Callable[[int], None] = lambda n: None) -> JobResult:
    """Run `task` over rows 0..count-1; `write` consumes the tables in row order and returns
    the number of error rows it saw."""
    if engine == "local":
        started = time.perf_counter()
        errors = write(_report(_local_batches(task, count, batch_size), on_rows))
        return JobResult(count, errors, time.perf_counter() - started, 0.0, "local", 1)
    if engine != "ray":
        raise UsageError(f"--engine {engine!r}: expected one of {', '.join(ENGINES)}")
    import ray

    t0 = time.perf_counter()
    owned = start_ray(address)
    try:
        startup = time.perf_counter() - t0
        started = time.perf_counter()
        size = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        errors = write(_report(_ray_batches(task, count, batch_size, size), on_rows))
        return JobResult(count, errors, time.perf_counter() - started, startup, "ray", size)
    finally:
        if owned:
            ray.shutdown()


def _report(tables: Iterator[pa.Table], on_rows: Callable[[int], None]) -> Iterator[pa.Table]:
    for table in tables:
        on_rows(table.num_rows)
        yield table


def _local_batches(task: Task, count: int, batch_size: int) -> Iterator[pa.Table]:
    worker = Worker(task)  # ONNX Runtime's default pool: every core
    for start in range(0, count, batch_size):
        yield worker({"id": np.arange(start, min(start + batch_size, count), dtype=np.int64)})


class _RayWorker(Worker):
    """An actor of the pool: one session with as many threads as the actor's CPU share."""

    def __init__(self, task: Task, threads: int) -> None:
        super().__init__(task, threads=threads)


def _ray_batches(task: Task, count: int, batch_size: int, actors: int) -> Iterator[pa.Table]:
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # write rows in input order
    context.enable_progress_bars = False  # ours is enough (and only on a terminal)
    cpus = 1  # each actor's CPU share, and so its session's intra-op thread count
    # The row indices, one block per batch, put in the object store by the driver: not
    # ray.data.range, whose read tasks each want a CPU that the actor pool already holds
    # (on a 2-CPU machine the job then waits forever).
    dataset = ray.data.from_arrow([pa.table({"id": np.arange(start, min(start + batch_size, count), dtype=np.int64)})
                                   for start in range(0, count, batch_size)])
    mapped = dataset.map_batches(
        _RayWorker, fn_constructor_kwargs={"task": task, "threads": cpus}, batch_size=batch_size,
        batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cpus)
    for table in mapped.iter_batches(batch_size=None, batch_format="pyarrow"):
        yield table.cast(task.schema())  # Ray may drop the schema metadata


def start_ray(address: str | None) -> bool:
    """Join the cluster at `address` (or $RAY_ADDRESS), reuse a Ray this process already has,
    or start a local one; True when we started one and must shut it down."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        if address or os.environ.get("RAY_ADDRESS"):
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        else:
            ray.init(include_dashboard=False, object_store_memory=LOCAL_RAY_OBJECT_STORE_BYTES,
                     logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise VAEExportError(f"--address {address or os.environ.get('RAY_ADDRESS') or 'local'}: "
                             f"cannot start or join Ray ({first_line(exc)})") from None
    return True


def parquet_writer(path: Path, schema: pa.Schema) -> Callable[[Iterator[pa.Table]], int]:
    """Write the tables to `path` atomically (temporary file, then rename); returns the count
    of rows with an error."""

    def write(tables: Iterator[pa.Table]) -> int:
        errors = 0
        with atomic_path(path) as tmp:
            with pq.ParquetWriter(tmp, schema) as writer:
                for table in tables:
                    if "error" in table.column_names:
                        errors += table.num_rows - table.column("error").null_count
                    writer.write_table(table)
        return errors

    return write


def png_writer(directory: Path, image_shape: tuple[int, ...]) -> Callable[[Iterator[pa.Table]], int]:
    """generate into a folder: one PNG per sample, NNNNNN.png, each written atomically."""
    from vae_export.images import grid, save_png

    def write(tables: Iterator[pa.Table]) -> int:
        for table in tables:
            x_hat = table.column("x_hat").combine_chunks().flatten().to_numpy().reshape(-1, *image_shape)
            for i, image in zip(table.column("id").to_pylist(), x_hat):
                save_png(grid(image[None], columns=1, scale=1, pad=0), directory / f"{i:06d}.png")
        return 0

    return write
