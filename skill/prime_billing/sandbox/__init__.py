"""A stand-in for Prime's two billing endpoints, answering from demo data (`data`).

`Sandbox.dispatch` answers one request; `Sandbox.handle` is the same as an httpx
transport handler, which is how `--sandbox` reaches it: in process, no socket,
nothing but the demo data. Nothing uses it unless asked (`--sandbox`, or a base
URL pointing at a sandbox server), and every answer says it is sandbox data: an
`x-prime-sandbox: 1` header and `"sandbox": true` in the body.

Each sandbox has its own "now", fixed when it is made: the wallets' rows are
dated back from it, so every answer one sandbox gives (every surface it serves)
agrees on the dates. By default it is the current time floored to the hour;
`PRIME_BILLING_SANDBOX_NOW` (or the `now` argument) pins it, which reproduces a
demo exactly. Its RUNNING run advances as it is polled (`progress`), and the
run's wallet rows with it, so a watch of it ends and it always reconciles.

Test support lives beside it, and only tests, benchmarks, `prime-billing sandbox`
and `serve --sandbox` import it: `faults.FaultySandbox` (queued faults, a failure
rate, latency, data that changes as it is read, a gate that holds requests) and
`server` (the same on a real socket). The client imports this module only.
"""

from __future__ import annotations

import copy
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..config import SANDBOX_API_KEY
from ..dates import utc
from ..errors import ConfigError
from .data import DEMO_PROGRESS, FORBIDDEN_RUNS, PERSONAL_WALLET, RUNS, TEAM_ID, stamp, wallets

if TYPE_CHECKING:
    import httpx

__all__ = ["API", "FORBIDDEN_RUNS", "NOW_ENV", "RUNS", "TEAM_ID", "Reply", "Sandbox", "json_reply", "marked"]

API = "/api/v1"
#: the environment variable that pins a sandbox's "now" (an ISO 8601 date-time, UTC if naive)
NOW_ENV = "PRIME_BILLING_SANDBOX_NOW"


@dataclass
class Reply:
    """One answer: status, headers and body."""

    status: int
    headers: dict[str, str]
    body: bytes


def marked(content_type: str) -> dict[str, str]:
    """The headers of every sandbox answer: its content type, and the mark that it is sandbox data."""
    return {"content-type": content_type, "x-prime-sandbox": "1"}


def json_reply(status: int, data: Any) -> Reply:
    return Reply(status, marked("application/json"), json.dumps(data).encode())


def default_now() -> datetime:
    """A sandbox's "now" when none is given: `NOW_ENV` if set, else the current time floored to the hour."""
    pinned = os.environ.get(NOW_ENV, "").strip()
    if not pinned:
        return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    try:
        return utc(datetime.fromisoformat(pinned))
    except ValueError:
        raise ConfigError(
            f"{NOW_ENV}={pinned[:40]!r} is not a date-time like 2026-11-20T10:00:00Z: fix or unset it"
        ) from None


def demo_progress() -> dict[str, dict[str, Any]]:
    return copy.deepcopy(DEMO_PROGRESS)


