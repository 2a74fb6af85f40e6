"""What the launcher tells of itself: one middleware for the access log and the traffic counts, and `/metrics`.

An access line holds no header, query string or body (no key or token reaches a log); a count, its route's template,
never the path asked for (an id cannot grow the label set). The wallet is read at most once per `--metrics-ttl`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..__version__ import __version__
from ..errors import AuthenticationError, PrimeBillingError
from ..operations import get
from . import CALLER, UPSTREAM_CALLS
from .gateway import Caller, Gateway, counted, digest
from .rest import from_error, respond

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
TEXT = [(b"content-type", CONTENT_TYPE_LATEST.encode())]
#: the gauges a wallet reading carries, and what each says
READ = {
    "prime_wallet_balance_usd": "The wallet's balance, USD.",
    "prime_wallet_burn_usd_per_hour": "What the wallet's rows created in the last 24 hours cost, per hour (USD).",
    "prime_budget_usd": "A watched budget (--watch-budget), USD.",
    "prime_budget_spent_usd": "Spent since the budget's period began, USD.",
    "prime_budget_projected_usd": "The spend at the period's end at the pace so far (a straight line), USD.",
}


def setup_logs(access_log: bool) -> None:
    """Lines go to stderr as they are, for a collector to parse: the state store's outages, the access lines."""
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.WARNING)
    access.setLevel(logging.INFO if access_log else logging.WARNING)


class Metrics:
    def __init__(self, state_up: Callable[[], float], waiting: Callable[[], float]) -> None:
        r = self.registry = CollectorRegistry()

        def made(kind: Any, name: str, text: str, labels: tuple[str, ...] = (), **kw: Any) -> Any:
            return kind("prime_billing_" + name, text, labels, registry=r, **kw)

        made(Info, "build", "The launcher's version.").info({"version": __version__})
        route = ("surface", "route")
        text = "Requests answered, by surface (rest, mcp), route template, method and status."
        self.requests = made(Counter, "http_requests", text, (*route, "method", "status"))
        text = "Seconds from a request's arrival to the end of its answer, by surface and route template."
        self.latency = made(Histogram, "http_request_duration_seconds", text, route, buckets=BUCKETS)
        self.in_progress = made(Gauge, "http_requests_in_progress", "Requests being answered now.", ("surface",))
        text = "Requests sent upstream (each attempt, retries included), by outcome and HTTP status."
        self.upstream = made(Counter, "upstream_requests", text, ("outcome", "status"))
        text = "Callers who shared an upstream call already in progress (in this replica or another)."
        self.coalesced = made(Counter, "coalesced", text)
        self.cache_hits = made(Counter, "cache_hits", "Callers answered from the --cache-ttl cache, no upstream call.")
        text = "Requests refused 429 by the launcher's own per-caller rate limit (not upstream 429s)."
        self.rate_limited = made(Counter, "rate_limited", text, ("surface",))
        text = "MCP tool calls, by tool and outcome (ok, or the error's code)."
        self.tool_calls = made(Counter, "mcp_tool_calls", text, ("tool", "outcome"))
        text = "1 while the state store answers (or there is none), 0 while this replica serves from its own memory."
        made(Gauge, "state_up", text).set_function(state_up)
        text = "Callers waiting on a shared upstream call right now (each caller counted)."
        made(Gauge, "upstream_waiting", text).set_function(waiting)

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
        self.in_progress = metrics.in_progress.labels(surface)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 0

        async def seen(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.in_progress.inc()
        try:
            await self.app(scope, receive, seen)
        except Exception:
            status = status or 500  # what Starlette answers
            raise
        finally:
            took = time.perf_counter() - start
            self.in_progress.dec()
            status = status or CLIENT_CLOSED  # no answer started: the caller hung up
            # the route the router matched or, for a request refused before it, the route its path matches
            route = scope.get("route") or next((r for r in self.routes if r.matches(scope)[0] != Match.NONE), None)
            path, method = getattr(route, "path", OTHER), scope["method"] if scope["method"] in METHODS else OTHER
            self.metrics.requests.labels(self.surface, path, method, str(status)).inc()
            self.metrics.latency.labels(self.surface, path).observe(took)
            if access.isEnabledFor(logging.INFO):
                line = {"ts": round(time.time(), 3), "surface": self.surface, "method": scope["method"]}
                line |= {"path": scope["path"], "status": status, "ms": round(took * 1000, 2)}
                access.info(json.dumps(line | {"upstream": scope.get(UPSTREAM_CALLS, 0)}))


class Reading(Collector):
    """One read of the wallet, kept for the TTL even if it failed (`error`: the failure's code; `refused`: the upstream
    refused the credential), its gauges' `samples` as (name, labels, value)."""

    def __init__(self, at: float, error: str | None = None, refused: bool = False, samples: Sequence = ()) -> None:
        self.at, self.error, self.refused, self.samples = at, error, refused, samples

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "prime_wallet_up", "1 if the last wallet read succeeded, 0 if it failed.", float(self.error is None)
        )
        age = "Seconds since the wallet was read (readings are reused for --metrics-ttl)."
        yield GaugeMetricFamily("prime_wallet_reading_age_seconds", age, max(0.0, time.time() - self.at))
        for name, text in READ.items():
            if found := [(labels, value) for metric, labels, value in self.samples if metric == name]:
                family = GaugeMetricFamily(name, text, labels=list(found[0][0]))
                for labels, value in found:
                    family.add_metric(list(labels.values()), value)
                yield family


