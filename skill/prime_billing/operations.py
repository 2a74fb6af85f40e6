"""The table of operations: each described once, every surface derived from it.

The CLI, the scripts, the LangChain tools, the REST routes and the MCP tools
all read `OPERATIONS`; adding an operation means one entry here plus its model.
Parameter checks live here too, so a bad value is refused the same way, with
the same words, before any request leaves on any surface.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel

from .budget import BudgetCheck, check_budget
from .compose import Plan, parse_when
from .errors import InvalidInputError
from .models import RunUsage, Wallet, run_finished
from .reconcile import Reconciliation, reconcile_run
from .spend import SpendReport, spend_report

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
    #: "date-time": a date (midnight UTC) or an ISO 8601 date-time, checked before anything is sent
    format: str | None = None

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
            # Text is plain ASCII digits only: int() also takes "1_0", " 5 " and "١٠" (Arabic-Indic),
            # which would reach upstream as a number nobody typed. A leading "-" parses, to get the bounds.
            text = isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,400}", value) is not None
            if not text and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
                raise InvalidInputError(f"{self.name} must be a whole number, got {self._shown(value)!r}")
            value = int(value)
            lo, hi = self.minimum, self.maximum
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                bounds = f"{lo}..{hi}" if hi is not None else f">= {lo}"
                raise InvalidInputError(f"{self.name} must be {bounds}, got {self._shown(str(value))}")
            return value
        if self.type is float:
            return self._check_number(value)
        if not isinstance(value, str):
            raise InvalidInputError(f"{self.name} must be a string, got {type(value).__name__}")
        if self.pattern and (not re.fullmatch(self.pattern, value) or value in (".", "..")):
            raise InvalidInputError(
                f"{self.name} {self._shown(value)!r} is not a valid id: use 1-128 letters, digits, '_', '-', '.', ':'"
            )
        if self.format == "date-time":
            parse_when(value)
        return value

    def _check_number(self, value: Any) -> float:
        # Text is a plain ASCII JSON number only (12, 12.5, -1, 1.5e3), for the same reason as whole
        # numbers; numbers given as numbers pass as they are.
        if isinstance(value, str):
            if not re.fullmatch(r"-?[0-9]{1,400}(\.[0-9]{1,400})?([eE][-+]?[0-9]{1,4})?", value):
                finite = value.strip().lower().lstrip("+-") not in ("nan", "inf", "infinity")
                kind = "a number" if finite else "a finite number"
                raise InvalidInputError(f"{self.name} must be {kind}, got {self._shown(value)!r}")
        elif isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise InvalidInputError(f"{self.name} must be a number, got {self._shown(value)!r}")
        try:
            number = float(value)
        except OverflowError:  # an int beyond any float
            number = math.inf
        if not math.isfinite(number):
            raise InvalidInputError(f"{self.name} must be a finite number, got {self._shown(value)!r}")
        lo, hi = self.minimum, self.maximum
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            bounds = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise InvalidInputError(f"{self.name} must be {bounds}, got {number:g}")
        return number

    @staticmethod
    def _shown(value: Any) -> Any:
        """Long text cut, so a message quoting it stays one short line."""
        return value[:40] + "…" if isinstance(value, str) and len(value) > 40 else value

    def json_schema(self) -> dict[str, Any]:
        kind = {int: "integer", float: "number"}.get(self.type, "string")
        schema: dict[str, Any] = {"type": kind, "description": self.description}
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
    #: composite operation: `compose(checked_args)` is a plan that yields sub-calls
    #: (`SubCall(op_name, args)`), receives each one's Result and returns the model;
    #: both client faces drive it. Such operations have no upstream path of their own
    #: and no contract name (they are beyond the contract).
    compose: Callable[[dict[str, Any]], Plan] | None = None
    #: CLI only: no command of its own; its extra flags join this command, and giving
    #: one of them runs this operation instead (`wallet --min-balance` runs the check)
    cli_extends: str | None = None
    #: the answer changes over time until this says it is final: the CLI offers --watch
    finished: Callable[[Any], bool] | None = None

    @property
    def composite(self) -> bool:
        return self.compose is not None

    @property
    def in_contract(self) -> bool:
        """One of the contract's own operations (its REST path and tool name are fixed by it)."""
        return bool(self.contract_name)

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
TEAM_ID = Param(
    "team_id",
    str,
    "Team whose wallet to read; omit for the personal wallet.",
    wire_name="teamId",
    pattern=ID_PATTERN,
    max_length=128,
    flag="--team",
)
LIMIT = Param("limit", int, "Rows per page, 1-100.", default=20, minimum=1, maximum=100)
#: No wallet the reports read is longer than compose.MAX_PAGES x PAGE_SIZE (10 million rows): an
#: offset beyond that skips everything, and a 400-digit one is only load on the upstream's parser.
OFFSET = Param("offset", int, "Rows to skip from the newest, 0-10,000,000.", default=0, minimum=0, maximum=10_000_000)

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
        finished=run_finished,
    ),
    Operation(
        name="get_wallet",
        command="wallet",
        description=(
            "Prime Intellect wallet: current balance in USD and the most recent billing rows "
            "(newest first; what drained the balance: RFT runs, pods, disks, inference...)."
        ),
        params=(LIMIT, OFFSET, TEAM_ID),
        upstream_path="/api/v1/billing/wallet",
        rest_path="/v1/api/v1/billing/wallet",
        mcp_tool="prime-intellect-getwallet",
        contract_name="getwallet",
        model=Wallet,
        settings_defaults={"team_id": "team_id"},
    ),
)


