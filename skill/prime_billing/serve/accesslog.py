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

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .security import TALLY

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


class AccessLog:
    def __init__(self, app: ASGIApp, surface: str) -> None:
        self.app = app
        self.surface = surface

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not logger.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            tally = scope.get(TALLY)
            line = {
                "ts": round(time.time(), 3),
                "surface": self.surface,
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "ms": round((time.perf_counter() - start) * 1000, 2),
                "upstream": tally.upstream if tally is not None else 0,
            }
            logger.info(json.dumps(line))
