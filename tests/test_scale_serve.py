"""The Ray Serve app on 127.0.0.1: every route against the runtime, bad requests get a JSON
4xx and never stop it, and concurrent requests are batched. Load is bounded in count and time."""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from vae_export.runtime import VAE, VAEDecoder

from conftest import free_port, http_call, serve_on_free_port

TIMEOUT_S = 30


@pytest.fixture(scope="module")
def server(ray_cluster, exported_dir):
    """The app, deployed once for this module; Serve is shut down after it so the CPU its
    replica holds is free for the Ray Data tests."""
    from ray import serve

    from vae_export.scale.serve import APP_NAME, ServeConfig, build_app, stop_server

    config = ServeConfig(exported_dir, max_batch_size=16, batch_wait_s=0.005, max_rows=64)
    port = serve_on_free_port(config)

    def redeploy(**changes) -> None:
        serve.run(build_app(ServeConfig(**{**config.__dict__, **changes})), name=APP_NAME, route_prefix="/")

    yield f"http://127.0.0.1:{port}", redeploy
    stop_server(owned=False)


def call(url: str, path: str, body: bytes | dict | None = None, method: str | None = None) -> tuple[int, dict, bytes]:
    return http_call(url, path, body, method, TIMEOUT_S)


@pytest.fixture(scope="module")
def vae(exported_dir) -> VAE:
    return VAE(exported_dir / "encoder.onnx", exported_dir / "decoder.onnx")


def test_routes_match_the_runtime(server, vae, digits):
    url, _ = server
    z = np.random.default_rng(0).standard_normal((3, vae.decoder.latent_dim)).astype(np.float32)
    status, headers, body = call(url, "/decode", {"z": z.tolist()})
    assert status == 200 and headers["x-batch-size"] == "1"
    np.testing.assert_allclose(np.array(json.loads(body)["x_hat"]), vae.decoder.decode(z), atol=1e-6)

    status, headers, body = call(url, "/decode?format=png", {"z": z.tolist()})
    assert status == 200 and headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(body)) as image:
        assert image.size == ((2 * 30 + 2) * 2, (2 * 30 + 2) * 2)  # a 2x2 grid (3 tiles) at scale 2

    x = digits.test.numpy()[:2]
    status, _, body = call(url, "/encode", {"x": x.tolist()})
    mu, logvar = vae.encoder.encode(x)
    assert status == 200
    np.testing.assert_allclose(np.array(json.loads(body)["mu"]), mu, atol=1e-6)
    np.testing.assert_allclose(np.array(json.loads(body)["logvar"]), logvar, atol=1e-6)

    status, _, body = call(url, "/sample?n=4&seed=0")
    assert status == 200
    np.testing.assert_allclose(np.array(json.loads(body)["x_hat"]), vae.decoder.sample(4, seed=0), atol=1e-6)

    assert call(url, "/healthz")[:3:2] == (200, b'{"status":"ok"}')
    status, _, body = call(url, "/metadata")
    meta = json.loads(body)
    assert status == 200 and meta["latent_shape"] == [32] and meta["image_shape"] == [1, 28, 28]
    assert meta["decoder"]["inputs"] == [{"name": "z", "dtype": "float", "shape": ["batch", 32]}]
    assert [o["name"] for o in meta["encoder"]["outputs"]] == ["mu", "logvar"]
    assert meta["decoder"]["metadata"]["latent_dim"] == "32" and meta["max_batch_size"] == 16


BAD_REQUESTS = [
    ("POST", "/decode", b"{not json", 400, "invalid JSON"),
    ("POST", "/decode", b"[1, 2]", 400, 'a JSON object with "z"'),
    ("POST", "/decode", b'{"z": [[1, 2]]}', 400, "expected shape [batch, 32], found [1, 2]"),
    ("POST", "/decode", b'{"z": [[1], [1, 2]]}', 400, "rectangular array of numbers"),
    ("POST", "/decode", b'{"z": [' + b",".join([b"NaN"] * 32) + b"]}", 400, "expected shape"),
    ("POST", "/decode", b'{"z": [[' + b",".join([b"NaN"] * 32) + b"]]}", 400, "contains NaN or Inf"),
    ("POST", "/decode", b'{"z": [[' + b",".join([b"1e39"] * 32) + b"]]}", 400, "contains NaN or Inf"),
    ("POST", "/decode", b'{"z": [' + b",".join([b"[" + b",".join([b"0"] * 32) + b"]"] * 65) + b"]}", 413,
     "65 rows; at most 64"),
    ("POST", "/decode", b'{"z": []}', 400, "expected shape"),
    ("POST", "/encode", b'{"x": [[0.5]]}', 400, "expected shape [batch, 1, 28, 28]"),
    ("POST", "/decode?format=gif", b'{"z": [[' + b",".join([b"0"] * 32) + b"]]}", 400, "expected json or png"),
    ("GET", "/sample?n=0", None, 400, "n: expected 1..64, found 0"),
    ("GET", "/sample?n=two", None, 400, "n: expected an integer"),
    ("GET", "/nowhere", None, 404, "Not Found"),
    ("GET", "/decode", None, 405, "Method Not Allowed"),
]


