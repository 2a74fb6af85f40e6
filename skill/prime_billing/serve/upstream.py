"""The servers' upstream client: the core client's plan, with a leaner send.

`AsyncClient` keeps its checks, retries and error mapping in one plan and lets
each face do only its own sending (`_send`). A server pays its client's own
cost on every call it forwards, so here GETs go over kept-alive HTTP/1.1
connections parsed by httptools (`http1.py`), anything else through aiohttp's
pool; both cost a fraction of httpx's async pool per request. The in-process
sandbox, or an explicit httpx transport (tests), keep the httpx path.
"""

from __future__ import annotations

import contextvars
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from pydantic import ValidationError

from ..client import MAX_BODY_BYTES, SANDBOX_HEADER, USER_AGENT, AsyncClient, Result
from ..config import Settings
from ..operations import Operation


@dataclass
class Tally:
    """What one inbound request cost upstream (read by the access log)."""

    upstream: int = 0


#: the tally of the inbound request on whose behalf a call runs
TALLY: contextvars.ContextVar[Tally | None] = contextvars.ContextVar("prime_billing_tally", default=None)


class _Head:
    """Status and headers of an aiohttp answer, shaped as the plan reads an httpx.Response
    (`status_code`, case-insensitive `headers.get`), without building one per request."""

    __slots__ = ("headers", "status_code")

    def __init__(self, status_code: int, headers: Any) -> None:
        self.status_code = status_code
        self.headers = headers


class _BodyResult(Result[Any]):
    """A Result whose `raw` dict is parsed from `body` only when something reads it:
    the REST face sends the bytes on as they came and never needs it."""

    _raw: dict[str, Any] | None = None

    @property  # type: ignore[override]
    def raw(self) -> dict[str, Any]:
        if self._raw is None:
            self._raw = json.loads(self.body)  # type: ignore[arg-type]
        return self._raw

    @raw.setter
    def raw(self, value: dict[str, Any] | None) -> None:
        self._raw = value


class ServerClient(AsyncClient):
    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(settings, transport=transport)
        #: requests actually sent upstream, in all
        self.sent = 0
        self._aiohttp: Any = None
        #: upstream URLs built already, by path and query (pages and runs asked for again)
        self._urls: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}
        self._use_aiohttp = transport is None and not settings.sandbox
        #: lean kept-alive GETs (http1.py) when httptools is there; aiohttp for anything else
        self._http1: Any = None
        #: request heads built already, by method, path, query and headers
        self._heads: dict[tuple[Any, ...], bytes] = {}
        if self._use_aiohttp:
            try:
                from .http1 import Http1Pool

                self._http1 = Http1Pool(
                    settings.base_url,
                    connect_timeout=settings.connect_timeout,
                    read_timeout=settings.timeout,
                    cap=MAX_BODY_BYTES,
                )
            except ImportError:
                pass
        if self._use_aiohttp:
            try:
                import aiohttp  # noqa: F401
            except ImportError:
                self._use_aiohttp = False

    def _result(
        self, op: Operation, checked: dict[str, Any], response: httpx.Response, body: bytes, attempts: int
    ) -> Result[Any]:
        """Validate the body as JSON in one pass (half the cost of parsing, then validating);
        anything it refuses goes the core's way, which gives the same answer or refusal as before."""
        try:
            data = op.model.model_validate_json(body)
        except ValidationError:
            return super()._result(op, checked, response, body, attempts)
        sandbox = response.headers.get(SANDBOX_HEADER) == "1" or self.settings.sandbox
        return _BodyResult(op, data, None, checked, sandbox, attempts, body)  # type: ignore[arg-type]

    async def aclose(self) -> None:
        await super().aclose()
        if self._http1 is not None:
            await self._http1.aclose()
        if self._aiohttp is not None:
            await self._aiohttp.close()

    async def _send(self, req: Any) -> Any:
        self.sent += 1
        tally = TALLY.get()
        if tally is not None:
            tally.upstream += 1
        if not self._use_aiohttp:
            return await super()._send(req)
        if self._http1 is not None and req.method == "GET":
            return await self._send_http1(req)
        return await self._send_aiohttp(req)

    async def _send_http1(self, req: Any) -> Any:
        from .http1 import TooLarge

        where = (req.method, req.path, tuple(req.query.items()), tuple(req.headers.items()))
        head = self._heads.get(where)
        try:
            if head is None:
                target = req.path + ("?" + urlencode(req.query) if req.query else "")
                head = self._http1.head(
                    req.method, target, {"User-Agent": USER_AGENT, "Accept": "application/json", **req.headers}
                )
                if len(self._heads) >= 4096:  # bounded: start over
                    self._heads.clear()
                self._heads[where] = head
            status, headers, body = await self._http1.request(head)
        except TooLarge as exc:
            self._check_size(_Head(exc.status, exc.headers), exc.received)  # type: ignore[arg-type]
            raise AssertionError("unreachable: the size check refuses it") from None
        except httpx.HTTPError as exc:
            return exc
        return _Head(status, headers), body

    def _session(self) -> Any:
        import aiohttp

        s = self.settings
        self._aiohttp = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=200, keepalive_timeout=30, ttl_dns_cache=300),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=s.connect_timeout, sock_read=s.timeout),
            skip_auto_headers=("Accept-Encoding",),
            # one session serves every caller (passthrough keys too): never carry cookies between them
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self._aiohttp

    async def _send_aiohttp(self, req: Any) -> Any:
        import aiohttp
        from yarl import URL

        session = self._aiohttp or self._session()
        where = (req.path, tuple(req.query.items()))
        url = self._urls.get(where)
        if url is None:
            target = self.settings.base_url + req.path
            if req.query:
                target += "?" + urlencode(req.query)
            url = URL(target, encoded=True)
            if len(self._urls) >= 4096:  # bounded: start over
                self._urls.clear()
            self._urls[where] = url
        try:
            async with session.request(req.method, url, headers=req.headers, allow_redirects=False) as r:
                response = _Head(r.status, r.headers)
                self._check_size(response, 0)  # type: ignore[arg-type]
                buf = bytearray()
                async for chunk in r.content.iter_any():
                    buf += chunk
                    self._check_size(response, len(buf))  # type: ignore[arg-type]
                return response, bytes(buf)
        except aiohttp.ConnectionTimeoutError as exc:
            return httpx.ConnectTimeout(str(exc))
        except TimeoutError as exc:
            return httpx.ReadTimeout(str(exc))
        except aiohttp.ClientConnectorError as exc:
            return httpx.ConnectError(str(exc))
        except aiohttp.ClientError as exc:
            return httpx.ReadError(f"{type(exc).__name__}: {exc}")
