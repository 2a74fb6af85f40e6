"""Long wallets read several pages at a time, and still exact: every row of the wallet as it stood
at the first page exactly once, with rows arriving at the head meanwhile, short pages, `since`,
retries and failures; pages overlapping within the bound (shown with the sandbox's gate, not a
clock); the progress bar on a terminal only, its library never loaded otherwise.

Expected figures come from the sandbox's own knobs, worked out by hand: `rows=N` is the 46 demo
rows ($221.52 in all) then N - 46 generated rows of $0.01 each, the k-th one (from 0) created
k + 1 minutes before the oldest demo row; `new_rows` rows ($0.50 each, ids `..._new_...`)
arrive at the head after the first wallet request.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from conftest import ROOT, SCRIPTS, LiveSandbox, all_rows, cents, run, script_env, start_sandbox, until
from prime_billing import compose
from prime_billing.client import AsyncClient, Client, Result, RetryPolicy
from prime_billing.compose import PAGES_IN_FLIGHT
from prime_billing.config import SANDBOX_API_KEY, Settings
from prime_billing.errors import BadResponseError, PaymentRequiredError
from prime_billing.sandbox.faults import FaultySandbox

SPEND = str(SCRIPTS / "spend.py")
DEMO_CENTS, DEMO_ROWS = 22152, 46
#: each test that takes `mode` runs through the sync client and through the async one
BOTH_MODES = pytest.mark.parametrize("mode", ["sync", "async"])
#: quick retries: the waits under test are the upstream's Retry-After, not our backoff
FAST = RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.02)


def expected_cents(rows: int) -> int:
    return DEMO_CENTS + (rows - DEMO_ROWS)


def spend(
    live: LiveSandbox, mode: str, args: dict[str, Any] | None = None, on_step: Callable[[Any], None] | None = None
) -> Result[Any]:
    """The spend report through the sync or the async client, against the live sandbox, with its rows."""
    args = {"include_rows": True, **(args or {})}
    if mode == "sync":
        with Client(base_url=live.url, api_key=SANDBOX_API_KEY, retry=FAST) as client:
            return client.call("spend_report", args, on_step=on_step)

    async def main() -> Result[Any]:
        async with AsyncClient(base_url=live.url, api_key=SANDBOX_API_KEY, retry=FAST) as client:
            return await client.call("spend_report", args, on_step=on_step)

    return anyio.run(main)


def wallet_as_it_stands(live: LiveSandbox) -> list[dict[str, Any]]:
    """Every row, read page by page by the test's own reader (conftest), before any arrive."""
    rows = all_rows(live)
    live.box.clear_stats()
    return rows


@pytest.fixture
def rows(sandbox: LiveSandbox) -> list[dict[str, Any]]:
    """A wallet of 1000 rows (`rows` knob), as the test's own reader reads it."""
    sandbox.faults(rows=1000)
    return wallet_as_it_stands(sandbox)


def assert_exact(report: Any, rows: list[dict[str, Any]], n: int) -> None:
    """Each row of the wallet as it stood exactly once, newest first, and the total to the cent."""
    ids = [r.id for r in report.rows]
    assert len(ids) == len(set(ids)) == report.row_count == n
    assert ids == [r["id"] for r in rows]
    assert not any("_new_" in i for i in ids)  # arrivals after the first page are not in the report
    assert cents(report.total_usd) == sum(cents(r["amount_usd"]) for r in rows) == expected_cents(n)


@BOTH_MODES
@pytest.mark.parametrize(
    ("knobs", "pages"),
    [
        # 10 pages of 100: the first, the second alone, then the other 8 at once
        ({"rows": 1000}, 10),
        # 5 rows arrive after the first page: the second page (asked alone) is shifted by 5, every
        # later one is asked 5 further on, and the 5 oldest rows, pushed past offset 1000, are one
        # more page
        ({"rows": 1000, "new_rows": 5}, 11),
        # more rows arrive than a page holds: the second page holds none of the rows not yet read
        ({"rows": 1000, "new_rows": 150}, 11),
        # 7 rows a page: the first page's real length is the stride (143 pages for 1000 rows)
        ({"rows": 1000, "page_cap": 7}, 143),
        # the second page overlaps the first by 3 rows, the other 989 rows take 142 pages of 7
        ({"rows": 1000, "page_cap": 7, "new_rows": 3}, 144),
    ],
)
def test_every_row_once_and_the_exact_total(sandbox: LiveSandbox, mode: str, knobs: dict[str, int], pages: int) -> None:
    sandbox.faults(rows=knobs["rows"])
    rows = wallet_as_it_stands(sandbox)
    # counted from the next wallet request on: the scan's first
    sandbox.faults(page_cap=knobs.get("page_cap"), new_rows=knobs.get("new_rows", 0))
    report = spend(sandbox, mode).data
    assert_exact(report, rows, knobs["rows"])
    assert report.total_billings == knobs["rows"]  # the wallet as it stood at the first page
    assert report.pages == sandbox.requests("/wallet") == pages


