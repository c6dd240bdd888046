"""Hostile requests to `vae-export serve` on a --dynamic-size model (issue 28): every request is
checked in full before it joins a batch, batches hold one shape, bodies, JSON nesting, integers
and answers are bounded, and every bad request is a JSON 4xx that fails nobody else's request,
under concurrent mixed load too, with the replica's RSS measured. The server listens on
127.0.0.1 only; every request has a timeout and the load is bounded in count."""

from __future__ import annotations

import http.client
import json
import random
import select
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from vae_export.runtime import VAE

from conftest import http_call, serve_on_free_port

TIMEOUT_S = 60
STRIDE = 4  # the conv reference: 28x28 images, 7x7 latents


@pytest.fixture(scope="module")
def server(ray_cluster, conv_dir):
    """The conv model exported with --dynamic-size, served once for the module; Serve is shut
    down after it (its replica holds a CPU the other Ray tests need)."""
    from vae_export.scale.serve import ServeConfig, stop_server

    port = serve_on_free_port(ServeConfig(conv_dir, max_batch_size=16, batch_wait_s=0.02, max_rows=64))
    yield port
    stop_server(owned=False)


@pytest.fixture(scope="module")
def vae(conv_dir) -> VAE:
    return VAE(conv_dir / "encoder.onnx", conv_dir / "decoder.onnx")


def call(port: int, path: str, body: bytes | dict | None = None) -> tuple[int, dict, bytes]:
    return http_call(f"http://127.0.0.1:{port}", path, body, timeout=TIMEOUT_S)


def _json_error(status: int, headers: dict, body: bytes, expected: int, text: str) -> None:
    assert status == expected, (status, body[:300])
    assert headers["content-type"] == "application/json", (headers, body[:300])
    assert text in json.loads(body)["error"], body[:300]


