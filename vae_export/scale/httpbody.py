"""Request bodies of the HTTP server, read and parsed within stated bounds (limits.py):

- the size: a Content-Length past MAX_BODY_BYTES is a 413 before a byte of the body is read,
  and a body without one (chunked) is read as a stream and cut at the cap, also a 413;
- the structure, before the parser runs: nesting deeper than MAX_JSON_DEPTH (Python's parser
  recurses, 100,000 levels end in RecursionError) and more items than a request of
  MAX_REQUEST_VALUES numbers can hold (each parsed item is a Python object of 24 to 56 bytes);
- integers longer than MAX_INT_DIGITS, while parsing (Python refuses past 4,300 digits with a
  ValueError, and converting long ones is quadratic).
Every refusal is a `BadRequest` carrying the HTTP status, answered as JSON by the app.

The size bound is enforced twice. In the replica (`read_body`), wherever the server runs; and,
on a Serve the command starts, in Serve's HTTP proxy (`BodyLimit`, installed through Serve's
RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH): the proxy reads a request body as fast as the
client sends it into an unbounded queue, and the replica's first read takes the whole queue in
one message, so without it a fast chunked upload of gigabytes grows both processes by what
arrived before the replica could say 413.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from vae_export.errors import first_line
from vae_export.limits import MAX_BODY_BYTES, MAX_INT_DIGITS, MAX_JSON_DEPTH, MAX_REQUEST_VALUES

# JSON brackets; brackets inside strings are counted too (a request holds no such strings, so
# it only refuses bodies that were never requests)
_STEP = np.zeros(256, np.int8)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_BLOCK = 1 << 20  # brackets per step of the depth scan: its memory stays at 4 MB whatever the body


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_body(request: Any) -> bytes:
    """The body of a Starlette request, at most MAX_BODY_BYTES of it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and (len(declared) > 18 or int(declared) > MAX_BODY_BYTES):
        raise BadRequest(413, f"request body of {declared if len(declared) <= 18 else 'over 10^18'} bytes; "
                              f"at most {MAX_BODY_BYTES}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:  # a chunked body (or one longer than it said): stop reading
            raise BadRequest(413, f"request body of more than {MAX_BODY_BYTES} bytes; at most {MAX_BODY_BYTES}")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    """JSON from a body already bounded in size, its structure checked before parsing."""
    brackets = body.translate(None, _NOT_BRACKETS)
    depth = 0
    for start in range(0, len(brackets), _BLOCK):
        steps = np.cumsum(_STEP[np.frombuffer(brackets, np.uint8, min(_BLOCK, len(brackets) - start), start)],
                          dtype=np.int32) + depth
        if steps.max(initial=depth) > MAX_JSON_DEPTH:
            raise BadRequest(400, f"expected a JSON request, found JSON nested deeper than {MAX_JSON_DEPTH} levels")
        depth = int(steps[-1])
    items = body.count(b",") + brackets.count(b"[") + brackets.count(b"{")
    if items > 2 * MAX_REQUEST_VALUES:
        raise BadRequest(413, f"request of more than {2 * MAX_REQUEST_VALUES} JSON items; a request holds at most "
                              f"{MAX_REQUEST_VALUES} values")
    try:
        return json.loads(body, parse_int=_int)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise BadRequest(400, f"expected a JSON body, found invalid JSON ({first_line(exc)})") from None


def _int(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > MAX_INT_DIGITS:
        raise BadRequest(400, f"expected numbers, found an integer of {digits} digits; at most {MAX_INT_DIGITS}")
    return int(text)


class BodyLimit:
    """ASGI middleware for Serve's proxy: a Content-Length past MAX_BODY_BYTES is answered 413
    at once; a body without one (chunked) is read here up to the cap, then handed on as one
    message (or answered 413 past the cap). Bodies with a Content-Length within the cap pass
    through: the HTTP parser delivers no more than they declare."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if declared.isdigit() and (len(declared) > 18 or int(declared) > MAX_BODY_BYTES):
                await _answer(send, 413, f"request body of {declared.decode()[:18]} bytes; at most {MAX_BODY_BYTES}")
                return
            await self.app(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            size += len(message.get("body", b""))
            if size > MAX_BODY_BYTES:
                await _answer(send, 413, f"request body of more than {MAX_BODY_BYTES} bytes; at most {MAX_BODY_BYTES}")
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed() -> dict:
            return replay.pop() if replay else await receive()

        await self.app(scope, replayed, send)


async def _answer(send: Any, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def proxy_middlewares() -> list[Any]:
    """What Serve's proxy calls (RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH): its middlewares."""
    from starlette.middleware import Middleware

    return [Middleware(BodyLimit)]


PROXY_CALLBACK = "vae_export.scale.httpbody:proxy_middlewares"