def test_malformed_requests_get_json_4xx_and_the_server_stays_up(server, vae):
    url, _ = server
    for i in range(200):  # bounded: 200 bad requests, cycling through the kinds
        method, path, body, expected, text = BAD_REQUESTS[i % len(BAD_REQUESTS)]
        status, headers, raw = call(url, path, body, method)
        assert status == expected, (path, body, raw)
        message = json.loads(raw)
        assert headers["content-type"] == "application/json" and text in (message.get("error") or message["detail"])
    assert call(url, "/healthz")[0] == 200
    z = np.zeros((1, vae.decoder.latent_dim), dtype=np.float32)
    status, _, body = call(url, "/decode", {"z": z.tolist()})
    assert status == 200
    np.testing.assert_allclose(np.array(json.loads(body)["x_hat"]), vae.decoder.decode(z), atol=1e-6)


def _load(url: str, zs: np.ndarray, clients: int) -> list[tuple[int, int, np.ndarray]]:
    def one(z: np.ndarray) -> tuple[int, int, np.ndarray]:
        status, headers, body = call(url, "/decode", {"z": [z.tolist()]})
        return status, int(headers.get("x-batch-size", 0)), np.array(json.loads(body)["x_hat"])

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, zs))


def test_concurrent_requests_are_batched_and_none_is_lost(server, exported_dir):
    url, redeploy = server
    decoder = VAEDecoder(exported_dir / "decoder.onnx")
    zs = np.random.default_rng(1).standard_normal((160, decoder.latent_dim)).astype(np.float32)
    expected = decoder.decode(zs)
    results = _load(url, zs, clients=16)  # bounded: 160 requests from 16 threads
    assert [r[0] for r in results] == [200] * 160
    for (_, _, x_hat), want in zip(results, expected):
        np.testing.assert_allclose(x_hat[0], want, atol=1e-6)  # each answer is its own z's
    assert max(r[1] for r in results) > 1  # requests shared model calls
    assert max(r[1] for r in results) <= 16
    redeploy(max_batch_size=1)  # batching off: every call serves one request
    try:
        results = _load(url, zs[:48], clients=16)
        assert [r[:2] for r in results] == [(200, 1)] * 48
    finally:
        redeploy()


def test_serve_without_artifacts_is_a_usage_error_before_ray_starts(tmp_path, runner):
    import ray

    from vae_export.cli import main

    was_running = ray.is_initialized()
    result = runner.invoke(main, ["serve", "--artifacts", str(tmp_path), "--port", str(free_port())])
    assert result.exit_code == 2
    assert result.output.strip() == (f"Error: --artifacts {tmp_path.resolve()}: no encoder.onnx; "
                                     f"run `vae-export export --artifacts {tmp_path.resolve()}` first")
    assert ray.is_initialized() == was_running


def test_a_port_in_use_is_a_usage_error_before_ray_starts(exported_dir, runner):
    """Another server on --port: one line naming it, exit 2, and no Ray started for nothing
    (Serve's proxy would otherwise fail inside a Ray actor with a traceback)."""
    import socket

    import ray

    from vae_export.cli import main

    was_running = ray.is_initialized()
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = runner.invoke(main, ["serve", "--artifacts", str(exported_dir), "--port", str(port)])
    assert result.exit_code == 2
    assert result.output.strip() == (f"Error: --port {port}: 127.0.0.1:{port} is already in use; "
                                     "pass another --port (or --host)")
    assert ray.is_initialized() == was_running