def _raw(port: int, head: str, body_chunks=(), wait_s: float = TIMEOUT_S) -> tuple[int, dict, bytes, int]:
    """A request written by hand: `head` (request line and headers), then body chunks, sent
    until the server answers (it may answer before the body is in). Returns the status,
    headers, body and how many body bytes were sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as s:
        s.sendall(head.encode())
        sent = 0
        for chunk in body_chunks:
            if select.select([s], [], [], 0)[0]:
                break  # the answer is already there
            try:
                s.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        response = http.client.HTTPResponse(s)
        response.begin()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read(), sent


def _pid(actor_class: str) -> int:
    """The process of Serve's replica ("VAEServer") or HTTP proxy ("ProxyActor"), from the GCS
    actor table (the state API needs the dashboard, which the test cluster runs without)."""
    from ray._private.state import actors

    alive = [a for a in actors().values() if actor_class in a["ActorClassName"] and a["State"] == "ALIVE"]
    assert len(alive) == 1, [a["ActorClassName"] for a in actors().values()]
    return int(alive[0]["Pid"])


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def _z(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ---- shapes: checked before batching, batched by shape ---------------------------------------------

def test_concurrent_requests_of_different_sizes_all_succeed(server, vae):
    zs = [_z((1, 4, 7, 7) if i % 2 else (1, 4, 8, 6), seed=i) for i in range(48)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda z: call(server, "/decode", {"z": z.tolist()}), zs))
    for z, (status, headers, body) in zip(zs, results):
        assert status == 200, body[:300]
        np.testing.assert_allclose(np.array(json.loads(body)["x_hat"]), vae.decoder.decode(z), atol=1e-5)
    assert max(int(h["x-batch-size"]) for _, h, _ in results) > 1  # still batched, within a shape


def test_a_request_breaking_the_stride_rule_fails_alone(server, vae, digits):
    good = [digits.test.numpy()[i : i + 1] for i in range(24)]
    bad = np.zeros((1, 1, 30, 28), np.float32)  # 30 is not a multiple of the stride
    bodies = [{"x": (bad if i % 4 == 0 else good[i]).tolist()} for i in range(24)]
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda b: call(server, "/encode", b), bodies))
    for i, (status, headers, body) in enumerate(results):
        if i % 4 == 0:
            _json_error(status, headers, body, 400, f"multiples of {STRIDE}")
        else:
            assert status == 200, body[:300]
            np.testing.assert_allclose(np.array(json.loads(body)["mu"]), vae.encoder.encode(good[i])[0], atol=1e-5)


def test_an_empty_spatial_latent_is_a_400(server):
    status, headers, body = call(server, "/decode", {"z": np.zeros((1, 4, 0, 5)).tolist()})
    _json_error(status, headers, body, 400, "expected shape")


# ---- bodies, JSON and answers bounded ------------------------------------------------------------

def test_deep_nesting_and_long_integers_are_json_400s(server):
    from vae_export.limits import MAX_INT_DIGITS, MAX_JSON_DEPTH

    cases = [
        (b"[" * 100_000 + b"]" * 100_000, f"nested deeper than {MAX_JSON_DEPTH}"),
        (b'{"z": [[' + b"1" * 5000 + b"]]}", f"an integer of 5000 digits; at most {MAX_INT_DIGITS}"),
        (b'{"z": ' + b"[" * 40 + b"0" + b"]" * 40 + b"}", f"nested deeper than {MAX_JSON_DEPTH}"),
    ]
    for body, text in cases:
        _json_error(*call(server, "/decode", body), 400, text)
    assert call(server, "/healthz")[0] == 200


def test_a_declared_huge_body_gets_an_early_413(server):
    from vae_export.limits import MAX_BODY_BYTES

    started = time.monotonic()
    head = ("POST /decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {10 * 1024**3}\r\n\r\n")
    status, headers, body, _ = _raw(server, head, [b'{"z": [[0'], wait_s=15)
    _json_error(status, headers, body, 413, f"at most {MAX_BODY_BYTES}")
    assert time.monotonic() - started < 15


def test_a_streamed_body_is_cut_at_the_cap_and_the_replica_and_proxy_stay_small(server):
    from vae_export.limits import MAX_BODY_BYTES

    pids = {name: _pid(name) for name in ("VAEServer", "ProxyActor")}
    before = {name: _rss_mb(pid) for name, pid in pids.items()}
    head = ("POST /decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n")
    piece = b"0," * (1 << 19)  # 1 MiB of JSON numbers per chunk, 400 MiB offered in all
    chunks = [b'%x\r\n{"z": [[\r\n' % 8] + [b"%x\r\n%s\r\n" % (len(piece), piece)] * 400
    status, headers, body, sent = _raw(server, head, chunks)
    _json_error(status, headers, body, 413, f"at most {MAX_BODY_BYTES}")
    assert sent < 3 * MAX_BODY_BYTES  # answered soon after the cap, not after the 400 MiB
    for name, pid in pids.items():
        grown = _rss_mb(pid) - before[name]
        assert grown < 100, f"{name} RSS grew by {grown:.0f} MB for a body cut at {MAX_BODY_BYTES >> 20} MiB"
    assert call(server, "/healthz")[0] == 200


def test_the_answer_of_one_request_is_bounded(server):
    from vae_export.limits import MAX_REQUEST_VALUES

    z = np.zeros((1, 4, 300, 300), np.float32)  # a 1200x1200 answer: 1.44 million values
    _json_error(*call(server, "/decode", {"z": z.tolist()}), 413, f"at most {MAX_REQUEST_VALUES}")
    status, _, body = call(server, "/sample?n=4&size=1024x1024")
    _json_error(status, {"content-type": "application/json"}, body, 413, f"at most {MAX_REQUEST_VALUES}")


def test_sample_takes_a_size_checked_against_the_stride(server, vae):
    status, _, body = call(server, "/sample?n=2&seed=3&size=32x24")
    assert status == 200, body[:300]
    x_hat = np.array(json.loads(body)["x_hat"])
    assert x_hat.shape == (2, 1, 32, 24)
    np.testing.assert_allclose(x_hat, vae.decoder.sample(2, seed=3, size=(32, 24)), atol=1e-5)
    status, _, body = call(server, "/sample?n=2&seed=3")  # the export size by default
    assert status == 200 and np.array(json.loads(body)["x_hat"]).shape == (2, 1, 28, 28)
    for query, text in (("size=30x28", f"multiples of {STRIDE}"), ("size=0x28", f"multiples of {STRIDE}"),
                        ("size=28", "HxW"), ("size=" + "9" * 5000 + "x28", "HxW")):
        status, headers, body = call(server, f"/sample?n=1&{query}")
        _json_error(status, headers, body, 400, text)


# ---- concurrent mixed load ------------------------------------------------------------------------

def test_concurrent_mixed_load(server, vae, digits, capsys):
    """Valid requests of two sizes, stride-breaking ones, oversized (declared and streamed) and
    malformed bodies, interleaved from 16 threads: every valid request answered with the
    runtime's values, every bad one a JSON 4xx, the replica's RSS bounded."""
    rng = random.Random(0)
    jobs: list[tuple[str, object]] = []
    for i in range(120):
        shape = (1, 4, 7, 7) if i % 2 else (2, 4, 8, 6)  # 28x28 and 32x24 images
        jobs.append(("decode", _z(shape, seed=100 + i)))
    for i in range(40):
        x = digits.test.numpy()[i : i + 1]
        jobs.append(("encode", x if i % 2 else np.pad(x, ((0, 0), (0, 0), (2, 2), (0, 0)))[:, :, :32, :24]))
    jobs += [("stride", None)] * 30 + [("declared", None)] * 6 + [("streamed", None)] * 4
    jobs += [("bad-json", None)] * 10 + [("deep", None)] * 10 + [("digits", None)] * 10 + [("nan", None)] * 10
    rng.shuffle(jobs)
    cl_head = ("POST /decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               f"Content-Length: {2 * 1024**3}\r\n\r\n")
    chunked_head = ("POST /encode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n")
    piece = b"1," * (1 << 19)
    streamed = [b'%x\r\n{"x": [[\r\n' % 8] + [b"%x\r\n%s\r\n" % (len(piece), piece)] * 100

    def one(job: tuple[str, object]) -> tuple[str, int, object]:
        kind, array = job
        if kind == "decode":
            status, _, body = call(server, "/decode", {"z": array.tolist()})
            return kind, status, np.array(json.loads(body)["x_hat"]) if status == 200 else body
        if kind == "encode":
            status, _, body = call(server, "/encode", {"x": array.tolist()})
            return kind, status, np.array(json.loads(body)["mu"]) if status == 200 else body
        if kind == "declared":
            status, headers, body, _ = _raw(server, cl_head, [b'{"z": '])
        elif kind == "streamed":
            status, headers, body, _ = _raw(server, chunked_head, streamed)
        else:
            body = {"stride": json.dumps({"x": np.zeros((1, 1, 30, 26)).tolist()}).encode(),
                    "bad-json": b'{"z": [[0, 1,,]]}', "deep": b"[" * 50_000,
                    "digits": b'{"z": [[' + b"7" * 5000 + b"]]}",
                    "nan": b'{"z": [[[[NaN]]]]}'}[kind]
            status, headers, body = call(server, "/encode" if kind == "stride" else "/decode", body)
        assert headers["content-type"] == "application/json" and "error" in json.loads(body), (kind, body[:200])
        return kind, status, body

    pids = {name: _pid(name) for name in ("VAEServer", "ProxyActor")}
    before = {name: _rss_mb(pid) for name, pid in pids.items()}
    started = time.monotonic()
    peak = dict(before)
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(one, job) for job in jobs]
        while not all(f.done() for f in futures):
            peak = {name: max(peak[name], _rss_mb(pid)) for name, pid in pids.items()}
            time.sleep(0.02)
        results = [f.result() for f in futures]
    elapsed = time.monotonic() - started
    after = {name: _rss_mb(pid) for name, pid in pids.items()}
    statuses: dict[tuple[str, int], int] = {}
    for (kind, status, _), (_, array) in zip(results, jobs):
        statuses[(kind, status)] = statuses.get((kind, status), 0) + 1
    for (kind, status, answer), (_, array) in zip(results, jobs):
        if kind == "decode":
            assert status == 200, answer
            np.testing.assert_allclose(answer, vae.decoder.decode(array), atol=1e-5)
        elif kind == "encode":
            assert status == 200, answer
            np.testing.assert_allclose(answer, vae.encoder.encode(array)[0], atol=1e-5)
        else:
            assert status == (413 if kind in ("declared", "streamed") else 400), (kind, status, answer[:200])
    with capsys.disabled():
        rss = "; ".join(f"{name} RSS {before[name]:.0f} MB before, {peak[name]:.0f} MB peak, {after[name]:.0f} MB after"
                        for name in pids)
        print(f"\nmixed load: {len(jobs)} requests in {elapsed:.1f} s from 16 threads; statuses "
              f"{dict(sorted((f'{k} {s}', n) for (k, s), n in statuses.items()))}; {rss}")
    for name in pids:
        assert peak[name] - before[name] < 200, (name, before, peak)


# ---- the replica's own bounds, where Serve's proxy is not ours (a joined cluster) -----------------

def _starlette_request(body_chunks: list[bytes], headers: list[tuple[bytes, bytes]]):
    from starlette.requests import Request

    messages = [{"type": "http.request", "body": chunk, "more_body": i + 1 < len(body_chunks)}
                for i, chunk in enumerate(body_chunks)]
    taken = []

    async def receive() -> dict:
        taken.append(1)
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    scope = {"type": "http", "method": "POST", "path": "/decode", "headers": headers, "query_string": b""}
    return Request(scope, receive), taken


def test_the_replica_reads_at_most_the_cap_of_a_body():
    import asyncio

    from vae_export.scale.httpbody import BadRequest, read_body
    from vae_export.limits import MAX_BODY_BYTES

    chunk = b"0," * (1 << 19)
    request, taken = _starlette_request([chunk] * 100, [])  # 100 MiB offered, no Content-Length
    with pytest.raises(BadRequest, match=f"at most {MAX_BODY_BYTES}") as refused:
        asyncio.run(read_body(request))
    assert refused.value.status == 413 and len(taken) == MAX_BODY_BYTES // len(chunk) + 1  # stopped at the cap
    request, taken = _starlette_request([chunk], [(b"content-length", str(10**12).encode())])
    with pytest.raises(BadRequest, match="request body of 1000000000000 bytes") as refused:
        asyncio.run(read_body(request))
    assert refused.value.status == 413 and taken == []  # refused from the header, nothing read
    request, _ = _starlette_request([b'{"z": ', b"[[0]]}"], [])
    assert asyncio.run(read_body(request)) == b'{"z": [[0]]}'
