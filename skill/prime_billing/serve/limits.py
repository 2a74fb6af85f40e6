"""Resource bounds for the launcher: what one caller, or all of them, can make it hold.

- Upstream concurrency: at most `max_upstream` requests to Prime at once, across
  every caller; the rest wait their turn (the upstream's own rate limits and the
  key's quota are shared by everyone this server serves).
- Per-caller rate: a token bucket per caller (its bearer credential, else its
  address) on each port; beyond it, 429 with `Retry-After`. Off by default on
  loopback, where the callers are this machine's own programs.
- Request size: the request line plus headers (431 beyond `max_header`) and the
  body (413 beyond `max_body`, refused unread when Content-Length says so).
- Slow clients: a request head or body that takes longer than `client_timeout`
  is answered 408 and the connection closed, so a trickling client cannot hold
  a connection (and its memory) open indefinitely.

Refusals are problem+json like every other error. `/healthz` is never limited.
The command-line part is imported with every `prime-billing` command, so the
server stack is imported only where the middleware runs.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: callers remembered by the rate limiter; the least recently seen are forgotten first
MAX_CALLERS = 10_000
#: the per-caller rate used off loopback when none is given
DEFAULT_PUBLIC_RATE = 50.0


@dataclass(frozen=True)
class Limits:
    #: upstream requests in flight at once, across all callers (0: unbounded)
    max_upstream: int = 64
    #: requests per second per caller (0: off; None: off on loopback, DEFAULT_PUBLIC_RATE elsewhere)
    rate: float | None = None
    #: requests a caller may make at once above the rate (default: twice the rate)
    burst: int | None = None
    #: largest request body, bytes
    max_body: int = 256 * 1024
    #: largest request line plus headers, bytes
    max_header: int = 16 * 1024
    #: seconds a client has to send its request head, and then its body
    client_timeout: float = 10.0

    def check(self) -> None:
        for name in ("max_upstream", "max_body", "max_header"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0")
        if self.rate is not None and self.rate < 0:
            raise ConfigError("--rate-limit must be >= 0 requests per second (0: off)")
        if self.burst is not None and self.burst < 1:
            raise ConfigError("--rate-burst must be >= 1")
        if self.client_timeout <= 0:
            raise ConfigError("--client-timeout must be > 0 seconds")

    def rate_for(self, host: str) -> float:
        from .security import is_loopback

        if self.rate is not None:
            return self.rate
        return 0.0 if is_loopback(host) else DEFAULT_PUBLIC_RATE


# --------------------------------------------------------------------------- upstream concurrency


def bound_upstream(client: Any, limit: int) -> None:
    """Make every upstream send of `client` (a ServerClient) wait for one of `limit` slots."""
    if limit <= 0:
        return
    gate = asyncio.Semaphore(limit)
    send = client._send

    async def bounded(req: Any) -> Any:
        async with gate:
            return await send(req)

    client._send = bounded


# --------------------------------------------------------------------------- per-caller rate, body size and pace


class _Buckets:
    """Token buckets keyed by caller, bounded in number."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._state: OrderedDict[bytes, tuple[float, float]] = OrderedDict()

    def take(self, caller: bytes) -> float:
        """0 when the caller may go on; otherwise the seconds until it may."""
        now = time.monotonic()
        tokens, last = self._state.pop(caller, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._state[caller] = (tokens, now)
        if len(self._state) > MAX_CALLERS:
            self._state.popitem(last=False)
        return wait


class Bounds:
    """ASGI middleware: per-caller rate limit, body size cap and body read deadline."""

    def __init__(self, app: ASGIApp, limits: Limits, *, host: str = "127.0.0.1") -> None:
        from .security import HEALTH_PATH

        self.exempt = HEALTH_PATH
        self.app = app
        self.limits = limits
        rate = limits.rate_for(host)
        burst = limits.burst if limits.burst is not None else max(1, math.ceil(2 * rate))
        self._buckets = _Buckets(rate, burst) if rate > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == self.exempt:
            await self.app(scope, receive, send)
            return
        if self._buckets is not None:
            wait = self._buckets.take(_caller(scope))
            if wait > 0:
                from .problems import problem

                seconds = max(1, math.ceil(wait))
                refusal = problem(
                    429,
                    "too_many_requests",
                    f"too many requests from this caller: wait {seconds}s and try again",
                    {"Retry-After": str(seconds)},
                )
                await refusal(scope, receive, send)
                return
        if not _has_body(scope):
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > self.limits.max_body:
            await _refuse(scope, receive, send, 413, "body_too_large", self._too_large())
            return
        body = await self._read_body(receive)
        if body is None:
            return  # the client went away
        if isinstance(body, int):
            if body == 413:
                await _refuse(scope, receive, send, 413, "body_too_large", self._too_large())
            else:
                detail = f"the request body did not arrive within {self.limits.client_timeout:g}s: send it promptly"
                await _refuse(scope, receive, send, 408, "request_timeout", detail)
            return
        await self.app(scope, _replay(body, receive), send)

    def _too_large(self) -> str:
        return f"request body larger than {self.limits.max_body} bytes: send a smaller one"

    async def _read_body(self, receive: Receive) -> bytes | int | None:
        """The whole body, or 413 / 408, or None if the client disconnected."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.client_timeout
        chunks: list[bytes] = []
        size = 0
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return 408
            try:
                message = await asyncio.wait_for(receive(), remaining)
            except TimeoutError:
                return 408
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limits.max_body:
                return 413
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _caller(scope: Scope) -> bytes:
    """A caller is its bearer credential when it sends one, else its address; hashed, never kept."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            return b"a" + hashlib.sha256(value).digest()[:16]
    client = scope.get("client") or ("", 0)
    return b"i" + str(client[0]).encode()


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.strip() != b"0"
        if name == b"transfer-encoding":
            return True
    return False


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body read already, then whatever the connection says next (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, code: str, detail: str) -> None:
    from .problems import problem

    # the rest of the body is not read, so the connection cannot be reused
    await problem(status, code, detail, {"Connection": "close"})(scope, receive, send)


# --------------------------------------------------------------------------- request head: size and pace


def _head_refusal(status: int, code: str, detail: str) -> bytes:
    body = json.dumps(
        {"type": f"urn:prime-billing:problem:{code}", "status": status, "detail": detail, "code": code}
    ).encode()
    reason = {408: "Request Timeout", 431: "Request Header Fields Too Large"}[status]
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class _OneWrite:
    """A response's transport that sends a sized response's head together with its body.

    uvicorn writes the head and the body separately; on a TCP_NODELAY socket
    that is two segments, and the caller wakes up (and reads) twice for every
    answer. A head that names its Content-Length is held until the first body
    write (at most one ASGI message later); any other head (a stream) goes at once.
    """

    __slots__ = ("_armed", "_head", "_transport")

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._armed = True  # the first write but a 100 Continue is the head
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._armed:
            if data.startswith(b"HTTP/1.1 100 "):
                self._transport.write(data)
                return
            self._armed = False
            if b"\r\ncontent-length: " in data:
                self._head = data
                return
        elif self._head is not None:
            data = self._head + data
            self._head = None
        self._transport.write(data)

    def close(self) -> None:
        if self._head is not None:
            self._transport.write(self._head)
            self._head = None
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def protocol_class(limits: Limits) -> type[Any] | None:
    """uvicorn's httptools protocol, with a cap on the request head and a deadline for it.

    uvicorn itself times out only idle keep-alive connections; a client that
    connects and trickles its headers would hold the connection forever.
    None when httptools is not installed (uvicorn then uses h11, capped by size only).
    """
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return None

    class BoundedHttpToolsProtocol(HttpToolsProtocol):  # type: ignore[misc]
        max_head = limits.max_header
        head_timeout = limits.client_timeout

        def connection_made(self, transport: Any) -> None:
            self._head_bytes = 0
            self._head_timer: asyncio.TimerHandle | None = None
            self._too_large = False
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(self.head_timeout, self._head_too_slow)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def on_message_begin(self) -> None:
            self._head_bytes = 0
            self._arm()
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def _start_asgi_task(self, cycle: Any, app: Any) -> None:
            cycle.transport = _OneWrite(cycle.transport)
            super()._start_asgi_task(cycle, app)

        def _count(self, n: int) -> None:
            self._head_bytes += n
            if self.max_head and self._head_bytes > self.max_head:
                self._too_large = True
                raise ValueError("request head too large")  # the parser turns it into a parse error

        def send_400_response(self, msg: str) -> None:
            if not self._too_large:
                super().send_400_response(msg)
                return
            detail = f"request line and headers larger than {self.max_head} bytes: send smaller ones"
            self.transport.write(_head_refusal(431, "headers_too_large", detail))
            self.transport.close()

        def _head_too_slow(self) -> None:
            self._head_timer = None
            if self.transport.is_closing():
                return
            if self.cycle is not None and not self.cycle.response_complete:
                return  # a request is being answered: its head did arrive
            detail = f"the request head did not arrive within {self.head_timeout:g}s: send it promptly"
            self.transport.write(_head_refusal(408, "request_timeout", detail))
            self.transport.close()

    return BoundedHttpToolsProtocol


def uvicorn_options(limits: Limits) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.Config` that apply the head limits."""
    cls = protocol_class(limits)
    if cls is not None:
        return {"http": cls}
    return {"http": "h11", "h11_max_incomplete_event_size": limits.max_header or None}


# --------------------------------------------------------------------------- command line


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = Limits()
    g = p.add_argument_group("resource bounds")
    g.add_argument(
        "--max-upstream", type=int, default=d.max_upstream, metavar="N",
        help=f"upstream requests in flight at once, all callers together (default {d.max_upstream}; 0: unbounded)",
    )  # fmt: skip
    g.add_argument(
        "--rate-limit", type=float, default=None, metavar="R",
        help=f"requests per second per caller, then 429 (default: off on loopback, {DEFAULT_PUBLIC_RATE:g} "
        "elsewhere; 0: off)",
    )  # fmt: skip
    g.add_argument("--rate-burst", type=int, default=None, metavar="N", help="burst above the rate (default 2x rate)")
    g.add_argument(
        "--max-body", type=int, default=d.max_body, metavar="BYTES",
        help=f"largest request body, then 413 (default {d.max_body})",
    )  # fmt: skip
    g.add_argument(
        "--max-header", type=int, default=d.max_header, metavar="BYTES",
        help=f"largest request line plus headers, then 431 (default {d.max_header})",
    )  # fmt: skip
    g.add_argument(
        "--client-timeout", type=float, default=d.client_timeout, metavar="S",
        help=f"seconds a client has to send its request head, then its body; then 408 (default {d.client_timeout:g})",
    )  # fmt: skip


def from_args(ns: argparse.Namespace) -> Limits:
    limits = Limits(
        max_upstream=ns.max_upstream,
        rate=ns.rate_limit,
        burst=ns.rate_burst,
        max_body=ns.max_body,
        max_header=ns.max_header,
        client_timeout=ns.client_timeout,
    )
    limits.check()
    return limits
