"""The sandbox for tests and benchmarks: faults, latency, data that changes as it is read, and a gate.

Imported only by tests, benchmarks, `prime-billing sandbox` and `serve --sandbox`
(through `server`); the client's `--sandbox` uses the plain `Sandbox`, which has
none of this. `FaultySandbox` extends it through its public hooks (`dispatch`,
`handle`, `usage_body`, `wallet_page`) and answers a few control requests.

Control (over the socket server): `POST /_sandbox/faults` with
`{"next": [fault, ...], "rate": 0.1, "rate_fault": fault, "latency": [lo, hi]}`,
`DELETE /_sandbox/faults`, `GET /_sandbox/stats` (counters, and `inflight_peak`: the
most requests answered at once; `DELETE` clears them), `POST /_sandbox/release`
(opens the gate below; in-process: `FaultySandbox.release()`). A fault is
`{"status": 503, "retry_after": "1", "body": "...", "content_type": "...",
"delay": 0.5, "action": "reset|truncate|huge|huge_unsized|drift", "path": "/wallet",
"hold": false}`; `"hold": false` answers it at once even while the gate below is shut,
so one request of a batch can fail while the others are held.
Streamed (huge) bodies count what was really written in the stats:
`streamed_bytes` and `streams` (bodies finished or abandoned), so a test can
show a client refused one without reading it whole.

Scenario knobs, through the same call or as constructor keywords (and cleared
with the faults): `"progress": {"run_id": "rft_sbx_running", "steps": 3,
"usd_per_step": 1.25, "tokens_per_step": 500000, "final": "COMPLETED"}` makes a run
advance one step per usage request after the first (more training tokens and cost,
and a wallet row of the step's cost) and reach `final` after `steps`, as the plain
`Sandbox`'s RUNNING run does by default (here no run advances until asked, so every
answer stays the same however often a test asks); `"page_cap": 7` serves at most 7 wallet rows per page
whatever `limit` asks; `"rows": 10000` makes every wallet hold that many rows, the
demo rows first, then older $0.01 pod rows made as they are read (a long wallet
costs no memory), a minute apart (`"rows_every": 1`: a second apart, so a million of them fit in
a month's pace or a runway's window); `"new_rows": 3` makes 3 new rows arrive (newest) after the
first wallet request, shifting every offset as a live wallet does. Without them
the data never changes.

The gate, so a test can make requests overlap without racing a clock: `"hold": true`
makes the socket server keep every API request it receives unanswered (counted in
`requests` and in `inflight`; a fault with `"hold": false` excepted) until released
by `POST /_sandbox/release` or `release()`, which opens the gate until `hold` is set
again; clearing the faults releases too. A held request is answered anyway after
`HOLD_LIMIT` seconds, so a test that forgets to release cannot hang. The in-process transport never holds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, overload
from urllib.parse import urlsplit

from . import RUNS, Reply, Sandbox, json_reply, marked
from .data import stamp

if TYPE_CHECKING:
    import httpx

HUGE_BODY_BYTES = 50 * 1024 * 1024
#: seconds the gate keeps a request at most, released or not
HOLD_LIMIT = 30.0
#: paths that set up the sandbox rather than ask it for data
CONTROL = "/_sandbox/"


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
    #: False: answered at once, even while the gate is shut
    hold: bool = True

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Fault:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class FaultReply(Reply):
    """An answer and how it goes out: after `delay` seconds, cut after `cut_after` body
    bytes (a connection reset), or streamed chunk by chunk."""

    body: bytes | Iterator[bytes]  # type: ignore[assignment]
    delay: float = 0.0
    cut_after: int | None = None
    #: kept at the gate while it is shut (the socket server asks)
    held: bool = True


@dataclass
class FaultySandbox(Sandbox):
    """The sandbox with the faults, knobs, counters and gate the module docstring describes."""

    #: seconds added to every answer, drawn uniformly from [lo, hi]
    latency: tuple[float, float] = (0.0, 0.0)
    rate: float = 0.0
    rate_fault: Fault = field(default_factory=Fault)
    queue: list[Fault] = field(default_factory=list)
    stats: Counter[str] = field(default_factory=Counter)
    #: requests being answered right now over the socket, and the most at once since the stats were cleared
    inflight: int = 0
    inflight_peak: int = 0
    #: as `Sandbox.progress`, but no run advances until the `progress` knob says so (tests need
    #: the same answer however often they ask)
    progress: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: most rows one wallet page holds, whatever `limit` asks
    page_cap: int | None = None
    #: rows that arrive after the first wallet request (newest first)
    new_rows: int = 0
    #: rows every wallet holds in all (demo rows, then generated older ones); None: the demo rows only
    rows: int | None = None
    #: seconds between two generated rows (`rows`)
    rows_every: int = 60
    _rng: random.Random = field(default_factory=lambda: random.Random(1), repr=False)
    _wallet_requests: int = field(default=0, repr=False)
    #: set while the gate is open; cleared by the `hold` knob
    _open: threading.Event = field(default_factory=threading.Event, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
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
                run = dict(spec["progress"])
                if run["run_id"] not in RUNS:
                    raise KeyError(run["run_id"])
                self.progress[run["run_id"]] = {**run, "seen": 0}
            if "page_cap" in spec:
                self.page_cap = int(spec["page_cap"]) if spec["page_cap"] else None
            if "new_rows" in spec:
                self.new_rows, self._wallet_requests = int(spec["new_rows"]), 0
            if "rows" in spec:
                self.rows = int(spec["rows"]) if spec["rows"] else None
            if "rows_every" in spec:
                self.rows_every = max(1, int(spec["rows_every"]))
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
            self.rows_every = 60
        self.release()

    def clear_stats(self) -> None:
        """Forget the counters; the peak starts again from what is being answered now."""
        with self._lock:
            self.stats.clear()
            self.inflight_peak = self.inflight

    # ------------------------------------------------------------ what the socket server counts
    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Count one API request in `inflight` (and `inflight_peak`) while it is being answered."""
        with self._lock:
            self.inflight += 1
            self.inflight_peak = max(self.inflight_peak, self.inflight)
        try:
            yield
        finally:
            with self._lock:
                self.inflight -= 1

    def count_stream(self, sent: int) -> None:
        """Count a streamed body, finished or abandoned after `sent` bytes."""
        with self._lock:
            self.stats["streamed_bytes"] += sent
            self.stats["streams"] += 1

    # ------------------------------------------------------------ the sandbox's hooks
    def dispatch(self, method: str, target: str, headers: Mapping[str, str], body: bytes = b"") -> FaultReply:
        path = urlsplit(target).path
        if path.startswith(CONTROL):
            return _as_fault_reply(self._control(method, path, body))
        with self._lock:
            self.stats["requests"] += 1
            self.stats[f"{method} {path}"] += 1
        lo, hi = self.latency
        delay = self._rng.uniform(lo, hi) if hi > 0 else 0.0
        fault = self._take_fault(path)
        if fault is None:
            return _as_fault_reply(super().dispatch(method, target, headers, body), delay)
        reply = _fault_reply(fault)
        reply.delay += delay
        reply.held = fault.hold
        return reply

    def handle(self, request: httpx.Request) -> httpx.Response:
        """httpx.MockTransport handler: delays and resets as the socket server would, never held."""
        import httpx

        reply = self.dispatch(request.method, request.url.raw_path.decode("ascii"), request.headers, request.content)
        if reply.delay:
            time.sleep(reply.delay)
        if reply.cut_after is not None:
            raise httpx.ReadError("sandbox: connection reset mid-body", request=request)
        return httpx.Response(reply.status, headers=reply.headers, content=reply.body)

    def wallet_page(self, wallet: Mapping[str, Any], offset: int, limit: int) -> tuple[int, list[dict[str, Any]]]:
        rows: Sequence[dict[str, Any]] = wallet["rows"]
        with self._lock:
            self._wallet_requests += 1
            arrived = self.new_rows if self._wallet_requests > 1 else 0
        if arrived:
            rows = _arrivals(wallet["wallet_id"], rows[0], arrived) + list(rows)
        if self.rows is not None:
            rows = _LongWallet(wallet["wallet_id"], rows, self.rows + arrived, self.rows_every)
        if self.page_cap is not None:
            limit = min(limit, self.page_cap)
        return len(rows), list(rows[offset : offset + limit])

    # ------------------------------------------------------------ helpers
    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self.queue):
                if fault.path is None or fault.path in path:
                    return self.queue.pop(i)
            if self.rate and self._rng.random() < self.rate:
                return self.rate_fault
        return None

    def _control(self, method: str, path: str, body: bytes) -> Reply:
        if path == CONTROL + "faults" and method == "POST":
            try:
                self.set_faults(json.loads(body or b"{}"))
            except (ValueError, TypeError, KeyError) as exc:
                return json_reply(400, {"detail": f"bad fault spec: {exc}"})
            return json_reply(200, {"queued": len(self.queue)})
        if path == CONTROL + "faults" and method == "DELETE":
            self.clear_faults()
            return json_reply(200, {"cleared": True})
        if path == CONTROL + "release" and method == "POST":
            self.release()
            return json_reply(200, {"released": True})
        if path == CONTROL + "stats":
            if method == "DELETE":
                self.clear_stats()
            with self._lock:
                return json_reply(200, {**self.stats, "inflight_peak": self.inflight_peak})
        return json_reply(404, {"detail": "Not Found"})


