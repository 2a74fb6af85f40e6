"""The REST server: one route per operation in the table, at its `rest_path`.

A success is the upstream body unchanged; every failure is problem+json with
the error's own status. Nothing here knows any particular operation. HEAD on
a route answers at once, with the headers a GET would have, and calls nothing.

The table's routes are answered by a plain ASGI router (`Routes`) that builds
no Request or Response objects on the way: every forwarded call pays for those.
Whatever it does not match (other paths or methods, `/healthz`, `/openapi.json`,
`/metrics`) goes to the Starlette app behind it, which also answers 404/405.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl

from pydantic import TypeAdapter
from starlette.applications import Starlette
from starlette.convertors import Convertor
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from ..client import Result
from ..errors import PrimeBillingError, redact
from ..operations import OPERATIONS, Operation
from . import METRICS_PATH, openapi
from .gateway import Gateway
from .problems import from_error, problem
from .security import CREDENTIAL, HEALTH_PATH, UPSTREAM_USAGE

_JSON = (b"content-type", b"application/json")
_SANDBOX = (b"x-prime-sandbox", b"1")
#: a success's headers and body, or the problem to answer instead
_Outcome = Response | tuple[list[tuple[bytes, bytes]], bytes]


class _Endpoint:
    """One operation's route: arguments from path and query, one gateway call, the body."""

    def __init__(self, op: Operation, gateway: Gateway) -> None:
        self.op = op
        self.gateway = gateway
        # the same matching as a Starlette Route at this path
        self.regex: re.Pattern[str]
        self.convertors: dict[str, Convertor[Any]]
        self.regex, _, self.convertors = compile_path(op.rest_path)
        self.in_query = {p.wire: p.name for p in op.params if p.location != "path"}
        self.takes = ", ".join(self.in_query) or "none"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """As the ASGI app of a Starlette Route: HEAD, and any path `Routes` passed on."""
        await _deliver(await self._outcome(scope, dict(scope.get("path_params", {}))), scope, receive, send)

    async def _outcome(self, scope: Scope, args: dict[str, Any]) -> _Outcome:
        """The success's headers and body, or the problem to answer instead."""
        query = scope["query_string"]
        if query:
            for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
                name = self.in_query.get(key)
                if name is None:
                    return problem(
                        422, "invalid_input", f"unknown query parameter {key!r}; this route takes {self.takes}"
                    )
                if value != "":  # `?teamId=` means not given, as upstream reads it
                    args[name] = value
        credential = scope.get(CREDENTIAL)
        try:
            result = await self.gateway.call(self.op, args, credential, scope.get(UPSTREAM_USAGE))
        except PrimeBillingError as exc:
            return from_error(exc, redact(exc.worded("rest"), credential))
        body = result.body  # the upstream's bytes, as they came
        if body is None:  # a report's own answer, encoded off the event loop: it can be thousands of rows
            body = await asyncio.to_thread(_encode, result)
        headers = [_SANDBOX] if result.sandbox else []
        headers += [(b"content-length", str(len(body)).encode()), _JSON]
        return headers, body


class Routes:
    """ASGI: the table's routes first, everything else to `fallback` (a Starlette app)."""

    def __init__(self, endpoints: Sequence[_Endpoint], fallback: ASGIApp) -> None:
        self.endpoints = tuple(endpoints)
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            path, method = scope["path"], scope["method"]
            for ep in self.endpoints:
                if method == "HEAD" and ep.op.method == "GET" and ep.regex.match(path) is not None:
                    await _deliver(([_JSON], b""), scope, receive, send)
                    return
                if ep.op.method == method and (m := ep.regex.match(path)) is not None:
                    args = {k: ep.convertors[k].convert(v) for k, v in m.groupdict().items()}
                    try:
                        outcome = await ep._outcome(scope, args)
                    except Exception:
                        # as Starlette's error middleware does for the routes behind: answer, then raise
                        await _failed()(scope, receive, send)
                        raise
                    await _deliver(outcome, scope, receive, send)
                    return
        await self.fallback(scope, receive, send)


async def _deliver(outcome: _Outcome, scope: Scope, receive: Receive, send: Send) -> None:
    if isinstance(outcome, Response):
        await outcome(scope, receive, send)
        return
    headers, body = outcome
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


def _failed() -> Response:
    return problem(500, "error", "the server failed to answer: try again; if it persists report it")


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        return problem(404, "no_route", f"no route {request.url.path}: see /openapi.json")
    if status == 405:
        allow = (exc.headers or {}).get("Allow") if isinstance(exc, HTTPException) else None
        return problem(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed here: see /openapi.json",
            {"Allow": allow} if allow else None,
        )
    return problem(status, "error", "the server failed to answer: try again; if it persists report it")


def route_templates(operations: Sequence[Operation] = OPERATIONS) -> list[str]:
    """Every route this server answers, as its template (`{run_id}`, not an id): what metrics label a request by."""
    return [HEALTH_PATH, "/openapi.json", METRICS_PATH, *(op.rest_path for op in operations)]


def build_rest_app(
    gateway: Gateway,
    operations: Sequence[Operation] = OPERATIONS,
    *,
    secured: bool = False,
    metrics: ASGIApp | None = None,
) -> Routes:
    """`secured`: callers must send a bearer token (a fixed token, or their own key);
    `metrics`: the app answering GET /metrics (serve/metrics.py), none if not given."""
    doc = openapi.document(operations, secured=secured or gateway.passthrough, metrics=metrics is not None)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(doc)

    endpoints = [_Endpoint(op, gateway) for op in operations]
    routes = [Route(HEALTH_PATH, healthz), Route("/openapi.json", openapi_json)]
    if metrics is not None:
        routes.append(Route(METRICS_PATH, metrics, methods=["GET"]))
    routes += [Route(ep.op.rest_path, ep, methods=[ep.op.method]) for ep in endpoints]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error, Exception: _http_error})
    return Routes(endpoints, app)
