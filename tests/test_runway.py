"""Runway: when the balance runs out, against figures worked out by hand from the sandbox's rows.

The personal wallet holds $123.45 and 46 rows from 2026-11-14 19:00Z to
2026-11-20 10:00Z (`GET /api/v1/billing/wallet?limit=100`); its per-day totals
are worked out in tests/test_periods.py. Every expected figure below is a
literal with its arithmetic beside it, never the code under test's output. The
window is [as_of - days, as_of): its start counts, its end does not.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import ToolCall, ToolMessage

from conftest import SCRIPTS, LiveSandbox, all_rows, assert_one_line_error, cents, run, script_env
from prime_billing.config import SANDBOX_API_KEY
from prime_billing.langchain import PrimeBillingToolkit
from prime_billing.operations import get
from prime_billing.runway import METHOD, Runway
from serve_harness import running, sandbox_settings

RUNWAY = str(SCRIPTS / "runway.py")
REST_PATH = "/v1/prime-billing/runway"
TOOL = "prime-intellect-runway"
ALERT_150 = "balance $123.45 of wallet wal_sbx_personal is $26.55 below the minimum $150.00: add funds"

#: (arguments, what the answer must hold): each worked out by hand
CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # The 7 days to 2026-11-21 00:00Z hold every row: $221.52 in 46.
    # 221.52 / 7 = 31.645714… -> 31.6457 a day; 123.45 / 31.645714… = 123.45 x 7 / 221.52 = 864.15 / 221.52
    # = 3.9010… days -> 3.90 (rounded down); 2026-11-21 + 3.901 days = 2026-11-24 21:37Z -> 2026-11-24
    "a week": (
        {"as_of": "2026-11-21"},
        {
            "window_start": "2026-11-14T00:00:00Z",
            "window_end": "2026-11-21T00:00:00Z",
            "window_days": 7,
            "spend": 22152,
            "rows": 46,
            "usd_per_day": 31.6457,
            "days_left": 3.9,
            "empty_on": "2026-11-24",
            "min": 0,
        },
    ),
    # 3 days to 2026-11-21: 11-18, 11-19, 11-20 = 4706 + 3368 + 2241 = 10315 cents in 7 + 8 + 4 = 19 rows.
    # 103.15 / 3 = 34.38333… -> 34.3833; 123.45 x 3 / 103.15 = 370.35 / 103.15 = 3.5904… -> 3.59;
    # 2026-11-21 + 3.5904 days = 2026-11-24 14:10Z
    "three days": (
        {"as_of": "2026-11-21", "days": 3},
        {
            "window_start": "2026-11-18T00:00:00Z",
            "window_end": "2026-11-21T00:00:00Z",
            "window_days": 3,
            "spend": 10315,
            "rows": 19,
            "usd_per_day": 34.3833,
            "days_left": 3.59,
            "empty_on": "2026-11-24",
            "min": 0,
        },
    ),
    # A minimum of $50: (123.45 - 50) x 7 / 221.52 = 514.15 / 221.52 = 2.3210… -> 2.32 days;
    # 2026-11-21 + 2.321 days = 2026-11-23 07:42Z
    "a minimum": (
        {"as_of": "2026-11-21", "min_balance": 50},
        {
            "window_start": "2026-11-14T00:00:00Z",
            "window_end": "2026-11-21T00:00:00Z",
            "window_days": 7,
            "spend": 22152,
            "rows": 46,
            "usd_per_day": 31.6457,
            "days_left": 2.32,
            "empty_on": "2026-11-23",
            "min": 5000,
        },
    ),
    # One day to 2026-11-19 12:26Z: the row at 12:26 on the 19th ($10.30) is the window's end, left out.
    # 11-18 after 12:26: 13:00 12.88, 14:52 3.50, 18:09 5.10, 21:26 12.04 = 33.52;
    # 11-19 before 12:26: 00:43 0.12, 04:00 0.33, 05:52 8.64, 09:09 0.17 = 9.26; 33.52 + 9.26 = 42.78 in 8 rows.
    # 123.45 / 42.78 = 2.8856… -> 2.88; 2026-11-19 12:26Z + 2.8857 days = 2026-11-22 09:41Z
    "a day, its end left out": (
        {"as_of": "2026-11-19T12:26:00Z", "days": 1},
        {
            "window_start": "2026-11-18T12:26:00Z",
            "window_end": "2026-11-19T12:26:00Z",
            "window_days": 1,
            "spend": 4278,
            "rows": 8,
            "usd_per_day": 42.78,
            "days_left": 2.88,
            "empty_on": "2026-11-22",
            "min": 0,
        },
    ),
    # 14:00 at +01:00 is 13:00Z: the window [11-18 13:00Z, 11-19 13:00Z) starts at the 13:00 row ($12.88, kept)
    # and now holds the 12:26 row too: 42.78 + 10.30 = 53.08 in 9 rows. 123.45 / 53.08 = 2.3257… -> 2.32;
    # 2026-11-19 13:00Z + 2.3257 days = 2026-11-21 20:49Z
    "a date-time with an offset, its start kept": (
        {"as_of": "2026-11-19T14:00:00+01:00", "days": 1},
        {
            "window_start": "2026-11-18T13:00:00Z",
            "window_end": "2026-11-19T13:00:00Z",
            "window_days": 1,
            "spend": 5308,
            "rows": 9,
            "usd_per_day": 53.08,
            "days_left": 2.32,
            "empty_on": "2026-11-21",
            "min": 0,
        },
    ),
    # The team wallet ($980.00): on 11-20, 15.00 + 16.25 + 16.75 + 15.50 = 63.50 in 4 rows.
    # 980 / 63.50 = 15.4330… -> 15.43; 2026-11-21 + 15.433 days = 2026-12-06 10:23Z
    "the team's wallet": (
        {"as_of": "2026-11-21", "days": 1, "team_id": "team_sbx_demo"},
        {
            "window_start": "2026-11-20T00:00:00Z",
            "window_end": "2026-11-21T00:00:00Z",
            "window_days": 1,
            "spend": 6350,
            "rows": 4,
            "usd_per_day": 63.5,
            "days_left": 15.43,
            "empty_on": "2026-12-06",
            "min": 0,
        },
    ),
}


def figures(doc: dict[str, Any]) -> dict[str, Any]:
    """The figures of a runway document, money in cents, as the cases state them."""
    return {
        "window_start": doc["window_start"],
        "window_end": doc["window_end"],
        "window_days": doc["window_days"],
        "spend": cents(doc["spend_usd"]),
        "rows": doc["rows"],
        "usd_per_day": doc["usd_per_day"],
        "days_left": doc["days_left"],
        "empty_on": doc["empty_on"],
        "min": cents(doc["min_balance_usd"]),
    }


def argv(args: dict[str, Any]) -> list[str]:
    flags = {"team_id": "--team"}
    return [x for k, v in args.items() for x in (flags.get(k, "--" + k.replace("_", "-")), str(v))]


def test_the_hand_figures_are_the_sandboxs_own_rows(sandbox: LiveSandbox) -> None:
    rows = all_rows(sandbox)
    assert len(rows) == 46 and sum(cents(r["amount_usd"]) for r in rows) == 22152
    # the rows the one-day cases turn on
    at = {r["created_at"]: cents(r["amount_usd"]) for r in rows}
    assert at["2026-11-19T12:26:00Z"] == 1030 and at["2026-11-18T13:00:00Z"] == 1288
    assert "2026-11-18T12:26:00Z" not in at  # nothing sits on the 12:26 window's start
    team = all_rows(sandbox, teamId="team_sbx_demo")
    assert sum(cents(r["amount_usd"]) for r in team if r["created_at"].startswith("2026-11-20")) == 6350


@pytest.mark.parametrize(("args", "want"), list(CASES.values()), ids=list(CASES))
def test_the_cli_answers_the_hand_figures(sandbox: LiveSandbox, home: Path, args: dict, want: dict) -> None:
    out = run([RUNWAY, "--json", *argv(args)], script_env(home, sandbox.url))
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert figures(doc) == want
    assert doc["alert"] is None and doc["method"] == METHOD and doc["sandbox"] is True
    team = args.get("team_id")
    assert (doc["wallet_id"], doc["team_id"]) == (("wal_sbx_team", team) if team else ("wal_sbx_personal", None))
    assert cents(doc["balance_usd"]) == (98000 if team else 12345)


def test_json_carries_every_field(sandbox: LiveSandbox, home: Path) -> None:
    out = run([RUNWAY, "--json", "--as-of", "2026-11-21"], script_env(home, sandbox.url))
    doc = json.loads(out.stdout)
    assert set(doc) == {
        "wallet_id",
        "team_id",
        "currency",
        "balance_usd",
        "sandbox",
        "min_balance_usd",
        "method",
        "window_days",
        "window_start",
        "window_end",
        "spend_usd",
        "rows",
        "pages",
        "usd_per_day",
        "days_left",
        "empty_on",
        "alert",
    }
    assert (doc["spend_usd"], doc["balance_usd"], doc["min_balance_usd"], doc["pages"]) == (221.52, 123.45, 0, 1)


def test_the_summary_says_the_verdict_first_then_the_method_and_window(sandbox: LiveSandbox, home: Path) -> None:
    out = run([RUNWAY, "--as-of", "2026-11-21"], script_env(home, sandbox.url))
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout.splitlines() == [
        "SANDBOX DATA (demo account, not real billing)",
        "runway: 3.9 days: wallet wal_sbx_personal empties on 2026-11-24 at $31.65/day",
        "  wallet wal_sbx_personal (personal) · balance $123.45 USD · minimum $0.00",
        "  $221.52 spent in 46 rows over the 7 days 2026-11-14 00:00 to 2026-11-21 00:00 UTC: $31.65/day",
        f"  method: {METHOD}",
    ]
    floor = run([RUNWAY, "--as-of", "2026-11-21", "--min-balance", "50"], script_env(home, sandbox.url))
    assert floor.stdout.splitlines()[1] == (
        "runway: 2.3 days: wallet wal_sbx_personal reaches the minimum $50.00 on 2026-11-23 at $31.65/day"
    )


def test_no_spend_in_the_window_says_so_and_gives_no_date(sandbox: LiveSandbox, home: Path) -> None:
    """The 7 days to 2026-11-14 00:00Z end before the oldest row (2026-11-14 19:00Z): nothing spent."""
    env = script_env(home, sandbox.url)
    doc = json.loads(run([RUNWAY, "--json", "--as-of", "2026-11-14"], env).stdout)
    assert (doc["spend_usd"], doc["rows"], doc["usd_per_day"]) == (0, 0, 0)
    assert doc["days_left"] is None and doc["empty_on"] is None and doc["alert"] is None
    out = run([RUNWAY, "--as-of", "2026-11-14"], env)
    assert out.returncode == 0
    verdict = out.stdout.splitlines()[1]
    assert verdict.startswith("runway: no spend in the window: wallet wal_sbx_personal is not running down")
    assert verdict.endswith("try more --days") and "2026-" not in verdict


def test_a_balance_below_the_minimum_is_an_alert_and_exit_3(sandbox: LiveSandbox, home: Path) -> None:
    """$123.45 against $150: 150 - 123.45 = 26.55 short; no days left, the date is as_of's own."""
    env = script_env(home, sandbox.url)
    out = run([RUNWAY, "--as-of", "2026-11-21", "--min-balance", "150"], env)
    assert out.returncode == 3
    assert out.stdout.splitlines()[1] == f"runway: 0 days: {ALERT_150}"
    assert out.stderr == f"runway.py: alert: {ALERT_150}\n"
    js = run([RUNWAY, "--json", "--as-of", "2026-11-21", "--min-balance", "150"], env)
    assert js.returncode == 3 and js.stderr == f"runway.py: alert: {ALERT_150}\n"
    doc = json.loads(js.stdout)
    assert (doc["days_left"], doc["empty_on"], doc["alert"]) == (0, "2026-11-21", ALERT_150)
    # exactly at the minimum: no days left, said so, but nothing below it: no alert
    at = run([RUNWAY, "--as-of", "2026-11-21", "--min-balance", "123.45"], env)
    assert at.returncode == 0 and at.stderr == ""
    assert at.stdout.splitlines()[1] == "runway: 0 days: wallet wal_sbx_personal is at the minimum $123.45"


