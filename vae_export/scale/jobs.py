"""Batch jobs (encode, score, generate) on two engines with one output:

- `local`: in this process, one ONNX Runtime session using every core, batch after batch.
- `ray`: Ray Data. The rows stream through `map_batches` on an actor pool (one ONNX Runtime
  session per actor, with as many intra-op threads as the actor has CPUs, so actors do not
  fight over cores); the driver writes the batches to the output as they arrive, in input
  order. Ray retries the batches of an actor that dies (Ray Data gives map actors unlimited
  restarts and task retries), so every row is written exactly once.

Rows are the same whichever engine ran them: the same `Worker` turns rows into output, and
random draws are per row (`noise.py`). The writers (`outputs.py`) write to temporary files and
put them in place at the end; SIGTERM during a job becomes an exception here, so a failed,
interrupted (Ctrl-C) or terminated job leaves no half-written file and no temporary one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from vae_export.errors import UsageError, VAEExportError, first_line
from vae_export.scale import raylog
from vae_export.scale.tasks import Task, Worker

ENGINES = ("local", "ray")
DEFAULT_BATCH_SIZE = 1024
# A local Ray for one job: no dashboard, a small object store (batches are small and
# streamed), no usage reporting.
LOCAL_RAY_OBJECT_STORE_BYTES = 256 * 1024**2
# The Ray engine's unit of work: a span of rows (many batches), so the driver builds at most
# this many tiny tables whatever the row count (one table per batch was 10^9 tables at -n 10^12).
MAX_RAY_SPANS = 1024
# Joining --address: a TCP probe first (a dead head fails at once), then Ray's own connection
# retries capped (Ray's defaults retry for minutes): together about 10 s.
PROBE_TIMEOUT_S = 3.0
RAY_JOIN_LIMITS = {
    "RAY_gcs_rpc_server_connect_timeout_s": "2",  # per GCS connection attempt (default 5)
    "RAY_py_gcs_connect_timeout_s": "4",  # waiting for the cluster id (default 30)
    "RAY_gcs_server_port_wait_time_s": "1",  # attempts of the whole connection (default 20)
    "RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S": "2",  # ray:// addresses (defaults 5 and 30)
    "RAY_CLIENT_MAX_CONNECTION_TIMEOUT_S": "2",
}


class Terminated(VAEExportError):
    """SIGTERM during a job: raised in the main thread so the cleanup paths run."""


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
            on_rows: Callable[[int], None] = lambda n: None, verbose: bool = False) -> JobResult:
    """Run `task` over rows 0..count-1; `write` consumes the tables in row order and returns
    the number of error rows it saw. SIGTERM while it runs raises `Terminated` (exit 1) so that
    `write` removes what it had written."""
    if engine not in ENGINES:
        raise UsageError(f"--engine {engine!r}: expected one of {', '.join(ENGINES)}")
    with _sigterm_raises():
        if engine == "local":
            started = time.perf_counter()
            errors = write(_report(_local_batches(task, count, batch_size), on_rows))
            return JobResult(count, errors, time.perf_counter() - started, 0.0, "local", 1)
        import ray

        t0 = time.perf_counter()
        owned = start_ray(address, verbose)
        _on_sigterm_raise()  # ray.init installs its own handler (sys.exit): ours again
        try:
            startup = time.perf_counter() - t0
            started = time.perf_counter()
            size = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
            errors = write(_report(_ray_batches(task, count, batch_size, size, verbose), on_rows))
            return JobResult(count, errors, time.perf_counter() - started, startup, "ray", size)
        finally:
            if owned:
                ray.shutdown()


def _terminated(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
    raise Terminated("terminated by SIGTERM; the job's partial output was removed")


def _on_sigterm_raise() -> None:
    if threading.current_thread() is threading.main_thread():  # signal handlers live there only
        signal.signal(signal.SIGTERM, _terminated)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """For the job's duration, SIGTERM (a scheduler, `kill`, a container stop) becomes an
    exception in the main thread, so every `finally` and cleanup runs (the default action
    kills the process at once and leaves the temporary output behind)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _report(tables: Iterator[pa.Table], on_rows: Callable[[int], None]) -> Iterator[pa.Table]:
    for table in tables:
        on_rows(table.num_rows)
        yield table


def _local_batches(task: Task, count: int, batch_size: int) -> Iterator[pa.Table]:
    worker = Worker(task)  # ONNX Runtime's default pool: every core
    for start in range(0, count, batch_size):
        yield worker({"id": np.arange(start, min(start + batch_size, count), dtype=np.int64)})


