"""The servers' upstream client: the core client's plan, with aiohttp doing the I/O.

`AsyncClient` keeps its checks, retries and error mapping in one plan and lets
each face do only its own sending (`_send`). Here that send goes through
aiohttp's connection pool: per request it costs a fraction of what httpx's
async pool does, and a server pays that on every call it forwards. The
in-process sandbox, or an explicit httpx transport (tests), keep the httpx path.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from ..client import USER_AGENT, AsyncClient
from ..config import Settings


@dataclass
class Tally:
    """What one inbound request cost upstream (read by the access log)."""

    upstream: int = 0


#: the tally of the inbound request on whose behalf a call runs
TALLY: contextvars.ContextVar[Tally | None] = contextvars.ContextVar("prime_billing_tally", default=None)


class ServerClient(AsyncClient):
    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(settings, transport=transport)
        #: requests actually sent upstream, in all
        self.sent = 0
        self._aiohttp: Any = None
        self._use_aiohttp = transport is None and not settings.sandbox
        if self._use_aiohttp:
            try:
                import aiohttp  # noqa: F401
            except ImportError:
                self._use_aiohttp = False

    async def aclose(self) -> None:
        await super().aclose()
        if self._aiohttp is not None:
            await self._aiohttp.close()

    async def _send(self, req: Any) -> Any:
        self.sent += 1
        tally = TALLY.get()
        if tally is not None:
            tally.upstream += 1
        if not self._use_aiohttp:
            return await super()._send(req)
        return await self._send_aiohttp(req)

    def _session(self) -> Any:
        import aiohttp

        s = self.settings
        self._aiohttp = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=200, keepalive_timeout=30, ttl_dns_cache=300),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=s.connect_timeout, sock_read=s.timeout),
            skip_auto_headers=("Accept-Encoding",),
        )
        return self._aiohttp

    async def _send_aiohttp(self, req: Any) -> Any:
        import aiohttp
        from yarl import URL

        session = self._aiohttp or self._session()
        target = self.settings.base_url + req.path
        if req.query:
            target += "?" + urlencode(req.query)
        try:
            async with session.request(
                req.method, URL(target, encoded=True), headers=req.headers, allow_redirects=False
            ) as r:
                response = httpx.Response(r.status, headers=list(r.raw_headers))
                self._check_size(response, 0)
                buf = bytearray()
                async for chunk in r.content.iter_any():
                    buf += chunk
                    self._check_size(response, len(buf))
                return response, bytes(buf)
        except aiohttp.ConnectionTimeoutError as exc:
            return httpx.ConnectTimeout(str(exc))
        except TimeoutError as exc:
            return httpx.ReadTimeout(str(exc))
        except aiohttp.ClientConnectorError as exc:
            return httpx.ConnectError(str(exc))
        except aiohttp.ClientError as exc:
            return httpx.ReadError(f"{type(exc).__name__}: {exc}")
