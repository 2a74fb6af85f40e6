"""One JSON line per request: method, path, status, latency, upstream calls.

Built only from the method, the path and numbers: never a header, a query
string or a body, so no key or token can end up in a log.

Every request pays for its line, so while the logger is as `setup` left it the
line is written straight to the handler's stream (the same text `json.dumps`
gives, built with an f-string) instead of through a LogRecord, formatter and
lock; a logger configured any other way gets `logger.info` as usual.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from json.encoder import encode_basestring_ascii as _quote  # what json.dumps uses for str
from typing import IO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .upstream import Tally

TALLY = "prime_billing.tally"
logger = logging.getLogger("prime_billing.access")
#: the handler `setup` installed: lines may bypass logging while it is the only one
_handler: logging.StreamHandler[IO[str]] | None = None


def setup(stream: object = None) -> None:
    """Lines go to stderr as they are (no prefix), so a collector can parse them."""
    global _handler
    if logger.handlers:
        return
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    _handler = handler


def _direct() -> IO[str] | None:
    """The stream to write to directly, when nothing would filter or reshape the line."""
    h = _handler
    if h is None or logger.handlers != [h] or logger.filters or h.filters or h.level > logging.INFO:
        return None
    return h.stream


def _emit(line: str) -> None:
    stream = _direct()
    if stream is None:
        logger.info(line)
        return
    try:
        stream.write(line + "\n")
        stream.flush()
    except (OSError, ValueError):  # a closed or broken stream: as logging does, never fail the request
        pass


class AccessLog:
    def __init__(self, app: ASGIApp, surface: str) -> None:
        self.app = app
        self.surface = surface
        self._surface = json.dumps(surface)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        tally = scope[TALLY] = Tally()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            if logger.isEnabledFor(logging.INFO):
                _emit(
                    f'{{"ts": {round(time.time(), 3)!r}, "surface": {self._surface}, '
                    f'"method": {_quote(scope["method"])}, "path": {_quote(scope["path"])}, "status": {int(status)}, '
                    f'"ms": {round((time.perf_counter() - start) * 1000, 2)!r}, "upstream": {int(tally.upstream)}}}'
                )
