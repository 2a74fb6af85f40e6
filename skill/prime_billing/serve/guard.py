"""Who may call, and how much: checked before any route runs and before any body is read, the
same on both ports, by four small parts that `Guard` runs in turn:

- `refused_head`: one pass over the request head finds what every check needs. Its size; a
  repeated Host, Origin or Authorization (two parsers could disagree on which one counts); Host
  and Origin naming this server (DNS-rebinding protection: a page in a browser must not reach a
  loopback server holding a key), parsed strictly.
- `Guard.identify`: the credential and the caller. With a token, the bearer compared in constant
  time; in passthrough the bearer is the caller's own Prime key. The caller, for the rate limit, is
  its credential once that is known good (the token; a passthrough key the upstream accepted, kept
  in the state store as a hash), else its address, so made-up credentials buy no fresh allowance.
- `Guard.limited`: the caller's rate, through the state store's limiter: 429 with Retry-After.
- `watched`: the body bounded in size and time as the route reads it (the route's own reader is the
  only buffer), then, while the route works, a hang-up cancels it, so an upstream call nobody
  waits for is not finished.
`/healthz` is exempt from all of it: it reveals nothing and touches nothing, and load balancers
probe it by address.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import math
import re
from collections.abc import Callable, Iterable

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


def host_name(value: str) -> str | None:
    """The name in a Host value (a v6 address kept in brackets), or None unless it is exactly `name[:port]`."""
    m = _HOST.fullmatch(value.lower())
    if m is None:
        return None
    name = m["name"]
    if name.startswith("["):
        try:
            ipaddress.IPv6Address(name[1:-1])
        except ValueError:
            return None
    return name


def allowed_host(value: str) -> str:
    """An allowed Host entry as the check compares it: `*`, a name, or a v6 address (given bare, as
    Kubernetes' `$(POD_IP)` is, it goes in brackets, as a Host header carries it); "" if none."""
    value = value.strip()
    if value == "*":
        return value
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return host_name(value) or ""
    return f"[{value.lower()}]"


def allowed(options: Options) -> tuple[frozenset[str], frozenset[str]]:
    """The Host names (no port) and browser Origins (scheme://host, no port) a request may carry; "*": any."""
    hosts = set(LOOPBACK_HOSTS) | {allowed_host(h) for h in options.allow_hosts}
    if options.host not in ("0.0.0.0", "::"):
        hosts.add(allowed_host(options.host))
    origins = {f"{scheme}://{h}" for scheme in ("http", "https") for h in LOOPBACK_HOSTS}
    origins |= {o.strip().rstrip("/").lower() for o in options.allow_origins if o.strip()}
    return frozenset(hosts - {""}), frozenset(origins)


def refused_head(
    scope: Scope, max_header: int, hosts: Iterable[str], origins: Iterable[str]
) -> tuple[Response | None, dict[bytes, bytes]]:
    """The refusal a request head earns, if any, and the headers the other checks read."""
    size = len(scope.get("raw_path") or b"") + len(scope["query_string"])
    found: dict[bytes, bytes] = {}
    repeated = None
    for name, value in scope["headers"]:
        size += len(name) + len(value) + 4
        if name in (b"host", b"origin", b"authorization", b"content-length", b"transfer-encoding"):
            if name in found and name in (b"host", b"origin", b"authorization"):
                repeated = name
            found[name] = value
    if max_header and size > max_header:
        detail = f"request line and headers larger than {max_header} bytes: send smaller ones"
        return problem(431, "headers_too_large", detail), found
    if repeated is not None:
        return problem(400, "bad_request", f"more than one {repeated.decode().title()} header: send exactly one"), found
    host, origin = found.get(b"host"), found.get(b"origin")
    if "*" not in hosts and (host is None or host_name(host.decode("latin-1")) not in hosts):
        return problem(421, "bad_host", "Host header does not name this server: call it by an allowed name"), found
    if origin is not None and "*" not in origins:
        m = _ORIGIN.fullmatch(origin.decode("latin-1").lower())
        name = host_name(m["host"]) if m else None
        if m is None or name is None or f"{m['scheme']}://{name}" not in origins:
            return problem(403, "bad_origin", "requests from this Origin are not allowed"), found
    return None, found


class Refused(Exception):
    """The body broke a bound while the route read it (or, with no status, its caller left)."""

    def __init__(self, status: int | None = None, code: str = "", detail: str = "") -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


async def watched(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, *, reads_body: bool, max_body: int, timeout: float
) -> None:
    """Run the route with its body bounded (`max_body` bytes within `timeout` seconds, counted as it
    reads them) and cancel it if its caller hangs up. Once the body is read (at once for a route
    that reads none), the connection's next word is that the caller left: a watcher waits for it."""
    task = asyncio.current_task()
    assert task is not None
    deadline = asyncio.get_running_loop().time() + timeout
    left = asyncio.Event()
    size = 0
    watcher: asyncio.Future[None] | None = None

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
            raise Refused(408, "request_timeout", f"the request body did not arrive within {timeout:g}s: "
                          "send it promptly") from None  # fmt: skip
        if message["type"] == "http.disconnect":
            raise Refused()
        size += len(message.get("body", b""))
        if size > max_body:
            raise Refused(413, "body_too_large", f"request body larger than {max_body} bytes: send a smaller one")
        if not message.get("more_body", False):
            watcher = asyncio.ensure_future(watch())
        return message

    if not reads_body:
        watcher = asyncio.ensure_future(watch())
    try:
        await app(scope, bounded, send)
    except Refused as refusal:
        if refusal.status is not None:  # the rest of the body is unread: the connection cannot be reused
            await problem(refusal.status, refusal.code, refusal.detail, {"Connection": "close"})(scope, receive, send)
    except asyncio.CancelledError:
        if not left.is_set():
            raise
        task.uncancel()
    finally:
        if watcher is not None:
            watcher.cancel()


class Guard:
    """ASGI middleware (`Middleware(Guard, ...)`) that applies the four parts in turn."""

    def __init__(
        self, app: ASGIApp, *, options: Options, state: State, surface: str, on_limited: Callable[[], None]
    ) -> None:
        """`surface`: the port's server ("rest", "mcp"); each counts its callers' requests on its own."""
        self.app, self.options, self.state = app, options, state
        self.surface, self.reads_body, self.on_limited = surface, surface == "mcp", on_limited
        self.hosts, self.origins = allowed(options)
        self.token = options.token.encode() if options.token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == HEALTH_PATH:
            await self.app(scope, receive, send)
            return
        o = self.options
        refusal, found = refused_head(scope, o.max_header, self.hosts, self.origins)
        if refusal is None:
            bearer = _bearer(found.get(b"authorization"))
            caller = await self.identify(scope, bearer)
            refusal = await self.limited(caller) or self.unauthorized(caller, bearer)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        declared = found.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > o.max_body:
            detail = f"request body larger than {o.max_body} bytes: send a smaller one"
            await problem(413, "body_too_large", detail, {"Connection": "close"})(scope, receive, send)
            return
        scope[CALLER] = caller
        await watched(self.app, scope, receive, send, reads_body=self.reads_body, max_body=o.max_body,
                      timeout=o.client_timeout)  # fmt: skip

    async def identify(self, scope: Scope, bearer: bytes | None) -> Caller:
        valid = False
        if bearer is not None and self.token is not None:
            valid = hmac.compare_digest(bearer, self.token)
        elif bearer is not None and self.options.passthrough:
            valid = await self.state.accepted(digest(bearer.decode("latin-1")))
        credential = bearer.decode("latin-1") if bearer is not None and self.options.passthrough else None
        if valid and bearer is not None:
            return Caller(f"{self.surface}/c{digest(bearer.decode('latin-1'))[:32]}", credential, True)
        return Caller(f"{self.surface}/a{(scope.get('client') or ('',))[0]}", credential, False)

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
