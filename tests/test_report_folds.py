"""Reports folded as the pages arrive: the scan gives a report's fold each row of the wallet once, in
the wallet's order, while rows arrive and pages repeat them; a report made without its rows (its
sums only: what the CLI's summary asks for) answers what one made with every row answers, and what
is worked out here by hand; the CLI asks for the rows only where its output carries them.

Expected figures come from how the sandbox builds its long wallet (`rows=1000`, conftest's now
2026-11-20T10:00Z): the 46 demo rows ($221.52: pods $101.08 in 12 rows, rft_run $104.08 in 20,
disks $7.70 in 6, inference $7.02 in 4, sandboxes $1.64 in 4; 28 resources, 5 of them runs; the
oldest, a $4.12 pod row, at 2026-11-14T19:00Z), then 954 generated pod rows of $0.01, the k-th
(from 0) k + 1 minutes older than the oldest demo row, on resource pod_sbx_old_{k % 50}: so the
oldest of all is at 2026-11-14T03:06Z, and the wallet holds $221.52 + $9.54 = $231.06 in 1000 rows.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from conftest import SCRIPTS, LiveSandbox, all_rows, cents, run, script_env, start_sandbox
from prime_billing.client import AsyncClient, Client, RetryPolicy
from prime_billing.compose import PAGES_IN_FLIGHT, WalletScan, scan_wallet
from prime_billing.config import SANDBOX_API_KEY
from prime_billing.models import BillingEntry
from prime_billing.plan import SubCall
from prime_billing.wording import mark, phrase
from test_paging import GrowingHead

BOTH_MODES = pytest.mark.parametrize("mode", ["sync", "async"])
FAST = RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.02)
#: the fields of each report that only an answer made with its rows holds (spend's periods: past the newest 31)
HELD = {"spend_report": {"rows", "by_resource_id"}, "reconcile_run": {"rows"}}


class Seen:
    """A fold that notes what it is given, and how many rows it had after each batch of pages."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.after_batches: list[int] = []

    def add(self, row: BillingEntry) -> None:
        self.ids.append(row.id)


def scanned(live: LiveSandbox, mode: str, fold: Seen) -> WalletScan:
    """`scan_wallet` driven here through each client's public `call`, a batch's pages at once (threads for
    the sync client, tasks for the async one), noting the fold's length after each batch is placed."""
    plan = scan_wallet(None, fold)
    if mode == "sync":
        with (
            Client(base_url=live.url, api_key=SANDBOX_API_KEY, retry=FAST) as client,
            ThreadPoolExecutor(PAGES_IN_FLIGHT) as pool,
        ):
            answer: Any = None
            while True:
                try:
                    ask = plan.send(answer)
                except StopIteration as done:
                    return done.value
                fold.after_batches.append(len(fold.ids))

                def call(sub: SubCall, client: Client = client) -> Any:
                    return client.call(sub.name, sub.args)

                answer = call(ask) if isinstance(ask, SubCall) else list(pool.map(call, ask))

    async def main() -> WalletScan:
        async with AsyncClient(base_url=live.url, api_key=SANDBOX_API_KEY, retry=FAST) as client:
            answer: Any = None
            while True:
                try:
                    ask = plan.send(answer)
                except StopIteration as done:
                    return done.value
                fold.after_batches.append(len(fold.ids))
                if isinstance(ask, SubCall):
                    answer = await client.call(ask.name, ask.args)
                    continue
                results: list[Any] = [None] * len(ask)

                async def one(i: int, sub: SubCall, client: AsyncClient = client, results: list[Any] = results) -> None:
                    results[i] = await client.call(sub.name, sub.args)

                async with anyio.create_task_group() as group:
                    for i, sub in enumerate(ask):
                        group.start_soon(one, i, sub)
                answer = results

    return anyio.run(main)


@BOTH_MODES
@pytest.mark.parametrize(
    ("knobs", "duplicates", "after_two"),
    [
        # 5 rows arrive after the first page: the second, asked alone at offset 100, holds the places
        # 95..194, so 95..99 come twice; the 5 oldest, pushed past offset 1,000, come last
        ({"new_rows": 5}, 5, 195),
        # 150 arrive: the second page (offset 100) holds 50 arrivals and the places 0..49, all read already
        ({"new_rows": 150}, 50, 100),
        # 7 rows a page, 3 arrive: the second page (offset 7) holds the places 4..10, 4..6 twice
        ({"page_cap": 7, "new_rows": 3}, 3, 11),
    ],
)
def test_the_fold_is_given_each_row_once_in_order_while_pages_repeat_rows(
    sandbox: LiveSandbox, mode: str, knobs: dict[str, int], duplicates: int, after_two: int
) -> None:
    sandbox.faults(rows=1000)
    rows = all_rows(sandbox)  # the wallet as it stands, before any row arrives
    sandbox.faults(**knobs)  # counted from the next wallet request on: the scan's first
    fold = Seen()
    scan = scanned(sandbox, mode, fold)
    assert fold.ids == [r["id"] for r in rows]  # each row once, newest first; no arrival
    assert (scan.row_count, scan.duplicates) == (1000, duplicates)
    # given as the pages are placed, not at the end: after the first page its rows, after the second
    # every place up to the second page's last
    assert fold.after_batches[:3] == [0, knobs.get("page_cap", 100), after_two]
    assert fold.after_batches[-1] < 1000


