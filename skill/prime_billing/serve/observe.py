"""What the launcher tells of itself: one middleware for the access log and the traffic, and `/metrics`.

`Observe` times each request once, then writes its access line (never a header, query string or body:
no key or token reaches a log) and counts it under its route's template (never the path asked for, so
an id cannot grow the label set), in prometheus_client metrics of the launcher's own registry. `/metrics`
adds the wallet, read at most once per `--metrics-ttl` per Prime key for all replicas, failures included.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring_ascii as _quote  # what json.dumps uses for a str
from typing import Any, NamedTuple

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from ..__version__ import __version__
from ..errors import AuthenticationError, PrimeBillingError
from ..operations import get
from . import CALLER, UPSTREAM_CALLS
from .gateway import Caller, Gateway, digest
from .rest import problem, respond

logger = logging.getLogger("prime_billing")
access = logging.getLogger("prime_billing.access")
#: the rows the burn rate is worked out from: those created in the last 24 hours
BURN_WINDOW = timedelta(hours=24)
#: request latency buckets, seconds: the launcher answers in about a millisecond, upstream in tens
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: the route (and method) label of a request no route matched: anything else would grow the label set
OTHER = "other"
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
#: the status counted for a request whose caller hung up before any answer (nginx's word for it)
CLIENT_CLOSED = 499
_SPEND = get("spend_report")
_HEAD = [(b"content-type", CONTENT_TYPE_LATEST.encode())]


def setup_logs(access_log: bool) -> None:
    """Lines go to stderr as they are (no prefix), so a collector can parse them: the state store's
    outages always, the access lines unless turned off."""
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.WARNING)
    access.setLevel(logging.INFO if access_log else logging.WARNING)


class Metrics:
    """One launcher's registry and every metric it counts."""

    def __init__(self, state_up: Callable[[], float], waiting: Callable[[], float]) -> None:
        r = self.registry = CollectorRegistry()

        def made(kind: Any, name: str, text: str, *labels: str, **kw: Any) -> Any:
            return kind("prime_billing_" + name, text, labels, registry=r, **kw)

        # fmt: off
        made(Info, "build", "The launcher's version.").info({"version": __version__})
        self.requests = made(Counter, "http_requests", "Requests answered, by surface (rest, mcp), route template, "
                             "method and status.", "surface", "route", "method", "status")
        self.latency = made(Histogram, "http_request_duration_seconds", "Time from a request's arrival to the end "
                            "of its answer, by surface and route template.", "surface", "route", buckets=BUCKETS)
        self.in_progress = made(Gauge, "http_requests_in_progress", "Requests being answered now.", "surface")
        self.upstream = made(Counter, "upstream_requests", "Requests sent upstream (each attempt, retries "
                             "included), by outcome and HTTP status.", "outcome", "status")
        self.coalesced = made(Counter, "coalesced", "Callers who shared an upstream call already in progress (in "
                              "this replica or another) instead of making their own.")
        self.cache_hits = made(Counter, "cache_hits", "Callers answered from the --cache-ttl cache without an "
                               "upstream call.")
        self.rate_limited = made(Counter, "rate_limited", "Requests refused 429 by the launcher's own per-caller "
                                 "rate limit (not upstream 429s).", "surface")
        self.tool_calls = made(Counter, "mcp_tool_calls", "MCP tool calls, by tool and outcome (ok, or the "
                               "error's code).", "tool", "outcome")
        made(Gauge, "state_up", "1 while the state store answers (or there is none), 0 while this replica "
             "serves from its own memory because it does not.").set_function(state_up)
        made(Gauge, "upstream_waiting", "Callers waiting on a shared upstream call right now (each caller "
             "counted).").set_function(waiting)
        # fmt: on

    def shared(self, how: str) -> None:
        (self.cache_hits if how == "hit" else self.coalesced).inc()

    def reply(self, outcome: str, status: str) -> None:
        self.upstream.labels(outcome, status).inc()

    def tool_call(self, tool: str, outcome: str) -> None:
        self.tool_calls.labels(tool, outcome).inc()