class Scrape:
    """GET /metrics (behind the guard): the traffic, then the scraper's wallet. HEAD answers at once."""

    def __init__(self, metrics: Metrics, gateway: Gateway) -> None:
        self.metrics, self.gateway = metrics, gateway

    async def read(self, caller: Caller | None, sent: Callable[[], None]) -> Reading:
        """The wallet's reading, with each watched budget's pace: shared by the scrapes here, then by the replicas."""
        g = self.gateway

        async def fetch() -> bytes:
            since = (datetime.now(UTC) - BURN_WINDOW).strftime("%Y-%m-%dT%H:%M:%SZ")
            try:
                report = (await g.call(get("spend_report"), {"since": since, "top": 1}, caller, sent)).data
                wallet, burn = {"wallet_id": report.wallet_id}, report.total_usd / (BURN_WINDOW / timedelta(hours=1))
                samples = [("prime_wallet_balance_usd", wallet, report.balance_usd)]
                samples.append(("prime_wallet_burn_usd_per_hour", wallet, burn))
                for period, usd in g.options.budgets.items():
                    pace = (await g.call(get("pace"), {"budget": usd, "period": period}, caller, sent)).data
                    budget = {"wallet_id": pace.wallet_id, "period": period}
                    samples += [("prime_budget_usd", budget, usd), ("prime_budget_spent_usd", budget, pace.spend_usd)]
                    if pace.projected_usd is not None:  # none at the period's first moment
                        samples.append(("prime_budget_projected_usd", budget, pace.projected_usd))
            except PrimeBillingError as exc:  # any part failing fails the reading: no figure shown lacks its peers
                return json.dumps([time.time(), exc.code, isinstance(exc, AuthenticationError)]).encode()
            return json.dumps([time.time(), None, False, samples]).encode()

        key = digest(g.prime_key(caller))
        value, _ = await g.shared(("reading", key), lambda: g.state.shared("readings", key, fetch))
        return Reading(*json.loads(value))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "HEAD":
            return await respond(send, TEXT, b"")
        caller, passthrough = scope.get(CALLER), self.gateway.passthrough
        reading = await self.read(caller, counted(scope))
        if passthrough and reading.refused:
            detail = "the Prime API refused this key: send your own valid key as `Authorization: Bearer <key>`"
            return await from_error(AuthenticationError(detail))(scope, receive, send)
        # in passthrough any bearer gets this far: the server's traffic only for a key the upstream accepted
        traffic = not passthrough or reading.error is None or (caller is not None and caller.verified)
        body = await asyncio.to_thread(self.render, reading, traffic)
        await respond(send, [*TEXT, (b"content-length", str(len(body)).encode())], body)

    def render(self, reading: Reading, traffic: bool = True) -> bytes:
        """The exposition text: the traffic (shared by every scraper), then this scraper's wallet."""
        wallet = CollectorRegistry()
        wallet.register(reading)
        return (generate_latest(self.metrics.registry) if traffic else b"") + generate_latest(wallet)