def test_the_cli_and_the_script_agree(sandbox: LiveSandbox, home: Path) -> None:
    env = script_env(home, sandbox.url)
    cli = run(["-m", "prime_billing", "runway", "--as-of", "2026-11-21"], env)
    assert cli.returncode == 0 and cli.stdout == run([RUNWAY, "--as-of", "2026-11-21"], env).stdout


def test_paging_stops_at_the_window_start(sandbox: LiveSandbox, home: Path) -> None:
    """7 rows a page: the whole wallet is 7 pages; one day (11-20: the first 4 rows) needs far fewer."""
    sandbox.faults(page_cap=7)
    doc = json.loads(
        run([RUNWAY, "--json", "--as-of", "2026-11-21", "--days", "1"], script_env(home, sandbox.url)).stdout
    )
    assert (cents(doc["spend_usd"]), doc["rows"]) == (2241, 4)  # 96 + 85 + 1030 + 1030
    assert doc["pages"] == sandbox.requests("/wallet") < 7


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--days", "0"], "days must be 1..365, got 0"),
        (["--days", "366"], "days must be 1..365, got 366"),
        (["--as-of", "tomorrow"], "as_of must be a date like 2026-11-01 or a date-time like"),
        (["--min-balance", "-1"], "min_balance must be >= 0, got -1"),
    ],
)
def test_bad_arguments_are_refused_before_sending(sandbox: LiveSandbox, home: Path, args: list, words: str) -> None:
    assert_one_line_error(run([RUNWAY, *args], script_env(home, sandbox.url)), 2, words)
    assert sandbox.requests() == 0


