"""The table of operations: each described once, every surface derived from it.

The CLI, the scripts, the LangChain tools, the REST routes and the MCP tools
all read `OPERATIONS`; adding an operation means one entry here plus its
inputs model. That model is the one statement of an operation's inputs (types,
bounds, patterns, descriptions, defaults): the CLI's arguments, the tools' JSON
Schema and the OpenAPI parameters are read from it, it does every check, and
`explain` words every refusal, so a bad value is refused the same way, with the
same words, before any request leaves on any surface.
"""

from __future__ import annotations

import copy
import importlib
import math
import numbers
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, NamedTuple, TypeVar
from urllib.parse import quote

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonSchemaValue, SkipJsonSchema
from pydantic_core import CoreSchema, PydanticCustomError

from .dates import AGO_PATTERN, WHEN_FORMS, Period, is_ago, parse_when, stamp
from .errors import InvalidInputError
from .models import RunUsage, Wallet, run_finished
from .wording import learn

if TYPE_CHECKING:
    from .plan import Plan

#: one path segment: letters, digits, `_ - . :`; never `.` or `..` alone (see `DOT_SEGMENTS`)
ID_PATTERN = r"^[A-Za-z0-9_.:\-]{1,128}$"
#: what the pattern lets through but a path segment may not be: "here" and "up"
DOT_SEGMENTS = (".", "..")
#: No wallet the reports read is longer than compose.MAX_PAGES x PAGE_SIZE (10 million rows): an
#: offset beyond that skips everything, and a 400-digit one is only load on the upstream's parser.
MAX_OFFSET = 10_000_000

_DIGITS = re.compile(r"-?[0-9]{1,400}")
_JSON_NUMBER = re.compile(r"-?[0-9]{1,400}(\.[0-9]{1,400})?([eE][-+]?[0-9]{1,4})?")


# --------------------------------------------------------------------------- what the model cannot say
# Field markers, plain classes rather than dataclasses: every script imports this module, and a
# dataclass costs start-up a compile of each method it generates.


class Cli:
    """How an input reads on the command line: a field marker (`Annotated[..., Cli(...)]`)."""

    __slots__ = ("flag", "many", "metavar", "output_rows")

    def __init__(
        self, flag: str | None = None, metavar: str | None = None, *, many: bool = False, output_rows: bool = False
    ) -> None:
        #: the flag, when not `--` and the name with dashes (`--team` for team_id)
        self.flag = flag
        self.metavar = metavar
        #: a positional that takes several values at once (fetched concurrently)
        self.many = many
        #: no flag: the CLI's own output decides the value, true when it carries the report's rows
        #: (`include_rows`: `--json` and `--csv` always, the text where it lists them)
        self.output_rows = output_rows

    @property
    def has_flag(self) -> bool:
        return not self.output_rows


