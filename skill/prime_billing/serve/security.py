"""Who may call, and how much: checked before any route runs and before any body
is read, the same on both ports.

One pass over the request head finds what every check needs, once:
- Host and Origin must name this server (DNS-rebinding protection: a page in a
  browser must not reach a loopback server holding a key), parsed strictly;
  a repeated Host, Origin or Authorization is refused, since two parsers could
  disagree on which one counts.
- The credential: with a token, `Authorization: Bearer <token>` compared in
  constant time; in passthrough the caller's bearer is its own Prime key,
  handed to the route in the scope.
- The caller, for the rate limit: its credential once that is known to be
  valid (the token; in passthrough a key the upstream accepted), else its
  address, so rotating made-up credentials buys no fresh bucket.
Then the body, bounded in size and time. While the route works, a caller that
hangs up cancels it, so an upstream call nobody waits for is not finished.
`/healthz` is exempt from all of it: it reveals nothing and touches nothing,
and load balancers probe it by address.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import math
import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .limits import MAX_CALLERS, Limits
from .problems import problem
from .upstream import UpstreamUsage

CREDENTIAL = "prime_billing.credential"
#: scope key: the credential is known good (the token, or a passthrough key the upstream accepted before)
VERIFIED = "prime_billing.verified"
#: scope key: the request's `UpstreamUsage` (calls made, pacing, whether the key was accepted)
UPSTREAM_USAGE = "prime_billing.upstream_usage"
HEALTH_PATH = "/healthz"

_LABEL = r"[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?"
#: `name[:port]` or `[v6][:port]`, nothing before or after
_HOST = re.compile(rf"(?P<name>{_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:.]+\])(?::[0-9]{{1,5}})?")
_ORIGIN = re.compile(r"(?P<scheme>https?)://(?P<host>[^/?#@\s]+)")


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


@dataclass(frozen=True)
class Policy:
    #: a fixed token callers must present, or None
    token: str | None = field(default=None, repr=False)
    #: forward each caller's bearer as its Prime key
    passthrough: bool = False
    #: host names (no port) a request may address; "*" allows any
    hosts: frozenset[str] = frozenset(("127.0.0.1", "localhost", "[::1]"))
    #: origins (scheme://host, no port) a browser page may come from; "*" allows any
    origins: frozenset[str] = frozenset(
        f"{scheme}://{h}" for scheme in ("http", "https") for h in ("127.0.0.1", "localhost", "[::1]")
    )

    @classmethod
    def build(
        cls,
        *,
        bind_host: str,
        token: str | None,
        passthrough: bool,
        extra_hosts: Iterable[str] = (),
        extra_origins: Iterable[str] = (),
    ) -> Policy:
        hosts = set(cls.hosts) | {_allowed_host(h) for h in extra_hosts}
        if bind_host and bind_host not in ("0.0.0.0", "::"):
            hosts.add(_allowed_host(bind_host))
        origins = set(cls.origins) | {o.strip().rstrip("/").lower() for o in extra_origins if o.strip()}
        return cls(token or None, passthrough, frozenset(hosts - {""}), frozenset(origins))

    def host_ok(self, host: str | None) -> bool:
        if "*" in self.hosts:
            return True
        return host is not None and host_name(host) in self.hosts

    def origin_ok(self, origin: str | None) -> bool:
        if origin is None or "*" in self.origins:
            return True  # no Origin: not a browser's cross-site request
        m = _ORIGIN.fullmatch(origin.lower())
        name = host_name(m["host"]) if m else None
        return name is not None and f"{m['scheme']}://{name}" in self.origins  # type: ignore[index]


def _allowed_host(value: str) -> str:
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


class Guard:
    """ASGI middleware applying a Policy and the request Limits; refusals are problem+json."""

    def __init__(self, app: ASGIApp, policy: Policy, limits: Limits, *, host: str = "127.0.0.1") -> None:
        self.app = app
        self.policy = policy
        self.limits = limits
        self._token = policy.token.encode() if policy.token else None
        self._buckets = limits.buckets(host)
        #: passthrough keys the upstream accepted (hashed), which then count as callers of their own
        self._accepted: OrderedDict[bytes, None] = OrderedDict()
        #: requests refused by the per-caller rate (429) since start: a plain count, read at /metrics
        self.rate_limited = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == HEALTH_PATH:
            await self.app(scope, receive, send)
            return
        size = len(scope.get("raw_path") or b"") + len(scope["query_string"])
        found: dict[bytes, bytes] = {}
        repeated = body = None
        for name, value in scope["headers"]:
            size += len(name) + len(value) + 4
            if name in (b"host", b"origin", b"authorization"):
                if name in found:
                    repeated = name
                found[name] = value
            elif name == b"content-length" or name == b"transfer-encoding":
                body = value if name == b"content-length" else b"chunked"
        refusal = None
        if self.limits.max_header and size > self.limits.max_header:
            detail = f"request line and headers larger than {self.limits.max_header} bytes: send smaller ones"
            refusal = problem(431, "headers_too_large", detail)
        elif repeated is not None:
            name = repeated.decode().title()
            refusal = problem(400, "bad_request", f"more than one {name} header: send exactly one")
        elif not self.policy.host_ok(_text(found.get(b"host"))):
            refusal = problem(421, "bad_host", "Host header does not name this server: call it by an allowed name")
        elif not self.policy.origin_ok(_text(found.get(b"origin"))):
            refusal = problem(403, "bad_origin", "requests from this Origin are not allowed")
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        bearer = _bearer(found.get(b"authorization"))
        valid = self._valid(bearer)
        caller = b"c" + hashlib.sha256(bearer).digest()[:16] if valid and bearer else _address(scope)
        if self._buckets is not None and (wait := self._buckets.take(caller)) > 0:
            self.rate_limited += 1
            seconds = max(1, math.ceil(wait))
            detail = f"too many requests from this caller: wait {seconds}s and try again"
            await problem(429, "too_many_requests", detail, {"Retry-After": str(seconds)})(scope, receive, send)
            return
        if self._token is not None and not valid:
            detail = "missing or wrong token: send `Authorization: Bearer <PRIME_BILLING_TOKEN>`"
            refusal = problem(401, "unauthorized", detail, {"WWW-Authenticate": "Bearer"})
        elif self.policy.passthrough and not bearer:
            detail = "this server uses the caller's own key: send `Authorization: Bearer <your Prime API key>`"
            refusal = problem(401, "unauthorized", detail, {"WWW-Authenticate": "Bearer"})
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        if self.policy.passthrough and bearer:
            scope[CREDENTIAL] = bearer.decode("latin-1")
        scope[VERIFIED] = valid
        buckets = self._buckets
        scope[UPSTREAM_USAGE] = UpstreamUsage(pace=(lambda: buckets.take(caller)) if buckets is not None else None)
        await self._serve(scope, receive, send, body, bearer if self.policy.passthrough and not valid else None)

    def _valid(self, bearer: bytes | None) -> bool:
        if bearer is None:
            return False
        if self._token is not None:
            return hmac.compare_digest(bearer, self._token)
        return self.policy.passthrough and hashlib.sha256(bearer).digest() in self._accepted

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, body: bytes | None, unproven: bytes | None
    ) -> None:
        """Read the body (bounded), run the route, and cancel it if the caller hangs up meanwhile."""
        read = b""
        if body is not None and body.strip() != b"0":
            if body.isdigit() and int(body) > self.limits.max_body:
                await _refuse(scope, receive, send, 413, "body_too_large", self._too_large())
                return
            got = await self._read_body(receive)
            if got is None:
                return  # the caller went away
            if isinstance(got, int):
                detail = f"the request body did not arrive within {self.limits.client_timeout:g}s: send it promptly"
                args = (413, "body_too_large", self._too_large()) if got == 413 else (408, "request_timeout", detail)
                await _refuse(scope, receive, send, *args)
                return
            read = got
        task = asyncio.current_task()
        left = False

        async def watch() -> None:
            # with the request read, the connection's next word is that the caller left
            nonlocal left
            while (await receive())["type"] != "http.disconnect":
                pass
            left = True
            if task is not None:
                task.cancel()

        watcher = asyncio.ensure_future(watch()) if task is not None else None
        try:
            await self.app(scope, _replay(read, receive), send)
        except asyncio.CancelledError:
            if not left or task is None:
                raise
            task.uncancel()
        finally:
            if watcher is not None:
                watcher.cancel()
        if unproven is not None and scope[UPSTREAM_USAGE].accepted:
            self._accepted[hashlib.sha256(unproven).digest()] = None
            if len(self._accepted) > MAX_CALLERS:
                self._accepted.popitem(last=False)

    def _too_large(self) -> str:
        return f"request body larger than {self.limits.max_body} bytes: send a smaller one"

    async def _read_body(self, receive: Receive) -> bytes | int | None:
        """The whole body, or 413 / 408, or None if the caller disconnected."""
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.limits.client_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.limits.max_body:
                        return 413
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            return 408


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def _bearer(value: bytes | None) -> bytes | None:
    if not value or value[:7].lower() != b"bearer ":
        return None
    token = value[7:].strip()
    return token or None


def _address(scope: Scope) -> bytes:
    client = scope.get("client") or ("", 0)
    return b"a" + str(client[0]).encode()


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body read already, then whatever the connection says next (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, code: str, detail: str) -> None:
    # the rest of the body is not read, so the connection cannot be reused
    await problem(status, code, detail, {"Connection": "close"})(scope, receive, send)
