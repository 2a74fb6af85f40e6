"""The launcher's one way upstream: the core client's plan (retries, error mapping, deadline), each attempt sent
with aiohttp, the cheapest client that hangs up at once when cancelled (`benchmarks/bench_upstream_clients.py`).

The environment is read once, as httpx reads it (the proxy for the base URL unless `NO_PROXY` covers it; the CAs of
`SSL_CERT_FILE`/`SSL_CERT_DIR` through httpx's `create_ssl_context`), not per request as aiohttp's `trust_env` would.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp
import httpx

from ..client import DEFAULT_HEADERS, AsyncClient, Reply, Request, check_size, url_for
from ..config import Settings
from ..errors import PrimeBillingError

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