class Setting:
    """The settings value that fills this input when the caller leaves it out (`PRIME_TEAM_ID` for
    a team id): a field marker, so every operation taking the input is filled the same way."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class Refusal:
    """How a refused value of this field reads when its type's words would not help (a pattern,
    a validator): a field marker; `explain` fills in `{name}` and `{value}` (quoted)."""

    __slots__ = ("template",)

    def __init__(self, template: str) -> None:
        self.template = template


class Schema:
    """JSON Schema keys a type adds beyond its constraints (the `.`/`..` exclusion, the date
    formats): held in the field's metadata with the constraints, so they go wherever those go
    (a field-level `json_schema_extra` stays behind when a tool library copies the field)."""

    __slots__ = ("keys",)

    def __init__(self, keys: Mapping[str, Any]) -> None:
        self.keys = keys

    def __get_pydantic_json_schema__(self, core: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {**handler(core), **copy.deepcopy(dict(self.keys))}


T = TypeVar("T")


def _marker(info: FieldInfo, kind: type[T]) -> T | None:
    return next((m for m in info.metadata if isinstance(m, kind)), None)


# --------------------------------------------------------------------------- the input types


def _plain_digits(value: Any) -> Any:
    """Text is plain ASCII digits only: int() also takes "1_0", " 5 " and "١٠" (Arabic-Indic), which
    would reach upstream as a number nobody typed. A leading "-" parses, so the bounds are what is said."""
    if isinstance(value, str):
        if _DIGITS.fullmatch(value) is None:
            raise PydanticCustomError("int_parsing", "Input should be plain digits")
        return int(value)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    return value  # the strict int check refuses the rest


def _plain_number(value: Any) -> Any:
    """Text is a plain JSON number only (12, 12.5, -1, 1.5e3), for the same reason; numbers given
    as numbers pass as they are, if finite."""
    if isinstance(value, str):
        if _JSON_NUMBER.fullmatch(value) is None:
            if value.strip().lower().lstrip("+-") in ("nan", "inf", "infinity"):
                raise PydanticCustomError("finite_number", "Input should be a finite number")
            raise PydanticCustomError("float_parsing", "Input should be a plain JSON number")
        value = float(value)
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:  # an int beyond any float
            value = math.inf
    if isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError("finite_number", "Input should be a finite number")
    return value  # the strict float check refuses the rest


def _plain_bool(value: Any) -> Any:
    """Text is the JSON words only (a query string's `true`): not "1", "yes" or "True", which
    each library reads its own way."""
    if isinstance(value, str):
        if value not in ("true", "false"):
            raise PydanticCustomError("bool_parsing", "Input should be true or false")
        return value == "true"
    return value  # the strict bool check refuses the rest


def _percent_list(value: Any) -> Any:
    """Text is percents separated by commas (`50,80,100`, the CLI's and a query string's form), each
    then read as any number input reads text; a JSON array passes as it is."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    if isinstance(value, list | tuple):
        if len(value) > MAX_THRESHOLDS:  # said here, where the value is still the one given
            raise PydanticCustomError("too_long", "Too many thresholds")
        return tuple(value)
    return value  # the strict tuple check refuses the rest


def _ascending(values: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(sorted(set(values)))


def _one_segment(value: str) -> str:
    if value in DOT_SEGMENTS:
        raise ValueError("'.' and '..' are not ids")
    return value


def _date_or_time(value: str, info: ValidationInfo) -> str:
    """A moment the reports can read (they read it with this same function). Checked for a call
    (`Operation.check`), a time ago becomes the date-time it names, counted back from the call's
    one now: every moment of one call, and the server's row cap, count from the same instant."""
    now = info.context.get("now") if isinstance(info.context, Mapping) else None
    try:
        when = parse_when(value, now)
    except InvalidInputError:
        raise ValueError("not a date, date-time or time ago") from None
    return stamp(when) if now is not None and is_ago(value) else value


#: after a field's bounds (so they stay in its JSON Schema): how text becomes a number
PLAIN_DIGITS = BeforeValidator(_plain_digits)
PLAIN_NUMBER = BeforeValidator(_plain_number)
PLAIN_BOOL = BeforeValidator(_plain_bool)
Id = Annotated[
    str,
    Field(max_length=128, pattern=ID_PATTERN),
    AfterValidator(_one_segment),
    Schema({"not": {"enum": list(DOT_SEGMENTS)}}),
]
DateOrTime = Annotated[
    str,
    Field(max_length=64),
    AfterValidator(_date_or_time),
    Schema({"anyOf": [{"format": "date"}, {"format": "date-time"}, {"pattern": AGO_PATTERN}]}),
]

_NOT_AN_ID = Refusal("{name} {value} is not a valid id: use 1-128 letters, digits, '_', '-', '.', ':'")

RunId = Annotated[
    Id,
    Field(
        description=(
            "RFT run id, e.g. rft_abc123: 1-128 of the letters A-Z a-z, the digits 0-9 and _ - . : (not . or .. alone)."
        )
    ),
    _NOT_AN_ID,
]
#: None (left out) means the personal wallet; a caller sends a string or nothing, so the schema says string
TeamId = Annotated[
    Id | SkipJsonSchema[None],
    Field(description="Team whose wallet to read; omit for the personal wallet.", serialization_alias="teamId"),
    _NOT_AN_ID,
    Cli(flag="--team", metavar="ID"),
    Setting("team_id"),
]
Limit = Annotated[int, Field(ge=1, le=100, description="Rows per page, 1-100."), PLAIN_DIGITS]
Offset = Annotated[
    int, Field(ge=0, le=MAX_OFFSET, description="Rows to skip from the newest, 0-10,000,000."), PLAIN_DIGITS
]
_NOT_A_DATE = Refusal("{name} must be " + WHEN_FORMS + ", got {value}")
#: how every moment input reads its value
_WHEN = (
    "a date (2026-11-01, midnight UTC), a date-time (2026-11-01T09:00:00Z) or a time ago: 7d, 24h, 2w, "
    "today or yesterday (UTC midnights)"
)
Since = Annotated[
    DateOrTime | SkipJsonSchema[None],
    Field(description=f"Only rows created at or after this moment: {_WHEN}; omit for all rows."),
    _NOT_A_DATE,
    Cli(flag="--since", metavar="DATE"),
]
Until = Annotated[
    DateOrTime | SkipJsonSchema[None],
    Field(description="Only rows created before this moment (the same forms as since); omit for rows up to now."),
    _NOT_A_DATE,
    Cli(flag="--until", metavar="DATE"),
]
#: A report's answer holds its totals, groups and top items, whatever the wallet's length; every
#: row (and every group and period) only when this is true. The CLI asks when its output carries
#: them: --json and --csv, and the text of a report that lists them.
IncludeRows = Annotated[
    bool,
    Field(
        description="Also return the wallet rows the report was made of, and every resource and period where it "
        "lists them, not only the largest: the answer then grows with the wallet. Omit for the totals, the groups "
        "and the top items."
    ),
    PLAIN_BOOL,
    Cli(output_rows=True),
]
#: a balance in USD, as text or a JSON number
MinBalance = Annotated[float, Field(ge=0), PLAIN_NUMBER, Cli(metavar="USD")]
#: the most thresholds one budget takes
MAX_THRESHOLDS = 10
#: percents of a budget: text `50,80,100` (the CLI, a query string) or a JSON array of numbers; each
#: refusal, of the list or of one of its values, reads the one way (the Refusal)
Thresholds = Annotated[
    tuple[Annotated[float, Field(ge=1, le=1000), PLAIN_NUMBER], ...],
    Field(max_length=MAX_THRESHOLDS),
    BeforeValidator(_percent_list),
    AfterValidator(_ascending),
    Refusal(
        f"{{name}} must be up to {MAX_THRESHOLDS} percents of the budget, each from 1 to 1000, like 50,80,100, "
        "got {value}"
    ),
    Cli(metavar="PCT,PCT,..."),
]


class Inputs(BaseModel):
    """Base of every operation's inputs. Strict: text becomes a number only by the field's own rule,
    never by pydantic's lax parsing. Unknown names are refused, not ignored. Null is the same as
    left out (models often send it for an optional argument): the default applies."""

    model_config = ConfigDict(strict=True, extra="forbid", defer_build=True)

    #: the report reads the wallet to its end, or back to `rows_since`: a server can tell from the
    #: first page how many rows that is
    reads_every_row: ClassVar[bool] = False
    #: a report reading the wallet back to a moment: the input that moves that moment (the advice
    #: when it would read more rows than a server allows); None: it reads every row
    narrowed_by: ClassVar[str | None] = None

    @model_validator(mode="before")
    @classmethod
    def _null_is_left_out(cls, data: Any) -> Any:
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, Mapping) else data

    @classmethod
    def rows_since(cls, checked: Mapping[str, Any]) -> datetime | None:
        """The oldest moment whose rows the report keeps, from its checked inputs; None: all rows.
        A server counts only those against its cap on the rows one request may read."""
        return None


# --------------------------------------------------------------------------- each operation's inputs


class RunUsageInputs(Inputs):
    run_id: Annotated[RunId, Cli(many=True)]


class WalletInputs(Inputs):
    limit: Limit = 20
    offset: Offset = 0
    team_id: TeamId = None


class ReconcileInputs(Inputs):
    reads_every_row = True

    run_id: RunId
    team_id: TeamId = None
    include_rows: IncludeRows = False


class SpendInputs(Inputs):
    reads_every_row = True
    narrowed_by = "since"

    since: Since = None
    until: Until = None
    top: Annotated[
        int, Field(ge=1, le=100, description="How many of the most expensive RFT runs to list, 1-100."), PLAIN_DIGITS
    ] = 5
    by: Annotated[
        Period | SkipJsonSchema[None],
        Field(
            description="Also total per UTC day (2026-11-20), ISO week from Monday (2026-W47) or month (2026-11), "
            "and per resource type in each: every period from the newest row's to the oldest's, newest first, "
            "empty ones at 0; omit for none."
        ),
        Cli(metavar="{day,week,month}"),
    ] = None
    team_id: TeamId = None
    include_rows: IncludeRows = False

    @classmethod
    def rows_since(cls, checked: Mapping[str, Any]) -> datetime | None:
        return parse_when(checked["since"]) if checked.get("since") else None


class BudgetInputs(Inputs):
    min_balance: Annotated[MinBalance, Field(description="Minimum balance in USD; below it the check fails.")]
    limit: Limit = 20
    offset: Offset = 0
    team_id: TeamId = None
    include_rows: IncludeRows = False


class RunwayInputs(Inputs):
    reads_every_row = True
    narrowed_by = "days"

    days: Annotated[
        int,
        Field(ge=1, le=365, description="Days of spend the rate is taken from, counted back from as_of, 1-365."),
        PLAIN_DIGITS,
    ] = 7
    min_balance: Annotated[
        MinBalance,
        Field(description="Balance in USD to count down to instead of zero; a balance already below it is an alert."),
    ] = 0
    as_of: Annotated[
        DateOrTime | SkipJsonSchema[None],
        Field(description=f"The window's end: {_WHEN}; omit for now. A past one asks how things stood then."),
        _NOT_A_DATE,
        Cli(metavar="DATE"),
    ] = None
    team_id: TeamId = None

    @classmethod
    def rows_since(cls, checked: Mapping[str, Any]) -> datetime | None:
        from .runway import window

        return window(checked)[0]


class PaceInputs(Inputs):
    reads_every_row = True
    narrowed_by = "period"

    budget: Annotated[
        float,
        Field(ge=0.01, description="The period's budget in USD; spending more, or being on pace to, fails the check."),
        PLAIN_NUMBER,
        Cli(metavar="USD"),
    ]
    period: Annotated[
        Period,
        Field(
            description="The budget's period, the one holding as_of: the calendar month, the ISO week (from Monday "
            "00:00 UTC) or the UTC day."
        ),
        Cli(metavar="{month,week,day}"),
    ] = "month"
    warn: Annotated[
        Thresholds,
        Field(
            description="Thresholds in percent of the budget (1-1000, at most 10): which are crossed already, and "
            "when each other one is reached at this pace."
        ),
    ] = (50, 80, 100)
    as_of: Annotated[
        DateOrTime | SkipJsonSchema[None],
        Field(
            description=f"The moment to measure at, in the period that holds it: {_WHEN}; omit for now. "
            "A past one asks how that period stood then."
        ),
        _NOT_A_DATE,
        Cli(metavar="DATE"),
    ] = None
    team_id: TeamId = None

    @classmethod
    def rows_since(cls, checked: Mapping[str, Any]) -> datetime | None:
        from .pace import span

        return span(checked).start


# --------------------------------------------------------------------------- the table


class Param(NamedTuple):
    """One input as the surfaces address it: a field of the operation's model, and where it goes."""

    name: str
    field: FieldInfo
    #: "path" when the operation's path names it (`{run_id}`), else "query"
    location: Literal["path", "query"]

    @property
    def description(self) -> str:
        return self.field.description or ""

    @property
    def required(self) -> bool:
        return self.field.is_required()

    @property
    def default(self) -> Any:
        return None if self.required else self.field.default

    @property
    def wire(self) -> str:
        """The name upstream and REST use (`teamId`): the field's serialization alias."""
        return self.field.serialization_alias or self.name

    @property
    def cli(self) -> Cli:
        return _marker(self.field, Cli) or Cli()

    @property
    def flag(self) -> str:
        return self.cli.flag or "--" + self.name.replace("_", "-")

    @property
    def many(self) -> bool:
        return self.cli.many


class Hints(NamedTuple):
    read_only: bool = True
    destructive: bool = False
    idempotent: bool = True
    #: reaches an outside API
    open_world: bool = True


#: what every operation is today: a read of the outside API, safe to repeat
READ_ONLY = Hints()


@dataclass(frozen=True)
class Operation:
    #: python-side name (client method suffix, LangChain tool name)
    name: str
    #: CLI subcommand
    command: str
    description: str
    #: the inputs, checked and described (see `Inputs`)
    inputs: type[Inputs]
    rest_path: str
    mcp_tool: str
    #: the answer's model; a report's as "module:Name" (relative to this package), so that
    #: module loads when the report is first asked for, not with every script
    answer: type[BaseModel] | str
    #: the upstream path; none for a composite operation
    upstream_path: str = ""
    #: contract operation name in capability/training-billing.yaml; none beyond the contract
    contract_name: str = ""
    hints: Hints = READ_ONLY
    method: str = "GET"
    #: composite operation: `compose(checked_args)` (from `plan`, loaded like `answer`) is a plan
    #: that yields sub-calls (`SubCall(op_name, args)`), receives each one's Result and returns
    #: the model; both clients drive it. Such operations have no upstream path of their own
    #: and no contract name (they are beyond the contract).
    plan: Callable[[dict[str, Any]], Plan] | str | None = None
    #: CLI only: no command of its own; its extra flags join this command, and giving
    #: one of them runs this operation instead (`wallet --min-balance` runs the check)
    cli_extends: str | None = None
    #: the answer changes over time until this says it is final: the CLI offers --watch
    finished: Callable[[Any], bool] | None = None

    @property
    def composite(self) -> bool:
        return self.plan is not None

    @cached_property
    def model(self) -> type[BaseModel]:
        return _load(self.answer)

    @cached_property
    def compose(self) -> Callable[[dict[str, Any]], Plan] | None:
        return None if self.plan is None else _load(self.plan)

    @property
    def answer_mode(self) -> Literal["validation", "serialization"]:
        """How the answer's JSON Schema reads: a plain operation passes the upstream body on (the
        shape it is validated against), a composite one its model dumped."""
        return "serialization" if self.composite else "validation"

    @property
    def in_contract(self) -> bool:
        """One of the contract's own operations (its REST path and tool name are fixed by it)."""
        return bool(self.contract_name)

    @cached_property
    def settings_defaults(self) -> dict[str, str]:
        """Which settings value fills each input the caller left out (`Setting` markers)."""
        return {p.name: m.name for p in self.params if (m := _marker(p.field, Setting)) is not None}

    @cached_property
    def params(self) -> tuple[Param, ...]:
        """The inputs model's fields, in order, as the surfaces address them."""
        return tuple(
            Param(name, info, "path" if "{" + name + "}" in self.rest_path else "query")
            for name, info in self.inputs.model_fields.items()
        )

    def check(self, args: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
        """The values to send, every one checked by the model; unknown names are refused, not ignored.
        A time ago (`7d`) becomes the date-time it names, counted back from `now` (default: the
        current time), one now for every input of the call."""
        context = {"now": datetime.now(UTC) if now is None else now}
        try:
            return self.inputs.model_validate(args, context=context).model_dump()
        except ValidationError as exc:
            raise InvalidInputError(explain(self, exc)) from None

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
        """The inputs model's JSON Schema as a tool shows it: titles dropped (they only repeat the
        names), `required` always present (callable with `{}` says so)."""
        schema = self.inputs.model_json_schema()
        schema.pop("title", None)
        for prop in schema["properties"].values():
            prop.pop("title", None)
        schema.setdefault("required", [])
        return schema


def _load(ref: Any) -> Any:
    """`ref` itself, or the object a "module:Name" reference names."""
    if not isinstance(ref, str):
        return ref
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module, __package__), name)


