"""Pages that do not add up fail the report, in one line that says what did not: never a silent total.

Each upstream below is the sandbox's 2,000-row wallet (the `rows` knob) served wrong in one way,
through its `wallet_page` hook, on a real loopback socket; each is read by the sync client, the
async client and the `spend` script. A scan of 2,000 rows asks for offset 0 (the first page), 100
(the second, alone), then 200..1,300 (12 at once), then 1,400..1,900; the figures in the messages
are worked out from that, by hand, in each case's comment.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from conftest import (
    SANDBOX_NOW,
    SCRIPTS,
    LiveSandbox,
    assert_one_line_error,
    run,
    script_env,
    start_sandbox,
    upstream_body,
)
from prime_billing.client import AsyncClient, Client, RetryPolicy
from prime_billing.config import SANDBOX_API_KEY
from prime_billing.errors import BadResponseError
from prime_billing.sandbox.faults import FaultySandbox

Rows = list[dict[str, Any]]
TAIL = ": the upstream paging looks broken; report it"
#: no retries: every failure here is in a 200 answer, which is never retried anyway
NO_RETRIES = RetryPolicy(max_retries=0)


@dataclass
class Wallet2000(FaultySandbox):
    """The sandbox's wallet of 2,000 rows, its wallet requests counted (the first is 0)."""

    rows: int | None = 2000
    served: int = 0
    counting: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def wallet_page(self, wallet: Mapping[str, Any], offset: int, limit: int) -> tuple[int, Rows]:
        with self.counting:
            nth, self.served = self.served, self.served + 1
        return self.page(nth, wallet, offset, limit)

    def page(self, nth: int, wallet: Mapping[str, Any], offset: int, limit: int) -> tuple[int, Rows]:
        return super().wallet_page(wallet, offset, limit)


class EndsEarly(Wallet2000):
    """Serves no row past the 1,310th, though its total says 2,000."""

    def page(self, nth: int, wallet: Mapping[str, Any], offset: int, limit: int) -> tuple[int, Rows]:
        total, rows = super().page(nth, wallet, offset, limit)
        return total, rows[: max(0, 1310 - offset)]


class Overlapping(Wallet2000):
    """From offset 1,000 on, serves each page 40 rows earlier than asked."""

    def page(self, nth: int, wallet: Mapping[str, Any], offset: int, limit: int) -> tuple[int, Rows]:
        return super().page(nth, wallet, offset - 40 if offset >= 1000 else offset, limit)


class UnderCounted(Wallet2000):
    """Says it holds 60 rows and serves its pages whole."""

    def page(self, nth: int, wallet: Mapping[str, Any], offset: int, limit: int) -> tuple[int, Rows]:
        return 60, super().page(nth, wallet, offset, limit)[1]


class Shrinking(Wallet2000):
    """Its total is 100 rows smaller from the second request on, the rows unchanged."""

    def page(self, nth: int, wallet: Mapping[str, Any], offset: int, limit: int) -> tuple[int, Rows]:
        total, rows = super().page(nth, wallet, offset, limit)
        return (total if nth == 0 else total - 100), rows


class Inflated(Wallet2000):
    """Its total is 50 rows larger from the second request on, though no row arrived."""

    def page(self, nth: int, wallet: Mapping[str, Any], offset: int, limit: int) -> tuple[int, Rows]:
        total, rows = super().page(nth, wallet, offset, limit)
        return (total if nth == 0 else total + 50), rows


class EmptyFirstPage(Wallet2000):
    """Its first page holds no row, though its total says 2,000."""

    def page(self, nth: int, wallet: Mapping[str, Any], offset: int, limit: int) -> tuple[int, Rows]:
        total, rows = super().page(nth, wallet, offset, limit)
        return total, ([] if nth == 0 else rows)


class NegativeTotal(Wallet2000):
    def page(self, nth: int, wallet: Mapping[str, Any], offset: int, limit: int) -> tuple[int, Rows]:
        return -1, super().page(nth, wallet, offset, limit)[1]


CASES: dict[str, tuple[type[Wallet2000], str]] = {
    # the batch 200..1,300 holds the page at offset 1,300: 10 rows (1,300..1,309) where 100 are due
    "ends early": (
        EndsEarly,
        "the wallet reports 2,000 rows but ends after 1,310 (its page at offset 1,300 held 10 rows, not 100)",
    ),
    # the page at offset 1,000 (in the batch 200..1,300) starts with row 961 (0-based 960), which
    # the page at offset 900 of the same batch held as row 961: here it is row 1,001
    "overlap": (
        Overlapping,
        "the wallet's pages overlap: its row 961 came again as row 1,001 (in its page at offset 1,000)",
    ),
    # the first page holds 100 rows of a wallet said to hold 60
    "total below the rows served": (
        UnderCounted,
        "the wallet reports 60 rows but served 100 (its page at offset 0 held 100)",
    ),
    # the first page says 2,000, the second 1,900
    "total shrinks": (Shrinking, "the wallet's total went down between pages, from 2,000 rows to 1,900"),
    # 50 rows seem to have arrived, so every offset from the second page on is asked 50 further on:
    # the places 1,950..1,999 are asked for last, at offset 2,000 with limit 50, where the total
    # (2,050) says 50 rows remain and the upstream has none
    "total grows without rows": (
        Inflated,
        "the wallet reports 2,050 rows but ends after 2,000 (its page at offset 2,000 held 0 rows, not 50)",
    ),
    # nothing to read after an empty first page: 0 rows kept of the 2,000 said
    "empty first page": (EmptyFirstPage, "read 0 rows of the 2,000 the wallet reports"),
    "negative total": (
        NegativeTotal,
        "Prime API answer does not match the Wallet schema "
        "(total_billings: Input should be greater than or equal to 0): upgrade prime-billing or report it",
    ),
}