class _RayWorker(Worker):
    """An actor of the pool: one session with as many threads as the actor's CPU share. It is
    given spans of rows and yields one table per batch of each."""

    def __init__(self, task: Task, threads: int, batch_size: int) -> None:
        super().__init__(task, threads=threads)
        self.batch_size = batch_size

    def __call__(self, spans: dict[str, np.ndarray]) -> Iterator[pa.Table]:  # type: ignore[override]
        for start, stop in zip(spans["start"].tolist(), spans["stop"].tolist()):
            for first in range(start, stop, self.batch_size):
                yield super().__call__({"id": np.arange(first, min(first + self.batch_size, stop), dtype=np.int64)})


def _spans(count: int, batch_size: int) -> list[pa.Table]:
    """Rows 0..count-1 as at most MAX_RAY_SPANS spans, each a whole number of batches."""
    batches = -(-count // batch_size)
    per_span = -(-batches // MAX_RAY_SPANS) * batch_size
    return [pa.table({"start": [start], "stop": [min(start + per_span, count)]})
            for start in range(0, count, per_span)]


def _ray_batches(task: Task, count: int, batch_size: int, actors: int, verbose: bool = False) -> Iterator[pa.Table]:
    import ray.data

    raylog.set_levels(verbose)  # importing ray.data configured its logger
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # write rows in input order
    context.enable_progress_bars = False  # ours is enough (and only on a terminal)
    cpus = 1  # each actor's CPU share, and so its session's intra-op thread count
    # The spans, one block each, put in the object store by the driver: not ray.data.range,
    # whose read tasks each want a CPU that the actor pool already holds (on a 2-CPU machine
    # the job then waits forever).
    dataset = ray.data.from_arrow(_spans(count, batch_size))
    mapped = dataset.map_batches(
        _RayWorker, fn_constructor_kwargs={"task": task, "threads": cpus, "batch_size": batch_size}, batch_size=1,
        batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cpus)
    try:
        for table in mapped.iter_batches(batch_size=None, batch_format="pyarrow"):
            yield table.cast(task.schema())  # Ray may drop the schema metadata
    except ray.exceptions.RayError as exc:
        raise _job_error(exc) from None


def _job_error(exc: BaseException) -> VAEExportError:
    """What failed inside Ray, as one line: our own error as raised in the worker (Ray wraps it
    in RayTaskError and Ray Data's UserCodeException), anything else by type and first line."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, VAEExportError):
            return cause
        inner = getattr(cause, "cause", None)
        cause = inner if isinstance(inner, BaseException) else cause.__cause__
    return VAEExportError(f"the Ray job failed: {type(exc).__name__}: {first_line(exc, '')}")


def start_ray(address: str | None, verbose: bool = False) -> bool:
    """Join the cluster at `address` (or $RAY_ADDRESS), reuse a Ray this process already has,
    or start a local one; True when we started one and must shut it down. Joining fails within
    about 10 s with one line when nothing (or not Ray) answers at the address."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    target = address or os.environ.get("RAY_ADDRESS")
    try:
        if target:
            _probe(target)
            _limit_join_retries()
            ray.init(address=address, **raylog.init_options(verbose))
        else:
            ray.init(include_dashboard=False, object_store_memory=LOCAL_RAY_OBJECT_STORE_BYTES,
                     **raylog.init_options(verbose))
    except (ConnectionError, RuntimeError, ValueError) as exc:
        if target:
            raise VAEExportError(f"--address {target}: cannot join Ray ({first_line(exc)})") from None
        raise VAEExportError(f"cannot start a local Ray ({first_line(exc)})") from None
    return True


def _probe(address: str) -> None:
    """A TCP connection to host:port (ray://host:port too) before Ray's own retries: nothing
    listening is one line at once. Addresses Ray resolves itself ("auto") are left to it."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {host}:{port}: {exc.strerror or exc}") from None


def _limit_join_retries() -> None:
    """Cap Ray's connection retries (set only when joining: a local Ray starting on a loaded
    machine needs its defaults). The user's own settings win. Ray's C++ config read these at
    import; `Config.initialize` re-reads them, as Ray itself does when it enables token auth."""
    for name, value in RAY_JOIN_LIMITS.items():
        os.environ.setdefault(name, value)
    with contextlib.suppress(ImportError, AttributeError):
        from ray._raylet import Config

        Config.initialize("")