@dataclass
class GrowingHead(FaultySandbox):
    """A live wallet whose head grows while it is read: before each wallet request after the first,
    0, 2, 4, 1 or 3 more rows arrive (by turns), so the pages of one batch, answered in any order,
    each see a different head, and every batch a new one. Arrivals are rows `bill_new_N` ($0.50,
    dated as the newest row), the latest at the head."""

    arrived: int = 0
    requests_seen: int = 0
    counting: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def wallet_page(self, wallet: Mapping[str, Any], offset: int, limit: int) -> tuple[int, list[dict[str, Any]]]:
        with self.counting:
            self.arrived += self.requests_seen * 7 % 5
            self.requests_seen += 1
            n = self.arrived
        newest = wallet["rows"][0]
        head = [{**newest, "id": f"bill_new_{i:04d}", "amount_usd": 0.5} for i in reversed(range(n))]
        head = head[offset : offset + limit]
        total, rest = super().wallet_page(wallet, max(offset - n, 0), limit - len(head))
        return total + n, head + rest


@BOTH_MODES
def test_the_head_growing_between_and_within_batches_still_gives_each_row_once(
    rows: list[dict[str, Any]], mode: str
) -> None:
    # Pages of one batch are shifted by different amounts and answered in any order, so some
    # places are read twice and some not at all until read again. Whatever the order, the report
    # is the wallet as it stood at the first page.
    live, _ = start_sandbox(GrowingHead(rows=1000, page_cap=30))
    try:
        report = spend(live, mode).data
    finally:
        live.server.shutdown()  # type: ignore[attr-defined]
        live.server.server_close()  # type: ignore[attr-defined]
    assert_exact(report, rows, 1000)
    assert report.total_billings == 1000
    assert live.box.arrived > 30  # more rows arrived while paging than a page holds


@BOTH_MODES
@pytest.mark.parametrize("new_rows", [0, 4])
def test_since_stops_within_one_batch_of_the_moment(
    sandbox: LiveSandbox, rows: list[dict[str, Any]], mode: str, new_rows: int
) -> None:
    oldest_demo = datetime.fromisoformat(rows[DEMO_ROWS - 1]["created_at"])
    # the generated rows 0..249 are at or after the moment: 46 + 250 rows, places 0..295
    since = oldest_demo - timedelta(minutes=250)
    sandbox.faults(new_rows=new_rows)
    report = spend(sandbox, mode, {"since": since.isoformat()}).data
    kept = rows[: DEMO_ROWS + 250]
    assert [r.id for r in report.rows] == [r["id"] for r in kept]
    assert cents(report.total_usd) == DEMO_CENTS + 250
    # 3 pages hold the rows wanted: the first, the second alone, then (with `since`, widths double)
    # the batch that found the end, pages 3 and 4; pages 5..10 are never asked for
    assert report.pages == sandbox.requests("/wallet") == 4


@BOTH_MODES
def test_pages_overlap_up_to_the_bound(sandbox: LiveSandbox, mode: str) -> None:
    """Every batch is held at the sandbox's gate until all its pages are in: the widths seen are the
    batches', and never more than PAGES_IN_FLIGHT at once."""
    assert PAGES_IN_FLIGHT == 12  # the widths below are worked out for it
    sandbox.faults(rows=2000)
    rows = wallet_as_it_stands(sandbox)
    box = sandbox.box

    def shut(result: Result[Any]) -> None:
        # before the plan asks for its next batch: the last one's answers all out (so none is
        # counted with the next), and the gate shut
        until(lambda: box.inflight == 0, "the batch answered", guard=20.0)
        box.set_faults({"hold": True})

    outcome: dict[str, Any] = {}
    box.set_faults({"hold": True})
    worker = threading.Thread(target=lambda: outcome.update(report=spend(sandbox, mode, on_step=shut).data))
    worker.start()
    seen, sent = [], 0
    # 20 pages: the first, the second alone, then 12 at once and the 6 left
    for width in (1, 1, 12, 6):
        sent += width
        until(
            lambda sent=sent, width=width: box.stats["requests"] == sent and box.inflight == width,
            f"{width} pages held at the gate",
            guard=20.0,
        )
        seen.append(box.inflight)
        box.release()
    worker.join(30)
    assert seen == [1, 1, 12, 6]
    assert box.inflight_peak == PAGES_IN_FLIGHT
    assert_exact(outcome["report"], rows, 2000)


