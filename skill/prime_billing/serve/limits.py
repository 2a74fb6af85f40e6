"""Resource bounds for the launcher: what one caller, or all of them, can make it hold.

- Upstream concurrency: at most `max_upstream` requests to Prime at once, across
  every caller (the key's quota is shared by everyone this server serves).
- Per-caller rate: a token bucket per caller on each port; every upstream call
  a request causes is counted, not only the request. Beyond it, 429 with
  `Retry-After`. Off by default on loopback, where callers are this machine's own programs.
- Request size: line plus headers (431 beyond `max_header`) and body (413 beyond `max_body`).
- Slow bodies: a body that takes longer than `client_timeout` is answered 408.
- Reports: at most `max_report_rows` wallet rows read for one request.

What uvicorn cannot bound through its public options (a request head that
trickles in, a head too large to buffer) is the ingress's job: reference/serve.md
says which limit lives where. This module is imported with every `prime-billing`
command, so it imports nothing of the server stack.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple

from ..errors import ConfigError

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
#: callers remembered by the rate limiter; the least recently seen are forgotten first
MAX_CALLERS = 10_000
#: the per-caller rate used off loopback when none is given
DEFAULT_PUBLIC_RATE = 50.0


@dataclass(frozen=True)
class Limits:
    #: upstream requests in progress at once, across all callers (0: unbounded)
    max_upstream: int = 64
    #: requests per second per caller (0: off; None: off on loopback, DEFAULT_PUBLIC_RATE elsewhere)
    rate: float | None = None
    #: requests a caller may make at once above the rate (default: twice the rate)
    burst: int | None = None
    #: largest request body, bytes
    max_body: int = 256 * 1024
    #: largest request line plus headers, bytes
    max_header: int = 16 * 1024
    #: seconds a client has to send its request body
    client_timeout: float = 10.0
    #: wallet rows one report request may read (a 10,000-row wallet fits)
    max_report_rows: int = 10_000
    #: seconds a /metrics wallet reading is reused: scrapes cost at most one upstream read per TTL
    metrics_ttl: float = 60.0

    def check(self) -> None:
        for name in ("max_upstream", "max_body", "max_header"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0")
        if self.rate is not None and self.rate < 0:
            raise ConfigError("--rate-limit must be >= 0 requests per second (0: off)")
        if self.burst is not None and self.burst < 1:
            raise ConfigError("--rate-burst must be >= 1")
        if self.client_timeout <= 0:
            raise ConfigError("--client-timeout must be > 0 seconds")
        if self.max_report_rows < 1:
            raise ConfigError("--max-report-rows must be >= 1")
        if not self.metrics_ttl > 0:  # NaN too
            raise ConfigError("--metrics-ttl must be > 0 seconds")

    def rate_for(self, host: str) -> float:
        if self.rate is not None:
            return self.rate
        return 0.0 if is_loopback(host) else DEFAULT_PUBLIC_RATE

    def buckets(self, host: str) -> Buckets | None:
        rate = self.rate_for(host)
        if rate <= 0:
            return None
        return Buckets(rate, self.burst if self.burst is not None else max(1, math.ceil(2 * rate)))


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Buckets:
    """Token buckets keyed by caller, bounded in number."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._state: OrderedDict[bytes, tuple[float, float]] = OrderedDict()

    def take(self, caller: bytes) -> float:
        """0 when the caller may go on (a token is spent); otherwise the seconds until it may."""
        now = time.monotonic()
        tokens, last = self._state.pop(caller, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._state[caller] = (tokens, now)
        if len(self._state) > MAX_CALLERS:
            self._state.popitem(last=False)
        return wait


class Flag(NamedTuple):
    """A bound's command-line flag: the `Limits` field it sets, and its help (`{}`: the default)."""

    field: str
    flag: str
    type: type
    metavar: str
    help: str


#: the flags of `serve`'s "resource bounds" group, in their order there
FLAGS = (
    Flag(
        "max_upstream", "--max-upstream", int, "N",
        "upstream requests in progress at once, all callers together (default {}; 0: unbounded)",
    ),
    Flag(
        "rate", "--rate-limit", float, "R",
        "requests (and upstream calls) per second per caller, then 429 (default: off on loopback, "
        f"{DEFAULT_PUBLIC_RATE:g} elsewhere; 0: off)",
    ),
    Flag("burst", "--rate-burst", int, "N", "burst above the rate (default 2x rate)"),
    Flag("max_body", "--max-body", int, "BYTES", "largest request body, then 413 (default {})"),
    Flag("max_header", "--max-header", int, "BYTES", "largest request line plus headers, then 431 (default {})"),
    Flag(
        "client_timeout", "--client-timeout", float, "S",
        "seconds a client has to send its request body, then 408 (default {:g})",
    ),
    Flag(
        "max_report_rows", "--max-report-rows", int, "N",
        "wallet rows one report request may read, then 422 (default {})",
    ),
    Flag(
        "metrics_ttl", "--metrics-ttl", float, "S",
        "seconds /metrics reuses its wallet reading, so scrapes cost at most one upstream read per S (default {:g})",
    ),
)  # fmt: skip


def add_arguments(p: argparse.ArgumentParser) -> None:
    defaults = Limits()
    g = p.add_argument_group("resource bounds")
    for f in FLAGS:
        default = getattr(defaults, f.field)
        g.add_argument(
            f.flag, dest=f.field, type=f.type, default=default, metavar=f.metavar, help=f.help.format(default)
        )


def from_args(ns: argparse.Namespace) -> Limits:
    limits = Limits(**{f.field: getattr(ns, f.field) for f in FLAGS})
    limits.check()
    return limits
