"""Typed views of the upstream bodies, and the figures a person derives from them.

Models keep unknown fields (`extra="allow"`): the upstream schema grows, and
whatever passes a body on must not drop what it does not know yet. Derived
money figures live here, once; a null rate stays None ("unknown"), never $0.

Known fields take the JSON type the upstream documents and nothing else: left
to itself pydantic would read `true` as 1 token, `"0"` as a date in 1970 and
`NaN` as an amount, and show them as figures. Such a body is schema drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, GetJsonSchemaHandler, Strict
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from .dates import utc

MTOK = 1_000_000
#: the resource type of RFT runs' wallet rows
RUN_TYPE = "rft_run"
#: a JSON integer (not 5.0, "5" or true); beyond 64 bits is a broken answer, refused as schema
#: drift rather than overflowing arithmetic
Count = Annotated[int, Strict(), Field(ge=-(2**63), le=2**63 - 1)]
#: a count of things that exist: below 0 is a broken answer too
Size = Annotated[int, Strict(), Field(ge=0, le=2**63 - 1)]
#: an amount or a rate: a JSON number (not "1.5" or true), finite
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]

#: ISO 8601 date-time as the upstream writes it; no offset means UTC (every `Moment` is read as UTC)
DATE_TIME_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})?$"


_EXPECTED_DATE_TIME = "expected an ISO 8601 date-time like 2026-11-20T10:00:00Z"


class _DateTimeText:
    """A datetime given as date-time text only (or as a datetime, in Python), always aware and in
    UTC (`dates.utc`: at the calendar's very edge a moment that cannot change zone keeps its
    offset, aware still). pydantic's own rules would also take a number or a digit string as a
    Unix time, and would keep a date with no offset naive, which no aware one can be compared
    with (one wallet may hold both). Checked inside pydantic-core (a pattern, then its datetime
    parser): only a moment written without an offset, or with another one, costs a Python call."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        as_datetime = handler(source)
        expected = {"custom_error_type": "date_time_text", "custom_error_message": _EXPECTED_DATE_TIME}
        pattern = core_schema.custom_error_schema(
            core_schema.str_schema(pattern=DATE_TIME_PATTERN, strict=True), **expected
        )
        to_utc = core_schema.no_info_plain_validator_function(utc)
        # UTC already (`Z`, `+00:00`: what the upstream writes) is told while parsing, at no cost;
        # anything else is parsed again and moved to UTC
        parsed = core_schema.union_schema(
            [core_schema.datetime_schema(tz_constraint=0), core_schema.chain_schema([as_datetime, to_utc])],
            mode="left_to_right",
            **expected,
        )
        text = core_schema.chain_schema([pattern, parsed])
        given = core_schema.chain_schema([core_schema.is_instance_schema(datetime), to_utc])
        return core_schema.json_or_python_schema(
            json_schema=text,
            python_schema=core_schema.union_schema([text, given], **expected),
            serialization=core_schema.simple_ser_schema("datetime"),
        )

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return handler(core_schema.datetime_schema())


Moment = Annotated[datetime, _DateTimeText()]


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)


class TokenBucket(_Body):
    tokens: Count = 0
    input_tokens: Count = 0
    output_tokens: Count = 0
    cost_usd: Number = 0.0
    #: newer backends only; part of `input_tokens`
    cached_input_tokens: Count | None = None


class Pricing(_Body):
    """USD per million tokens, snapshotted when the run was billed; None = unknown."""

    training_per_mtok: Number | None = None
    inference_input_per_mtok: Number | None = None
    inference_output_per_mtok: Number | None = None
    inference_cached_input_per_mtok: Number | None = None


@dataclass(frozen=True)
class CostLine:
    label: str
    tokens: int
    rate_per_mtok: float | None
    #: None when the rate is unknown
    cost_usd: float | None


def _line(label: str, tokens: int, rate: float | None) -> CostLine:
    if tokens == 0:
        return CostLine(label, 0, rate, 0.0)
    return CostLine(label, tokens, rate, None if rate is None else tokens * rate / MTOK)


@dataclass(frozen=True)
class CostBreakdown:
    training: CostLine
    #: input tokens billed at the full input rate (cached ones excluded)
    inference_input: CostLine
    #: None on backends that do not report cached input
    inference_cached_input: CostLine | None
    inference_output: CostLine
    #: the upstream's own bucket figures and the billed total, which always win
    training_billed_usd: float
    inference_billed_usd: float
    total_billed_usd: float

    @property
    def inference_derived_usd(self) -> float | None:
        """Sum of the derived inference lines; None if any rate is unknown."""
        lines = [self.inference_input, self.inference_output]
        if self.inference_cached_input is not None:
            lines.append(self.inference_cached_input)
        costs = [ln.cost_usd for ln in lines]
        return None if any(c is None for c in costs) else sum(c for c in costs if c is not None)


class RunUsage(_Body):
    run_id: str
    run_name: str | None = None
    base_model: str | None = None
    status: str | None = None
    training: TokenBucket
    inference: TokenBucket
    total_tokens: Count = 0
    total_cost_usd: Number = 0.0
    pricing: Pricing
    record_count: Count = 0

    @cached_property
    def costs(self) -> CostBreakdown:
        p, inf = self.pricing, self.inference
        cached = inf.cached_input_tokens
        cached_line = None
        uncached = inf.input_tokens
        if cached is not None:
            cached = min(cached, inf.input_tokens)
            uncached = inf.input_tokens - cached
            # No cached rate but cached tokens: those tokens' price is unknown.
            cached_line = _line("cached input", cached, p.inference_cached_input_per_mtok)
        return CostBreakdown(
            training=_line("training", self.training.tokens, p.training_per_mtok),
            inference_input=_line("input", uncached, p.inference_input_per_mtok),
            inference_cached_input=cached_line,
            inference_output=_line("output", inf.output_tokens, p.inference_output_per_mtok),
            training_billed_usd=self.training.cost_usd,
            inference_billed_usd=inf.cost_usd,
            total_billed_usd=self.total_cost_usd,
        )


class BillingEntry(_Body):
    id: str
    created_at: Moment
    updated_at: Moment | None = None
    last_billed_at: Moment | None = None
    amount_usd: Number
    currency: str = "USD"
    resource_type: str | None = None
    resource_id: str | None = None


class Wallet(_Body):
    wallet_id: str
    team_id: str | None = None
    balance_usd: Number
    currency: str
    #: all rows of the wallet, not only this page
    total_billings: Size = 0
    recent_billings: list[BillingEntry] = Field(default_factory=list)


#: run statuses after which nothing changes any more (watching stops, no more charges expected)
FINISHED_STATUSES = frozenset(
    {"COMPLETED", "FAILED", "STOPPED", "CANCELLED", "CANCELED", "ERROR", "ERRORED", "TIMEOUT", "TIMED_OUT", "KILLED"}
)


def run_finished(run: RunUsage) -> bool:
    """True once the run reached a terminal status; an unknown status is not one."""
    return (run.status or "").upper() in FINISHED_STATUSES
