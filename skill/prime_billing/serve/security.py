"""Who may call, checked before any route runs, the same on both ports.

- Host and Origin must name this server (DNS-rebinding protection): a page in
  a browser must not reach a loopback server holding a key.
- With a token, every request carries `Authorization: Bearer <token>`,
  compared in constant time.
- In passthrough mode the server holds no key: the caller's bearer token is
  its own Prime key, handed on to the route in the ASGI scope.
`/healthz` is exempt from all three: it reveals nothing and touches nothing,
and load balancers probe it by address.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Receive, Scope, Send

from .problems import problem

CREDENTIAL = "prime_billing.credential"
HEALTH_PATH = "/healthz"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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
        hosts = set(cls.hosts) | {_strip_port(h.strip().lower()) for h in extra_hosts if h.strip()}
        if bind_host and bind_host not in ("0.0.0.0", "::"):
            hosts.add(f"[{bind_host}]" if ":" in bind_host else bind_host.lower())
        origins = set(cls.origins) | {o.strip().rstrip("/").lower() for o in extra_origins if o.strip()}
        return cls(token or None, passthrough, frozenset(hosts), frozenset(origins))

    def host_ok(self, host: str | None) -> bool:
        if "*" in self.hosts:
            return True
        if not host:
            return False
        return _strip_port(host.lower()) in self.hosts

    def origin_ok(self, origin: str | None) -> bool:
        if not origin or "*" in self.origins:
            return True  # no Origin: not a browser cross-site request
        scheme, sep, rest = origin.lower().partition("://")
        return bool(sep) and f"{scheme}://{_strip_port(rest)}" in self.origins


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """ASGI middleware applying a Policy; refusals are problem+json."""

    def __init__(self, app: ASGIApp, policy: Policy) -> None:
        self.app = app
        self.policy = policy
        self._token = policy.token.encode() if policy.token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == HEALTH_PATH:
            await self.app(scope, receive, send)
            return
        host = origin = auth = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"authorization":
                auth = value
        refusal = None
        if not self.policy.host_ok(host):
            refusal = problem(421, "bad_host", "Host header does not name this server: call it by an allowed name")
        elif not self.policy.origin_ok(origin):
            refusal = problem(403, "bad_origin", "requests from this Origin are not allowed")
        else:
            bearer = _bearer(auth)
            if self._token is not None:
                if bearer is None or not hmac.compare_digest(bearer, self._token):
                    refusal = problem(
                        401,
                        "unauthorized",
                        "missing or wrong token: send `Authorization: Bearer <PRIME_BILLING_TOKEN>`",
                        {"WWW-Authenticate": "Bearer"},
                    )
            elif self.policy.passthrough:
                if not bearer:
                    refusal = problem(
                        401,
                        "unauthorized",
                        "this server uses the caller's own key: send `Authorization: Bearer <your Prime API key>`",
                        {"WWW-Authenticate": "Bearer"},
                    )
                else:
                    scope[CREDENTIAL] = bearer.decode("latin-1")
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _bearer(value: bytes | None) -> bytes | None:
    if not value or value[:7].lower() != b"bearer ":
        return None
    token = value[7:].strip()
    return token or None