# --------------------------------------------------------------------------- every surface


@pytest.fixture
def launcher(sandbox: LiveSandbox) -> Iterator[Any]:
    with running(sandbox_settings(sandbox.url)) as launched:
        yield launched


SURFACE_CASES = [CASES["a minimum"], CASES["a date-time with an offset, its start kept"]]
BELOW = {"as_of": "2026-11-21", "min_balance": 150}


def test_langchain_tool_answers_the_hand_figures(sandbox: LiveSandbox) -> None:
    toolkit = PrimeBillingToolkit(base_url=sandbox.url, api_key=SANDBOX_API_KEY)
    tool = {t.name: t for t in toolkit.get_tools()}["runway"]
    try:
        for i, (args, want) in enumerate(SURFACE_CASES):
            message = tool.invoke(ToolCall(name="runway", args=args, id=f"c{i}", type="tool_call"))
            assert isinstance(message, ToolMessage) and message.status == "success", message.content
            assert isinstance(message.artifact, Runway)
            assert figures(message.artifact.model_dump(mode="json")) == want
        content = tool.invoke({"as_of": "2026-11-21", "min_balance": 50})
        assert content.splitlines()[1].startswith("runway: 2.3 days: wallet wal_sbx_personal reaches the minimum")
        below = tool.invoke(ToolCall(name="runway", args=BELOW, id="b", type="tool_call"))
        assert below.status == "success"  # a failed check is an answer, not an error
        assert below.artifact.alert == ALERT_150 and below.content.splitlines()[1] == f"runway: 0 days: {ALERT_150}"

        async def go() -> ToolMessage:
            return await tool.ainvoke({"name": "runway", "args": SURFACE_CASES[0][0], "id": "a", "type": "tool_call"})

        assert figures(asyncio.run(go()).artifact.model_dump(mode="json")) == SURFACE_CASES[0][1]
    finally:
        toolkit.close()


