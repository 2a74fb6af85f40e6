"""The OpenAPI 3.1 document of the REST server, derived from the operations table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic.json_schema import models_json_schema

from ..__version__ import __version__
from ..operations import Operation, Param
from . import HEALTH_PATH, METRICS_PATH

#: errors are `application/problem+json` (RFC 9457), their `type` this prefix and the error's code
PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE = "urn:prime-billing:problem:"
PROBLEM_REF = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
PROBLEM = {"type": "object", "required": ["type", "title", "status", "detail"], "properties": {
    "type": {"type": "string", "description": f"{PROBLEM_TYPE}<code>"}, "title": {"type": "string"},
    "status": {"type": "integer"},
    "detail": {"type": "string", "description": "One line: what went wrong and what to do."},
    "code": {"type": "string", "description": "Stable error code for programs."},
}}  # fmt: skip
#: statuses an operation can answer besides 200, and when
ERRORS: dict[int, str] = {
    401: "Missing or wrong token, or the Prime API rejected the key.",
    402: "Payment required upstream.",
    403: "The key cannot read it (someone else's run or team).",
    404: "No such run or wallet.",
    422: "A parameter was refused (before any upstream call), or the Prime API refused it.",
    429: "Rate limited upstream; see Retry-After.",
    502: "The Prime API is unavailable (after retries) or answered something unusable.",
    504: "The Prime API did not answer in time.",
}
RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}}
#: the media type of /metrics: Prometheus' text format (the launcher answers with its version and charset)
METRICS_MEDIA_TYPE = "text/plain"
#: /metrics is no operation: no upstream call of its own but a wallet reading, reused for --metrics-ttl
METRICS = {"get": {
    "operationId": "metrics",
    "summary": "Prometheus metrics: this server's traffic, the wallet's balance and burn per hour.",
    "description": "Prometheus text format. The wallet is read at most once per --metrics-ttl seconds (per key in "
    "passthrough); if that read fails the answer is still 200, with prime_wallet_up 0.",
    "responses": {
        "200": {"description": "The metrics.", "content": {METRICS_MEDIA_TYPE: {"schema": {"type": "string"}}}},
        "401": {"description": ERRORS[401], "content": PROBLEM_REF},
        "429": {"description": "Too many requests from this caller; see Retry-After.", "content": PROBLEM_REF,
                "headers": RETRY_AFTER},
    },
}}  # fmt: skip
HEALTHZ = {"get": {"operationId": "healthz", "summary": "Liveness and readiness; never calls upstream.",
                   "security": [], "responses": {"200": {"description": "Serving."}}}}  # fmt: skip


def document(operations: Sequence[Operation], *, secured: bool, metrics: bool = True) -> dict[str, Any]:
    """`metrics`: the server answers /metrics (the launcher always does)."""
    models = sorted({(op.model, op.answer_mode) for op in operations}, key=lambda m: m[0].__name__)
    refs, defs = models_json_schema(models, ref_template="#/components/schemas/{model}")  # type: ignore[arg-type]
    paths: dict[str, Any] = {HEALTH_PATH: HEALTHZ, **({METRICS_PATH: METRICS} if metrics else {})}
    for op in operations:
        inputs = op.input_schema()
        ok = {"description": "The upstream body, unchanged (fields unknown to this version included).",
              "content": {"application/json": {"schema": refs[(op.model, op.answer_mode)]}}}  # fmt: skip
        errors = {str(status): {"description": text, "content": PROBLEM_REF,
                                **({"headers": RETRY_AFTER} if status == 429 else {})}
                  for status, text in ERRORS.items()}  # fmt: skip
        paths.setdefault(op.rest_path, {})[op.method.lower()] = {
            "operationId": op.contract_name or op.name, "summary": op.description.split(":")[0],
            "description": op.description, "parameters": [_parameter(p, inputs) for p in op.params],
            "responses": {"200": ok, **errors},
        }  # fmt: skip
    about = "Run cost and wallet from Prime Intellect's billing API; success bodies are passed on unchanged."
    info = {"title": "Prime Intellect billing (prime-billing)", "version": __version__, "description": about}
    doc: dict[str, Any] = {"openapi": "3.1.0", "info": info, "paths": paths,
                           "components": {"schemas": {**defs.get("$defs", {}), "Problem": PROBLEM}}}  # fmt: skip
    if secured:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    return doc


def _parameter(p: Param, inputs: dict[str, Any]) -> dict[str, Any]:
    """One parameter: its schema is the inputs model's own for that field, its description lifted to the
    parameter; the name is the one on the wire (`teamId`)."""
    schema = dict(inputs["properties"][p.name])
    required = p.name in inputs["required"] or p.location == "path"
    param = {"name": p.wire, "in": p.location, "required": required, "description": schema.pop("description", ""),
             "schema": schema}  # fmt: skip
    if schema.get("type") == "array":
        # one value, its items joined by commas (`?warn=50,80,100`), as the inputs model reads the text;
        # OpenAPI's default for a query array is the name repeated per item
        param["style"], param["explode"] = "form", False
    # `?teamId=` means not given, as upstream reads it
    return param if required else {**param, "allowEmptyValue": True}
