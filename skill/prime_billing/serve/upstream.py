"""The launcher's one way upstream: the core client's plan, sent with pyreqwest.

A server pays its client's cost on every request it forwards; pyreqwest (Rust's
reqwest) was the cheapest of the clients measured side by side
(`benchmarks/bench_upstream_clients.py`, reference/serve.md). It honours
`HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY` itself; `SSL_CERT_FILE` and
`SSL_CERT_DIR` are added to its trusted roots here, as httpx trusts them.
Retries, error mapping and the per-attempt deadline stay the core client's.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
from pyreqwest.client import ClientBuilder
from pyreqwest.exceptions import (
    ConnectError,
    ConnectTimeoutError,
    PoolTimeoutError,
    RequestTimeoutError,
    RequestError,
)

from ..client import DEFAULT_HEADERS, AsyncClient, Reply, Request, check_size, url_for
from ..config import Settings


@dataclass
class Tally:
    """What one inbound request costs upstream: counted for the access log, paced by the caller's rate."""

    upstream: int = 0
    #: spends one of the caller's rate tokens: 0, or the seconds until one is there
    pace: Callable[[], float] | None = None


#: the tally of the inbound request on whose behalf a call runs
TALLY: contextvars.ContextVar[Tally | None] = contextvars.ContextVar("prime_billing_tally", default=None)


def trusted_roots() -> list[bytes]:
    """PEM files named by SSL_CERT_FILE and in SSL_CERT_DIR, as OpenSSL and httpx read them."""
    pems: list[bytes] = []
    file, folder = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if file and Path(file).is_file():
        pems.append(Path(file).read_bytes())
    if folder and Path(folder).is_dir():
        pems += [p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file() and p.suffix in (".pem", ".crt")]
    return pems


class Upstream(AsyncClient):
    """`AsyncClient` whose one attempt (`send`) goes through a shared pyreqwest pool."""

    def __init__(self, settings: Settings, *, max_in_flight: int = 0) -> None:
        super().__init__(settings)
        #: requests actually sent upstream, in all
        self.sent = 0
        builder = (
            ClientBuilder()
            .default_headers(dict(DEFAULT_HEADERS))
            .connect_timeout(timedelta(seconds=settings.connect_timeout))
            .read_timeout(timedelta(seconds=settings.timeout))
            .follow_redirects(False)
            .gzip(False)
            .brotli(False)
            .zstd(False)
            .deflate(False)
            .referer(False)
        )
        if max_in_flight > 0:  # the rest wait for a slot; the key's quota is shared by every caller
            builder = builder.max_connections(max_in_flight)
        for pem in trusted_roots():
            builder = builder.add_root_certificate_pem(pem)
        self._pool = builder.build()

    async def aclose(self) -> None:
        await super().aclose()
        await self._pool.close()

    async def send(self, request: Request) -> Reply:
        self.sent += 1
        tally = TALLY.get()
        if tally is not None:
            tally.upstream += 1
            # the request itself paid for its first call; a report's further pages are paid here
            while tally.upstream > 1 and tally.pace is not None and (wait := tally.pace()) > 0:
                await asyncio.sleep(wait)
        url = url_for(self.settings.base_url, request)
        try:
            async with self._pool.request(request.method, url).headers(request.headers).build_streamed() as response:
                check_size(response.headers, 0)
                body = bytearray()
                while (chunk := await response.body_reader.read_chunk()) is not None:
                    body += chunk
                    check_size(response.headers, len(body))
                return Reply(response.status, response.headers, bytes(body))
        except (ConnectTimeoutError, PoolTimeoutError) as exc:
            raise httpx.ConnectTimeout(str(exc)) from None
        except RequestTimeoutError as exc:
            raise httpx.ReadTimeout(str(exc)) from None
        except ConnectError as exc:
            raise httpx.ConnectError(str(exc)) from None
        except RequestError as exc:  # a reset, a truncated body, ...
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}") from None
