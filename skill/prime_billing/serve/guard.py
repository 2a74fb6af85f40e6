"""Who may call, and how much: checked the same on both ports, before any route runs or any body is read.

`Guard` runs four small parts in turn. `refused_head`: the head's size; a repeated Host, Origin or
Authorization (two parsers could disagree on which counts); Host and Origin naming this server, parsed
strictly (DNS rebinding: a browser page must not reach a loopback server holding a key). `identify`: the
caller is its credential once known good (the token, compared in constant time; a passthrough key the
upstream accepted), else its address, so made-up credentials buy no fresh allowance. `limited`: its rate.
`watched`: the body bounded as the route reads it (its only buffer), the route cancelled on a hang-up.
`/healthz` is exempt: it reveals and touches nothing, and probes call it by address.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import math
import re
from collections.abc import Callable, Collection

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import CALLER, HEALTH_PATH
from .gateway import Caller, digest
from .options import Options
from .rest import problem
from .state import State

_LABEL = r"[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?"
#: `name[:port]` or `[v6][:port]`, nothing before or after
_HOST = re.compile(rf"(?P<name>{_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:.]+\])(?::[0-9]{{1,5}})?")
_ORIGIN = re.compile(r"(?P<scheme>https?)://(?P<host>[^/?#@\s]+)")
LOOPBACK_HOSTS = frozenset(("127.0.0.1", "localhost", "[::1]"))
_ONCE = (b"host", b"origin", b"authorization")
_CLOSE = {"Connection": "close"}


def host_name(value: str) -> str | None:
    """The name in a Host value (a v6 address kept in brackets), or None unless it is exactly `name[:port]`."""
    m = _HOST.fullmatch(value.lower())
    if m is None or (m["name"].startswith("[") and not _is_v6(m["name"][1:-1])):
        return None
    return m["name"]


def _is_v6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def allowed(options: Options) -> tuple[frozenset[str], frozenset[str]]:
    """The Host names and browser Origins (scheme://name) a request may carry ("*": any). A bare v6
    address (Kubernetes' `$(POD_IP)`) goes in brackets, as a Host header carries it."""
    named = [*options.allow_hosts, *([] if options.host in ("0.0.0.0", "::") else [options.host])]
    hosts = {h if h == "*" else f"[{h.lower()}]" if _is_v6(h) else host_name(h) or "" for h in map(str.strip, named)}
    origins = {f"{scheme}://{h}" for scheme in ("http", "https") for h in LOOPBACK_HOSTS}
    origins |= {o.strip().rstrip("/").lower() for o in options.allow_origins if o.strip()}
    return frozenset((hosts | LOOPBACK_HOSTS) - {""}), frozenset(origins)


def refused_head(
    scope: Scope, max_header: int, hosts: Collection[str], origins: Collection[str]
) -> tuple[Response | None, dict[bytes, bytes]]:
    """The refusal a request head earns, if any, and the headers the other parts read."""
    size = len(scope.get("raw_path") or b"") + len(scope["query_string"])
    found: dict[bytes, bytes] = {}
    repeated = None
    for name, value in scope["headers"]:
        size += len(name) + len(value) + 4
        if name in _ONCE or name == b"content-length":
            repeated = name if name in found and name in _ONCE else repeated
            found[name] = value
    host, origin = found.get(b"host"), found.get(b"origin")
    m = _ORIGIN.fullmatch(origin.decode("latin-1").lower()) if origin is not None else None
    if max_header and size > max_header:
        detail = f"request line and headers larger than {max_header} bytes: send smaller ones"
        return problem(431, "headers_too_large", detail), found
    if repeated is not None:
        return problem(400, "bad_request", f"more than one {repeated.decode().title()} header: send exactly one"), found
    if "*" not in hosts and (host is None or host_name(host.decode("latin-1")) not in hosts):
        return problem(421, "bad_host", "Host header does not name this server: call it by an allowed name"), found
    if (
        origin is not None
        and "*" not in origins
        and (m is None or f"{m['scheme']}://{host_name(m['host'])}" not in origins)
    ):
        return problem(403, "bad_origin", "requests from this Origin are not allowed"), found
    return None, found


class Refused(Exception):
    """The body broke a bound while the route read it (the refusal to answer), or its caller left (none)."""


def _too_large(limit: int) -> Response:
    """413, the rest of the body unread: the connection cannot be used again (so for 408 too)."""
    return problem(413, "body_too_large", f"request body larger than {limit} bytes: send a smaller one", _CLOSE)


async def watched(app: ASGIApp, scope: Scope, receive: Receive, send: Send, reads_body: bool, options: Options) -> None:
    """Run the route with its body bounded (`--max-body` bytes within `--client-timeout`, counted as it
    reads them), and cancel it if its caller hangs up: once the body is read (at once for a route that
    reads none), the connection's next word is that the caller left, and a watcher waits for it."""
    task = asyncio.current_task()
    assert task is not None
    limit, timeout = options.max_body, options.client_timeout
    deadline, left = asyncio.get_running_loop().time() + timeout, asyncio.Event()
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
            detail = f"the request body did not arrive within {timeout:g}s: send it promptly"
            raise Refused(problem(408, "request_timeout", detail, _CLOSE)) from None
        if message["type"] == "http.disconnect":
            raise Refused()
        if (size := size + len(message.get("body", b""))) > limit:
            raise Refused(_too_large(limit))
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


class Guard:
    """ASGI middleware (`app.add_middleware(Guard, ...)`); `surface`: the port's server, whose callers
    are counted on their own; `on_limited`: told of each 429 it answers."""

    def __init__(
        self, app: ASGIApp, *, options: Options, state: State, surface: str, on_limited: Callable[[], None]
    ) -> None:
        self.app, self.options, self.state, self.surface, self.on_limited = app, options, state, surface, on_limited
        self.hosts, self.origins = allowed(options)
        self.token = options.token.encode() if options.token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == HEALTH_PATH:
            await self.app(scope, receive, send)
            return
        o = self.options
        refusal, found = refused_head(scope, o.max_header, self.hosts, self.origins)
        declared = found.get(b"content-length", b"")
        if refusal is None:
            bearer = _bearer(found.get(b"authorization"))
            caller = await self.identify(scope, bearer)
            refusal = await self.limited(caller) or self.unauthorized(caller, bearer)
        if refusal is None and declared.isdigit() and int(declared) > o.max_body:
            refusal = _too_large(o.max_body)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        scope[CALLER] = caller
        await watched(self.app, scope, receive, send, self.surface == "mcp", o)

    async def identify(self, scope: Scope, bearer: bytes | None) -> Caller:
        text = bearer.decode("latin-1") if bearer is not None else None
        valid = False
        if text is not None and self.token is not None:
            valid = hmac.compare_digest(bearer, self.token)  # type: ignore[arg-type]
        elif text is not None and self.options.passthrough:
            valid = await self.state.accepted(digest(text))
        credential = text if self.options.passthrough else None
        who = f"c{digest(text)[:32]}" if valid and text is not None else f"a{(scope.get('client') or ('',))[0]}"
        return Caller(f"{self.surface}/{who}", credential, valid)

    async def limited(self, caller: Caller) -> Response | None:
        wait = await self.state.hit(caller.key)
        if wait <= 0:
            return None
        self.on_limited()
        seconds = max(1, math.ceil(wait))
        detail = f"too many requests from this caller: wait {seconds}s and try again"
        return problem(429, "too_many_requests", detail, {"Retry-After": str(seconds)})

    def unauthorized(self, caller: Caller, bearer: bytes | None) -> Response | None:
        if self.token is not None and not caller.verified:
            detail = "missing or wrong token: send `Authorization: Bearer <PRIME_BILLING_TOKEN>`"
        elif self.options.passthrough and bearer is None:
            detail = "this server uses the caller's own key: send `Authorization: Bearer <your Prime API key>`"
        else:
            return None
        return problem(401, "unauthorized", detail, {"WWW-Authenticate": "Bearer"})


def _bearer(value: bytes | None) -> bytes | None:
    if not value or value[:7].lower() != b"bearer ":
        return None
    return value[7:].strip() or None
