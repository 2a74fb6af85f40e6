"""The OpenAPI 3.1 document of the REST server, derived from the operations table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic.json_schema import models_json_schema

from ..__version__ import __version__
from ..operations import Operation, Param
from . import METRICS_PATH, problems

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


#: the media type of /metrics: Prometheus' text format (the launcher answers with its version and charset)
METRICS_MEDIA_TYPE = "text/plain"


def document(operations: Sequence[Operation], *, secured: bool, metrics: bool = True) -> dict[str, Any]:
    """`metrics`: the server answers /metrics (the launcher always does)."""
    models = {(op.model, op.answer_mode) for op in operations}
    refs, defs = models_json_schema(
        sorted(models, key=lambda m: m[0].__name__),  # type: ignore[arg-type]
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    schemas["Problem"] = problems.schema()
    paths: dict[str, Any] = {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness and readiness; never calls upstream.",
                "security": [],
                "responses": {"200": {"description": "Serving."}},
            }
        }
    }
    if metrics:
        paths[METRICS_PATH] = _metrics_path()
    for op in operations:
        inputs = op.input_schema()
        params = [_parameter(p, inputs) for p in op.params]
        responses: dict[str, Any] = {
            "200": {
                "description": "The upstream body, unchanged (fields unknown to this version included).",
                "content": {"application/json": {"schema": refs[(op.model, op.answer_mode)]}},
            }
        }
        for status, text in ERRORS.items():
            response: dict[str, Any] = {
                "description": text,
                "content": {problems.MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
            }
            if status == 429:
                response["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}}
            responses[str(status)] = response
        paths.setdefault(op.rest_path, {})[op.method.lower()] = {
            "operationId": op.contract_name or op.name,
            "summary": op.description.split(":")[0],
            "description": op.description,
            "parameters": params,
            "responses": responses,
        }
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Prime Intellect billing (prime-billing)",
            "version": __version__,
            "description": (
                "Run cost and wallet from Prime Intellect's billing API; success bodies are passed on unchanged."
            ),
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }
    if secured:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    return doc


def _metrics_path() -> dict[str, Any]:
    """Not an operation: no upstream call of its own but a wallet reading, reused for --metrics-ttl."""
    problem = {problems.MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics: this server's traffic, the wallet's balance and burn per hour.",
            "description": (
                "Prometheus text format. The wallet is read at most once per --metrics-ttl seconds (per key "
                "in passthrough); if that read fails the answer is still 200, with prime_wallet_up 0."
            ),
            "responses": {
                "200": {
                    "description": "The metrics.",
                    "content": {METRICS_MEDIA_TYPE: {"schema": {"type": "string"}}},
                },
                "401": {"description": ERRORS[401], "content": problem},
                "429": {
                    "description": "Too many requests from this caller; see Retry-After.",
                    "content": problem,
                    "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}},
                },
            },
        }
    }


def _parameter(p: Param, inputs: dict[str, Any]) -> dict[str, Any]:
    """One parameter: its schema is the inputs model's own for that field, its description lifted
    to the parameter; the name is the one on the wire (`teamId`)."""
    schema = dict(inputs["properties"][p.name])
    description = schema.pop("description", "")
    param: dict[str, Any] = {
        "name": p.wire,
        "in": p.location,
        "required": p.name in inputs["required"] or p.location == "path",
        "description": description,
        "schema": schema,
    }
    if schema.get("type") == "array":
        # one value, its items joined by commas (`?warn=50,80,100`), as the inputs model reads the text;
        # OpenAPI's default for a query array is the name repeated per item
        param["style"], param["explode"] = "form", False
    if not param["required"]:
        param["allowEmptyValue"] = True  # `?teamId=` means not given, as upstream reads it
    return param
