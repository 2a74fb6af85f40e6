"""A faithful stand-in for Prime's two billing endpoints, with knobs for faults.

One implementation (`Sandbox.dispatch`) answers every request; it is reached
in-process through an httpx transport (`Sandbox.handle`) or over a real socket
(`serve`, behind `prime-billing sandbox --port N`). Nothing uses it unless asked
(`--sandbox`, or a base URL pointing at it), and every answer says it is sandbox
data: an `x-prime-sandbox: 1` header and `"sandbox": true` in the body.

Control (real server only, loopback): `POST /_sandbox/faults` with
`{"next": [fault, ...], "rate": 0.1, "rate_fault": fault, "latency": [lo, hi]}`,
`DELETE /_sandbox/faults`, `GET /_sandbox/stats` (counters, and `inflight_peak`: the
most requests answered at once), `POST /_sandbox/release` (opens the gate below;
in-process: `Sandbox.release()`). A fault is
`{"status": 503, "retry_after": "1", "body": "...", "content_type": "...",
"delay": 0.5, "action": "reset|truncate|huge|huge_unsized|drift", "path": "/wallet"}`.
Streamed (huge) bodies count what was really written in the stats:
`streamed_bytes` and `streams` (bodies finished or abandoned), so a test can
show a client refused one without reading it whole.

Scenario knobs, through the same call (and cleared with the faults):
`"progress": {"run_id": "rft_sbx_running", "steps": 3, "usd_per_step": 1.25,
"tokens_per_step": 500000, "final": "COMPLETED"}` makes a run advance one step
per usage request (more training tokens and cost) and reach `final` after
`steps`; `"page_cap": 7` serves at most 7 wallet rows per page whatever `limit`
asks; `"rows": 10000` makes every wallet hold that many rows, the demo rows
first, then older $0.01 pod rows made as they are read (a long wallet costs no
memory); `"new_rows": 3` makes 3 new rows arrive (newest) after the first
wallet request, shifting every offset as a live wallet does. Without them the data
never changes.

The gate, so a test can make requests overlap without racing a clock: `"hold": true`
makes the socket server keep every API request it receives unanswered (counted in
`requests` and in `inflight`) until released by `POST /_sandbox/release` or
`Sandbox.release()`, which opens the gate until `hold` is set again; clearing the
faults releases too. A held request is answered anyway after `HOLD_LIMIT` seconds,
so a test that forgets to release cannot hang. The in-process transport never holds.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .config import SANDBOX_API_KEY

API = "/api/v1"
HUGE_BODY_BYTES = 50 * 1024 * 1024
#: seconds the gate keeps a request at most, released or not
HOLD_LIMIT = 30.0

# --------------------------------------------------------------------------- data

_PERSONAL_WALLET = "wal_sbx_personal"
TEAM_ID = "team_sbx_demo"


def _run(
    run_id: str,
    name: str,
    model: str,
    status: str,
    training: tuple[int, float | None, float],
    inference: tuple[int, int, float | None, float | None, float],
    records: int,
    cached: tuple[int, float | None] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    t_tokens, t_rate, t_cost = training
    i_in, i_out, in_rate, out_rate, i_cost = inference
    inf: dict[str, Any] = {
        "tokens": i_in + i_out,
        "input_tokens": i_in,
        "output_tokens": i_out,
        "cost_usd": i_cost,
    }
    pricing: dict[str, Any] = {
        "training_per_mtok": t_rate,
        "inference_input_per_mtok": in_rate,
        "inference_output_per_mtok": out_rate,
    }
    if cached is not None:
        inf["cached_input_tokens"] = cached[0]
        pricing["inference_cached_input_per_mtok"] = cached[1]
    body = {
        "run_id": run_id,
        "run_name": name,
        "base_model": model,
        "status": status,
        "training": {"tokens": t_tokens, "input_tokens": 0, "output_tokens": 0, "cost_usd": t_cost},
        "inference": inf,
        "total_tokens": t_tokens + i_in + i_out,
        "total_cost_usd": round(t_cost + i_cost, 2),
        "pricing": pricing,
        "record_count": records,
    }
    body.update(extra or {})
    return body


RUNS: dict[str, dict[str, Any]] = {
    r["run_id"]: r
    for r in (
        _run(
            "rft_sbx_running",
            "gsm8k-grpo",
            "qwen2.5-7b",
            "RUNNING",
            (5_000_000, 2.5, 12.5),
            (1_000_000, 3_000_000, 0.5, 1.5, 5.0),
            12,
        ),
        _run(
            "rft_sbx_completed",
            "math-rl-v2",
            "llama-3.1-8b-instruct",
            "COMPLETED",
            (12_000_000, 3.0, 36.0),
            (6_000_000, 2_000_000, 0.4, 1.2, 4.8),
            48,
        ),
        # A newer backend: cached input reported, and fields this client does not know yet.
        _run(
            "rft_sbx_cached",
            "code-rft-cache",
            "qwen3-14b",
            "COMPLETED",
            (8_000_000, 4.0, 32.0),
            (10_000_000, 2_500_000, 0.6, 2.0, 9.2),
            30,
            cached=(4_000_000, 0.15),
            extra={"billing_version": 2, "gpu_hours": 41.5},
        ),
        # Rates the backend could not snapshot: shown as unknown, never $0.
        _run(
            "rft_sbx_failed",
            "tool-use-rft",
            "mistral-7b",
            "FAILED",
            (1_200_000, None, 2.1),
            (200_000, 100_000, 0.5, None, 0.35),
            3,
        ),
        # Its wallet rows deliberately do not add up to what the run reports.
        _run(
            "rft_sbx_mismatch",
            "reward-sweep",
            "qwen2.5-1.5b",
            "STOPPED",
            (2_000_000, 1.0, 2.0),
            (1_000_000, 500_000, 0.2, 0.6, 0.5),
            5,
        ),
    )
}
FORBIDDEN_RUNS = frozenset({"rft_sbx_other_team"})

#: the wallet charges for each run, in cents; the mismatch run is short by 37 cents
_RUN_CHARGES: dict[str, list[int]] = {
    "rft_sbx_running": [350] * 5,
    "rft_sbx_completed": [510] * 8,
    "rft_sbx_cached": [1030] * 4,
    "rft_sbx_failed": [245],
    "rft_sbx_mismatch": [100, 113],
}
_OTHER_CHARGES: list[tuple[str, str | None, int]] = (
    [
        ("pods", f"pod_sbx_{i:02d}", c)
        for i, c in enumerate([412, 1288, 96, 2350, 731, 149, 864, 1999, 57, 640, 318, 1204])
    ]
    + [("disks", f"disk_sbx_{i}", c) for i, c in enumerate([120, 120, 120, 85, 85, 240])]
    + [("sandboxes", f"sbx_box_{i}", c) for i, c in enumerate([33, 71, 12, 48])]
    + [("inference", None, c) for c in [205, 17, 392, 88]]
)


def _billing_rows(wallet: str, charges: list[tuple[str, str | None, int]], seed: int) -> list[dict[str, Any]]:
    """Rows newest first, on fixed dates so every answer is reproducible."""
    rng = random.Random(seed)
    charges = charges[:]
    rng.shuffle(charges)
    newest = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    rows = []
    for i, (rtype, rid, cents) in enumerate(charges):
        created = newest - timedelta(hours=3 * i, minutes=17 * (i % 5))
        billed = created + timedelta(minutes=5)
        stamp = lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
        rows.append(
            {
                "id": f"bill_{wallet[4:]}_{i:03d}",
                "created_at": stamp(created),
                "updated_at": stamp(billed),
                "last_billed_at": None if rtype == "inference" else stamp(billed),
                "amount_usd": cents / 100,
                "currency": "USD",
                "resource_type": rtype,
                "resource_id": rid,
            }
        )
    return rows


WALLETS: dict[str | None, dict[str, Any]] = {
    None: {
        "wallet_id": _PERSONAL_WALLET,
        "team_id": None,
        "balance_usd": 123.45,
        "currency": "USD",
        "rows": _billing_rows(
            _PERSONAL_WALLET,
            [("rft_run", run, c) for run, cents in _RUN_CHARGES.items() for c in cents] + _OTHER_CHARGES,
            seed=7,
        ),
    },
    TEAM_ID: {
        "wallet_id": "wal_sbx_team",
        "team_id": TEAM_ID,
        "balance_usd": 980.0,
        "currency": "USD",
        "rows": _billing_rows("wal_sbx_team", [("pods", f"pod_team_{i}", 1500 + 25 * i) for i in range(8)], seed=3),
    },
}

# --------------------------------------------------------------------------- faults


@dataclass
class Fault:
    status: int = 503
    retry_after: str | None = None
    body: str | None = None
    content_type: str = "application/json"
    #: seconds to wait before answering
    delay: float = 0.0
    #: reset: close mid-body; truncate: 200 with cut JSON; huge: 50 MB body; drift: 200, wrong schema;
    #: huge_unsized: 50 MB with no Content-Length (ends when the connection closes)
    action: str | None = None
    #: apply only to request paths containing this
    path: str | None = None

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Fault:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes | Iterator[bytes]
    delay: float = 0.0
    #: close the connection after this many body bytes (simulates a reset)
    cut_after: int | None = None


@dataclass
class Sandbox:
    api_key: str = SANDBOX_API_KEY
    #: seconds added to every answer, drawn uniformly from [lo, hi]
    latency: tuple[float, float] = (0.0, 0.0)
    rate: float = 0.0
    rate_fault: Fault = field(default_factory=Fault)
    queue: list[Fault] = field(default_factory=list)
    stats: Counter[str] = field(default_factory=Counter)
    #: requests being answered right now over the socket, and the most at once since the stats were cleared
    inflight: int = 0
    inflight_peak: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _rng: random.Random = field(default_factory=lambda: random.Random(1), repr=False)
    #: run id -> progress spec (plus "seen": usage requests answered so far)
    progress: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: most rows one wallet page holds, whatever `limit` asks
    page_cap: int | None = None
    #: rows that arrive after the first wallet request (newest first)
    new_rows: int = 0
    #: rows every wallet holds in all (demo rows, then generated older ones); None: the demo rows only
    rows: int | None = None
    _wallet_requests: int = field(default=0, repr=False)
    #: set while the gate is open; cleared by the `hold` knob
    _open: threading.Event = field(default_factory=threading.Event, repr=False)

    def __post_init__(self) -> None:
        self._open.set()

    # ------------------------------------------------------------ control
    def release(self) -> None:
        """Answer every held request, and hold no more until `hold` is set again."""
        self._open.set()

    def wait_for_release(self, limit: float = HOLD_LIMIT) -> None:
        """Block while the gate is shut: at most `limit` seconds."""
        self._open.wait(limit)

    def set_faults(self, spec: Mapping[str, Any]) -> None:
        with self._lock:
            self.queue.extend(Fault.parse(f) for f in spec.get("next", []))
            if "rate" in spec:
                self.rate = float(spec["rate"])
            if "rate_fault" in spec:
                self.rate_fault = Fault.parse(spec["rate_fault"])
            if "latency" in spec:
                lo, hi = spec["latency"]
                self.latency = (float(lo), float(hi))
            if "progress" in spec:
                plan = dict(spec["progress"])
                if plan["run_id"] not in RUNS:
                    raise KeyError(plan["run_id"])
                self.progress[plan["run_id"]] = {**plan, "seen": 0}
            if "page_cap" in spec:
                self.page_cap = int(spec["page_cap"]) if spec["page_cap"] else None
            if "new_rows" in spec:
                self.new_rows, self._wallet_requests = int(spec["new_rows"]), 0
            if "rows" in spec:
                self.rows = int(spec["rows"]) if spec["rows"] else None
            if "hold" in spec:
                if spec["hold"]:
                    self._open.clear()
                else:
                    self._open.set()

    def clear_faults(self) -> None:
        with self._lock:
            self.queue.clear()
            self.rate, self.latency, self.rate_fault = 0.0, (0.0, 0.0), Fault()
            self.progress.clear()
            self.page_cap, self.new_rows, self._wallet_requests, self.rows = None, 0, 0, None
        self.release()

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self.queue):
                if fault.path is None or fault.path in path:
                    return self.queue.pop(i)
            if self.rate and self._rng.random() < self.rate:
                return self.rate_fault
        return None

    # ------------------------------------------------------------ dispatch
    def dispatch(self, method: str, target: str, headers: Mapping[str, str], body: bytes = b"") -> Reply:
        """Answer one request, given its method, raw target (path?query) and headers."""
        parts = urlsplit(target)
        path = parts.path
        if path.startswith("/_sandbox/"):
            return self._control(method, path, body)
        with self._lock:
            self.stats["requests"] += 1
            self.stats[f"{method} {path}"] += 1
        lo, hi = self.latency
        delay = self._rng.uniform(lo, hi) if hi > 0 else 0.0
        fault = self._take_fault(path)
        if fault is not None:
            reply = self._fault_reply(fault, path)
            reply.delay += delay
            return reply
        reply = self._route(method, path, parse_qs(parts.query, keep_blank_values=True), headers)
        reply.delay = delay
        return reply

    def _route(self, method: str, path: str, query: dict[str, list[str]], headers: Mapping[str, str]) -> Reply:
        if not path.startswith(API + "/billing/"):
            return _json(404, {"detail": "Not Found"})
        if method != "GET":
            return _json(405, {"detail": "Method Not Allowed"})
        auth = _header(headers, "authorization")
        if not auth or not auth.lower().startswith("bearer "):
            return _json(401, {"detail": "Not authenticated"})
        if auth[7:].strip() != self.api_key:
            return _json(401, {"detail": "Invalid API key"})
        rest = path[len(API) :]
        if rest == "/billing/wallet":
            return self._wallet(query)
        segments = rest.split("/")
        # /billing/runs/{run_id}/usage: exactly one segment for the id
        if len(segments) == 5 and segments[2] == "runs" and segments[4] == "usage":
            return self._usage(unquote(segments[3]))
        return _json(404, {"detail": "Not Found"})

    def _usage(self, run_id: str) -> Reply:
        if run_id in FORBIDDEN_RUNS:
            return _json(403, {"detail": "Not authorized to access this run"})
        run = RUNS.get(run_id)
        if run is None:
            return _json(404, {"detail": f"Run {run_id} not found"})
        if run_id in self.progress:
            run = self._advance(run, self.progress[run_id])
        return _json(200, {**run, "sandbox": True})

    def _advance(self, run: dict[str, Any], plan: dict[str, Any]) -> dict[str, Any]:
        """The run as of its next step: more training, more cost, `final` once the steps are done."""
        with self._lock:
            seen = plan["seen"]
            plan["seen"] = seen + 1
        steps = int(plan.get("steps", 3))
        k = min(seen, steps)
        tokens, usd = int(plan.get("tokens_per_step", 500_000)), float(plan.get("usd_per_step", 1.25))
        training = dict(run["training"])
        training["tokens"] += k * tokens
        training["cost_usd"] = round(training["cost_usd"] + k * usd, 2)
        return {
            **run,
            "status": plan.get("final", "COMPLETED") if seen >= steps else run["status"],
            "training": training,
            "total_tokens": run["total_tokens"] + k * tokens,
            "total_cost_usd": round(run["total_cost_usd"] + k * usd, 2),
            "record_count": run["record_count"] + k,
        }

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
            return _json(422, {"detail": errors})
        team = query.get("teamId", [None])[-1] or None
        if team is not None and team not in WALLETS:
            return _json(403, {"detail": "Not a member of this team"})
        wallet = WALLETS[team]
        rows = wallet["rows"]
        with self._lock:
            self._wallet_requests += 1
            arrived = self.new_rows if self._wallet_requests > 1 else 0
        if arrived:
            rows = _arrivals(wallet["wallet_id"], rows[0], arrived) + rows
        if self.rows is not None:
            rows = _LongWallet(wallet["wallet_id"], rows, self.rows + arrived)  # type: ignore[assignment]
        offset, limit = values["offset"], values["limit"]
        if self.page_cap is not None:
            limit = min(limit, self.page_cap)
        body = {k: v for k, v in wallet.items() if k != "rows"}
        body["total_billings"] = len(rows)
        body["recent_billings"] = rows[offset : offset + limit]
        body["sandbox"] = True
        return _json(200, body)

    def _fault_reply(self, fault: Fault, path: str) -> Reply:
        if fault.action == "drift":
            return _json(200, {"unexpected": "shape", "sandbox": True}, delay=fault.delay)
        if fault.action == "truncate":
            full = json.dumps(next(iter(RUNS.values()))).encode()
            return Reply(200, _headers("application/json"), full[: len(full) // 2], fault.delay)
        if fault.action == "reset":
            full = json.dumps(next(iter(RUNS.values()))).encode()
            return Reply(200, _headers("application/json"), full, fault.delay, cut_after=len(full) // 3)
        if fault.action == "huge":
            headers = _headers("application/json")
            headers["content-length"] = str(HUGE_BODY_BYTES)
            return Reply(200, headers, _huge_body(), fault.delay)
        if fault.action == "huge_unsized":
            # only a reader that counts can tell this is too big: the header promises nothing
            headers = _headers("application/json")
            headers["connection"] = "close"
            return Reply(200, headers, _huge_body(), fault.delay)
        headers = _headers(fault.content_type)
        if fault.retry_after is not None:
            headers["retry-after"] = str(fault.retry_after)
        body = fault.body if fault.body is not None else json.dumps({"detail": _REASONS.get(fault.status, "Error")})
        return Reply(fault.status, headers, body.encode(), fault.delay)

    def _control(self, method: str, path: str, body: bytes) -> Reply:
        if path == "/_sandbox/faults" and method == "POST":
            try:
                spec = json.loads(body or b"{}")
                self.set_faults(spec)
            except (ValueError, TypeError, KeyError) as exc:
                return _json(400, {"detail": f"bad fault spec: {exc}"})
            return _json(200, {"queued": len(self.queue)})
        if path == "/_sandbox/faults" and method == "DELETE":
            self.clear_faults()
            return _json(200, {"cleared": True})
        if path == "/_sandbox/release" and method == "POST":
            self.release()
            return _json(200, {"released": True})
        if path == "/_sandbox/stats":
            if method == "DELETE":
                with self._lock:
                    self.stats.clear()
                    self.inflight_peak = self.inflight
            with self._lock:
                return _json(200, {**self.stats, "inflight_peak": self.inflight_peak})
        return _json(404, {"detail": "Not Found"})

    # ------------------------------------------------------------ in-process transport
    def handle(self, request: Any) -> Any:
        """httpx.MockTransport handler: the sandbox without a socket."""
        import httpx

        reply = self.dispatch(request.method, request.url.raw_path.decode("ascii"), request.headers, request.content)
        if reply.delay:
            time.sleep(reply.delay)
        if reply.cut_after is not None:
            raise httpx.ReadError("sandbox: connection reset mid-body", request=request)
        return httpx.Response(reply.status, headers=reply.headers, content=reply.body)


_REASONS = {
    400: "Bad Request", 401: "Invalid API key", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 422: "Unprocessable Entity", 429: "Too Many Requests",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}  # fmt: skip


def _arrivals(wallet_id: str, newest: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Rows newer than any other, for the `new_rows` knob."""
    stamp = newest["created_at"]
    return [
        {**newest, "id": f"bill_{wallet_id[4:]}_new_{i:03d}", "amount_usd": 0.5, "resource_type": "pods",
         "resource_id": f"pod_sbx_new_{i}", "created_at": stamp, "updated_at": stamp, "last_billed_at": stamp}
        for i in range(n)
    ]  # fmt: skip


