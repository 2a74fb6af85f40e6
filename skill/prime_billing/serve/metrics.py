"""`/metrics` on the REST port: the launcher's traffic, and the wallet, in Prometheus' text format.

Every launcher has a registry of its own (not the library's global one), so two
launchers in one process never mix their counts. What it shows:

- traffic, counted as it happens: requests by route template (never the raw
  path, so an id cannot grow the label set) and status, latency per route,
  MCP tool calls by tool and outcome;
- counts the serving parts keep as plain integers, read at scrape time:
  upstream attempts by outcome and status, callers who joined a call already in
  progress, cache hits, the per-caller rate limit's 429s;
- the wallet, read at scrape time through the gateway (checks, coalescing,
  passthrough keys: the same path as any request), at most once per TTL per
  credential, failures included, however many scrapes come: its balance and what
  its rows of the last `BURN_WINDOW` cost per hour (one `spend` report since then,
  one page for a wallet of fewer than 100 rows a day). If the read fails the
  scrape is still answered, with `prime_wallet_up 0`.

Only `serve` loads this module (prometheus-client is part of the `serve` extra).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, Info, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from ..__version__ import __version__
from ..errors import AuthenticationError, PrimeBillingError
from ..operations import get
from .accesslog import StatusSeen
from .coalesce import Coalescer
from .gateway import Gateway
from .problems import problem
from .security import CREDENTIAL, UPSTREAM_USAGE, VERIFIED, Guard
from .upstream import UpstreamUsage

#: the rows the burn rate is worked out from: those created in the last 24 hours
BURN_WINDOW = timedelta(hours=24)
#: request latency buckets, seconds: the launcher answers in about a millisecond, upstream in tens
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: the route label of a request no route matched (any other path would grow the label set without bound)
OTHER = "other"
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
#: the status counted for a request whose caller hung up before any answer (nginx's word for it)
CLIENT_CLOSED = 499

_SPEND = get("spend_report")
_HEAD = [(b"content-type", CONTENT_TYPE_LATEST.encode())]


@dataclass(frozen=True)
class Reading:
    """One read of the wallet, kept for the TTL whether it succeeded or not."""

    #: when it was read (Unix time)
    at: float
    wallet_id: str | None = None
    balance_usd: float | None = None
    burn_usd_per_hour: float | None = None
    #: the error's code when the read failed
    error: str | None = None
    #: the upstream refused the credential itself (401)
    refused: bool = False


class WalletReader:
    """The wallet's balance and burn, through the gateway, at most once per TTL per credential.

    A reading is cached per credential (its hash) in passthrough, where each
    scraper's bearer is its own key and wallet; otherwise one reading serves
    everyone. Concurrent scrapes share one read: a coalescer of its own, whose cache is the TTL.
    """

    def __init__(self, gateway: Gateway, ttl: float) -> None:
        self.gateway = gateway
        #: the clock the burn window ends at (a test sets a fixed one to measure the sandbox's dated rows)
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)
        self._readings: Coalescer[Reading] = Coalescer(ttl)

    @property
    def waiting(self) -> int:
        """Scrapes awaiting a wallet read in progress right now (a snapshot, readable from any thread)."""
        return self._readings.waiting

    async def read(self, credential: str | None, usage: UpstreamUsage | None = None) -> Reading:
        key = hashlib.sha256(credential.encode()).digest() if self.gateway.passthrough and credential else b""
        return await self._readings.run(key, lambda: self._fetch(credential, usage))

    async def _fetch(self, credential: str | None, usage: UpstreamUsage | None) -> Reading:
        since = self.now() - BURN_WINDOW
        args = {"since": since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "top": 1}
        try:
            result = await self.gateway.call(_SPEND, args, credential, usage)
        except PrimeBillingError as exc:
            return Reading(time.time(), error=exc.code, refused=isinstance(exc, AuthenticationError))
        report = result.data
        hours = BURN_WINDOW.total_seconds() / 3600
        return Reading(time.time(), report.wallet_id, report.balance_usd, report.total_usd / hours)


class _Counts(Collector):
    """The serving parts' plain counts, read when scraped: they pay nothing per request for being shown."""

    def __init__(self, gateway: Gateway, guards: dict[str, Guard]) -> None:
        self.gateway = gateway
        self.guards = guards

    def collect(self) -> Iterator[CounterMetricFamily]:
        upstream = CounterMetricFamily(
            "prime_billing_upstream_requests",
            "Requests sent upstream (each attempt, retries included), by outcome and HTTP status.",
            labels=["outcome", "status"],
        )
        for (outcome, status), n in sorted(dict(self.gateway.client.replies).items()):
            upstream.add_metric([outcome, status], n)
        yield upstream
        yield CounterMetricFamily(
            "prime_billing_coalesced",
            "Callers who shared an upstream call already in progress instead of making their own.",
            value=self.gateway.joined,
        )
        yield CounterMetricFamily(
            "prime_billing_cache_hits",
            "Callers answered from the --cache-ttl cache without an upstream call.",
            value=self.gateway.cache_hits,
        )
        limited = CounterMetricFamily(
            "prime_billing_rate_limited",
            "Requests refused 429 by the launcher's own per-caller rate limit (not upstream 429s).",
            labels=["surface"],
        )
        for surface, guard in sorted(self.guards.items()):
            limited.add_metric([surface], guard.rate_limited)
        yield limited


