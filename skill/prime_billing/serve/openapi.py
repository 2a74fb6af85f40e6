"""The OpenAPI 3.1 document of the REST face, derived from the operations table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic.json_schema import models_json_schema

from ..__version__ import __version__
from ..operations import Operation, Param
from . import problems

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


def document(operations: Sequence[Operation], *, secured: bool) -> dict[str, Any]:
    # a plain operation passes the upstream body on (validated shape); a composite one its dumped model
    def mode(op: Operation) -> Any:
        return "serialization" if getattr(op, "composite", False) else "validation"

    models = {(op.model, mode(op)) for op in operations}
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
    for op in operations:
        inputs = op.input_schema()
        params = [_parameter(p, inputs) for p in op.params]
        responses: dict[str, Any] = {
            "200": {
                "description": "The upstream body, unchanged (fields unknown to this version included).",
                "content": {"application/json": {"schema": refs[(op.model, mode(op))]}},
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
    if not param["required"]:
        param["allowEmptyValue"] = True  # `?teamId=` means not given, as upstream reads it
    return param