_BOUNDS = frozenset({"greater_than_equal", "less_than_equal", "greater_than", "less_than"})


def explain(op: Operation, exc: ValidationError) -> str:
    """The one line every surface shows for refused inputs: what to give, and what came.

    An unknown name is reported first, then the first field in the model's order."""
    errors = exc.errors(include_url=False)
    if not errors:
        return f"{op.name}: invalid arguments"
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    kind, value = err["type"], err.get("input")
    name = str(err["loc"][0]) if err["loc"] else ""
    fields = op.inputs.model_fields
    info = fields.get(name)
    if kind == "extra_forbidden":
        return f"{op.name} takes no parameter {name!r}; it takes {', '.join(sorted(fields))}"
    if info is None:  # the arguments as a whole (not a mapping)
        return f"{op.name}: {err['msg']}"
    if kind == "missing":
        return f"{name} is required"
    refusal = _marker(info, Refusal)
    if refusal is not None and len(err["loc"]) > 1:  # one value of a list: its field's words, that value
        got = f"{value:g}" if isinstance(value, float) else _shown(value)
        return refusal.template.format(name=name, value=got)
    if kind in _BOUNDS:
        # pydantic's own bound markers (`Field(ge=..., le=...)`), read by name: importing their
        # classes from the package pydantic takes them from would make it a dependency of ours
        lo = next((m.ge for m in info.metadata if hasattr(m, "ge")), None)
        hi = next((m.le for m in info.metadata if hasattr(m, "le")), None)
        bounds = f"{lo}..{hi}" if lo is not None and hi is not None else f">= {lo}" if hi is None else f"<= {hi}"
        got = f"{value:g}" if isinstance(value, float) else _shown(value)
        return f"{name} must be {bounds}, got {got}"
    if kind.startswith("int_"):
        return f"{name} must be a whole number, got {_shown(value)}"
    if kind == "finite_number":
        return f"{name} must be a finite number, got {_shown(value)}"
    if kind.startswith("float_"):
        return f"{name} must be a number, got {_shown(value)}"
    if kind.startswith("bool_"):
        return f"{name} must be true or false, got {_shown(value)}"
    if kind == "string_type":
        return f"{name} must be a string, got {type(value).__name__}"
    if kind == "literal_error":
        return f"{name} must be {err.get('ctx', {}).get('expected', 'one of its values')}, got {_shown(value)}"
    if refusal is not None:
        return refusal.template.format(name=name, value=_shown(value))
    return f"{name}: {err['msg']}"


