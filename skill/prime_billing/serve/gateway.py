"""The servers' one way upstream: argument checks, shared calls, the report cap, each attempt sent with aiohttp.

Callers asking the same thing (by a hash of the Prime key, the operation and its checked arguments) share one
upstream call: in this process first, where only a shared task can be cancelled once its last caller leaves; then,
with a cache, through the state store by every replica.

`Upstream` is the core client's plan (retries, error mapping, deadline) with aiohttp, the cheapest client that hangs
up at once when cancelled (`benchmarks/bench_upstream_clients.py`). The environment is read once, as httpx reads it
(the proxy for the base URL unless `NO_PROXY` covers it; the CAs of `SSL_CERT_FILE`/`SSL_CERT_DIR` through httpx's
`create_ssl_context`), not per request as aiohttp's `trust_env` would.
"""

from __future__ import annotations

import asyncio
import hashlib
import urllib.request
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx
from pydantic import ValidationError
from starlette.types import Scope

from ..client import DEFAULT_HEADERS, AsyncClient, OnStep, Reply, Request, Result, check_size, url_for
from ..config import Settings
from ..dates import utc
from ..errors import AuthenticationError, PrimeBillingError, ReportTooLargeError
from ..models import Wallet
from ..operations import Operation
from . import UPSTREAM_CALLS
from .options import Options
from .state import State

#: an aiohttp failure as its outcome (for /metrics) and the httpx error the core client maps, first match
ERRORS = (
    (aiohttp.ConnectionTimeoutError, "timeout", httpx.ConnectTimeout),
    ((aiohttp.SocketTimeoutError, aiohttp.ServerTimeoutError), "timeout", httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, "connect_error", httpx.ConnectError),
    (aiohttp.ClientError, "read_error", httpx.ReadError),  # a reset, a truncated body, ...
)


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for `url` (none when NO_PROXY covers its host)."""
    parts = urlsplit(url)
    if parts.hostname is None or urllib.request.proxy_bypass(parts.hostname):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


#: a callback told what happened, for /metrics
Notify = Callable[..., None]


def nothing(*args: str) -> None:
    """A callback nobody listens to (the stdio server counts nothing)."""


class Upstream(AsyncClient):
    """`AsyncClient` sending through one aiohttp pool (made in the running event loop); `on_reply` is told each
    attempt's outcome and HTTP status ("none" without one)."""

    def __init__(self, settings: Settings, *, max_connections: int = 0, on_reply: Notify = nothing) -> None:
        super().__init__(settings)
        self.proxy, self.on_reply = proxy_for(settings.base_url), on_reply
        self.session = aiohttp.ClientSession(
            # the rest wait for a connection: the key's quota is shared by every caller
            connector=aiohttp.TCPConnector(limit=max_connections, ssl=httpx.create_ssl_context()),
            headers=dict(DEFAULT_HEADERS),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=settings.connect_timeout, sock_read=settings.timeout
            ),
            auto_decompress=False,  # never inflate: the body cap counts the bytes that came
            cookie_jar=aiohttp.DummyCookieJar(),  # one pool serves every caller: no state between them
        )

    async def aclose(self) -> None:
        await super().aclose()
        await self.session.close()

    async def send(self, request: Request) -> Reply:
        url, outcome, status = url_for(self.settings.base_url, request), "error", "none"
        try:
            async with self.session.request(
                request.method, url, headers=request.headers, proxy=self.proxy, allow_redirects=False
            ) as response:
                status = str(response.status)
                check_size(response.headers)
                body = bytearray()
                async for chunk in response.content.iter_any():
                    body += chunk
                    check_size(response.headers, len(body))
                outcome = "ok" if 200 <= response.status < 300 else "http_error"
                return Reply(response.status, response.headers, bytes(body))
        except aiohttp.ClientError as exc:  # as httpx would have raised it, for the core client's mapping
            outcome, error = next((o, e) for kind, o, e in ERRORS if isinstance(exc, kind))
            raise error(f"{type(exc).__name__}: {exc}") from None
        except PrimeBillingError:  # too large or compressed: refused unread
            outcome = "refused"
            raise
        except asyncio.CancelledError:  # its caller hung up, or the attempt's deadline passed
            outcome = "cancelled"
            raise
        finally:
            self.on_reply(outcome, status)


@dataclass(frozen=True)
class Caller:
    """Who sent a request: `key` names it for the rate limit (its credential's hash once `verified`, else its
    address); `credential`, in passthrough, is its bearer, its own Prime key."""

    key: str
    credential: str | None = field(default=None, repr=False)
    verified: bool = False


