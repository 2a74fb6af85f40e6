"""The servers' one way upstream: argument checks, shared calls, the report cap.

Callers asking the same thing (by a hash of the Prime key, the operation and its checked arguments) share one
upstream call: in this process first, where only a shared task can be cancelled once its last caller leaves; then,
with a cache, through the state store by every replica.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from starlette.types import Scope

from ..client import OnStep, Request, Result
from ..config import Settings
from ..dates import utc
from ..errors import AuthenticationError, ReportTooLargeError
from ..models import Wallet
from ..operations import Operation
from . import UPSTREAM_CALLS
from .options import Options
from .state import State
from .upstream import Notify, Upstream, nothing


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
        """The Prime key a caller's calls are made with: its own in passthrough, else the configured one."""
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