# --------------------------------------------------------------------------- beyond the contract
# Composite answers built from the two upstream calls; REST routes under their own
# prefix, so the contract's paths stay exactly as they are.

OPERATIONS += (
    Operation(
        name="reconcile_run",
        command="reconcile",
        description=(
            "Reconcile a Prime Intellect RFT run: did the wallet really pay what the run says? "
            "Compares the run's billed total with the sum of every wallet billing row for that run "
            "(all pages); within one cent is reconciled, otherwise the difference is flagged."
        ),
        params=(replace(RUN_ID, many=False), TEAM_ID),
        upstream_path="",
        rest_path="/v1/prime-billing/runs/{run_id}/reconcile",
        mcp_tool="prime-intellect-reconcile",
        contract_name="",
        model=Reconciliation,
        settings_defaults={"team_id": "team_id"},
        compose=reconcile_run,
    ),
    Operation(
        name="spend_report",
        command="spend",
        description=(
            "Prime Intellect spend report: what was spent, and on what, over all wallet rows or since a date; "
            "totals by resource type and resource id, the most expensive RFT runs, and every row."
        ),
        params=(
            Param(
                "since",
                str,
                "Only rows created at or after this date (2026-11-01, midnight UTC) or date-time "
                "(2026-11-01T09:00:00Z); omit for all rows.",
                max_length=64,
                format="date-time",
                flag="--since",
            ),
            Param(
                "top", int, "How many of the most expensive RFT runs to list, 1-100.", default=5, minimum=1, maximum=100
            ),
            TEAM_ID,
        ),
        upstream_path="",
        rest_path="/v1/prime-billing/spend",
        mcp_tool="prime-intellect-spend",
        contract_name="",
        model=SpendReport,
        settings_defaults={"team_id": "team_id"},
        compose=spend_report,
    ),
    Operation(
        name="check_budget",
        command="budget",
        description=(
            "Prime Intellect budget guard: is the wallet balance at least a minimum in USD? "
            "Returns the verdict (ok, shortfall or headroom) with the wallet; use it to warn when the balance is low."
        ),
        params=(
            Param("min_balance", float, "Minimum balance in USD; below it the check fails.", required=True, minimum=0),
            LIMIT,
            OFFSET,
            TEAM_ID,
        ),
        upstream_path="",
        rest_path="/v1/prime-billing/budget",
        mcp_tool="prime-intellect-budget",
        contract_name="",
        model=BudgetCheck,
        settings_defaults={"team_id": "team_id"},
        compose=check_budget,
        cli_extends="wallet",
    ),
)

BY_NAME: dict[str, Operation] = {op.name: op for op in OPERATIONS}


def get(name: str) -> Operation:
    try:
        return BY_NAME[name]
    except KeyError:
        raise InvalidInputError(f"unknown operation {name!r}; known: {', '.join(BY_NAME)}") from None