def fault_after(live: LiveSandbox, results: int, fault: dict[str, Any]) -> Callable[[Result[Any]], None]:
    """An on_step that queues `fault` for the next wallet request once `results` pages are in."""
    seen = 0

    def step(result: Result[Any]) -> None:
        nonlocal seen
        seen += 1
        if seen == results:
            live.faults(next=[{**fault, "path": "/wallet"}])

    return step


@BOTH_MODES
def test_a_429_on_one_page_of_a_batch_waits_its_retry_after_and_the_report_is_exact(
    sandbox: LiveSandbox, rows: list[dict[str, Any]], mode: str
) -> None:
    # after the first two pages the next batch is the other 8: one of them is answered 429 first
    started = time.monotonic()
    result = spend(sandbox, mode, on_step=fault_after(sandbox, 2, {"status": 429, "retry_after": "0.3"}))
    assert time.monotonic() - started >= 0.3  # the Retry-After was waited (a lower bound: no race)
    assert_exact(result.data, rows, 1000)
    assert result.data.pages == 10
    assert sandbox.requests("/wallet") == result.attempts == 11  # the one page asked twice


@BOTH_MODES
def test_the_first_failure_fails_the_report_with_its_type(sandbox: LiveSandbox, mode: str) -> None:
    sandbox.faults(rows=3000)
    # after the first two pages the next batch is 12 pages: one is answered 402, which is not retried
    with pytest.raises(PaymentRequiredError, match="payment required"):
        spend(sandbox, mode, on_step=fault_after(sandbox, 2, {"status": 402}))
    # no page is asked for after the batch that failed (some of it may be abandoned unsent): of 30
    assert 3 <= sandbox.requests("/wallet") <= 14


def upstream(total: int, served: int, *, follows_offset: bool = True) -> tuple[httpx.MockTransport, list[int]]:
    """A hand-written upstream: a wallet that says it holds `total` rows and serves `served` of them
    ($0.01 each, newest first), or that serves the first page whatever the offset; and the
    offsets it was asked for."""
    asked: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
        asked.append(offset)
        start = offset if follows_offset else 0
        rows = [
            {"id": f"bill_{i:05d}", "created_at": "2026-11-01T00:00:00Z", "amount_usd": 0.01, "currency": "USD",
             "resource_type": "pods"}
            for i in range(start, min(start + limit, served))
        ]  # fmt: skip
        body = {"wallet_id": "wal_x", "balance_usd": 1.0, "currency": "USD", "total_billings": total}
        return httpx.Response(200, json={**body, "recent_billings": rows})

    return httpx.MockTransport(answer), asked


def test_a_wallet_serving_fewer_rows_than_its_total_is_a_bad_response() -> None:
    transport, asked = upstream(total=1000, served=250)
    with Client(Settings(api_key="k"), transport=transport) as client, pytest.raises(BadResponseError) as caught:
        client.call("spend_report", {})
    assert str(caught.value) == (
        "the wallet reports 1,000 rows but ends after 250 (its page at offset 200 held 50 rows, not 100): "
        "the upstream paging looks broken; report it"
    )
    assert sorted(asked) == list(range(0, 1000, 100))  # the first, the second, then the other 8 at once


def test_an_upstream_that_ignores_the_offset_is_a_bad_response_at_once() -> None:
    transport, asked = upstream(total=1000, served=1000, follows_offset=False)
    with Client(Settings(api_key="k"), transport=transport) as client, pytest.raises(BadResponseError) as caught:
        client.call("spend_report", {})
    # the second page (offset 100) holds the first page's rows again: row 1 as row 101
    assert str(caught.value).startswith("the wallet's pages overlap: its row 1 came again as row 101")
    assert asked == [0, 100]  # the second page, alone, held only rows already read


