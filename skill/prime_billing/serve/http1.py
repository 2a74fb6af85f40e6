"""The servers' upstream connections: kept-alive HTTP/1.1 GETs to one origin, parsed by httptools.

Every forwarded call pays for its client's own work per request, and a general
client (request and response objects, connector bookkeeping, stream readers, a
timer per read) cost about as much latency as the rest of the hop together.
The servers only ever send bodiless GETs to the one configured origin and read
a sized answer, so this does only that, with the parser uvicorn uses: one
write per request, the answer collected in the protocol, one wake-up when the
whole of it has arrived.

Failures come back as the httpx errors the core plan already maps (connect
refused, connect timeout, read timeout, broken connection); a connection the
upstream closed while it sat idle is retried once on a fresh one, as the
request never reached it.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httptools
import httpx

#: idle connections kept per origin; more are closed when they come back
MAX_IDLE = 200
#: an idle connection older than this is not reused (the upstream may have dropped it)
KEEPALIVE_SECONDS = 30.0


class Headers(dict[str, str]):
    """Response headers by lower-case name, read case-insensitively as the plan reads httpx's."""

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return dict.get(self, name.lower(), default)


class TooLarge(Exception):
    """The answer grew past the cap: `received` bytes so far (or announced)."""

    def __init__(self, status: int, headers: Headers, received: int) -> None:
        self.status, self.headers, self.received = status, headers, received


class _Dropped(Exception):
    """The connection closed before any of the answer arrived."""


class _Conn(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop, cap: int) -> None:
        self.loop = loop
        self.cap = cap
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, Headers, bytes]] | None = None
        self.open = False
        self.idle_since = 0.0
        self._status = 0
        self._headers = Headers()
        self._body: list[bytes] = []
        self._size = 0
        self._started = False
        self._keep = True
        self._timeout = 0.0
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # ----------------------------------------------------------------- transport
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.open = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self.waiter is not None and not self.waiter.done():
            h = self._headers
            if self._status and "content-length" not in h and "transfer-encoding" not in h:
                self.on_message_complete()  # an answer sized by the close ends here
            elif not self._started:
                self._fail(_Dropped())
            else:
                self._fail(httpx.ReadError("the upstream closed the connection mid-answer"))

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():
            self.close()  # nothing was asked: this connection is out of step
            return
        self._started = True
        self._last = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            cause = exc.__context__  # what a callback raised, as the parser reports it
            if isinstance(cause, TooLarge):
                self._fail(cause)
            else:
                self._fail(httpx.ReadError(f"malformed answer from upstream ({type(exc).__name__})"))

    def eof_received(self) -> bool:
        return False  # close; connection_lost settles the exchange

    # ----------------------------------------------------------------- parser
    def on_message_begin(self) -> None:
        self._status = 0
        self._headers = Headers()
        self._body = []
        self._size = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self._headers[key] = f"{self._headers[key]}, {text}" if key in self._headers else text

    def on_headers_complete(self) -> None:
        self._status = self.parser.get_status_code()
        self._keep = self.parser.should_keep_alive()
        length = self._headers.get("content-length", "")
        if length.isdigit() and int(length) > self.cap:
            raise TooLarge(self._status, self._headers, int(length))

    def on_body(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self.cap:
            raise TooLarge(self._status, self._headers, self._size)
        self._body.append(chunk)

    def on_message_complete(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
            waiter.set_result((self._status, self._headers, body))

    # ----------------------------------------------------------------- one exchange
    def send(self, request: bytes, timeout: float) -> asyncio.Future[tuple[int, Headers, bytes]]:
        self.waiter = self.loop.create_future()
        self._status = 0  # nothing of this answer yet (not the last one's)
        self._started = False
        self._timeout = timeout
        self._last = self.loop.time()
        self._timer = self.loop.call_later(timeout, self._check_idle)
        assert self.transport is not None
        self.transport.write(request)
        return self.waiter

    def done(self) -> None:
        """The exchange is over (answered, failed or abandoned)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.waiter = None

    def reusable(self) -> bool:
        return self.open and self._keep

    def _check_idle(self) -> None:
        """A read timeout: nothing arrived for `timeout` seconds (as a per-read timeout counts)."""
        self._timer = None
        if self.waiter is None or self.waiter.done():
            return
        quiet = self.loop.time() - self._last
        if quiet < self._timeout:
            self._timer = self.loop.call_later(self._timeout - quiet, self._check_idle)
            return
        self._fail(httpx.ReadTimeout(f"no answer from upstream within {self._timeout:g}s"))

    def _fail(self, exc: BaseException) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.close()


class Http1Pool:
    """Kept-alive connections to the one upstream origin."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        cap: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        default = 443 if self.https else 80
        self.authority = (f"[{self.host}]" if ":" in self.host else self.host) + (
            "" if self.port == default else f":{self.port}"
        )
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.cap = cap
        #: certificates are verified (the system's CAs unless a context is given)
        self._ssl: ssl.SSLContext | None = (ssl_context or ssl.create_default_context()) if self.https else None
        self._idle: deque[_Conn] = deque()
        self._closed = False

    def head(self, method: str, target: str, headers: Mapping[str, str]) -> bytes:
        """The request line and headers, ready to write (the caller's own part built once per target)."""
        lines = [f"{method} {self.prefix}{target} HTTP/1.1", f"Host: {self.authority}"]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise httpx.LocalProtocolError(f"header {name} cannot be sent: it contains a line break")
            lines.append(f"{name}: {value}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def request(self, data: bytes) -> tuple[int, Headers, bytes]:
        """Send one request; its status, headers and body. Raises httpx errors, or TooLarge."""
        conn = self._take()
        reused = conn is not None
        while True:
            if conn is None:
                conn = await self._connect()
            try:
                answer = await conn.send(data, self.read_timeout)
            except _Dropped:
                conn.done()
                if reused:  # went stale while idle: the request never reached it
                    conn, reused = None, False
                    continue
                raise httpx.ReadError("the upstream closed the connection without answering") from None
            except BaseException:
                conn.done()
                conn.close()  # its state is unknown: never reuse it
                raise
            conn.done()
            self._give(conn)
            return answer

    def _take(self) -> _Conn | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.open and now - conn.idle_since < KEEPALIVE_SECONDS:
                return conn
            conn.close()
        return None

    def _give(self, conn: _Conn) -> None:
        if self._closed or not conn.reusable() or len(self._idle) >= MAX_IDLE:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Conn(loop, self.cap),
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host if self._ssl else None,
                ),
                self.connect_timeout,
            )
        except TimeoutError:
            raise httpx.ConnectTimeout(
                f"could not connect to {self.authority} within {self.connect_timeout:g}s"
            ) from None
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {self.authority}: {exc.strerror or exc}") from None
        return conn

    async def aclose(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()