@BOTH_MODES
def test_rows_waiting_for_a_place_read_again_go_to_the_fold_in_order(sandbox: LiveSandbox, mode: str) -> None:
    """The head grows before every request, by a different amount for each page of a batch, so some
    places are read by no page of their batch and read again in the next: the rows after them wait.
    Its rows are the sandbox's (the arrivals aside): read here from the plain one."""
    sandbox.faults(rows=1000)
    rows = all_rows(sandbox)
    live, _ = start_sandbox(GrowingHead(rows=1000, page_cap=30))
    try:
        fold = Seen()
        scan = scanned(live, mode, fold)
    finally:
        live.server.shutdown()  # type: ignore[attr-defined]
        live.server.server_close()  # type: ignore[attr-defined]
    assert fold.ids == [r["id"] for r in rows]
    assert scan.row_count == 1000 and scan.duplicates > 0
    assert live.box.arrived > 30  # more rows arrived while paging than a page holds


def call(live: LiveSandbox, mode: str, name: str, args: dict[str, Any]) -> Any:
    if mode == "sync":
        with Client(base_url=live.url, api_key=SANDBOX_API_KEY, retry=FAST) as client:
            return client.call(name, args).data

    async def main() -> Any:
        async with AsyncClient(base_url=live.url, api_key=SANDBOX_API_KEY, retry=FAST) as client:
            return (await client.call(name, args)).data

    return anyio.run(main)


def lean_and_full(
    live: LiveSandbox, mode: str, name: str, args: dict[str, Any], knobs: dict[str, int]
) -> tuple[dict, dict]:
    """The report made without its rows and with them, as JSON data, each with the sandbox's `knobs` set
    afresh (rows arrive after each one's first page): the same but for the fields only the second holds."""
    live.faults(**knobs)
    lean = call(live, mode, name, args).model_dump(mode="json")
    live.faults(**knobs)
    full = call(live, mode, name, {**args, "include_rows": True}).model_dump(mode="json")
    assert not HELD[name] & set(lean) and HELD[name] <= set(full)
    assert lean == {k: v for k, v in full.items() if k not in HELD[name]}
    return lean, full


@BOTH_MODES
@pytest.mark.parametrize("knobs", [{}, {"new_rows": 5}, {"page_cap": 7, "new_rows": 3}])
def test_a_spend_summary_folded_as_rows_come_is_the_report_made_of_every_row(
    sandbox: LiveSandbox, mode: str, knobs: dict[str, int]
) -> None:
    sandbox.faults(rows=1000)
    rows = all_rows(sandbox)
    lean, full = lean_and_full(sandbox, mode, "spend_report", {"by": "day"}, knobs)
    assert [r["id"] for r in full["rows"]] == [r["id"] for r in rows]
    assert len(lean["periods"]) == lean["period_count"] == 7  # 11-20 back to 11-14, fewer than 31: all listed
    # $221.52 + 954 x $0.01; pods: 12 demo rows ($101.08) and the 954 generated
    assert (lean["row_count"], cents(lean["total_usd"])) == (1000, 23106)
    assert [(g["key"], cents(g["total_usd"]), g["rows"]) for g in lean["by_resource_type"]] == [
        ("pods", 11062, 966),
        ("rft_run", 10408, 20),
        ("disks", 770, 6),
        ("inference", 702, 4),
        ("sandboxes", 164, 4),
    ]
    # 28 demo resources (5 runs) and pod_sbx_old_00..49
    assert (lean["run_count"], lean["other_resource_count"]) == (5, 73)
    assert (lean["newest_at"], lean["oldest_at"]) == ("2026-11-20T10:00:00Z", "2026-11-14T03:06:00Z")
    # 2026-11-14: the 2 demo rows (a $5.10 run row, a $4.12 pod row) and the 954 generated ones
    day = {p["period"]: p for p in lean["periods"]}["2026-11-14"]
    assert (cents(day["total_usd"]), day["rows"]) == (1876, 956)
    assert [(g["key"], cents(g["total_usd"]), g["rows"]) for g in day["by_resource_type"]] == [
        ("pods", 1366, 955),
        ("rft_run", 510, 1),
    ]