@BOTH_MODES
@pytest.mark.parametrize(("rows", "ends"), [(500, True), (501, False)])
def test_a_wallet_ends_within_max_pages_or_is_a_bad_response(
    sandbox: LiveSandbox, monkeypatch: pytest.MonkeyPatch, mode: str, rows: int, ends: bool
) -> None:
    """The bound patched to 5 pages: 500 rows are exactly 5 pages of 100 (the first, the second alone,
    then 3 at once) and pass; 501 would take a 6th, refused before the batch is asked for."""
    monkeypatch.setattr(compose, "MAX_PAGES", 5)
    sandbox.faults(rows=rows)
    if ends:
        report = spend(sandbox, mode).data
        assert report.pages == sandbox.requests("/wallet") == 5
        assert report.row_count == 500 and cents(report.total_usd) == expected_cents(500)
        return
    with pytest.raises(BadResponseError) as caught:
        spend(sandbox, mode)
    assert str(caught.value) == ("the wallet did not end after 5 pages: the upstream paging looks broken; report it")
    assert sandbox.requests("/wallet") == 2  # the first two pages; the batch of 4 was never sent


# --------------------------------------------------------------------------- the progress bar


def on_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run with stderr on an 80x24 pseudo-terminal (a terminal has a size; tqdm draws to fit it) and
    stdout to a file; returns (exit code, what the terminal showed, stdout)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    with tempfile.TemporaryFile() as out:
        command = [sys.executable, *args]
        proc = subprocess.Popen(command, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=slave)
        os.close(slave)
        shown = b"".join(iter(lambda: read_terminal(master), b""))
        os.close(master)
        code = proc.wait(60)
        out.seek(0)
        return code, shown.decode(errors="replace"), out.read().decode()


def read_terminal(fd: int) -> bytes:
    """The next chunk the terminal shows; b"" once the child has closed it (EIO on Linux)."""
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""


def test_a_long_scan_shows_a_bar_on_a_terminal_and_stdout_stays_clean(sandbox: LiveSandbox, home: Path) -> None:
    sandbox.faults(rows=1000)
    code, shown, stdout = on_terminal([SPEND, "--json"], script_env(home, sandbox.url))
    assert code == 0
    assert "spend.py:" in shown and "/1000 [" in shown and "rows" in shown  # tqdm's bar: n/total [time]
    assert shown.endswith("\r")  # wiped when done: the terminal is left as it was
    report = json.loads(stdout)
    assert report["row_count"] == 1000 and cents(report["total_usd"]) == expected_cents(1000)


def test_a_one_page_answer_on_a_terminal_draws_no_bar_and_loads_no_bar_library(
    sandbox: LiveSandbox, home: Path
) -> None:
    code, shown, stdout = on_terminal(["-X", "importtime", SPEND, "--json"], script_env(home, sandbox.url))
    assert code == 0 and json.loads(stdout)["row_count"] == DEMO_ROWS
    assert "import time:" in shown and "tqdm" not in shown  # importtime's lines go to the terminal too


def test_piped_the_bar_library_is_never_imported(sandbox: LiveSandbox, home: Path) -> None:
    sandbox.faults(rows=1000)
    out = run(["-X", "importtime", SPEND, "--json"], script_env(home, sandbox.url))
    assert out.returncode == 0 and json.loads(out.stdout)["row_count"] == 1000
    assert "import time:" in out.stderr and "tqdm" not in out.stderr


def test_without_the_bar_library_a_terminal_gets_the_same_answer_and_no_bar(sandbox: LiveSandbox, home: Path) -> None:
    """Without tqdm (a script run with only httpx and pydantic), a terminal gets the answer and no bar."""
    absent = (
        "import sys; sys.modules['tqdm'] = None; sys.path.insert(0, 'skill'); "
        "from prime_billing.cli import run_script; sys.exit(run_script('spend', 'spend.py', ['--json']))"
    )
    sandbox.faults(rows=1000)
    code, shown, stdout = on_terminal(["-c", absent], script_env(home, sandbox.url))
    assert code == 0 and shown == ""
    assert cents(json.loads(stdout)["total_usd"]) == expected_cents(1000)
