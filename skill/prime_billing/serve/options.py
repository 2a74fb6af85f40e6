"""The launcher's options, declared once: each field with its flag's help (`{}`: its default) and least value.

`command.py` makes `serve`'s flags from them; they are checked once, when made. Imported with every
`prime-billing` command: nothing of the server stack here.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from . import MCP_PORT, REST_PORT

LOOPBACK = frozenset(("127.0.0.1", "localhost", "[::1]"))
#: the per-caller rate off loopback when none is given
PUBLIC_RATE = 50.0
#: a budget to watch: USD (at least a cent) per calendar month, ISO week or UTC day
BUDGET = re.compile(r"(?P<usd>[0-9]+(?:\.[0-9]{1,2})?)/(?P<period>month|week|day)")


def _flag(default: Any, help: str, low: float | None = None, *, above: bool = False, **kw: Any) -> Any:
    """A field with its flag; `low`: its least value (`above`: it must be more); `kw`: more for argparse."""
    return field(default=default, repr=kw.pop("repr", True), metadata={"help": help, "low": low, "above": above, **kw})


@dataclass(frozen=True)
class Options:
    host: str = _flag("127.0.0.1", "address to bind (default {})")
    rest_port: int = _flag(REST_PORT, "REST port (default {}; 0: a free one)")
    mcp_port: int = _flag(MCP_PORT, "MCP port (default {}; 0: a free one)")
    only: str | None = _flag(None, "serve REST only or MCP only", choices=("rest", "mcp"))
    auth: str = _flag(
        "key",
        "key: spend the configured Prime key (default); passthrough: each caller's bearer is its own",
        choices=("key", "passthrough"),
    )
    #: callers must send `Authorization: Bearer <token>` (--token-file, PRIME_BILLING_TOKEN or --token)
    token: str | None = field(default=None, repr=False)
    cache_ttl: float = _flag(0.0, "reuse a success for S seconds (default 0: off)", 0)
    state_url: str | None = _flag(  # not shown: it may hold the store's password
        None,
        "share rate limits, the cache, accepted keys and wallet readings with the other replicas through this Redis "
        "(redis://, rediss:// or redis+cluster://; default: PRIME_BILLING_STATE_URL, else this process's memory)",
        metavar="URL",
        repr=False,
    )
    allow_hosts: tuple[str, ...] = _flag(
        (), "also accept this Host name (repeatable; '*': any)", flag="--allow-host", action="append", metavar="NAME"
    )
    allow_origins: tuple[str, ...] = _flag(
        (), "also accept this browser Origin (repeatable)", flag="--allow-origin", action="append", metavar="ORIGIN"
    )
    drain: float = _flag(30.0, "on SIGTERM, wait up to S seconds for requests in progress (default {:g})", 0)
    access_log: bool = _flag(True, "no JSON access log lines on stderr", flag="--no-access-log", action="store_false")
    max_upstream: int = _flag(
        64, "upstream requests at once, all callers together (default {}; 0: no limit)", 0, bounds=True
    )
    rate_limit: float | None = _flag(
        None,
        f"requests and upstream calls per second per caller, then 429 (default {PUBLIC_RATE:g} off loopback; 0: off)",
        0,
        bounds=True,
    )
    rate_burst: int | None = _flag(None, "burst above the rate (default 2x rate)", 1, bounds=True)
    max_body: int = _flag(256 * 1024, "largest request body, then 413 (default {})", 0, metavar="BYTES", bounds=True)
    max_header: int = _flag(16 * 1024, "largest request head, then 431 (default {})", 0, metavar="BYTES", bounds=True)
    client_timeout: float = _flag(
        10.0, "seconds to send the request body, then 408 (default {:g})", 0, above=True, bounds=True
    )
    max_report_rows: int = _flag(10_000, "wallet rows one report may read, then 422 (default {})", 1, bounds=True)
    watch_budgets: tuple[str, ...] = _flag(
        (),
        "export this budget's pace on /metrics as prime_budget_* gauges (repeatable: USD/month, USD/week, USD/day)",
        flag="--watch-budget",
        action="append",
        metavar="USD/PERIOD",
    )
    metrics_ttl: float = _flag(
        60.0, "seconds /metrics reuses its wallet reading, for all replicas (default {:g})", 0, above=True, bounds=True
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            value, low, above, choices = (getattr(self, f.name), *map(f.metadata.get, ("low", "above", "choices")))
            if value is not None and low is not None and not (value > low if above else value >= low):  # NaN too
                raise ConfigError(f"{flag_of(f.name)} must be {'>' if above else '>='} {low:g}")
            if value is not None and choices and value not in choices:
                raise ConfigError(f"{flag_of(f.name)} {value!r}: use {' or '.join(choices)}")
        periods: set[str] = set()
        for text in self.watch_budgets:
            if not (m := BUDGET.fullmatch(text)) or float(m["usd"]) < 0.01 or m["period"] in periods:
                raise ConfigError(
                    f"--watch-budget {text!r}: give USD/month, USD/week or USD/day (e.g. 300/month), one per period"
                )
            periods.add(m["period"])
        if self.state_url is not None and urlsplit(self.state_url).scheme not in ("redis", "rediss", "redis+cluster"):
            raise ConfigError("--state-url must be a redis://, rediss:// or redis+cluster:// URL: fix it")
        if self.passthrough and self.token:
            raise ConfigError(
                "--auth passthrough and a token exclude each other: in passthrough the bearer is the caller's own "
                "Prime key; unset PRIME_BILLING_TOKEN or drop --auth passthrough"
            )
        if not is_loopback(self.host) and not self.token and not self.passthrough:
            raise ConfigError(
                f"refusing to listen on {self.host} without a token: anyone who reaches the port would spend the "
                "Prime key; set PRIME_BILLING_TOKEN (or --token-file), or use --auth passthrough"
            )

    @property
    def passthrough(self) -> bool:
        return self.auth == "passthrough"

    @property
    def rate(self) -> float:
        """Requests per second per caller (0: off); off by default on loopback, whose callers are this machine's."""
        if self.rate_limit is not None:
            return self.rate_limit
        return 0.0 if is_loopback(self.host) else PUBLIC_RATE

    @property
    def budgets(self) -> dict[str, float]:
        return {m["period"]: float(m["usd"]) for m in map(BUDGET.fullmatch, self.watch_budgets) if m}


def flag_of(name: str) -> str:
    return str(next(f for f in fields(Options) if f.name == name).metadata.get("flag", "--" + name.replace("_", "-")))


def is_loopback(host: str) -> bool:
    try:
        return host in LOOPBACK or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