@dataclass
class Sandbox:
    """The two endpoints over the demo data, checked as the upstream checks them.

    Two public hooks let a subclass change the data as it is read (`faults.FaultySandbox`
    does): `usage_body` and `wallet_page`."""

    #: the one key it accepts
    api_key: str = SANDBOX_API_KEY
    #: the sandbox's "now": the newest row of each wallet is created at it (to the second), the
    #: others at fixed steps before it (see `default_now` when left out)
    now: datetime = field(default_factory=default_now)
    #: run id -> how it advances: `steps` usage requests after the first each add `tokens_per_step`
    #: training tokens and `usd_per_step` to it (and a wallet row of that amount), then its status
    #: is `final`; "seen" counts the requests answered. By default the RUNNING demo run advances
    #: (`data.DEMO_PROGRESS`); an empty mapping keeps every run as it is.
    progress: dict[str, dict[str, Any]] = field(default_factory=demo_progress)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.now = utc(self.now)
        #: the wallets as they stand before any run advances (the rows of the steps join them as they come)
        self.wallets = wallets(self.now)

    def dispatch(self, method: str, target: str, headers: Mapping[str, str], body: bytes = b"") -> Reply:
        """Answer one request, given its method, raw target (path?query) and headers."""
        parts = urlsplit(target)
        path = parts.path
        if not path.startswith(API + "/billing/"):
            return json_reply(404, {"detail": "Not Found"})
        if method != "GET":
            return json_reply(405, {"detail": "Method Not Allowed"})
        auth = _header(headers, "authorization")
        if not auth or not auth.lower().startswith("bearer "):
            return json_reply(401, {"detail": "Not authenticated"})
        if auth[7:].strip() != self.api_key:
            return json_reply(401, {"detail": "Invalid API key"})
        rest = path[len(API) :]
        if rest == "/billing/wallet":
            return self._wallet(parse_qs(parts.query, keep_blank_values=True))
        segments = rest.split("/")
        # /billing/runs/{run_id}/usage: exactly one segment for the id
        if len(segments) == 5 and segments[2] == "runs" and segments[4] == "usage":
            return self._usage(unquote(segments[3]))
        return json_reply(404, {"detail": "Not Found"})

    def handle(self, request: httpx.Request) -> httpx.Response:
        """httpx.MockTransport handler: the sandbox without a socket."""
        import httpx

        reply = self.dispatch(request.method, request.url.raw_path.decode("ascii"), request.headers, request.content)
        return httpx.Response(reply.status, headers=reply.headers, content=reply.body)

    # ------------------------------------------------------------ hooks
    def usage_body(self, run: dict[str, Any]) -> dict[str, Any]:
        """The usage body a request for a known run gets: the demo run, advanced if it does (`progress`)."""
        spec = self.progress.get(run["run_id"])
        return run if spec is None else self._advance(run, spec)

    def wallet_page(self, wallet: Mapping[str, Any], offset: int, limit: int) -> tuple[int, list[dict[str, Any]]]:
        """How many rows the wallet holds, and the rows one request for `offset`, `limit` gets."""
        rows = wallet["rows"]
        return len(rows), rows[offset : offset + limit]

    # ------------------------------------------------------------ endpoints
    def _usage(self, run_id: str) -> Reply:
        if run_id in FORBIDDEN_RUNS:
            return json_reply(403, {"detail": "Not authorized to access this run"})
        run = RUNS.get(run_id)
        if run is None:
            return json_reply(404, {"detail": f"Run {run_id} not found"})
        return json_reply(200, {**self.usage_body(run), "sandbox": True})

    def _wallet(self, query: dict[str, list[str]]) -> Reply:
        errors = []
        values: dict[str, int] = {}
        for name, default, lo, hi in (("limit", 20, 1, 100), ("offset", 0, 0, None)):
            raw = query.get(name, [str(default)])[-1]
            try:
                value = int(raw)
            except ValueError:
                errors.append(
                    _loc_error(
                        name, "Input should be a valid integer, unable to parse string as an integer", "int_parsing"
                    )
                )
                continue
            if value < lo:
                errors.append(_loc_error(name, f"Input should be greater than or equal to {lo}", "greater_than_equal"))
            elif hi is not None and value > hi:
                errors.append(_loc_error(name, f"Input should be less than or equal to {hi}", "less_than_equal"))
            values[name] = value
        if errors:
            return json_reply(422, {"detail": errors})
        team = query.get("teamId", [None])[-1] or None
        if team is not None and team not in self.wallets:
            return json_reply(403, {"detail": "Not a member of this team"})
        wallet = self._charged(team)
        total, page = self.wallet_page(wallet, values["offset"], values["limit"])
        body = {k: v for k, v in wallet.items() if k != "rows"}
        body["total_billings"] = total
        body["recent_billings"] = page
        body["sandbox"] = True
        return json_reply(200, body)

    # ------------------------------------------------------------ runs that advance
    def _advance(self, run: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        """The run as of its next step: more training, more cost, `final` once the steps are done."""
        with self._lock:
            seen = spec.get("seen", 0)
            spec["seen"] = seen + 1
        steps = int(spec.get("steps", 3))
        k = min(seen, steps)
        tokens, usd = int(spec.get("tokens_per_step", 500_000)), float(spec.get("usd_per_step", 1.25))
        training = dict(run["training"])
        training["tokens"] += k * tokens
        training["cost_usd"] = round(training["cost_usd"] + k * usd, 2)
        return {
            **run,
            "status": spec.get("final", "COMPLETED") if seen >= steps else run["status"],
            "training": training,
            "total_tokens": run["total_tokens"] + k * tokens,
            "total_cost_usd": round(run["total_cost_usd"] + k * usd, 2),
            "record_count": run["record_count"] + k,
        }

    def _charged(self, team: str | None) -> dict[str, Any]:
        """A wallet as it stands: its demo rows, and newest of all (dated `now`) one row for each
        step a run has been shown at, so a run's wallet rows add up to what it bills at every step.
        The demo runs are charged to the personal wallet."""
        wallet = self.wallets[team]
        if team is not None:
            return wallet
        with self._lock:
            # the step the run was last shown at: one fewer than the requests answered, at most `steps`
            shown = [
                (run, min(spec.get("seen", 0) - 1, int(spec.get("steps", 3))), spec)
                for run, spec in self.progress.items()
            ]
        at = stamp(self.now)
        steps = [
            {
                "id": f"bill_{PERSONAL_WALLET[4:]}_{run_id}_step_{n}",
                "created_at": at,
                "updated_at": at,
                "last_billed_at": at,
                "amount_usd": float(spec.get("usd_per_step", 1.25)),
                "currency": "USD",
                "resource_type": "rft_run",
                "resource_id": run_id,
            }
            for run_id, k, spec in shown
            for n in range(k, 0, -1)  # newest first
        ]
        return {**wallet, "rows": steps + wallet["rows"]} if steps else wallet


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.title())
    return value


def _loc_error(name: str, msg: str, kind: str) -> dict[str, Any]:
    return {"loc": ["query", name], "msg": msg, "type": kind}
