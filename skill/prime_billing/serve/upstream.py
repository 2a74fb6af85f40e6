"""The launcher's one way upstream: the core client's plan, each attempt sent with aiohttp.

Of the clients that hang up at once when a call is cancelled, aiohttp costs the least per call
(`benchmarks/bench_upstream_clients.py`). It reads the environment once, as httpx does: the proxy for
the base URL from `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY` unless `NO_PROXY` covers it, the trusted CAs
from `SSL_CERT_FILE`/`SSL_CERT_DIR` (httpx's `create_ssl_context`); not per request (aiohttp's
`trust_env`), which would cost every call. Retries, error mapping and the deadline stay the core's.
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


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for `url` (none when NO_PROXY covers its host)."""
    parts = urlsplit(url)
    if parts.hostname is None or urllib.request.proxy_bypass(parts.hostname):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


#: an aiohttp failure as its outcome (for /metrics) and the httpx error the core client maps, first match
_ERRORS = (
    (aiohttp.ConnectionTimeoutError, "timeout", httpx.ConnectTimeout),
    ((aiohttp.SocketTimeoutError, aiohttp.ServerTimeoutError), "timeout", httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, "connect_error", httpx.ConnectError),
    (aiohttp.ClientError, "read_error", httpx.ReadError),  # a reset, a truncated body, ...
)


def _uncounted(outcome: str, status: str) -> None:
    """`on_reply` when nothing counts the attempts (the stdio server)."""


class Upstream(AsyncClient):
    """`AsyncClient` whose one attempt (`send`) goes through a shared aiohttp pool; `on_reply` is
    told of each attempt's outcome and HTTP status ("none" without one), for /metrics."""

    def __init__(
        self, settings: Settings, *, max_connections: int = 0, on_reply: Callable[[str, str], None] = _uncounted
    ) -> None:
        super().__init__(settings)
        self._proxy = proxy_for(settings.base_url)
        self._limit = max_connections
        self._session: aiohttp.ClientSession | None = None
        self.on_reply = on_reply

    def _pool(self) -> aiohttp.ClientSession:
        """Made on first use, inside the event loop that will drive it."""
        if self._session is None:
            s = self.settings
            self._session = aiohttp.ClientSession(
                # the rest wait for a connection: the key's quota is shared by every caller
                connector=aiohttp.TCPConnector(limit=self._limit, ssl=httpx.create_ssl_context()),
                headers=dict(DEFAULT_HEADERS),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=s.connect_timeout, sock_read=s.timeout),
                auto_decompress=False,  # never inflate: the body cap counts the bytes that came
                cookie_jar=aiohttp.DummyCookieJar(),  # one pool serves every caller: no state between them
            )
        return self._session

    async def aclose(self) -> None:
        await super().aclose()
        if self._session is not None:
            await self._session.close()

    async def send(self, request: Request) -> Reply:
        url = url_for(self.settings.base_url, request)
        outcome, status = "error", "none"
        try:
            async with self._pool().request(
                request.method, url, headers=request.headers, proxy=self._proxy, allow_redirects=False
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
            outcome, error = next((o, e) for kind, o, e in _ERRORS if isinstance(exc, kind))
            raise error(f"{type(exc).__name__}: {exc}") from None
        except PrimeBillingError:  # too large or compressed: refused unread
            outcome = "refused"
            raise
        except asyncio.CancelledError:  # its caller hung up, or the attempt's deadline passed
            outcome = "cancelled"
            raise
        finally:
            self.on_reply(outcome, status)