def _shown(value: Any) -> str:
    """The value as a message quotes it (its repr), a long one cut so the message stays one short line."""
    if isinstance(value, str):
        return repr(value[:40] + "…" if len(value) > 40 else value)
    text = repr(value)
    return text[:40] + "…" if len(text) > 40 else text


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        name="get_run_usage",
        command="usage",
        description=(
            "Token usage and cost of one Prime Intellect RFT (reinforcement fine-tuning) run: "
            "training and inference tokens, rates, cost per bucket and the total billed in USD."
        ),
        inputs=RunUsageInputs,
        upstream_path="/api/v1/billing/runs/{run_id}/usage",
        rest_path="/v1/api/v1/billing/runs/{run_id}/usage",
        mcp_tool="prime-intellect-getrunusage",
        contract_name="getrunusage",
        answer=RunUsage,
        finished=run_finished,
    ),
    Operation(
        name="get_wallet",
        command="wallet",
        description=(
            "Prime Intellect wallet: current balance in USD and the most recent billing rows "
            "(newest first; what drained the balance: RFT runs, pods, disks, inference...)."
        ),
        inputs=WalletInputs,
        upstream_path="/api/v1/billing/wallet",
        rest_path="/v1/api/v1/billing/wallet",
        mcp_tool="prime-intellect-getwallet",
        contract_name="getwallet",
        answer=Wallet,
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
        inputs=ReconcileInputs,
        rest_path="/v1/prime-billing/runs/{run_id}/reconcile",
        mcp_tool="prime-intellect-reconcile",
        answer=".reconcile:Reconciliation",
        plan=".reconcile:reconcile_run",
    ),
    Operation(
        name="spend_report",
        command="spend",
        description=(
            "Prime Intellect spend report: what was spent, and on what, over all wallet rows or since a date; "
            "totals by resource type (and per day, week or month), the most expensive RFT runs and other resources; "
            "every row and resource id when asked."
        ),
        inputs=SpendInputs,
        rest_path="/v1/prime-billing/spend",
        mcp_tool="prime-intellect-spend",
        answer=".spend:SpendReport",
        plan=".spend:spend_report",
    ),
    Operation(
        name="check_budget",
        command="budget",
        description=(
            "Prime Intellect budget guard: is the wallet balance at least a minimum in USD? "
            "Returns the verdict (ok, shortfall or headroom) and the balance (the wallet page read, when asked); "
            "use it to warn when the balance is low."
        ),
        inputs=BudgetInputs,
        rest_path="/v1/prime-billing/budget",
        mcp_tool="prime-intellect-budget",
        answer=".budget:BudgetCheck",
        plan=".budget:check_budget",
        cli_extends="wallet",
    ),
    Operation(
        name="runway",
        command="runway",
        description=(
            "Prime Intellect wallet runway: when does the balance run out? The spend per day over the last days "
            "(default 7) and the day the balance reaches zero or a minimum, as a straight line; an alert when "
            "the balance is already below the minimum."
        ),
        inputs=RunwayInputs,
        rest_path="/v1/prime-billing/runway",
        mcp_tool="prime-intellect-runway",
        answer=".runway:Runway",
        plan=".runway:runway",
    ),
    Operation(
        name="pace",
        command="pace",
        description=(
            "Prime Intellect budget pace: are we on track this month (or week, or day)? The spend so far against "
            "a budget for the period, the amount it ends at on a straight line from the period's start, the day "
            "it crosses the budget and each warning threshold; the check fails when the spend or that estimate "
            "exceeds the budget."
        ),
        inputs=PaceInputs,
        rest_path="/v1/prime-billing/pace",
        mcp_tool="prime-intellect-pace",
        answer=".pace:Pace",
        plan=".pace:pace",
    ),
)

BY_NAME: dict[str, Operation] = {op.name: op for op in OPERATIONS}
# advice names parameters by marker; each surface's word for them comes from here
for param in {p.name: p for op in OPERATIONS for p in op.params}.values():
    learn(param.name, param.flag, param.wire)
del param


def get(name: str) -> Operation:
    try:
        return BY_NAME[name]
    except KeyError:
        raise InvalidInputError(f"unknown operation {name!r}; known: {', '.join(BY_NAME)}") from None