class _LongWallet:
    """A wallet of `total` rows: the demo rows (and arrivals), then older generated ones, made
    only when a page asks for them."""

    def __init__(self, wallet_id: str, demo: list[dict[str, Any]], total: int) -> None:
        self.wallet_id, self.demo, self.total = wallet_id, demo, total
        self.oldest = datetime.fromisoformat(demo[-1]["created_at"].replace("Z", "+00:00"))

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, page: slice) -> list[dict[str, Any]]:
        return [self._row(i) for i in range(*page.indices(self.total))]

    def _row(self, i: int) -> dict[str, Any]:
        if i < len(self.demo):
            return self.demo[i]
        n = i - len(self.demo)
        stamp = (self.oldest - timedelta(minutes=n + 1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "id": f"bill_{self.wallet_id[4:]}_old_{n:07d}", "created_at": stamp, "updated_at": stamp,
            "last_billed_at": stamp, "amount_usd": 0.01, "currency": "USD", "resource_type": "pods",
            "resource_id": f"pod_sbx_old_{n % 50:02d}",
        }  # fmt: skip


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.title())
    return value


def _headers(content_type: str) -> dict[str, str]:
    return {"content-type": content_type, "x-prime-sandbox": "1"}


def _json(status: int, data: Any, delay: float = 0.0) -> Reply:
    return Reply(status, _headers("application/json"), json.dumps(data).encode(), delay)


