"""One JSON line per request: method, path, status, latency, upstream calls.

Built only from the method, the path and numbers: never a header, a query
string or a body, so no key or token can end up in a log. Lines go through the
`prime_billing.access` logger, so any logging setup can take them.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from json.encoder import encode_basestring_ascii as _quote  # what json.dumps uses for a str

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .security import UPSTREAM_USAGE

logger = logging.getLogger("prime_billing.access")


def setup() -> None:
    """Lines go to stderr as they are (no prefix), so a collector can parse them."""
    if logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


class StatusSeen:
    """`send` for an app whose answer's status a middleware wants to know: passes every message
    on and keeps the status once the answer starts (0 until then)."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status = 0

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)


class AccessLog:
    def __init__(self, app: ASGIApp, surface: str) -> None:
        self.app = app
        self.surface = surface
        self._surface = json.dumps(surface)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not logger.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        seen = StatusSeen(send)
        try:
            await self.app(scope, receive, seen)
        finally:
            status = seen.status or 500
            usage = scope.get(UPSTREAM_USAGE)
            # the same text json.dumps gives for these fields, without its cost on every request
            logger.info(
                f'{{"ts": {round(time.time(), 3)!r}, "surface": {self._surface}, "method": '
                f'{_quote(scope["method"])}, "path": {_quote(scope["path"])}, "status": {int(status)}, '
                f'"ms": {round((time.perf_counter() - start) * 1000, 2)!r}, '
                f'"upstream": {usage.calls if usage is not None else 0}}}'
            )
