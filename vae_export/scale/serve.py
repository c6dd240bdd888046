"""HTTP serving of the encoder and decoder on Ray Serve, with dynamic batching.

Routes (a FastAPI ingress, as Serve does it):
    POST /decode   {"z": [[...], ...]}      -> {"x_hat": [...]}      (?format=png: a PNG grid)
    POST /encode   {"x": [[[[...]]], ...]}  -> {"mu": [...], "logvar": [...]}
    GET  /sample?n=16&seed=0[&size=HxW]     -> {"z": [...], "x_hat": [...]}  (?format=png)
    GET  /healthz                           -> {"status": "ok"}
    GET  /metadata                          -> the graph contract: signatures, metadata, limits

Concurrent requests are merged by `@serve.batch` (up to `max_batch_size` requests, waiting
at most `batch_wait_s`) and run as one ONNX Runtime call per shape (a --dynamic-size model
takes requests of several sizes at once; one call holds at most MAX_REQUEST_VALUES image
values); each response says in the header `X-Batch-Size` how many requests shared its call.
Every request is checked in full before it joins a batch (`httpbody`: body size, JSON depth
and integers; here: shape, the stride rule of symbolic sizes, finiteness, rows, and the image
values in or out), so one bad request never fails the others: it gets a 4xx with
{"error": "..."}; unknown routes get FastAPI's JSON 404/405, and a failure inside a model call
fails only the requests of that call, as a JSON 500.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures at run time
# (a string annotation hides `request: Request` from it behind Serve's class wrapper).
import inspect
import io
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from ray import serve

from vae_export.errors import first_line
from vae_export.scale.httpbody import PROXY_CALLBACK, BadRequest, parse_json, read_body
from vae_export.limits import MAX_BODY_BYTES, MAX_REQUEST_VALUES
from vae_export_runtime import RuntimeInputError
from vae_export_runtime.graphs import prior_latents
from vae_export_runtime.limits import MAX_BATCH

APP_NAME = "vae-export"
_SIZE = re.compile(r"([0-9]{1,6})x([0-9]{1,6})")  # /sample?size=HxW


@dataclass(frozen=True)
class ServeConfig:
    artifacts: Path
    variant: str = "fp32"
    replicas: int = 1
    max_batch_size: int = 16
    batch_wait_s: float = 0.002
    max_rows: int = 1024  # per request


api = FastAPI(title="vae-export", docs_url=None, redoc_url=None, openapi_url=None)


@api.exception_handler(BadRequest)
async def _bad_request(request: Request, exc: BadRequest) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=exc.status)


@api.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"error": "invalid request", "detail": json.loads(json.dumps(exc.errors(), default=str))},
                        status_code=400)


@api.exception_handler(Exception)
async def _internal(request: Request, exc: Exception) -> JSONResponse:
    # A bug or a failed model call: still JSON, and only for the requests it concerns.
    return JSONResponse({"error": f"internal error: {type(exc).__name__}: {first_line(exc, '')}"}, status_code=500)


async def _json_field(request: Request, field: str) -> Any:
    data = parse_json(await read_body(request))
    if not isinstance(data, dict) or field not in data:
        raise BadRequest(400, f'expected a JSON object with "{field}"')
    return data[field]


def _query_int(request: Request, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if len(raw) > 20:  # int() of thousands of digits is slow, and refused past 4,300
        raise BadRequest(400, f"{name}: expected an integer, found {len(raw)} characters")
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(400, f"{name}: expected an integer, found {raw!r}") from None
    if not low <= value <= high:
        raise BadRequest(400, f"{name}: expected {low}..{high}, found {value}")
    return value


def _signature(graph: Any) -> dict[str, Any]:
    def values(items: Any) -> list[dict[str, Any]]:
        return [{"name": v.name, "dtype": v.type.removeprefix("tensor(").rstrip(")"), "shape": list(v.shape)}
                for v in items]

    return {"file": graph.path.name, "inputs": values(graph.session.get_inputs()),
            "outputs": values(graph.session.get_outputs()), "metadata": graph.metadata}


# The helpers the deployment calls are defined above it: `@serve.deployment` pickles the class
# when it is applied, with the module globals that exist at that line.

def _bounded(name: str, shape: tuple[int, ...], values: int) -> None:
    if values > MAX_REQUEST_VALUES:
        raise BadRequest(413, f"{name}: {list(shape)} means {values} image values; at most {MAX_REQUEST_VALUES} "
                              "per request")


def _by_shape(arrays: list[np.ndarray], run: Callable[[np.ndarray], Any],
              values: Callable[[np.ndarray], int]) -> list[Any]:
    """One batch of requests, run as one call per shape (np.concatenate of two sizes fails,
    and failed every request of the batch), each call at most MAX_REQUEST_VALUES image values
    and MAX_BATCH rows. Per request: (its outputs, how many requests shared its call), or the
    exception of its call: a failure fails only the requests of that call."""
    results: list[Any] = [None] * len(arrays)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, array in enumerate(arrays):
        groups.setdefault(array.shape[1:], []).append(i)
    for members in groups.values():
        calls: list[list[int]] = [[]]
        total = rows = 0
        for i in members:  # each request is within both bounds (`_rows`); a call holds whole requests
            if calls[-1] and (total + values(arrays[i]) > MAX_REQUEST_VALUES or rows + len(arrays[i]) > MAX_BATCH):
                calls.append([])
                total = rows = 0
            calls[-1].append(i)
            total += values(arrays[i])
            rows += len(arrays[i])
        for call in calls:
            try:
                outputs = run(np.concatenate([arrays[i] for i in call]))
            except Exception as exc:  # noqa: BLE001 - handed to the requests of this call only
                for i in call:
                    results[i] = exc
                continue
            cuts = np.cumsum([len(arrays[i]) for i in call])[:-1]
            parts = [np.split(out, cuts) for out in outputs]
            for k, i in enumerate(call):
                results[i] = ([part[k] for part in parts], len(call))
    return results


@serve.deployment
@serve.ingress(api)
class VAEServer:
    def __init__(self, config: ServeConfig) -> None:
        from vae_export_runtime.contract import graph_filename
        from vae_export_runtime import VAE

        self.config = config
        threads = 1  # each replica holds one CPU (ray_actor_options), so one intra-op thread
        self.vae = VAE(config.artifacts / graph_filename("encoder", config.variant),
                       config.artifacts / graph_filename("decoder", config.variant), threads=threads)
        self.latent_shape = self.vae.decoder.latent_shape_for()  # --dynamic-size: /sample draws at the export size
        for method in (self._decode_batch, self._encode_batch):
            method.set_max_batch_size(config.max_batch_size)
            method.set_batch_wait_timeout_s(config.batch_wait_s)

    # ---- the batched model calls ----------------------------------------------------------

    @serve.batch
    async def _decode_batch(self, zs: list[np.ndarray]) -> list[Any]:
        return _by_shape(zs, lambda z: (self.vae.decoder.decode(z),), lambda z: self._image_values(z.shape))

    @serve.batch
    async def _encode_batch(self, xs: list[np.ndarray]) -> list[Any]:
        return _by_shape(xs, self.vae.encoder.encode, lambda x: x.size)

    async def _batched(self, method: Any, array: np.ndarray) -> tuple[list[np.ndarray], int]:
        """One request through a batch queue: its outputs and how many requests shared its call."""
        result = await method(array)
        if isinstance(result, BaseException):
            raise result
        return result

    def _rows(self, value: Any, graph: Any, name: str) -> np.ndarray:
        """A request's array, checked in full before it joins a batch: the runtime's own input
        checks (shape, the stride rule of a symbolic image size, finiteness), no empty axis,
        at most max_rows rows, at most MAX_REQUEST_VALUES image values in or out."""
        try:
            array = np.asarray(value, dtype=np.float32)
        except (ValueError, TypeError, OverflowError):
            raise BadRequest(400, f"{name}: expected a rectangular array of numbers") from None
        if array.ndim >= 1 and len(array) > self.config.max_rows:
            raise BadRequest(413, f"{name}: {len(array)} rows; at most {self.config.max_rows} per request")
        try:
            with np.errstate(over="ignore"):  # values beyond float32 become Inf, refused below
                array = graph._check(array, name, image=graph is self.vae.encoder)
        except RuntimeInputError as exc:
            raise BadRequest(400, str(exc)) from None
        if 0 in array.shape:  # a symbolic latent axis of 0 passes the runtime's check, and ORT then fails
            raise BadRequest(400, f"{name}: expected shape {graph._expected(graph.input_shape, False)} with no empty "
                                  f"axis, found {list(array.shape)}")
        _bounded(name, array.shape, array.size if graph is self.vae.encoder else self._image_values(array.shape))
        return array

    def _image_values(self, z_shape: tuple[int, ...]) -> int:
        """Values of the images decoded from latents of `z_shape` (computed, not decoded): a
        symbolic-size decoder makes stride x stride pixels of each latent cell."""
        image_shape = self.vae.decoder.image_shape
        if None not in image_shape:
            return z_shape[0] * math.prod(int(d) for d in image_shape)  # type: ignore[arg-type]
        stride = self.vae.decoder.stride or 1
        channels = int(image_shape[0])  # type: ignore[arg-type]
        return z_shape[0] * channels * math.prod(z_shape[2:]) * stride ** (len(z_shape) - 2)

    # ---- routes ------------------------------------------------------------------------------

    @api.post("/decode")
    async def decode(self, request: Request) -> Response:
        z = self._rows(await _json_field(request, "z"), self.vae.decoder, "z")
        (x_hat,), batch = await self._batched(self._decode_batch, z)
        return self._images(request, x_hat, {"x_hat": x_hat.tolist()}, batch)

    @api.post("/encode")
    async def encode(self, request: Request) -> Response:
        x = self._rows(await _json_field(request, "x"), self.vae.encoder, "x")
        (mu, logvar), batch = await self._batched(self._encode_batch, x)
        return JSONResponse({"mu": mu.tolist(), "logvar": logvar.tolist()}, headers={"X-Batch-Size": str(batch)})

    @api.get("/sample")
    async def sample(self, request: Request) -> Response:
        n = _query_int(request, "n", 16, 1, self.config.max_rows)
        seed = _query_int(request, "seed", None, 0, 2**63 - 1)
        shape = self._sample_shape(request.query_params.get("size"))
        _bounded("n and size", (n, *shape), self._image_values((n, *shape)))  # before drawing anything
        z = prior_latents(n, shape, seed)  # the runtime's generator: a seed means the same images in every host
        (x_hat,), batch = await self._batched(self._decode_batch, z)
        return self._images(request, x_hat, {"z": z.tolist(), "x_hat": x_hat.tolist()}, batch)

    def _sample_shape(self, size: str | None) -> tuple[int, ...]:
        """The latent shape for /sample's size=HxW (default: the export size): the runtime's
        own check of the stride rule; the pixel bound follows in `_rows`."""
        if size is None:
            return self.latent_shape
        match = _SIZE.fullmatch(size)
        if match is None:
            raise BadRequest(400, f"size: expected HxW (e.g. 32x32), found {size[:40]!r}")
        try:
            return self.vae.decoder.latent_shape_for((int(match[1]), int(match[2])))
        except RuntimeInputError as exc:
            raise BadRequest(400, str(exc)) from None

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/metadata")
    async def metadata(self) -> dict[str, Any]:
        return {"encoder": _signature(self.vae.encoder), "decoder": _signature(self.vae.decoder),
                "latent_shape": list(self.vae.decoder.latent_shape), "image_shape": list(self.vae.decoder.image_shape),
                "max_batch_size": self.config.max_batch_size, "batch_wait_ms": self.config.batch_wait_s * 1000,
                "max_rows": self.config.max_rows, "max_request_values": MAX_REQUEST_VALUES,
                "max_body_bytes": MAX_BODY_BYTES, "stride": self.vae.decoder.stride}

    def _images(self, request: Request, x_hat: np.ndarray, body: dict[str, Any], batch: int) -> Response:
        headers = {"X-Batch-Size": str(batch)}
        fmt = request.query_params.get("format", "json")
        if fmt == "json":
            return JSONResponse(body, headers=headers)
        if fmt != "png":
            raise BadRequest(400, f"format: expected json or png, found {fmt!r}")
        from vae_export.images import grid

        buffer = io.BytesIO()
        grid(x_hat).save(buffer, format="PNG")
        return Response(buffer.getvalue(), media_type="image/png", headers=headers)


def build_app(config: ServeConfig) -> Any:
    # max_ongoing_requests must be at least max_batch_size, or a replica never holds enough
    # requests at once to fill a batch.
    return VAEServer.options(
        num_replicas=config.replicas, max_ongoing_requests=max(32, 2 * config.max_batch_size),
        ray_actor_options={"num_cpus": 1},
    ).bind(config)


def start_server(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000, address: str | None = None,
                 verbose: bool = False) -> bool:
    """Start Ray (or join `address`) and Serve, and deploy the app at /; True when Ray was
    started here (so `stop_server` shuts it down)."""
    from vae_export_runtime.contract import graph_filename
    from vae_export.errors import UsageError
    from vae_export.scale.jobs import start_ray

    for role in ("encoder", "decoder"):  # a replica that cannot load its graph would retry forever
        if not (config.artifacts / graph_filename(role, config.variant)).is_file():
            raise UsageError(f"--artifacts {config.artifacts}: no {graph_filename(role, config.variant)}; "
                             f"run `vae-export export --artifacts {config.artifacts}` first")
    _check_port_free(host, port)  # before Ray starts: a port in use is a usage error, not a proxy retrying
    owned = start_ray(address, verbose)
    # Serve's proxy bounds request bodies too (httpbody.BodyLimit); applied when this starts
    # Serve's controller, whose runtime env the proxy inherits. An existing Serve keeps its
    # proxy, and a Ray without controller_options (before 2.5x) has none to pass: the replica
    # still bounds them.
    options: dict[str, Any] = {"http_options": {"host": host, "port": port}}
    if "controller_options" in inspect.signature(serve.start).parameters:
        env = {"RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": PROXY_CALLBACK}
        options["controller_options"] = {"runtime_env": {"env_vars": env}}
    try:
        serve.start(**options)
        serve.run(build_app(config), name=APP_NAME, route_prefix="/")
    except Exception as exc:
        # Another process took the port between the check and the proxy's bind (Ray's own
        # workers take ephemeral ports as they start): the same usage error, Serve stopped.
        if "Failed to bind" not in str(exc):
            raise
        stop_server(owned)
        raise UsageError(_port_in_use(host, port)) from None
    _wait_for_http(host, port)
    return owned


def _port_in_use(host: str, port: int) -> str:
    return f"--port {port}: {host}:{port} is already in use; pass another --port (or --host)"


def _check_port_free(host: str, port: int) -> None:
    """UsageError when nothing can listen on host:port now (another server holds it)."""
    import errno
    import socket

    from vae_export.errors import UsageError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the proxy binds: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(_port_in_use(host, port)) from None
            raise UsageError(f"--host {host}: cannot listen there ({exc.strerror})") from None


def _wait_for_http(host: str, port: int, timeout_s: float = 120.0) -> None:
    """serve.run returns when the replicas are healthy; Serve's HTTP proxy can start listening
    later, on a loaded machine by seconds: wait until /healthz answers (bounded)."""
    import time
    import urllib.error
    import urllib.request

    from vae_export.errors import VAEExportError

    deadline = time.monotonic() + timeout_s
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/healthz"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise VAEExportError(f"serve: no answer on {url} after {timeout_s:g} s")
        time.sleep(0.2)  # polling the port: Serve offers no event for "proxy listening"


def stop_server(owned: bool) -> None:
    import ray

    serve.shutdown()
    if owned:
        ray.shutdown()