def digest(*parts: str) -> str:
    """What the state store keys a secret by: never the secret itself."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def counted(scope: Scope) -> Callable[[], None]:
    """`sent` for one request: its upstream attempts counted in its scope, for its access line."""
    scope[UPSTREAM_CALLS] = 0

    def sent() -> None:
        scope[UPSTREAM_CALLS] += 1

    return sent


class Gateway:
    """`on_shared` is told "joined" (a caller shared another's call) or "hit" (a cached answer); `on_reply` each
    upstream attempt's outcome and status."""

    def __init__(
        self,
        settings: Settings,
        state: State,
        options: Options,
        on_shared: Notify = nothing,
        on_reply: Notify = nothing,
    ) -> None:
        self.settings, self.state, self.options, self.on_shared = settings, state, options, on_shared
        self.passthrough = options.passthrough
        self.client = Upstream(settings, max_connections=options.max_upstream, on_reply=on_reply)
        #: the calls in progress in this process, by key: the task, and how many callers await it
        self.calls: dict[Hashable, list[Any]] = {}

    async def aclose(self) -> None:
        await self.client.aclose()

    @property
    def waiting(self) -> int:
        """Callers awaiting a shared call now, over every key (a snapshot, readable from any thread)."""
        return sum(entry[1] for entry in list(self.calls.values()))

    def prime_key(self, caller: Caller | None) -> str:
        if not self.passthrough:
            return self.settings.require_key()
        if caller is None or not caller.credential:
            raise AuthenticationError("send your Prime API key as `Authorization: Bearer <key>`", status=401)
        return caller.credential

    async def call(
        self, op: Operation, args: Mapping[str, Any], caller: Caller | None = None, sent: Notify = nothing
    ) -> Result[Any]:
        """Check, then fetch once for everyone asking the same thing; `sent` is told of each upstream attempt made
        for this caller (none when it shared another's call or a cached answer)."""
        checked = self.client.checked(op, args)  # InvalidInputError here: nothing has left yet
        prime_key = self.prime_key(caller)
        key, calls = digest(prime_key, op.name, repr(sorted(checked.items()))), 0

        async def on_send(request: Request) -> None:
            nonlocal calls
            calls += 1
            sent()
            # the request itself paid for its first call; a report's further pages are paid here
            while calls > 1 and caller is not None and (wait := await self.state.hit(caller.key)) > 0:
                await asyncio.sleep(wait)

        async def fetch() -> Result[Any]:
            on_step = self._bounded(op, checked) if op.composite else None
            api_key = prime_key if self.passthrough else None
            return await self.client.call(op.name, checked, api_key=api_key, on_step=on_step, on_send=on_send)

        cached = self.options.cache_ttl > 0
        result = await self.shared(key, lambda: self._cached(op, checked, key, fetch) if cached else fetch())
        if self.passthrough and caller is not None and not caller.verified:
            await self.state.put("accepted", digest(prime_key), b"1")  # the upstream answered this key: it is real
        return result

    async def _cached(
        self, op: Operation, checked: dict[str, Any], key: str, fetch: Callable[[], Awaitable[Result[Any]]]
    ) -> Result[Any]:
        """Through the state store: made once for every replica, stored as bytes, validated again when read."""
        made: list[Result[Any]] = []

        async def produce() -> bytes:
            made.append(await fetch())
            return (b"s" if made[0].sandbox else b"-") + made[0].json().encode()

        stored, how = await self.state.shared("answers", key, produce)
        if made:
            return made[0]
        self.on_shared("hit" if how == "hit" else "joined")
        try:
            data = op.model.model_validate_json(stored[1:])
        except ValidationError:  # not what this version stores: ask the upstream instead
            return await fetch()
        return Result(op, data, checked, stored[:1] == b"s", 0, None if op.composite else stored[1:])

    async def shared(self, key: Hashable, call: Callable[[], Awaitable[Any]]) -> Any:
        """`call()`'s answer, one call at a time per key in this process: each caller awaits it shielded, so one
        hanging up cancels nothing for the others, and the last one leaving cancels it."""

        def settle(_: object = None) -> None:
            if self.calls.get(key) is entry:
                del self.calls[key]

        entry = self.calls.get(key)
        if entry is None:
            entry = self.calls[key] = [asyncio.ensure_future(call()), 0]
            entry[0].add_done_callback(settle)
        else:
            self.on_shared("joined")
        task = entry[0]
        entry[1] += 1
        try:
            return await asyncio.shield(task)
        finally:
            entry[1] -= 1
            if not entry[1] and not task.done():  # nobody is left to read its answer
                settle()
                task.cancel()

    def _bounded(self, op: Operation, checked: dict[str, Any]) -> OnStep:
        """A report's step watcher, refusing once the rows it keeps pass the cap (older rows are read only to find
        the end); one reading every row with no start is refused at its first page, whose total says how many."""
        cap, since, kept = self.options.max_report_rows, op.inputs.rows_since(checked), 0
        whole = op.inputs.reads_every_row and since is None

        def step(result: Result[Any]) -> None:
            nonlocal kept
            if isinstance(result.data, Wallet):
                page = result.data.recent_billings
                kept += len(page) if since is None else sum(1 for r in page if utc(r.created_at) >= since)
                if (rows := max(kept, result.data.total_billings) if whole else kept) > cap:
                    raise ReportTooLargeError(rows, cap, narrowed_by=op.inputs.narrowed_by)

        return step
