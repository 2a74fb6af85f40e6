"""The servers' one way upstream: checks, coalescing, report bounds, counting.

Both servers (REST and MCP) call `Gateway.call`; it checks the arguments before
anything leaves, lets identical calls share the one in progress (keyed by a hash of
the credential plus the operation and its checked arguments, which fix the
path and query, so two callers with different keys never share an answer),
and stops a report that would read more rows than one request may.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ..client import OnStep, Result
from ..config import Settings
from ..dates import utc
from ..errors import AuthenticationError, ReportTooLargeError
from ..models import Wallet
from ..operations import Inputs, Operation
from .coalesce import Coalescer
from .upstream import REQUEST_USAGE, Upstream, UpstreamUsage


class Gateway:
    def __init__(
        self,
        settings: Settings,
        *,
        passthrough: bool = False,
        cache_ttl: float = 0.0,
        max_upstream: int = 0,
        max_report_rows: int = 10_000,
    ) -> None:
        self.settings = settings
        #: each caller's bearer is its Prime key; the server holds none
        self.passthrough = passthrough
        self.max_report_rows = max_report_rows
        self.client = Upstream(settings, max_connections=max_upstream)
        self._calls: Coalescer[Result[Any]] = Coalescer(cache_ttl)

    async def aclose(self) -> None:
        await self.client.aclose()

    @property
    def waiting(self) -> int:
        """Callers awaiting an upstream answer right now (shared calls count each caller)."""
        return self._calls.waiting

    @property
    def joined(self) -> int:
        """Callers who shared an upstream call already in progress instead of making their own, since start."""
        return self._calls.joined

    @property
    def cache_hits(self) -> int:
        """Callers answered from the `cache_ttl` cache without an upstream call, since start."""
        return self._calls.hits

    async def call(
        self, op: Operation, args: Mapping[str, Any], credential: str | None = None, usage: UpstreamUsage | None = None
    ) -> Result[Any]:
        """Check, then fetch once for everyone asking the same thing right now."""
        checked = self.client.checked(op, args)  # InvalidInputError here: nothing has left yet
        if self.passthrough:
            if not credential:
                raise AuthenticationError("send your Prime API key as `Authorization: Bearer <key>`", status=401)
            prime_key = credential
        else:
            prime_key = self.settings.require_key()
        key = (hashlib.sha256(prime_key.encode()).digest(), op.name, tuple(sorted(checked.items())))
        api_key = prime_key if self.passthrough else None
        since = op.inputs.rows_since(checked)
        on_step = self._bounded(since, op.inputs) if op.composite else None
        token = REQUEST_USAGE.set(usage)
        try:
            result = await self._calls.run(
                key, lambda: self.client.call(op.name, checked, api_key=api_key, on_step=on_step)
            )
        finally:
            REQUEST_USAGE.reset(token)
        if usage is not None:
            usage.accepted = True
        return result

    def _bounded(self, since: datetime | None, inputs: type[Inputs]) -> OnStep:
        """A report's step watcher: refuses once the rows it keeps exceed the cap (rows older than
        `since`, the report's own start, are read only to find the end). A report that reads every
        row without a start is refused at its first page, whose total says how many rows that is,
        before any batch of pages goes out. The refusal advises the input that narrows it."""
        cap, kept = self.max_report_rows, 0
        whole = inputs.reads_every_row and since is None

        def step(result: Result[Any]) -> None:
            nonlocal kept
            if isinstance(result.data, Wallet):
                page = result.data.recent_billings
                kept += len(page) if since is None else sum(1 for r in page if utc(r.created_at) >= since)
                rows = max(kept, result.data.total_billings) if whole else kept
                if rows > cap:
                    raise ReportTooLargeError(rows, cap, narrowed_by=inputs.narrowed_by)

        return step
