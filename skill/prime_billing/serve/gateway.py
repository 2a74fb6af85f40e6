"""The servers' one way upstream: argument checks, the cache key, shared calls, the report cap.

Both servers (REST and MCP) call `Gateway.call`. It checks the arguments before anything leaves,
then lets everyone asking the same thing at once share one upstream call, keyed by a hash of the
Prime key, the operation and its checked arguments (the team among them), so callers with different
keys never share an answer. Sharing starts in this process: one task that each caller awaits
shielded, so one caller hanging up cancels nothing for the others, and the last one leaving cancels
it. With a cache (`--cache-ttl`) it goes on through the state store: across replicas one takes a
short lock and calls upstream, the others wait for its answer, stored as bytes and validated again
when read. A report that would read more rows than one request may is stopped.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from ..client import OnStep, Request, Result
from ..config import Settings
from ..dates import utc
from ..errors import AuthenticationError, ReportTooLargeError
from ..models import Wallet
from ..operations import Inputs, Operation
from .state import State
from .upstream import Upstream


@dataclass(frozen=True)
class Caller:
    """Who sent a request, as the guard found it: what the routes pass on to the gateway."""

    #: the rate limit's name for the caller: its credential's hash once that is known good, else its address
    key: str
    #: in passthrough, the caller's bearer: its own Prime key
    credential: str | None = field(default=None, repr=False)
    #: the credential is known good (the token, or a passthrough key the upstream accepted)
    verified: bool = False


def digest(*parts: str) -> str:
    """What the state store keys a secret by: never the secret itself."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _nothing() -> None:
    """`call(sent=...)` when nobody counts the upstream attempts."""


class Gateway:
    def __init__(
        self,
        settings: Settings,
        state: State | None = None,
        *,
        passthrough: bool = False,
        cache_ttl: float = 0.0,
        max_upstream: int = 0,
        max_report_rows: int = 10_000,
        on_joined: Callable[[], None] = _nothing,
        on_hit: Callable[[], None] = _nothing,
        on_reply: Callable[[str, str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.state = state or State()
        #: each caller's bearer is its Prime key; the server holds none
        self.passthrough = passthrough
        self.cache_ttl = cache_ttl
        self.max_report_rows = max_report_rows
        self.on_joined, self.on_hit = on_joined, on_hit
        self.client = Upstream(settings, max_connections=max_upstream, **({"on_reply": on_reply} if on_reply else {}))
        self._calls: dict[Hashable, tuple[asyncio.Task[Any], list[int]]] = {}

    async def aclose(self) -> None:
        await self.client.aclose()

    @property
    def waiting(self) -> int:
        """Callers awaiting a shared call right now, over every key (a snapshot: readable from any thread)."""
        return sum(count[0] for _, count in list(self._calls.values()))

    def prime_key(self, caller: Caller | None) -> str:
        """The Prime key a caller's calls are made with: its own in passthrough, else the configured one."""
        if not self.passthrough:
            return self.settings.require_key()
        if caller is None or not caller.credential:
            raise AuthenticationError("send your Prime API key as `Authorization: Bearer <key>`", status=401)
        return caller.credential

    async def call(
        self, op: Operation, args: Mapping[str, Any], caller: Caller | None = None, sent: Callable[[], None] = _nothing
    ) -> Result[Any]:
        """Check, then fetch once for everyone asking the same thing; `sent` is told of each upstream
        attempt made for this caller (none when it shared another's call or a cached answer)."""
        checked = self.client.checked(op, args)  # InvalidInputError here: nothing has left yet
        prime_key = self.prime_key(caller)
        key = digest(prime_key, op.name, json.dumps(sorted(checked.items()), default=str))

        async def fetch() -> Result[Any]:
            calls = 0

            async def on_send(request: Request) -> None:
                nonlocal calls
                calls += 1
                sent()
                # the request itself paid for its first call; a report's further pages are paid here
                while calls > 1 and caller is not None and (wait := await self.state.hit(caller.key)) > 0:
                    await asyncio.sleep(wait)

            on_step = self._bounded(op.inputs.rows_since(checked), op.inputs) if op.composite else None
            api_key = prime_key if self.passthrough else None
            return await self.client.call(op.name, checked, api_key=api_key, on_step=on_step, on_send=on_send)

        result = await self.shared(key, lambda: self._cached(op, checked, key, fetch) if self.cache_ttl else fetch())
        if self.passthrough and caller is not None and not caller.verified:
            await self.state.accept(digest(prime_key))  # the upstream answered this key: it is real
        return result

    async def _cached(
        self, op: Operation, checked: dict[str, Any], key: str, fetch: Callable[[], Awaitable[Result[Any]]]
    ) -> Result[Any]:
        """Through the state store's cache, shared by every replica: bytes stored, validated when read."""
        made: list[Result[Any]] = []

        async def produce() -> bytes:
            made.append(await fetch())
            return (b"s" if made[0].sandbox else b"-") + made[0].json().encode()

        stored, how = await self.state.shared("answers", key, produce)
        if made:
            return made[0]
        (self.on_hit if how == "hit" else self.on_joined)()
        try:
            data = op.model.model_validate_json(stored[1:])
        except ValidationError:  # not what this version stored: ask the upstream instead
            return await fetch()
        return Result(op, data, checked, stored[:1] == b"s", 0, None if op.composite else stored[1:])

    async def shared(self, key: Hashable, call: Callable[[], Awaitable[Any]]) -> Any:
        """`call()`'s answer, one call at a time per key in this process, awaited by every caller of that key."""
        entry = self._calls.get(key)
        if entry is None:
            task = asyncio.ensure_future(call())
            entry = self._calls[key] = (task, [0])
            task.add_done_callback(lambda done: self._settle(key, done))
        else:
            self.on_joined()
        task, waiting = entry
        waiting[0] += 1
        try:
            return await asyncio.shield(task)
        finally:
            waiting[0] -= 1
            if not waiting[0] and not task.done():
                task.cancel()  # nobody is left to read its answer

    def _settle(self, key: Hashable, task: asyncio.Task[Any]) -> None:
        if self._calls.get(key, (None,))[0] is task:
            del self._calls[key]
        if not task.cancelled():
            task.exception()  # seen: every caller that waited has it already

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