class Observe:
    """ASGI middleware: each HTTP request timed, logged and counted, on one clock."""

    def __init__(self, app: ASGIApp, *, surface: str, routes: Sequence[BaseRoute], metrics: Metrics) -> None:
        self.app, self.surface, self.routes, self.metrics = app, surface, routes, metrics
        self._surface, self.in_progress = json.dumps(surface), metrics.in_progress.labels(surface)
        #: each label set's children, looked up once: the library's `labels()` checks and locks on every call
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def route(self, scope: Scope) -> str:
        """The template of the route the router matched or, for a request the guard refused before it
        got there, of the route its path matches."""
        route = scope.get("route") or next((r for r in self.routes if r.matches(scope)[0] != Match.NONE), None)
        return str(getattr(route, "path", OTHER))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status, failed = time.perf_counter(), 0, False

        async def seen(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.in_progress.inc()
        try:
            await self.app(scope, receive, seen)
        except Exception:
            failed = True
            raise
        finally:
            took = time.perf_counter() - start
            self.in_progress.dec()
            # no answer started: Starlette answers 500 for an error; otherwise the caller hung up
            status = status or (500 if failed else CLIENT_CLOSED)
            key = (self.route(scope), scope["method"] if scope["method"] in METHODS else OTHER, str(status))
            if (children := self._children.get(key)) is None:
                m = self.metrics
                children = self._children[key] = (
                    m.requests.labels(self.surface, *key),
                    m.latency.labels(self.surface, key[0]),
                )
            children[0].inc()
            children[1].observe(took)
            if access.isEnabledFor(logging.INFO):
                # the same text json.dumps gives for these fields, without its cost on every request
                access.info(
                    f'{{"ts": {round(time.time(), 3)!r}, "surface": {self._surface}, "method": '
                    f'{_quote(scope["method"])}, "path": {_quote(scope["path"])}, "status": {int(status)}, '
                    f'"ms": {round(took * 1000, 2)!r}, "upstream": {int(scope.get(UPSTREAM_CALLS, 0))}}}'
                )


class Reading(NamedTuple):
    """One read of the wallet, kept for the TTL whether it succeeded or not (`error`: the failure's
    code; `refused`: the upstream refused the credential itself)."""

    at: float
    wallet_id: str | None = None
    balance_usd: float | None = None
    burn_usd_per_hour: float | None = None
    error: str | None = None
    refused: bool = False


class Scrape:
    """GET /metrics (behind the guard): the traffic, then the scraper's wallet. HEAD answers at once."""

    def __init__(self, metrics: Metrics, gateway: Gateway) -> None:
        self.metrics, self.gateway = metrics, gateway

    async def read(self, caller: Caller | None, sent: Callable[[], None]) -> Reading:
        """The wallet's reading, shared by the scrapes in this process, then by the replicas."""
        g = self.gateway

        async def fetch() -> bytes:
            since = (datetime.now(UTC) - BURN_WINDOW).strftime("%Y-%m-%dT%H:%M:%SZ")
            try:
                report = (await g.call(_SPEND, {"since": since, "top": 1}, caller, sent)).data
            except PrimeBillingError as exc:
                reading = Reading(time.time(), error=exc.code, refused=isinstance(exc, AuthenticationError))
            else:
                hours = BURN_WINDOW.total_seconds() / 3600
                reading = Reading(time.time(), report.wallet_id, report.balance_usd, report.total_usd / hours)
            return json.dumps(reading).encode()

        key = digest(g.prime_key(caller))
        value, _ = await g.shared(("reading", key), lambda: g.state.shared("readings", key, fetch))
        return Reading(*json.loads(value))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "HEAD":
            await respond(send, _HEAD, b"")
            return
        caller, calls = scope.get(CALLER), 0

        def sent() -> None:
            nonlocal calls
            calls += 1

        try:
            reading = await self.read(caller, sent)
        finally:
            scope[UPSTREAM_CALLS] = calls
        if self.gateway.passthrough and reading.refused:
            detail = "the Prime API refused this key: send your own valid key as `Authorization: Bearer <key>`"
            await problem(401, "unauthorized", detail, {"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        # in passthrough any bearer gets this far: the server's traffic only for a key the upstream accepted
        traffic = not self.gateway.passthrough or reading.error is None or (caller is not None and caller.verified)
        body = await asyncio.to_thread(self.render, reading, traffic=traffic)
        await respond(send, [*_HEAD, (b"content-length", str(len(body)).encode())], body)

    def render(self, reading: Reading, *, traffic: bool = True) -> bytes:
        """The exposition text: the traffic (shared by every scraper), then this scraper's wallet."""
        r, wallet = reading, CollectorRegistry()
        # fmt: off
        Gauge("prime_wallet_up", "1 if the last wallet read succeeded, 0 if it failed.",
              registry=wallet).set(r.error is None)
        Gauge("prime_wallet_reading_age_seconds", "Seconds since the wallet was read (readings are reused for "
              "--metrics-ttl).", registry=wallet).set(max(0.0, time.time() - r.at))
        if r.error is None:
            Gauge("prime_wallet_balance_usd", "The wallet's balance, USD.", ["wallet_id"],
                  registry=wallet).labels(r.wallet_id or "").set(r.balance_usd or 0.0)
            Gauge("prime_wallet_burn_usd_per_hour", "What the wallet's rows created in the last 24 hours cost, "
                  "per hour (USD).", ["wallet_id"], registry=wallet).labels(r.wallet_id or "").set(
                  r.burn_usd_per_hour or 0.0)
        # fmt: on
        return (generate_latest(self.metrics.registry) if traffic else b"") + generate_latest(wallet)
