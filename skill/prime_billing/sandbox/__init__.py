"""A stand-in for Prime's two billing endpoints, answering from fixed demo data (`data`).

`Sandbox.dispatch` answers one request; `Sandbox.handle` is the same as an httpx
transport handler, which is how `--sandbox` reaches it: in process, no socket,
nothing but the demo data. Nothing uses it unless asked (`--sandbox`, or a base
URL pointing at a sandbox server), and every answer says it is sandbox data: an
`x-prime-sandbox: 1` header and `"sandbox": true` in the body.

Test support lives beside it, and only tests, benchmarks, `prime-billing sandbox`
and `serve --sandbox` import it: `faults.FaultySandbox` (queued faults, a failure
rate, latency, data that changes as it is read, a gate that holds requests) and
`server` (the same on a real socket). The client imports this module only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..config import SANDBOX_API_KEY
from .data import FORBIDDEN_RUNS, RUNS, TEAM_ID, WALLETS

if TYPE_CHECKING:
    import httpx

__all__ = ["API", "FORBIDDEN_RUNS", "RUNS", "TEAM_ID", "WALLETS", "Reply", "Sandbox", "json_reply", "marked"]

API = "/api/v1"


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


@dataclass
class Sandbox:
    """The two endpoints over the demo data, checked as the upstream checks them.

    Two public hooks let a subclass change the data as it is read (`faults.FaultySandbox`
    does): `usage_body` and `wallet_page`."""

    #: the one key it accepts
    api_key: str = SANDBOX_API_KEY

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
        """The usage body a request for a known run gets: the demo run as it is."""
        return run

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
        if team is not None and team not in WALLETS:
            return json_reply(403, {"detail": "Not a member of this team"})
        wallet = WALLETS[team]
        total, page = self.wallet_page(wallet, values["offset"], values["limit"])
        body = {k: v for k, v in wallet.items() if k != "rows"}
        body["total_billings"] = total
        body["recent_billings"] = page
        body["sandbox"] = True
        return json_reply(200, body)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.title())
    return value


def _loc_error(name: str, msg: str, kind: str) -> dict[str, Any]:
    return {"loc": ["query", name], "msg": msg, "type": kind}