def test_rest_and_mcp_answer_the_hand_figures_as_one_document(launcher: Any, sandbox: LiveSandbox) -> None:
    from mcp import Client as MCPClient

    rest = launcher.urls["rest"] + REST_PATH

    async def go() -> list[Any]:
        async with MCPClient(launcher.urls["mcp"]) as client:
            listed = {t.name: t for t in (await client.list_tools()).tools}
            assert listed[TOOL].annotations.read_only_hint is True and listed[TOOL].input_schema["required"] == []
            calls = [args for args, _ in SURFACE_CASES] + [BELOW]
            return [await client.call_tool(TOOL, args) for args in calls]

    answers = asyncio.run(go())
    for (args, want), answer in zip(SURFACE_CASES, answers, strict=False):
        r = httpx.get(rest, params=args)
        assert r.status_code == 200 and r.headers["x-prime-sandbox"] == "1", r.text
        assert figures(r.json()) == want
        assert answer.is_error is not True and answer.structured_content == r.json()
    below = answers[-1]
    assert below.is_error is not True and below.structured_content["alert"] == ALERT_150
    assert below.content[0].text.splitlines()[1] == f"runway: 0 days: {ALERT_150}"
    r = httpx.get(rest, params=BELOW)
    assert r.status_code == 200 and r.json()["alert"] == ALERT_150
    refused = httpx.get(rest, params={"days": "0"})
    assert refused.status_code == 422 and refused.json()["detail"] == "days must be 1..365, got 0"
    paths = httpx.get(launcher.urls["rest"] + "/openapi.json").json()["paths"]
    assert {p["name"] for p in paths[get("runway").rest_path]["get"]["parameters"]} == {
        "days",
        "min_balance",
        "as_of",
        "teamId",
    }


