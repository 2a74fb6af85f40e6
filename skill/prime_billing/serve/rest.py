"""The REST server: one route per operation in the table, at its `rest_path`, on Starlette's router.

A success is the upstream body unchanged; every failure is problem+json (RFC 9457) with the
error's own status, the guard's refusals too. Nothing here knows any particular operation. HEAD
on a route answers at once, with the headers a GET would have, and calls nothing. A route is an
ASGI app of its own: a forwarded call builds no Request or Response object on its way.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from pydantic import TypeAdapter
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..client import Result
from ..errors import PrimeBillingError, RateLimitError, redact
from ..operations import OPERATIONS, Operation
from . import CALLER, HEALTH_PATH, METRICS_PATH, UPSTREAM_CALLS, openapi
from .gateway import Gateway

_JSON = (b"content-type", b"application/json")
_SANDBOX = (b"x-prime-sandbox", b"1")
#: the REST status for each kind of error: upstream 4xx kept, 502 unavailable, 504 timeout
STATUS: dict[str, int] = {
    "config": 500,
    "invalid_input": 422,
    "report_too_large": 422,
    "unauthorized": 401,
    "payment_required": 402,
    "forbidden": 403,
    "not_found": 404,
    "upstream_validation": 422,
    "rate_limited": 429,
    "upstream_timeout": 504,
}


def problem(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body = {"type": openapi.PROBLEM_TYPE + code, "title": title, "status": status, "detail": detail, "code": code}
    return Response(json.dumps(body), status_code=status, media_type=openapi.PROBLEM_MEDIA_TYPE, headers=headers)


def http_status(err: PrimeBillingError) -> int:
    """What the REST server answers for `err`: anything else the upstream caused is a bad gateway."""
    return STATUS.get(err.code, 502)


def from_error(err: PrimeBillingError, detail: str | None = None) -> Response:
    status = http_status(err)
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if (isinstance(err, RateLimitError) or status in (429, 503)) and err.retry_after is not None:
        headers["Retry-After"] = str(max(0, math.ceil(err.retry_after)))
    return problem(status, err.code, detail if detail is not None else err.worded("rest"), headers)


class _Endpoint:
    """One operation's route: arguments from path and query, one gateway call, the body."""

    def __init__(self, op: Operation, gateway: Gateway) -> None:
        self.op = op
        self.gateway = gateway
        self.in_query = {p.wire: p.name for p in op.params if p.location != "path"}
        self.takes = ", ".join(self.in_query) or "none"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "HEAD":
            await _answer(send, [_JSON], b"")
            return
        answer = await self._answer(scope)
        if isinstance(answer, Response):
            await answer(scope, receive, send)
        else:
            await _answer(send, *answer)

    async def _answer(self, scope: Scope) -> Response | tuple[list[tuple[bytes, bytes]], bytes]:
        """The success's headers and body, or the problem to answer instead."""
        args = dict(scope["path_params"])
        for key, value in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True):
            name = self.in_query.get(key)
            if name is None:
                return problem(422, "invalid_input", f"unknown query parameter {key!r}; this route takes {self.takes}")
            if value != "":  # `?teamId=` means not given, as upstream reads it
                args[name] = value
        caller = scope.get(CALLER)
        calls = 0

        def sent() -> None:
            nonlocal calls
            calls += 1

        try:
            result = await self.gateway.call(self.op, args, caller, sent)
        except PrimeBillingError as exc:
            return from_error(exc, redact(exc.worded("rest"), caller.credential if caller else None))
        finally:
            scope[UPSTREAM_CALLS] = calls
        body = result.body  # the upstream's bytes, as they came
        if body is None:  # a report's own answer, encoded off the event loop: it can be thousands of rows
            body = await asyncio.to_thread(_encode, result)
        headers = [_SANDBOX] if result.sandbox else []
        return [*headers, (b"content-length", str(len(body)).encode()), _JSON], body


async def _answer(send: Send, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


#: list items serialized per call: one call over thousands of rows holds the interpreter, and with
#: it the event loop, long enough to stall every other request; a slice at a time keeps each hold short
SLICE = 300


def _encode(result: Result[Any]) -> bytes:
    """A report's answer as JSON (what `raw` holds), long lists written a slice at a time."""
    data = result.data
    long = [name for name, value in data if isinstance(value, list) and len(value) > SLICE]
    head = data.model_dump_json(exclude=set(long))[:-1]
    parts = [head]
    for name in long:
        items = getattr(data, name)
        adapter = TypeAdapter(list[type(items[0])])  # type: ignore[misc]
        slices = (adapter.dump_json(items[i : i + SLICE])[1:-1] for i in range(0, len(items), SLICE))
        parts.append(("," if len(parts) > 1 or len(head) > 1 else "") + json.dumps(name) + ":[")
        parts.append(b",".join(slices).decode() + "]")
    return ("".join(parts) + "}").encode()


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        return problem(404, "no_route", f"no route {request.url.path}: see /openapi.json")
    if status == 405:
        allow = (exc.headers or {}).get("Allow") if isinstance(exc, HTTPException) else None
        detail = f"{request.method} is not allowed here: see /openapi.json"
        return problem(405, "method_not_allowed", detail, {"Allow": allow} if allow else None)
    return problem(status, "error", "the server failed to answer: try again; if it persists report it")


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def build_rest_app(
    gateway: Gateway,
    operations: Sequence[Operation] = OPERATIONS,
    *,
    secured: bool = False,
    metrics: ASGIApp | None = None,
    middleware: Sequence[Middleware] = (),
) -> Starlette:
    """`secured`: callers must send a bearer token (a fixed token, or their own key);
    `metrics`: the app answering GET /metrics (serve/observe.py), none if not given."""
    doc = openapi.document(operations, secured=secured or gateway.passthrough, metrics=metrics is not None)

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(doc)

    routes = [Route(HEALTH_PATH, healthz), Route("/openapi.json", openapi_json)]
    if metrics is not None:
        routes.append(Route(METRICS_PATH, metrics, methods=["GET"]))
    routes += [Route(op.rest_path, _Endpoint(op, gateway), methods=[op.method]) for op in operations]
    handlers = {HTTPException: _http_error, Exception: _http_error}
    return Starlette(routes=routes, middleware=middleware, exception_handlers=handlers)  # type: ignore[arg-type]