def _loc_error(name: str, msg: str, kind: str) -> dict[str, Any]:
    return {"loc": ["query", name], "msg": msg, "type": kind}


def _huge_body() -> Iterator[bytes]:
    chunk = b" " * (1024 * 1024)
    yield b'{"pad": "'
    for _ in range(HUGE_BODY_BYTES // len(chunk) - 1):
        yield chunk
    yield b" " * (len(chunk) - 11) + b'"}'


# --------------------------------------------------------------------------- server


def make_server(sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0) -> Any:
    """A threaded HTTP/1.1 server on a real socket; `port=0` picks a free one."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "prime-billing-sandbox"
        # headers and body go out as two writes: without this, Nagle holds the body
        # for the client's delayed ACK (~40 ms per request on a kept-alive connection)
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            counted = not self.path.startswith("/_sandbox/")
            if counted:
                with sandbox._lock:
                    sandbox.inflight += 1
                    sandbox.inflight_peak = max(sandbox.inflight_peak, sandbox.inflight)
            try:
                self._answer()
            finally:
                if counted:
                    with sandbox._lock:
                        sandbox.inflight -= 1

        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            reply = sandbox.dispatch(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            if not self.path.startswith("/_sandbox/"):
                sandbox.wait_for_release()
            if reply.delay:
                time.sleep(reply.delay)
            data = reply.body
            self.send_response(reply.status)
            for k, v in reply.headers.items():
                self.send_header(k, v)
            if isinstance(data, bytes) and "content-length" not in reply.headers:
                self.send_header("content-length", str(len(data)))
            self.end_headers()
            try:
                if isinstance(data, bytes):
                    if reply.cut_after is not None:
                        self.wfile.write(data[: reply.cut_after])
                        self.wfile.flush()
                        self.close_connection = True
                        return
                    self.wfile.write(data)
                else:
                    self._stream(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _stream(self, data: Iterator[bytes]) -> None:
            sent = 0
            try:
                for chunk in data:
                    self.wfile.write(chunk)
                    sent += len(chunk)
            finally:
                with sandbox._lock:
                    sandbox.stats["streamed_bytes"] += sent
                    sandbox.stats["streams"] += 1

        do_GET = do_POST = do_DELETE = do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 512
        allow_reuse_address = True

    return Server((host, port), Handler)


def serve(sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0, *, announce: Any = print) -> None:
    """Serve until interrupted; announces the URL (and the demo key) on one line.

    Ctrl-C returns normally; once bound, the socket is closed however serving ends
    (the announce is inside the `try`). `prime-billing sandbox` has SIGTERM and
    SIGINT exit 0 before the bind, so a supervisor never sees 143."""
    server = make_server(sandbox, host, port)
    try:
        real_host, real_port = server.server_address[:2]
        announce(f"sandbox serving on http://{real_host}:{real_port} (key: {sandbox.api_key}); Ctrl-C stops it")
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
