"""The servers' one way upstream: a shared async client, coalescing, counting.

Both faces (REST and MCP) call `Gateway.call`; it validates before anything
leaves, folds identical in-flight calls into one (keyed by a hash of the
credential plus the operation and its checked arguments, which fix the path
and query, so two callers with different keys never share an answer), and
counts the upstream requests each caller caused, for the access log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import httpx

from ..client import Result
from ..config import Settings
from ..errors import AuthenticationError
from ..operations import Operation
from .coalesce import Coalescer
from .upstream import TALLY, ServerClient, Tally


class Gateway:
    def __init__(
        self,
        settings: Settings,
        *,
        passthrough: bool = False,
        cache_ttl: float = 0.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        #: each caller's bearer is its Prime key; the server holds none
        self.passthrough = passthrough
        self.client = ServerClient(settings, transport=transport)
        self._flights: Coalescer[Result[Any]] = Coalescer(cache_ttl)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def call(
        self, op: Operation, args: Mapping[str, Any], credential: str | None = None, tally: Tally | None = None
    ) -> Result[Any]:
        """Validate, then fetch once for everyone asking the same thing right now."""
        checked = self.client._checked(op, args)  # InvalidInputError here: nothing has left yet
        if self.passthrough:
            if not credential:
                raise AuthenticationError("send your Prime API key as `Authorization: Bearer <key>`", status=401)
            key = credential
        else:
            key = self.settings.require_key()
        # The operation and its checked arguments determine the upstream path and query
        # (and, for a composite operation, every sub-call), so they key the flight.
        flight = (hashlib.sha256(key.encode()).digest(), op.name, tuple(sorted(checked.items())))
        token = TALLY.set(tally)
        try:
            return await self._flights.run(
                flight, lambda: self.client.call(op.name, checked, api_key=key if self.passthrough else None)
            )
        finally:
            TALLY.reset(token)
