"""The launcher's options: one frozen declaration, checked once, when made.

Each field carries its flag's help ({} is its default) and bound; `command.py` makes `serve`'s
flags from them. Imported with every `prime-billing` command: nothing of the server stack here.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from . import MCP_PORT, REST_PORT

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
#: the per-caller rate used off loopback when none is given
DEFAULT_PUBLIC_RATE = 50.0
BOUNDS = "resource bounds"


def _flag(default: Any, help: str, low: float | None = None, strict: bool = False, unit: str = "", **kw: Any) -> Any:
    """A field and its flag: the bound checked (`low`; `strict`: above it) and what else argparse takes."""
    return field(default=default, metadata={"help": help, "low": low, "strict": strict, "unit": unit, **kw})


# fmt: off
@dataclass(frozen=True)
class Options:
    host: str = _flag("127.0.0.1", "address to bind (default {})")
    rest_port: int = _flag(REST_PORT, "REST port (default {}; 0: a free one)", metavar="N")
    mcp_port: int = _flag(MCP_PORT, "MCP port (default {}; 0: a free one)", metavar="N")
    only: str | None = _flag(None, "serve REST only or MCP only", choices=("rest", "mcp"))
    auth: str = _flag("key", "key: use the configured Prime key (default); passthrough: each caller's bearer is "
                      "its own Prime key", choices=("key", "passthrough"))
    #: callers send `Authorization: Bearer <token>` (--token-file, PRIME_BILLING_TOKEN or --token)
    token: str | None = field(default=None, repr=False)
    cache_ttl: float = _flag(0.0, "reuse a success for S seconds (default 0: off)", 0, unit=" seconds", metavar="S")
    # repr=False: the URL may hold the store's password
    state_url: str | None = field(default=None, repr=False, metadata={"metavar": "URL", "help": (
        "share rate limits, the --cache-ttl cache, accepted keys and the wallet reading with the other replicas "
        "through this Redis (redis://, rediss:// or redis+cluster://; default: PRIME_BILLING_STATE_URL, else "
        "this process's memory)")})
    allow_hosts: tuple[str, ...] = _flag((), "also accept this Host name (repeatable; '*' any; default: loopback "
                                         "names and --host)", flag="--allow-host", action="append", metavar="NAME")
    allow_origins: tuple[str, ...] = _flag((), "also accept this browser Origin", flag="--allow-origin",
                                           action="append", metavar="ORIGIN")
    drain: float = _flag(30.0, "on SIGTERM, wait up to S seconds for requests in progress (default {:g})", 0,
                         metavar="S")
    access_log: bool = _flag(True, "no JSON access log lines on stderr", flag="--no-access-log", action="store_false")
    max_upstream: int = _flag(64, "upstream requests in progress at once, all callers together (default {}; 0: "
                              "unbounded)", 0, metavar="N", group=BOUNDS)
    rate_limit: float | None = _flag(None, "requests (and upstream calls) per second per caller, then 429 "
                                     f"(default: off on loopback, {DEFAULT_PUBLIC_RATE:g} elsewhere; 0: off)", 0,
                                     unit=" requests per second (0: off)", metavar="R", group=BOUNDS)
    rate_burst: int | None = _flag(None, "burst above the rate (default 2x rate)", 1, metavar="N", group=BOUNDS)
    max_body: int = _flag(256 * 1024, "largest request body, then 413 (default {})", 0, metavar="BYTES",
                          group=BOUNDS)
    max_header: int = _flag(16 * 1024, "largest request line plus headers, then 431 (default {})", 0,
                            metavar="BYTES", group=BOUNDS)
    client_timeout: float = _flag(10.0, "seconds a client has to send its request body, then 408 (default {:g})",
                                  0, True, " seconds", metavar="S", group=BOUNDS)
    max_report_rows: int = _flag(10_000, "wallet rows one report request may read, then 422 (default {})", 1,
                                 metavar="N", group=BOUNDS)
    metrics_ttl: float = _flag(60.0, "seconds /metrics reuses its wallet reading, so scrapes cost at most one "
                               "upstream read per S, all replicas together (default {:g})", 0, True, " seconds",
                               metavar="S", group=BOUNDS)
    # fmt: on

    def __post_init__(self) -> None:
        for f in fields(self):
            value, low, choices = getattr(self, f.name), f.metadata.get("low"), f.metadata.get("choices")
            strict = f.metadata.get("strict")
            if value is not None and low is not None and not (value > low if strict else value >= low):  # NaN too
                raise ConfigError(f"{flag_of(f.name)} must be {'>' if strict else '>='} {low:g}{f.metadata['unit']}")
            if value is not None and choices and value not in choices:
                raise ConfigError(f"{flag_of(f.name)} {value!r}: use {' or '.join(choices)}")
        if self.state_url is not None and urlsplit(self.state_url).scheme not in ("redis", "rediss", "redis+cluster"):
            raise ConfigError("--state-url must be a redis://, rediss:// or redis+cluster:// URL: fix it")
        if self.passthrough and self.token:
            raise ConfigError(
                "--auth passthrough and a token exclude each other: in passthrough the bearer is the caller's "
                "own Prime key; unset PRIME_BILLING_TOKEN or drop --auth passthrough"
            )
        if not is_loopback(self.host) and not self.token and not self.passthrough:
            raise ConfigError(
                f"refusing to listen on {self.host} without a token: anyone who reaches the port would spend "
                "the Prime key; set PRIME_BILLING_TOKEN (or --token-file), or use --auth passthrough"
            )

    @property
    def passthrough(self) -> bool:
        return self.auth == "passthrough"

    @property
    def rate(self) -> float:
        """Requests per second per caller (0: off); off by default on loopback, where callers are this
        machine's own programs."""
        if self.rate_limit is not None:
            return self.rate_limit
        return 0.0 if is_loopback(self.host) else DEFAULT_PUBLIC_RATE

    @property
    def burst(self) -> int:
        return self.rate_burst if self.rate_burst is not None else max(1, math.ceil(2 * self.rate))


def flag_of(name: str) -> str:
    """A field's flag: its own, or its name in flag form."""
    return str(next(f for f in fields(Options) if f.name == name).metadata.get("flag", "--" + name.replace("_", "-")))


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