class _Wallet(Collector):
    """One reading as gauges: rendered for one scrape (in passthrough, the scraper's own wallet)."""

    def __init__(self, reading: Reading) -> None:
        self.reading = reading

    def collect(self) -> Iterator[GaugeMetricFamily]:
        r = self.reading
        yield GaugeMetricFamily(
            "prime_wallet_up", "1 if the last wallet read succeeded, 0 if it failed.", value=int(r.error is None)
        )
        yield GaugeMetricFamily(
            "prime_wallet_reading_age_seconds",
            "Seconds since the wallet was read (readings are reused for --metrics-ttl).",
            value=max(0.0, time.time() - r.at),
        )
        if r.error is not None:
            return
        balance = GaugeMetricFamily("prime_wallet_balance_usd", "The wallet's balance, USD.", labels=["wallet_id"])
        balance.add_metric([r.wallet_id or ""], r.balance_usd or 0.0)
        yield balance
        burn = GaugeMetricFamily(
            "prime_wallet_burn_usd_per_hour",
            "What the wallet's rows created in the last 24 hours cost, per hour (USD).",
            labels=["wallet_id"],
        )
        burn.add_metric([r.wallet_id or ""], r.burn_usd_per_hour or 0.0)
        yield burn


class Metrics:
    """One launcher's metrics: its registry, the middleware that counts traffic, and the /metrics app."""

    def __init__(self, gateway: Gateway, *, ttl: float) -> None:
        self.gateway = gateway
        self.registry = CollectorRegistry()
        self.wallet = WalletReader(gateway, ttl)
        #: each port's guard, by surface, for its rate-limit count
        self.guards: dict[str, Guard] = {}
        r = self.registry
        Info("prime_billing_build", "The launcher's version.", registry=r).info({"version": __version__})
        self.requests = Counter(
            "prime_billing_http_requests",
            "Requests answered, by surface (rest, mcp), route template, method and status.",
            ["surface", "route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "prime_billing_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by surface and route template.",
            ["surface", "route"],
            buckets=BUCKETS,
            registry=r,
        )
        self.tool_calls = Counter(
            "prime_billing_mcp_tool_calls",
            "MCP tool calls, by tool and outcome (ok, or the error's code).",
            ["tool", "outcome"],
            registry=r,
        )
        r.register(_Counts(gateway, self.guards))
        #: the ASGI app of GET /metrics, for `build_rest_app(metrics=...)`
        self.endpoint: ASGIApp = _Scrape(self)
        # label children, looked up once per label set: the library's `labels()` checks and locks per call
        self._children: dict[tuple[Any, ...], Any] = {}

    # ------------------------------------------------------------ traffic
    def observe(self, app: ASGIApp, surface: str, templates: Iterable[str]) -> ASGIApp:
        """`app` (a port's whole stack, its guard included) with every request counted and timed."""
        return _Observed(app, self, surface, templates)

    def count(self, surface: str, route: str, method: str, status: int, seconds: float) -> None:
        self._child(self.requests, surface, route, method, str(status)).inc()
        self._child(self.latency, surface, route).observe(seconds)

    def tool_call(self, tool: str, outcome: str) -> None:
        """For the MCP server (`build_mcp_app(on_call=...)`): tool names are the table's, outcomes error codes."""
        self._child(self.tool_calls, tool, outcome).inc()

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # ------------------------------------------------------------ the route
    async def scrape(self, scope: Scope, receive: Receive, send: Send) -> None:
        """GET /metrics (behind the guard). HEAD answers at once and reads nothing, as on every route."""
        if scope["method"] == "HEAD":
            await _answer(send, _HEAD, b"")
            return
        reading = await self.wallet.read(scope.get(CREDENTIAL), scope.get(UPSTREAM_USAGE))
        passthrough = self.gateway.passthrough
        if passthrough and reading.refused:
            detail = "the Prime API refused this key: send your own valid key as `Authorization: Bearer <key>`"
            await problem(401, "unauthorized", detail, {"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        # in passthrough any bearer gets this far: the server's traffic only for a key the upstream accepted
        traffic = not passthrough or reading.error is None or bool(scope.get(VERIFIED))
        body = await asyncio.to_thread(self.render, reading, traffic=traffic)
        await _answer(send, [*_HEAD, (b"content-length", str(len(body)).encode())], body)

    def render(self, reading: Reading, *, traffic: bool = True) -> bytes:
        """The exposition text: the traffic (shared by every scraper), then this scraper's wallet."""
        wallet = CollectorRegistry()
        wallet.register(_Wallet(reading))
        return (generate_latest(self.registry) if traffic else b"") + generate_latest(wallet)


class _Scrape:
    """`Metrics.scrape` as an ASGI app: Starlette calls a plain function or method with a Request instead."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.metrics.scrape(scope, receive, send)


class _Observed:
    """ASGI: counts and times each HTTP request under its route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics, surface: str, templates: Iterable[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.surface = surface
        templates = list(templates)
        self.exact = {t for t in templates if "{" not in t}
        self.patterns = [(compile_path(t)[0], t) for t in templates if "{" in t]

    def route(self, path: str) -> str:
        if path in self.exact:
            return path
        return next((t for regex, t in self.patterns if regex.match(path)), OTHER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        seen = StatusSeen(send)
        failed = False
        try:
            await self.app(scope, receive, seen)
        except Exception:
            failed = True
            raise
        finally:
            # no answer started: uvicorn answers 500 for an error; otherwise the caller hung up
            status = seen.status or (500 if failed else CLIENT_CLOSED)
            method = scope["method"] if scope["method"] in METHODS else OTHER
            took = time.perf_counter() - start
            self.metrics.count(self.surface, self.route(scope["path"]), method, status, took)


async def _answer(send: Send, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body})