@BOTH_MODES
def test_reconcile_pace_and_runway_folded_as_rows_come(sandbox: LiveSandbox, mode: str) -> None:
    sandbox.faults(rows=1000)
    lean, full = lean_and_full(sandbox, mode, "reconcile_run", {"run_id": "rft_sbx_mismatch"}, {"new_rows": 5})
    # the run bills $2.50; its 2 rows are $2.13, among the 1,000 read
    assert (lean["row_count"], lean["rows_scanned"], cents(lean["wallet_charged_usd"])) == (2, 1000, 213)
    assert len(full["rows"]) == 2 and lean["reconciled"] is False

    sandbox.faults(new_rows=5)
    pace = call(sandbox, mode, "pace", {"budget": 300, "as_of": "2026-11-20T11:00:00Z"})
    # every row is in [2026-11-01, as_of): $231.06 after 467 of November's 720 hours; projected
    # 231.06 x 720 / 467 = 356.2381... (up to the cent: 356.24), 118.74% of 300; spent 77.02%; the
    # budget crossed after 467 x 300 / 231.06 = 606.336 hours, 25 days 6 h 20.2 min: 2026-11-26 06:20
    assert (pace.rows, cents(pace.spend_usd), pace.spent_percent) == (1000, 23106, 77.02)
    assert (pace.projected_usd, pace.projected_percent, pace.status) == (356.24, 118.74, "over_pace")
    assert pace.crossing_at == datetime(2026, 11, 26, 6, 20, tzinfo=UTC)

    sandbox.faults(new_rows=5)
    runway = call(sandbox, mode, "runway", {"days": 7, "as_of": "2026-11-21"})
    # the window [2026-11-14, 2026-11-21) holds every row: $231.06 / 7 = $33.0086 a day; $123.45
    # lasts 123.45 x 7 / 231.06 = 3.7399... days (down: 3.73), from 11-21 to 11-24
    assert (runway.rows, cents(runway.spend_usd), runway.usd_per_day) == (1000, 23106, 33.0086)
    assert (runway.days_left, runway.empty_on.isoformat()) == (3.73, "2026-11-24")


#: records the `include_rows` of every call the CLI makes, then runs one of its scripts
RECORDING = """
import sys
from prime_billing import client
from prime_billing.cli import run_script

asked, call = [], client.Client.call
def recording(self, name, args=None, **kw):
    asked.append((args or {}).get("include_rows"))
    return call(self, name, args, **kw)
client.Client.call = recording
try:
    code = run_script(sys.argv[1], sys.argv[1] + ".py", sys.argv[2:])
finally:
    print("include_rows:", asked, file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize(
    ("argv", "asked"),
    [
        (["spend"], False),  # the summary lists no row: folded, never held
        (["spend", "--by", "day"], False),
        (["spend", "--json"], True),
        (["spend", "--csv", "{csv}"], True),
        (["spend", "--by", "week", "--csv", "-"], True),  # every period
        (["reconcile", "rft_sbx_mismatch"], True),  # its text lists the run's rows
        (["reconcile", "rft_sbx_mismatch", "--json"], True),
        (["wallet", "--min-balance", "10"], True),  # its text shows the page
        (["runway", "--as-of", "2026-11-21"], None),  # no rows to ask for
        (["pace", "--budget", "300"], None),
    ],
)
def test_the_cli_asks_for_rows_only_where_its_output_carries_them(
    sandbox: LiveSandbox, home: Path, tmp_path: Path, argv: list[str], asked: bool | None
) -> None:
    sandbox.faults(rows=1000)
    env = script_env(home, sandbox.url, PYTHONPATH=str(Path(SCRIPTS).parent / "skill"))
    out = run(["-c", RECORDING, *[a.replace("{csv}", str(tmp_path / "x.csv")) for a in argv]], env)
    assert out.returncode in (0, 3), out.stderr
    assert out.stderr.splitlines()[-1] == f"include_rows: [{asked}]"
    if argv == ["spend"]:  # made without its rows, the summary still says where every one is
        assert "$231.06 USD in 1000 rows" in out.stdout
        assert "top other resources (5 of 73; all in --json or --csv)" in out.stdout


@pytest.mark.parametrize(
    ("surface", "words"),
    [
        ("cli", "all in --json or --csv"),
        ("tool", "all with include_rows=true"),
        ("mcp", "all with include_rows=true"),
        ("rest", "all with ?include_rows=true"),
    ],
)
def test_where_the_rows_of_an_answer_without_them_are_in_each_surface_s_words(surface: Any, words: str) -> None:
    """The CLI's --json and --csv carry every row whatever its summary was made with; elsewhere a caller asks."""
    assert phrase(f"all {mark('rows_on_request')}", surface) == words
