"""Errors as `application/problem+json` (RFC 9457): one shape on every route."""

from __future__ import annotations

import json
import math
from http import HTTPStatus
from typing import Any

from starlette.responses import Response

from ..client import MAX_RETRY_AFTER
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


def http_status(err: PrimeBillingError) -> int:
    """What the REST server answers for `err`: anything else the upstream caused is a bad gateway."""
    return STATUS.get(err.code, 502)


def from_error(err: PrimeBillingError, detail: str | None = None) -> Response:
    status = http_status(err)
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if (isinstance(err, RateLimitError) or status in (429, 502, 503)) and err.retry_after is not None:
        headers["Retry-After"] = str(whole_seconds(err.retry_after))
    return problem(status, err.code, detail if detail is not None else err.worded("rest"), headers)


def whole_seconds(wait: float) -> int:
    """A wait as a Retry-After header's whole seconds, within [0, MAX_RETRY_AFTER] however the error
    carrying it was made: NaN and infinity are the ceiling, a wait in the past 0."""
    if math.isnan(wait):
        return int(MAX_RETRY_AFTER)
    return math.ceil(min(max(0.0, wait), MAX_RETRY_AFTER))


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
