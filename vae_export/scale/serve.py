"""HTTP serving of the encoder and decoder on Ray Serve, with dynamic batching.

Routes (a FastAPI ingress, as Serve does it):
    POST /decode   {"z": [[...], ...]}      -> {"x_hat": [...]}      (?format=png: a PNG grid)
    POST /encode   {"x": [[[[...]]], ...]}  -> {"mu": [...], "logvar": [...]}
    GET  /sample?n=16&seed=0                -> {"z": [...], "x_hat": [...]}  (?format=png)
    GET  /healthz                           -> {"status": "ok"}
    GET  /metadata                          -> the graph contract: signatures, metadata, limits

Concurrent requests are merged into one ONNX Runtime call by `@serve.batch` (up to
`max_batch_size` requests, waiting at most `batch_wait_s`); each response says in the header
`X-Batch-Size` how many requests shared its call. Requests are checked before they join a
batch, so one bad request never fails the others: bad JSON, wrong shapes, NaN or Inf,
too many rows get a 4xx with {"error": "..."}; unknown routes get FastAPI's JSON 404/405.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures at run time
# (a string annotation hides `request: Request` from it behind Serve's class wrapper).
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from ray import serve

from vae_export.errors import first_line
from vae_export.runtime import RuntimeInputError

APP_NAME = "vae-export"
MAX_BODY_BYTES = 64 * 1024**2


@dataclass(frozen=True)
class ServeConfig:
    artifacts: Path
    variant: str = "fp32"
    replicas: int = 1
    max_batch_size: int = 16
    batch_wait_s: float = 0.002
    max_rows: int = 1024  # per request


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


api = FastAPI(title="vae-export", docs_url=None, redoc_url=None, openapi_url=None)


@api.exception_handler(BadRequest)
async def _bad_request(request: Request, exc: BadRequest) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=exc.status)


@api.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"error": "invalid request", "detail": json.loads(json.dumps(exc.errors(), default=str))},
                        status_code=400)


async def _json_field(request: Request, field: str) -> Any:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(413, f"request body of {len(body)} bytes; at most {MAX_BODY_BYTES}")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(400, f"expected a JSON body, found invalid JSON ({first_line(exc)})") from None
    if not isinstance(data, dict) or field not in data:
        raise BadRequest(400, f'expected a JSON object with "{field}"')
    return data[field]


def _query_int(request: Request, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
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


@serve.deployment
@serve.ingress(api)
class VAEServer:
    def __init__(self, config: ServeConfig) -> None:
        from vae_export.contract import graph_filename
        from vae_export.runtime import VAE

        self.config = config
        threads = 1  # each replica holds one CPU (ray_actor_options), so one intra-op thread
        self.vae = VAE(config.artifacts / graph_filename("encoder", config.variant),
                       config.artifacts / graph_filename("decoder", config.variant), threads=threads)
        size = None
        if None in self.vae.decoder.latent_shape:  # --dynamic-size: /sample draws at the export size
            from vae_export.manifest import Manifest

            size = Manifest.read(config.artifacts).model.geometry.size
        self.latent_shape = self.vae.decoder.latent_shape_for(size)
        for method in (self._decode_batch, self._encode_batch):
            method.set_max_batch_size(config.max_batch_size)
            method.set_batch_wait_timeout_s(config.batch_wait_s)

    # ---- the batched model calls ----------------------------------------------------------

    @serve.batch
    async def _decode_batch(self, zs: list[np.ndarray]) -> list[tuple[np.ndarray, int]]:
        x_hat = self.vae.decoder.decode(np.concatenate(zs))
        return [(part, len(zs)) for part in np.split(x_hat, np.cumsum([len(z) for z in zs])[:-1])]

    @serve.batch
    async def _encode_batch(self, xs: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, int]]:
        mu, logvar = self.vae.encoder.encode(np.concatenate(xs))
        cuts = np.cumsum([len(x) for x in xs])[:-1]
        return [(m, v, len(xs)) for m, v in zip(np.split(mu, cuts), np.split(logvar, cuts))]

    def _rows(self, value: Any, graph: Any, name: str) -> np.ndarray:
        """A request's array, checked with the runtime's own input checks, before batching."""
        try:
            array = np.asarray(value, dtype=np.float32)
        except (ValueError, TypeError, OverflowError):
            raise BadRequest(400, f"{name}: expected a rectangular array of numbers") from None
        if array.ndim >= 1 and len(array) > self.config.max_rows:
            raise BadRequest(413, f"{name}: {len(array)} rows; at most {self.config.max_rows} per request")
        try:
            with np.errstate(over="ignore"):  # values beyond float32 become Inf, refused below
                return graph._check(array, name)
        except RuntimeInputError as exc:
            raise BadRequest(400, str(exc)) from None

    # ---- routes ------------------------------------------------------------------------------

    @api.post("/decode")
    async def decode(self, request: Request) -> Response:
        z = self._rows(await _json_field(request, "z"), self.vae.decoder, "z")
        x_hat, batch = await self._decode_batch(z)
        return self._images(request, x_hat, {"x_hat": x_hat.tolist()}, batch)

    @api.post("/encode")
    async def encode(self, request: Request) -> Response:
        x = self._rows(await _json_field(request, "x"), self.vae.encoder, "x")
        mu, logvar, batch = await self._encode_batch(x)
        return JSONResponse({"mu": mu.tolist(), "logvar": logvar.tolist()}, headers={"X-Batch-Size": str(batch)})

    @api.get("/sample")
    async def sample(self, request: Request) -> Response:
        n = _query_int(request, "n", 16, 1, self.config.max_rows)
        seed = _query_int(request, "seed", None, 0, 2**63 - 1)
        z = np.random.default_rng(seed).standard_normal((n, *self.latent_shape)).astype(np.float32)
        x_hat, batch = await self._decode_batch(z)
        return self._images(request, x_hat, {"z": z.tolist(), "x_hat": x_hat.tolist()}, batch)

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/metadata")
    async def metadata(self) -> dict[str, Any]:
        return {"encoder": _signature(self.vae.encoder), "decoder": _signature(self.vae.decoder),
                "latent_shape": list(self.vae.decoder.latent_shape), "image_shape": list(self.vae.decoder.image_shape),
                "max_batch_size": self.config.max_batch_size, "batch_wait_ms": self.config.batch_wait_s * 1000,
                "max_rows": self.config.max_rows}

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
    from vae_export.contract import graph_filename
    from vae_export.errors import UsageError
    from vae_export.scale.jobs import start_ray

    for role in ("encoder", "decoder"):  # a replica that cannot load its graph would retry forever
        if not (config.artifacts / graph_filename(role, config.variant)).is_file():
            raise UsageError(f"--artifacts {config.artifacts}: no {graph_filename(role, config.variant)}; "
                             f"run `vae-export export --artifacts {config.artifacts}` first")
    owned = start_ray(address, verbose)
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app(config), name=APP_NAME, route_prefix="/")
    _wait_for_http(host, port)
    return owned


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