def message(case: str) -> str:
    text = CASES[case][1]
    return text if text.startswith("Prime API") else text + TAIL


@pytest.fixture(params=list(CASES))
def hostile(request: pytest.FixtureRequest) -> Iterator[tuple[str, LiveSandbox]]:
    live, _ = start_sandbox(CASES[request.param][0]())
    try:
        yield request.param, live
    finally:
        live.server.shutdown()  # type: ignore[attr-defined]
        live.server.server_close()  # type: ignore[attr-defined]


def spend(live: LiveSandbox, mode: str, args: dict[str, Any] | None = None) -> Any:
    if mode == "sync":
        with Client(base_url=live.url, api_key=SANDBOX_API_KEY, retry=NO_RETRIES) as client:
            return client.call("spend_report", args or {})

    async def main() -> Any:
        async with AsyncClient(base_url=live.url, api_key=SANDBOX_API_KEY, retry=NO_RETRIES) as client:
            return await client.call("spend_report", args or {})

    return anyio.run(main)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_inconsistent_wallet_fails_the_report_on_both_clients(hostile: tuple[str, LiveSandbox], mode: str) -> None:
    case, live = hostile
    with pytest.raises(BadResponseError) as caught:
        spend(live, mode)
    assert str(caught.value) == message(case)


def test_an_inconsistent_wallet_is_one_line_on_the_cli(hostile: tuple[str, LiveSandbox], home: Path) -> None:
    case, live = hostile
    out = run([str(SCRIPTS / "spend.py")], script_env(home, live.url))
    assert_one_line_error(out, 1, f"spend.py: error: {message(case)}")


# --------------------------------------------------------------------------- with `since`


@dataclass
class Unsorted(FaultySandbox):
    """1,000 rows, not all newest first: the row at place 350 (0-based) is dated as the newest."""

    rows: int | None = 1000

    def wallet_page(self, wallet: Mapping[str, Any], offset: int, limit: int) -> tuple[int, Rows]:
        total, rows = super().wallet_page(wallet, offset, limit)
        newest = wallet["rows"][0]["created_at"]
        return total, [{**r, "created_at": newest} if place == 350 else r for place, r in enumerate(rows, offset)]


@pytest.fixture
def unsorted() -> Iterator[LiveSandbox]:
    live, _ = start_sandbox(Unsorted())
    try:
        yield live
    finally:
        live.server.shutdown()  # type: ignore[attr-defined]
        live.server.server_close()  # type: ignore[attr-defined]


def unsorted_since(live: LiveSandbox) -> tuple[datetime, str]:
    """A moment 250 generated rows below the 46 demo rows, and what the scan must say of it: the
    rows up to it are places 0..295 (296 rows); the batch that finds it, pages 200..399, also holds
    place 350, newer than the moment, so 297 rows are kept."""
    oldest_demo = datetime.fromisoformat(
        upstream_body(live, "/api/v1/billing/wallet", limit=1, offset=45)["recent_billings"][0]["created_at"]
    )
    since = (oldest_demo - timedelta(minutes=250)).astimezone(UTC)
    return since, f"read 297 rows of the 296 the wallet reports since {since.isoformat()}{TAIL}"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_rows_kept_past_the_moment_fail_the_report(unsorted: LiveSandbox, mode: str) -> None:
    since, said = unsorted_since(unsorted)
    with pytest.raises(BadResponseError) as caught:
        spend(unsorted, mode, {"since": since.isoformat()})
    assert str(caught.value) == said


def test_rows_kept_past_the_moment_are_one_line_on_the_cli(unsorted: LiveSandbox, home: Path) -> None:
    since, said = unsorted_since(unsorted)
    out = run([str(SCRIPTS / "spend.py"), "--since", since.isoformat()], script_env(home, unsorted.url))
    assert_one_line_error(out, 1, f"spend.py: error: {said}")


#: the other reports reading the whole 2,000-row wallet (dated from conftest's now, its rows are from
#: 2026-11-13 to 11-20): each folds the rows as they come, and the scan fails each of them the same way
FOLDED = {
    "reconcile_run": {"run_id": "rft_sbx_completed"},
    "runway": {"days": 30, "as_of": "2026-11-21"},
    "pace": {"budget": 300, "as_of": "2026-11-21"},
}


@pytest.fixture(params=list(CASES))
def hostile_then(request: pytest.FixtureRequest) -> Iterator[tuple[str, LiveSandbox]]:
    """As `hostile`, its rows dated from conftest's now, so that a window or a period can hold them all."""
    live, _ = start_sandbox(CASES[request.param][0](now=datetime.fromisoformat(SANDBOX_NOW)))
    try:
        yield request.param, live
    finally:
        live.server.shutdown()  # type: ignore[attr-defined]
        live.server.server_close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", list(FOLDED))
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_inconsistent_wallet_fails_every_report_folded_from_it(
    hostile_then: tuple[str, LiveSandbox], mode: str, name: str
) -> None:
    case, live = hostile_then

    async def main() -> Any:
        async with AsyncClient(base_url=live.url, api_key=SANDBOX_API_KEY, retry=NO_RETRIES) as client:
            return await client.call(name, FOLDED[name])

    with pytest.raises(BadResponseError) as caught:
        if mode == "sync":
            with Client(base_url=live.url, api_key=SANDBOX_API_KEY, retry=NO_RETRIES) as client:
                client.call(name, FOLDED[name])
        else:
            anyio.run(main)
    assert str(caught.value) == message(case)
