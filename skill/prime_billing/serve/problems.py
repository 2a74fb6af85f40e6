"""Errors as `application/problem+json` (RFC 9457): one shape on every route."""

from __future__ import annotations

import json
import math
from http import HTTPStatus
from typing import Any

from starlette.responses import Response

from ..errors import PrimeBillingError, RateLimitError

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:prime-billing:problem:"


def problem(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body = {"type": TYPE_PREFIX + code, "title": title, "status": status, "detail": detail, "code": code}
    return Response(json.dumps(body), status_code=status, media_type=MEDIA_TYPE, headers=headers)


def from_error(err: PrimeBillingError, detail: str | None = None) -> Response:
    """The error's own status (upstream 4xx kept; 502 unavailable, 504 timeout)."""
    headers: dict[str, str] = {}
    if err.http_status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if (isinstance(err, RateLimitError) or err.http_status in (429, 503)) and err.retry_after is not None:
        headers["Retry-After"] = str(max(0, math.ceil(err.retry_after)))
    return problem(err.http_status, err.code, detail if detail is not None else err.worded("rest"), headers)


def schema() -> dict[str, Any]:
    """The Problem object, for the OpenAPI document."""
    return {
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string", "description": f"{TYPE_PREFIX}<code>"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string", "description": "One line: what went wrong and what to do."},
            "code": {"type": "string", "description": "Stable error code for programs."},
        },
    }
