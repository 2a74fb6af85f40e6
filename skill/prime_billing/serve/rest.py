"""The REST server: one route per operation in the table, at its `rest_path`, on Starlette's router.

A success is the upstream body unchanged, every failure problem+json (RFC 9457); HEAD answers at once and calls
nothing. Each route is a plain ASGI app: a forwarded call builds no Request or Response.
"""

from __future__ import annotations

import asyncio
import math
from http import HTTPStatus
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..client import MAX_RETRY_AFTER
from ..errors import PrimeBillingError, RateLimitError, redact
from ..operations import OPERATIONS, Operation
from . import CALLER, HEALTH_PATH, METRICS_PATH, openapi
from .gateway import Gateway, counted

JSON = (b"content-type", b"application/json")
#: the REST status of each kind of error: upstream 4xx kept, 502 unavailable (any other), 504 timeout
STATUS = {"config": 500, "unauthorized": 401, "payment_required": 402, "forbidden": 403, "not_found": 404}
STATUS |= {"rate_limited": 429, "upstream_timeout": 504}
STATUS |= dict.fromkeys(("invalid_input", "report_too_large", "upstream_validation"), 422)


def problem(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    title = next((s.phrase for s in HTTPStatus if s == status), "Error")
    body = openapi.Problem(type=openapi.PROBLEM_TYPE + code, title=title, status=status, detail=detail, code=code)
    return Response(body.model_dump_json(), status, headers, openapi.PROBLEM_MEDIA_TYPE)


def http_status(err: PrimeBillingError) -> int:
    return STATUS.get(err.code, 502)


def from_error(err: PrimeBillingError, detail: str | None = None) -> Response:
    status, headers = http_status(err), {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if (isinstance(err, RateLimitError) or status in (429, 502, 503)) and err.retry_after is not None:
        headers["Retry-After"] = str(whole_seconds(err.retry_after))
    return problem(status, err.code, detail if detail is not None else err.worded("rest"), headers)


def whole_seconds(wait: float) -> int:
    """A wait as a Retry-After header's whole seconds, within [0, MAX_RETRY_AFTER] however the error carrying it was
    made: NaN and infinity are the ceiling, a wait in the past 0."""
    return int(MAX_RETRY_AFTER) if math.isnan(wait) else math.ceil(min(max(0.0, wait), MAX_RETRY_AFTER))


async def respond(send: Send, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    """A 200 with these headers and body, sent with no Response object made for it."""
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Endpoint:
    def __init__(self, op: Operation, gateway: Gateway) -> None:
        self.op, self.gateway = op, gateway
        self.in_query = {p.wire: p.name for p in op.params if p.location != "path"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "HEAD":
            return await respond(send, [JSON], b"")
        args = dict(scope["path_params"])
        for key, value in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True):
            if key not in self.in_query:
                takes = ", ".join(self.in_query) or "none"
                refused = problem(422, "invalid_input", f"unknown query parameter {key!r}; this route takes {takes}")
                return await refused(scope, receive, send)
            if value != "":  # `?teamId=` means not given, as upstream reads it
                args[self.in_query[key]] = value
        caller = scope.get(CALLER)
        try:
            result = await self.gateway.call(self.op, args, caller, counted(scope))
        except PrimeBillingError as exc:
            detail = redact(exc.worded("rest"), caller.credential if caller else None)
            return await from_error(exc, detail)(scope, receive, send)
        # the upstream's bytes as they came; a report's own answer, encoded off the event loop
        body = result.body if result.body is not None else (await asyncio.to_thread(result.json)).encode()
        sandbox = [(b"x-prime-sandbox", b"1")] if result.sandbox else []
        await respond(send, [*sandbox, (b"content-length", str(len(body)).encode()), JSON], body)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        return problem(404, "no_route", f"no route {request.url.path}: see /openapi.json")
    if status == 405:
        allow = {"Allow": exc.headers["Allow"]} if isinstance(exc, HTTPException) and exc.headers else None
        return problem(405, "method_not_allowed", f"{request.method} is not allowed here: see /openapi.json", allow)
    return problem(status, "error", "the server failed to answer: try again; if it persists report it")


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def build_rest_app(gateway: Gateway, metrics: ASGIApp, secured: bool) -> Starlette:
    """`metrics` answers GET /metrics (observe.py); `secured`: callers send a bearer (a token, or their own key)."""
    doc = openapi.document(OPERATIONS, secured=secured or gateway.passthrough)

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(doc)

    routes = [
        Route(HEALTH_PATH, healthz),
        Route("/openapi.json", openapi_json),
        Route(METRICS_PATH, metrics, methods=["GET"]),
    ]
    routes += [Route(op.rest_path, Endpoint(op, gateway), methods=[op.method]) for op in OPERATIONS]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error, Exception: _http_error})
