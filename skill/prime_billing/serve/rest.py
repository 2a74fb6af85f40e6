"""The REST face: one route per operation in the table, at its `rest_path`.

A success is the upstream body unchanged; every failure is problem+json with
the error's own status. Nothing here knows any particular operation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import PrimeBillingError, redact
from ..operations import OPERATIONS, Operation
from . import openapi
from .accesslog import TALLY
from .gateway import Gateway
from .problems import from_error, problem
from .security import CREDENTIAL, HEALTH_PATH


def _endpoint(op: Operation, gateway: Gateway) -> Any:
    in_path = [p.name for p in op.params if p.location == "path"]
    in_query = {p.wire: p.name for p in op.params if p.location != "path"}
    takes = ", ".join(in_query) or "none"

    async def endpoint(request: Request) -> Response:
        args: dict[str, Any] = {name: request.path_params[name] for name in in_path}
        for key, value in request.query_params.multi_items():
            name = in_query.get(key)
            if name is None:
                return problem(422, "invalid_input", f"unknown query parameter {key!r}; this route takes {takes}")
            if value != "":  # `?teamId=` means not given, as upstream reads it
                args[name] = value
        credential = request.scope.get(CREDENTIAL)
        try:
            result = await gateway.call(op, args, credential, request.scope.get(TALLY))
        except PrimeBillingError as exc:
            return from_error(exc, redact(str(exc), credential))
        return Response(
            json.dumps(result.raw, ensure_ascii=False),
            media_type="application/json",
            headers={"X-Prime-Sandbox": "1"} if result.sandbox else None,
        )

    return endpoint


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


def build_rest_app(
    gateway: Gateway, operations: Sequence[Operation] = OPERATIONS, *, secured: bool = False
) -> Starlette:
    """`secured`: callers must send a bearer token (a fixed token, or their own key)."""
    doc = openapi.document(operations, secured=secured or gateway.passthrough)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(doc)

    routes = [Route(HEALTH_PATH, healthz), Route("/openapi.json", openapi_json)]
    routes += [Route(op.rest_path, _endpoint(op, gateway), methods=[op.method]) for op in operations]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error, Exception: _http_error})
