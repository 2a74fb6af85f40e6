"""The table of operations: each described once, every surface derived from it.

The CLI, the scripts, the LangChain tools, the REST routes and the MCP tools
all read `OPERATIONS`; adding an operation means one entry here plus its model.
Parameter checks live here too, so a bad value is refused the same way, with
the same words, before any request leaves on any surface.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel

from .errors import InvalidInputError
from .models import RunUsage, Wallet

#: one path segment: letters, digits, `_ - . :`; never `.` or `..` alone
ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,128}$"


@dataclass(frozen=True)
class Param:
    name: str
    type: type
    description: str
    #: "path" or "query"
    location: str = "query"
    #: name on the wire, when it differs (`teamId`)
    wire_name: str | None = None
    required: bool = False
    default: Any = None
    minimum: int | None = None
    maximum: int | None = None
    pattern: str | None = None
    max_length: int | None = None
    #: the CLI takes several values at once (fetched concurrently)
    many: bool = False
    #: CLI flag, when it differs from the name
    flag: str | None = None

    @property
    def wire(self) -> str:
        return self.wire_name or self.name

    def check(self, value: Any) -> Any:
        """Return the value to send, or raise InvalidInputError naming the fix."""
        if value is None:
            if self.required:
                raise InvalidInputError(f"{self.name} is required")
            return self.default
        if self.type is int:
            if isinstance(value, bool) or not isinstance(value, int):
                try:
                    value = int(str(value).strip())
                except ValueError:
                    raise InvalidInputError(f"{self.name} must be a whole number, got {value!r}") from None
            lo, hi = self.minimum, self.maximum
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                bounds = f"{lo}..{hi}" if hi is not None else f">= {lo}"
                raise InvalidInputError(f"{self.name} must be {bounds}, got {value}")
            return value
        if not isinstance(value, str):
            raise InvalidInputError(f"{self.name} must be a string, got {type(value).__name__}")
        if self.pattern and (not re.fullmatch(self.pattern, value) or value in (".", "..")):
            shown = value if len(value) <= 40 else value[:40] + "…"
            raise InvalidInputError(
                f"{self.name} {shown!r} is not a valid id: use 1-128 letters, digits, '_', '-', '.', ':'"
            )
        return value

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "integer" if self.type is int else "string", "description": self.description}
        for key, value in (
            ("minimum", self.minimum),
            ("maximum", self.maximum),
            ("pattern", self.pattern),
            ("maxLength", self.max_length),
        ):
            if value is not None:
                schema[key] = value
        if self.default is not None:
            schema["default"] = self.default
        return schema


@dataclass(frozen=True)
class Hints:
    read_only: bool = True
    destructive: bool = False
    idempotent: bool = True
    #: reaches an outside API
    open_world: bool = True


@dataclass(frozen=True)
class Operation:
    #: python-side name (client method suffix, LangChain tool name)
    name: str
    #: CLI subcommand
    command: str
    description: str
    params: tuple[Param, ...]
    upstream_path: str
    rest_path: str
    mcp_tool: str
    model: type[BaseModel]
    #: contract operation name in capability/training-billing.yaml
    contract_name: str
    #: which settings value fills a param the caller left out (team id)
    settings_defaults: Mapping[str, str] = field(default_factory=dict)
    hints: Hints = Hints()
    method: str = "GET"

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def check(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Validate every argument; unknown names are refused, not ignored."""
        known = {p.name for p in self.params}
        extra = sorted(set(args) - known)
        if extra:
            raise InvalidInputError(f"{self.name} takes no parameter {extra[0]!r}; it takes {', '.join(sorted(known))}")
        return {p.name: p.check(args.get(p.name)) for p in self.params}

    def path_and_query(self, checked: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
        """Upstream path (each path value one quoted segment) and query parameters."""
        path = self.upstream_path
        query: dict[str, str] = {}
        for p in self.params:
            value = checked.get(p.name)
            if p.location == "path":
                path = path.replace("{" + p.name + "}", quote(str(value), safe=""))
            elif value is not None:
                query[p.wire] = str(value)
        return path, query

    def input_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {p.name: p.json_schema() for p in self.params},
            "required": [p.name for p in self.params if p.required],
            "additionalProperties": False,
        }


RUN_ID = Param(
    "run_id",
    str,
    "RFT run id, e.g. rft_abc123 (letters, digits, _ - . : ; at most 128).",
    location="path",
    required=True,
    pattern=ID_PATTERN,
    max_length=128,
    many=True,
)

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        name="get_run_usage",
        command="usage",
        description=(
            "Token usage and cost of one Prime Intellect RFT (reinforcement fine-tuning) run: "
            "training and inference tokens, rates, cost per bucket and the total billed in USD."
        ),
        params=(RUN_ID,),
        upstream_path="/api/v1/billing/runs/{run_id}/usage",
        rest_path="/v1/api/v1/billing/runs/{run_id}/usage",
        mcp_tool="prime-intellect-getrunusage",
        contract_name="getrunusage",
        model=RunUsage,
    ),
    Operation(
        name="get_wallet",
        command="wallet",
        description=(
            "Prime Intellect wallet: current balance in USD and the most recent billing rows "
            "(newest first; what drained the balance: RFT runs, pods, disks, inference...)."
        ),
        params=(
            Param("limit", int, "Rows per page, 1-100.", default=20, minimum=1, maximum=100),
            Param("offset", int, "Rows to skip from the newest, >= 0.", default=0, minimum=0),
            Param(
                "team_id",
                str,
                "Team whose wallet to read; omit for the personal wallet.",
                wire_name="teamId",
                pattern=ID_PATTERN,
                max_length=128,
                flag="--team",
            ),
        ),
        upstream_path="/api/v1/billing/wallet",
        rest_path="/v1/api/v1/billing/wallet",
        mcp_tool="prime-intellect-getwallet",
        contract_name="getwallet",
        model=Wallet,
        settings_defaults={"team_id": "team_id"},
    ),
)

BY_NAME: dict[str, Operation] = {op.name: op for op in OPERATIONS}


def get(name: str) -> Operation:
    try:
        return BY_NAME[name]
    except KeyError:
        raise InvalidInputError(f"unknown operation {name!r}; known: {', '.join(BY_NAME)}") from None
