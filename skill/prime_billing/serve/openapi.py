"""The OpenAPI 3.1 document of the REST server, derived from the operations table and the models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from ..__version__ import __version__
from ..operations import Operation, Param
from . import HEALTH_PATH, METRICS_PATH

#: errors are `application/problem+json` (RFC 9457), their `type` this prefix and the error's code
PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE = "urn:prime-billing:problem:"
#: statuses an operation can answer besides 200, and when
ERRORS = {
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
UNCHANGED = "The upstream body, unchanged (fields unknown to this version included)."
#: /metrics answers Prometheus' text format (with its version and charset)
METRICS_MEDIA_TYPE = "text/plain"


class Problem(BaseModel):
    """An error answer."""

    type: str = Field(description=f"{PROBLEM_TYPE}<code>")
    title: str
    status: int
    detail: str = Field(description="One line: what went wrong and what to do.")
    code: str = Field(description="Stable error code for programs.")


def document(operations: Sequence[Operation], *, secured: bool) -> dict[str, Any]:
    models = sorted({(op.model, op.answer_mode) for op in operations}, key=lambda m: m[0].__name__)
    refs, defs = models_json_schema([*models, (Problem, "serialization")], ref_template="#/components/schemas/{model}")

    def error(text: str, status: int) -> dict[str, Any]:
        content = {PROBLEM_MEDIA_TYPE: {"schema": refs[(Problem, "serialization")]}}
        return {"description": text, "content": content, **({"headers": RETRY_AFTER} if status == 429 else {})}

    errors = {str(status): error(text, status) for status, text in ERRORS.items()}
    healthz = {"operationId": "healthz", "summary": "Liveness and readiness; never calls upstream.", "security": []}
    paths: dict[str, Any] = {HEALTH_PATH: {"get": {**healthz, "responses": {"200": {"description": "Serving."}}}}}
    # /metrics is no operation: no upstream call of its own but a wallet reading, reused for --metrics-ttl
    text = {"description": "The metrics.", "content": {METRICS_MEDIA_TYPE: {"schema": {"type": "string"}}}}
    limited = error("Too many requests from this caller; see Retry-After.", 429)
    paths[METRICS_PATH] = {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics: this server's traffic, the wallet's balance and burn, the budgets' pace.",
            "description": "Prometheus text format. The wallet is read at most once per --metrics-ttl seconds (per "
            "key in passthrough); if that read fails the answer is still 200, with prime_wallet_up 0.",
            "responses": {"200": text, "401": errors["401"], "429": limited},
        }
    }
    for op in operations:
        inputs = op.input_schema()
        ok = {"description": UNCHANGED, "content": {"application/json": {"schema": refs[(op.model, op.answer_mode)]}}}
        paths.setdefault(op.rest_path, {})[op.method.lower()] = {
            "operationId": op.contract_name or op.name,
            "summary": op.description.split(":")[0],
            "description": op.description,
            "parameters": [_parameter(p, inputs) for p in op.params],
            "responses": {"200": ok, **errors},
        }
    about = "Run cost and wallet from Prime Intellect's billing API; success bodies are passed on unchanged."
    info = {"title": "Prime Intellect billing (prime-billing)", "version": __version__, "description": about}
    doc = {"openapi": "3.1.0", "info": info, "paths": paths, "components": {"schemas": defs.get("$defs", {})}}
    if secured:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    return doc


def _parameter(p: Param, inputs: dict[str, Any]) -> dict[str, Any]:
    """One parameter: its schema the inputs model's own for that field, its description lifted to the parameter;
    its name the one on the wire (`teamId`). `?teamId=` means not given, as upstream reads it."""
    schema = dict(inputs["properties"][p.name])
    required = p.name in inputs["required"] or p.location == "path"
    param = {"name": p.wire, "in": p.location, "required": required, "description": schema.pop("description", "")}
    if schema.get("type") == "array":
        # one value, its items joined by commas (`?warn=50,80,100`), as the inputs model reads the text;
        # OpenAPI's default for a query array is the name repeated per item
        param |= {"style": "form", "explode": False}
    return {**param, "schema": schema} if required else {**param, "schema": schema, "allowEmptyValue": True}