def test_no_spend_is_worded_for_each_surface(launcher: Any, sandbox: LiveSandbox) -> None:
    """The advice to widen the window: `days` in a tool's words, never the CLI's `--days`."""
    from mcp import Client as MCPClient

    args = {"as_of": "2026-11-14"}

    async def go() -> Any:
        async with MCPClient(launcher.urls["mcp"]) as client:
            return await client.call_tool(TOOL, args)

    text = asyncio.run(go()).content[0].text
    toolkit = PrimeBillingToolkit(base_url=sandbox.url, api_key=SANDBOX_API_KEY)
    try:
        content = {t.name: t for t in toolkit.get_tools()}["runway"].invoke(args)
    finally:
        toolkit.close()
    for said in (text, content):
        assert said.splitlines()[1].endswith("try more days") and "--" not in said


def test_the_servers_row_cap_counts_only_the_window(sandbox: LiveSandbox) -> None:
    """20,000 rows (the demo ones, then a $0.01 row a minute older), a cap of 50 rows a report. One day to
    2026-11-21 keeps the 4 rows of 11-20 and is served; 30 days keep every row and are refused, advising
    fewer `?days=`."""
    sandbox.faults(rows=20_000)
    with running(sandbox_settings(sandbox.url), only="rest", max_report_rows=50) as launcher:
        rest = launcher.urls["rest"] + REST_PATH
        day = httpx.get(rest, params={"as_of": "2026-11-21", "days": 1})
        month = httpx.get(rest, params={"as_of": "2026-11-21", "days": 30})
    assert day.status_code == 200, day.text
    assert (cents(day.json()["spend_usd"]), day.json()["rows"]) == (2241, 4)
    assert month.status_code == 422 and month.json()["code"] == "report_too_large"
    assert "narrow it with ?days=" in month.json()["detail"]
