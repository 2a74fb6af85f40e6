"""Who may call, and how much: checked alike on both ports before any route runs or any body is read.

Host and Origin are parsed strictly (DNS rebinding: a browser page must not reach a loopback server holding a key);
a caller is its credential once known good, else its address, so made-up credentials buy no fresh allowance.
`/healthz` is exempt: it reveals and touches nothing, and probes call it by address.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import math
import re
from collections.abc import Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import AuthenticationError
from . import CALLER, HEALTH_PATH
from .gateway import Caller, digest
from .options import LOOPBACK, Options
from .rest import from_error, problem
from .state import State

_LABEL = r"[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?"
#: `name[:port]` or `[v6][:port]`, nothing before or after
_HOST = re.compile(rf"(?P<name>{_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:.]+\])(?::[0-9]{{1,5}})?")
_ORIGIN = re.compile(r"(https?)://([^/?#@\s]+)")
_ONCE = (b"host", b"origin", b"authorization")
#: a refusal sent before the body was read whole: the connection cannot be used again
_CLOSE = {"Connection": "close"}


def host_name(value: str) -> str | None:
    """The name in a Host value (a v6 address kept in brackets), or None unless it is exactly `name[:port]`."""
    m = _HOST.fullmatch(value.lower())
    return m["name"] if m and (not m["name"].startswith("[") or _is_v6(m["name"][1:-1])) else None


def _is_v6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def allowed(options: Options) -> tuple[frozenset[str], frozenset[str]]:
    """The Host names and browser Origins (scheme://name) a request may carry ("*": any). A bare v6 address
    (Kubernetes' `$(POD_IP)`) goes in brackets, as a Host header carries it."""
    named = [*options.allow_hosts, *([] if options.host in ("0.0.0.0", "::") else [options.host])]
    hosts = {h if h == "*" else f"[{h.lower()}]" if _is_v6(h) else host_name(h) or "" for h in map(str.strip, named)}
    origins = {f"{scheme}://{h}" for scheme in ("http", "https") for h in LOOPBACK}
    origins |= {o.strip().rstrip("/").lower() for o in options.allow_origins if o.strip()}
    return frozenset((hosts | LOOPBACK) - {""}), frozenset(origins)


def _too_large(limit: int) -> Response:
    return problem(413, "body_too_large", f"request body larger than {limit} bytes: send a smaller one", _CLOSE)


class Guard:
    """ASGI middleware; `surface`: the port's server (its callers counted on their own); `on_limited`: told of 429s."""

    def __init__(
        self, app: ASGIApp, *, options: Options, state: State, surface: str, on_limited: Callable[[], None]
    ) -> None:
        self.app, self.options, self.state, self.surface, self.on_limited = app, options, state, surface, on_limited
        self.hosts, self.origins = allowed(options)
        self.token = options.token.encode() if options.token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == HEALTH_PATH:
            return await self.app(scope, receive, send)
        caller = await self.check(scope)
        if isinstance(caller, Response):
            return await caller(scope, receive, send)
        scope[CALLER] = caller
        await watched(self.app, scope, receive, send, self.surface == "mcp", self.options)

    async def check(self, scope: Scope) -> Caller | Response:
        """The request's caller, or the refusal it earns: one Host, Origin and Authorization each (two parsers could
        disagree on which counts), naming this server; a valid credential; the rate; a body of allowed size."""
        o, found, repeated = self.options, {}, None
        size = len(scope.get("raw_path") or b"") + len(scope["query_string"])
        for name, value in scope["headers"]:
            size += len(name) + len(value) + 4
            if name in _ONCE or name == b"content-length":
                repeated = name if name in found and name in _ONCE else repeated
                found[name] = value
        host, origin = found.get(b"host"), found.get(b"origin")
        m = _ORIGIN.fullmatch(origin.decode("latin-1").lower()) if origin is not None else None
        named = f"{m[1]}://{host_name(m[2])}" if m else None
        if o.max_header and size > o.max_header:
            detail = f"request line and headers larger than {o.max_header} bytes: send smaller ones"
            return problem(431, "headers_too_large", detail)
        if repeated is not None:
            return problem(400, "bad_request", f"more than one {repeated.decode().title()} header: send exactly one")
        if "*" not in self.hosts and (host is None or host_name(host.decode("latin-1")) not in self.hosts):
            return problem(421, "bad_host", "Host header does not name this server: call it by an allowed name")
        if origin is not None and "*" not in self.origins and named not in self.origins:
            return problem(403, "bad_origin", "requests from this Origin are not allowed")
        authorization = found.get(b"authorization", b"")
        bearer = authorization[7:].strip() if authorization[:7].lower() == b"bearer " else b""
        text, valid = bearer.decode("latin-1"), False
        if bearer and self.token is not None:
            valid = hmac.compare_digest(bearer, self.token)
        elif bearer and o.passthrough:
            valid = await self.state.get("accepted", digest(text)) is not None
        who = f"c{digest(text)[:32]}" if valid else f"a{(scope.get('client') or ('',))[0]}"
        caller = Caller(f"{self.surface}/{who}", text if o.passthrough and text else None, valid)
        if (wait := await self.state.hit(caller.key)) > 0:
            self.on_limited()
            seconds = max(1, math.ceil(wait))
            detail = f"too many requests from this caller: wait {seconds}s and try again"
            return problem(429, "too_many_requests", detail, {"Retry-After": str(seconds)})
        if self.token is not None and not valid:
            return from_error(
                AuthenticationError("missing or wrong token: send `Authorization: Bearer <PRIME_BILLING_TOKEN>`")
            )
        if o.passthrough and not bearer:
            detail = "this server uses the caller's own key: send `Authorization: Bearer <your Prime API key>`"
            return from_error(AuthenticationError(detail))
        declared = found.get(b"content-length", b"")
        return _too_large(o.max_body) if declared.isdigit() and int(declared) > o.max_body else caller


class Refused(Exception):
    """The body broke a bound as the route read it (args: the answer), or its caller left (no args)."""


async def watched(app: ASGIApp, scope: Scope, receive: Receive, send: Send, reads_body: bool, o: Options) -> None:
    """Run the route with its body bounded as it reads it (`--max-body` bytes within `--client-timeout`), cancelled
    if its caller hangs up: once the body is read, the connection's next word is that, and a watcher waits for it."""
    task = asyncio.current_task()
    assert task is not None
    deadline, left = asyncio.get_running_loop().time() + o.client_timeout, asyncio.Event()
    size, watcher = 0, None

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        left.set()
        task.cancel()

    async def bounded() -> Message:
        nonlocal size, watcher
        if watcher is not None:  # the body is read: what comes next is the hang-up
            await left.wait()
            return {"type": "http.disconnect"}
        try:
            async with asyncio.timeout_at(deadline):
                message = await receive()
        except TimeoutError:
            detail = f"the request body did not arrive within {o.client_timeout:g}s: send it promptly"
            raise Refused(problem(408, "request_timeout", detail, _CLOSE)) from None
        if message["type"] == "http.disconnect":
            raise Refused()
        if (size := size + len(message.get("body", b""))) > o.max_body:
            raise Refused(_too_large(o.max_body))
        if not message.get("more_body", False):
            watcher = asyncio.ensure_future(watch())
        return message

    if not reads_body:
        watcher = asyncio.ensure_future(watch())
    try:
        await app(scope, bounded, send)
    except Refused as refusal:
        if refusal.args:
            await refusal.args[0](scope, receive, send)
    except asyncio.CancelledError:
        if not left.is_set():
            raise
        task.uncancel()
    finally:
        if watcher is not None:
            watcher.cancel()
