"""The servers' one way upstream: argument checks, the cache key, shared calls, the report cap.

Both servers call `Gateway.call`: the arguments are checked before anything leaves, then everyone
asking the same thing (keyed by a hash of the Prime key, the operation and its checked arguments, so
different keys never share an answer) shares one upstream call. First in this process: one task each
caller awaits shielded, so one hanging up cancels nothing for the others and the last one leaving
cancels it. Then, with a cache, through the state store, by every replica; answers are stored as
bytes and validated again when read. A report that would read more rows than one request may stops.
"""

from __future__ import annotations

import asyncio
import hashlib
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
from .options import Options
from .state import State
from .upstream import Upstream


@dataclass(frozen=True)
class Caller:
    """Who sent a request, as the guard found it. `key`: its name for the rate limit (its credential's
    hash once that is `verified`: the token, or a passthrough key the upstream accepted; else its
    address); `credential`: in passthrough, its bearer, its own Prime key."""

    key: str
    credential: str | None = field(default=None, repr=False)
    verified: bool = False


def digest(*parts: str) -> str:
    """What the state store keys a secret by: never the secret itself."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _nothing(*args: str) -> None:
    """A callback nobody listens to."""


class Gateway:
    """`on_shared` is told "joined" (a caller shared another's call) or "hit" (a cached answer);
    `on_reply` each upstream attempt's outcome and status."""

    def __init__(
        self, settings: Settings, state: State | None = None, options: Options | None = None,
        on_shared: Callable[[str], None] = _nothing, on_reply: Callable[[str, str], None] = _nothing,
    ) -> None:  # fmt: skip
        self.settings, self.state, self.on_shared = settings, state or State(), on_shared
        self.options = o = options or Options()
        self.passthrough, self.cache_ttl, self.max_report_rows = o.passthrough, o.cache_ttl, o.max_report_rows
        self.client = Upstream(settings, max_connections=o.max_upstream, on_reply=on_reply)
        self._calls: dict[Hashable, tuple[asyncio.Task[Any], list[int]]] = {}

    async def aclose(self) -> None:
        await self.client.aclose()

    @property
    def waiting(self) -> int:
        """Callers awaiting a shared call right now, over every key (/metrics shows it; a snapshot, readable
        from any thread)."""
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
        key = digest(prime_key, op.name, repr(sorted(checked.items())))

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
        """Through the state store's cache: made once for every replica, bytes stored, validated when read."""
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
        """`call()`'s answer, one call at a time per key in this process, awaited by every caller of that key."""
        entry = self._calls.get(key)
        if entry is None:
            task = asyncio.ensure_future(call())
            entry = self._calls[key] = (task, [0])
            task.add_done_callback(lambda done: self._settle(key, done))
        else:
            self.on_shared("joined")
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
        """A report's step watcher: refuses once the rows it keeps exceed the cap (rows older than `since`,
        its start, are read only to find the end). A report reading every row without a start is refused
        at its first page, whose total says how many that is; the refusal advises the input that narrows it."""
        cap, kept = self.max_report_rows, 0
        whole = inputs.reads_every_row and since is None

        def step(result: Result[Any]) -> None:
            nonlocal kept
            if isinstance(result.data, Wallet):
                page = result.data.recent_billings
                kept += len(page) if since is None else sum(1 for r in page if utc(r.created_at) >= since)
                if (rows := max(kept, result.data.total_billings) if whole else kept) > cap:
                    raise ReportTooLargeError(rows, cap, narrowed_by=inputs.narrowed_by)

        return step