_REASONS = {
    400: "Bad Request", 401: "Invalid API key", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 422: "Unprocessable Entity", 429: "Too Many Requests",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}  # fmt: skip


def _as_fault_reply(reply: Reply, delay: float = 0.0) -> FaultReply:
    """A plain answer, to go out after `delay` seconds."""
    return FaultReply(reply.status, reply.headers, reply.body, delay)


def _fault_reply(fault: Fault) -> FaultReply:
    if fault.action == "drift":
        return _as_fault_reply(json_reply(200, {"unexpected": "shape", "sandbox": True}), fault.delay)
    headers = marked("application/json")
    if fault.action in ("truncate", "reset"):
        full = json.dumps(next(iter(RUNS.values()))).encode()
        if fault.action == "truncate":
            return FaultReply(200, headers, full[: len(full) // 2], fault.delay)
        return FaultReply(200, headers, full, fault.delay, cut_after=len(full) // 3)
    if fault.action == "huge":
        headers["content-length"] = str(HUGE_BODY_BYTES)
        return FaultReply(200, headers, _huge_body(), fault.delay)
    if fault.action == "huge_unsized":
        # only a reader that counts can tell this is too big: the header promises nothing
        headers["connection"] = "close"
        return FaultReply(200, headers, _huge_body(), fault.delay)
    headers = marked(fault.content_type)
    if fault.retry_after is not None:
        headers["retry-after"] = str(fault.retry_after)
    body = fault.body if fault.body is not None else json.dumps({"detail": _REASONS.get(fault.status, "Error")})
    return FaultReply(fault.status, headers, body.encode(), fault.delay)


def _huge_body() -> Iterator[bytes]:
    chunk = b" " * (1024 * 1024)
    yield b'{"pad": "'
    for _ in range(HUGE_BODY_BYTES // len(chunk) - 1):
        yield chunk
    yield b" " * (len(chunk) - 11) + b'"}'


def _arrivals(wallet_id: str, newest: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Rows newer than any other, for the `new_rows` knob."""
    stamp = newest["created_at"]
    return [
        {**newest, "id": f"bill_{wallet_id[4:]}_new_{i:03d}", "amount_usd": 0.5, "resource_type": "pods",
         "resource_id": f"pod_sbx_new_{i}", "created_at": stamp, "updated_at": stamp, "last_billed_at": stamp}
        for i in range(n)
    ]  # fmt: skip


class _LongWallet(Sequence[dict[str, Any]]):
    """A wallet of `total` rows: the demo rows (and arrivals), then older generated ones, `every`
    seconds apart, made only when a page asks for them."""

    def __init__(self, wallet_id: str, demo: Sequence[dict[str, Any]], total: int, every: int = 60) -> None:
        self.wallet_id, self.demo, self.total, self.every = wallet_id, demo, total, every
        self.oldest = datetime.fromisoformat(demo[-1]["created_at"].replace("Z", "+00:00"))

    def __len__(self) -> int:
        return self.total

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self._row(i) for i in range(*index.indices(self.total))]
        return self._row(range(self.total)[index])

    def _row(self, i: int) -> dict[str, Any]:
        if i < len(self.demo):
            return self.demo[i]
        n = i - len(self.demo)
        at = stamp(self.oldest - timedelta(seconds=self.every * (n + 1)))
        return {
            "id": f"bill_{self.wallet_id[4:]}_old_{n:07d}", "created_at": at, "updated_at": at,
            "last_billed_at": at, "amount_usd": 0.01, "currency": "USD", "resource_type": "pods",
            "resource_id": f"pod_sbx_old_{n % 50:02d}",
        }  # fmt: skip
