"""Times ago in `since`, `until` and `as_of`: `7d`, `24h`, `2w`, `today`, `yesterday`, on every surface.

A time ago is counted back from the call's one now. The expected instants are worked
out from a now the test brackets (a moment taken before the call and one after), and
the expected rows from the sandbox's own rows; the sandbox's now is pinned half an
hour before the call, so no row sits within minutes of a window's edge.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import ToolCall

from conftest import run, script_env
from prime_billing import operations as ops
from prime_billing.config import SANDBOX_API_KEY, load_settings
from prime_billing.errors import InvalidInputError
from prime_billing.langchain import PrimeBillingToolkit
from prime_billing.sandbox import NOW_ENV, Sandbox
from serve_harness import assert_problem, running, tool_call

#: the one refusal, word for word, whatever the surface
REFUSAL = (
    "{name} must be a date like 2026-11-01 or a date-time like 2026-11-01T09:00:00Z "
    "or a time ago (7d, 24h, 2w, today, yesterday), got {value!r}"
)
SPEND = ops.get("spend_report")
RUNWAY = ops.get("runway")


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def midnight(moment: datetime) -> datetime:
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)


# --------------------------------------------------------------------------- the forms, against a given now


def test_a_time_ago_is_counted_back_from_the_calls_now() -> None:
    now = datetime(2026, 12, 1, 0, 30, 15, tzinfo=UTC)  # just past a month's first midnight
    assert SPEND.check({"since": "yesterday", "until": "today"}, now=now) == {
        "since": "2026-11-30T00:00:00Z",
        "until": "2026-12-01T00:00:00Z",
        "top": 5,
        "by": None,
        "team_id": None,
        "include_rows": False,
    }
    # 7 days, 24 hours, 2 weeks (14 days) back from 2026-12-01 00:30:15
    assert [SPEND.check({"since": v}, now=now)["since"] for v in ("7d", "24h", "2w", "0h")] == [
        "2026-11-24T00:30:15Z",
        "2026-11-30T00:30:15Z",
        "2026-11-17T00:30:15Z",
        "2026-12-01T00:30:15Z",
    ]
    assert RUNWAY.check({"as_of": "2w"}, now=now)["as_of"] == "2026-11-17T00:30:15Z"
    # the longest: 99,999 weeks back is in the year 110, written with four digits so it reads back
    longest = SPEND.check({"since": "99999w"}, now=now)["since"]
    assert longest.startswith("0110-") and at(longest) == now - timedelta(weeks=99_999)
    with pytest.raises(InvalidInputError, match=r"^since must be a date like"):
        SPEND.check({"since": "99999w"}, now=datetime(1000, 1, 1, tzinfo=UTC))
    # dates and date-times pass as given
    assert SPEND.check({"since": "2026-11-01", "until": "2026-11-20T09:00:00+01:00"}, now=now)["until"] == (
        "2026-11-20T09:00:00+01:00"
    )
    # a now in another zone: today is the UTC day (2026-11-30 22:30Z), not the local one
    local = datetime(2026, 12, 1, 0, 30, tzinfo=timezone(timedelta(hours=2)))
    checked = SPEND.check({"since": "today", "until": "1h"}, now=local)
    assert (checked["since"], checked["until"]) == ("2026-11-30T00:00:00Z", "2026-11-30T21:30:00Z")


def test_without_a_now_the_current_time_is_used() -> None:
    before = datetime.now(UTC)
    checked = SPEND.check({"since": "24h", "until": "0h"})
    after = datetime.now(UTC)
    since, until = at(checked["since"]), at(checked["until"])
    assert until - since == timedelta(hours=24)  # not two clocks read apart
    assert before.replace(microsecond=0) <= until <= after


ACCEPTED = ["7d", "24h", "2w", "0h", "99999w", "today", "yesterday"]
REFUSED = ["7D", "7 d", "1m", "7days", "100000d", "Today", "-7d", "last week", "tomorrow"]


def test_the_schema_admits_what_the_check_accepts() -> None:
    """Every surface's JSON Schema (read from the model) admits the times ago by a pattern, and only those."""
    for op, name in ((SPEND, "since"), (SPEND, "until"), (RUNWAY, "as_of")):
        schema = op.input_schema()["properties"][name]
        (pattern,) = [alt["pattern"] for alt in schema["anyOf"] if "pattern" in alt]
        for value in ACCEPTED:
            assert re.fullmatch(pattern, value) and op.check({name: value})[name], value
        for value in REFUSED:
            assert not re.fullmatch(pattern, value), value
            with pytest.raises(InvalidInputError) as refused:
                op.check({name: value})
            assert str(refused.value) == REFUSAL.format(name=name, value=value)


# --------------------------------------------------------------------------- on every surface


@dataclass
class Window:
    """What a call with times ago should answer, from the sandbox's own rows and a bracketed now."""

    rows: list[dict[str, Any]]

    def kept(self, since: timedelta, until: timedelta | None, before: datetime, after: datetime) -> list[str]:
        """Ids of the rows created in [now - since, now - until) for every now in [before, after]."""

        def ids(now: datetime) -> list[str]:
            now = now.replace(microsecond=0)  # a call's now is counted to the second
            lo, hi = now - since, None if until is None else now - until
            return [
                r["id"] for r in self.rows if at(r["created_at"]) >= lo and (hi is None or at(r["created_at"]) < hi)
            ]

        first, last = ids(before), ids(after)
        assert first == last and first, "a row on the window's edge: pin the sandbox elsewhere"
        return first

    def total(self, ids: list[str]) -> float:
        return float(sum(Decimal(str(r["amount_usd"])) for r in self.rows if r["id"] in ids))


@pytest.fixture
def anchor(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Window]]:
    """The sandbox's now half an hour ago (to the second), pinned for this process, and its rows."""
    now = stamp(datetime.now(UTC) - timedelta(minutes=30))
    monkeypatch.setenv(NOW_ENV, now)
    box = Sandbox(now=at(now))
    with httpx.Client(transport=httpx.MockTransport(box.handle), base_url="http://sbx") as api:
        body = api.get(
            "/api/v1/billing/wallet", params={"limit": 100}, headers={"Authorization": f"Bearer {SANDBOX_API_KEY}"}
        ).json()
    yield now, Window(body["recent_billings"])


def check_spend(got: dict[str, Any], window: Window, before: datetime, after: datetime) -> None:
    """A spend report for since=2d, until=1d."""
    ids = window.kept(timedelta(days=2), timedelta(days=1), before, after)
    since, until = at(got["since"]), at(got["until"])
    assert before.replace(microsecond=0) - timedelta(days=2) <= since <= after - timedelta(days=2)
    assert until - since == timedelta(days=1)
    assert (got["row_count"], got["total_usd"]) == (len(ids), window.total(ids))


def test_cli_since_and_until(home: Path, anchor: tuple[str, Window]) -> None:
    now, window = anchor
    before = datetime.now(UTC)
    out = run(
        ["-m", "prime_billing", "spend", "--sandbox", "--since", "2d", "--until", "1d", "--json"],
        script_env(home, sandbox_now=now),
    )
    after = datetime.now(UTC)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    check_spend(got, window, before, after)
    assert [r["id"] for r in got["rows"]] == window.kept(timedelta(days=2), timedelta(days=1), before, after)
    text = run(
        ["-m", "prime_billing", "spend", "--sandbox", "--since", "2d", "--until", "1d"],
        script_env(home, sandbox_now=now),
    )
    span = r" · \d{4}-\d\d-\d\d \d\d:\d\d to \d{4}-\d\d-\d\d \d\d:\d\d UTC · "
    assert text.returncode == 0 and re.search(span, text.stdout.splitlines()[1]), text.stdout


def test_cli_since_7d_finds_every_row_of_the_sandbox_alive_today(home: Path) -> None:
    """The sandbox's now left to itself (this hour): its 46 rows, $221.52, span 5.6 days."""
    before = datetime.now(UTC)
    out = run(
        ["-m", "prime_billing", "spend", "--sandbox", "--since", "7d", "--json"], script_env(home, sandbox_now=None)
    )
    after = datetime.now(UTC)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert before.replace(microsecond=0) - timedelta(days=7) <= at(got["since"]) <= after - timedelta(days=7)
    assert (got["row_count"], got["total_usd"], got["until"]) == (46, 221.52, None)


def test_langchain_tools(anchor: tuple[str, Window]) -> None:
    _, window = anchor
    kit = PrimeBillingToolkit(sandbox=True)
    tools = {t.name: t for t in kit.get_tools()}
    try:
        before = datetime.now(UTC)
        spend = tools["spend_report"].invoke(
            ToolCall(name="spend_report", args={"since": "2d", "until": "1d"}, id="c1", type="tool_call")
        )
        runway = tools["runway"].invoke(ToolCall(name="runway", args={"as_of": "today"}, id="c2", type="tool_call"))
        after = datetime.now(UTC)
        refused = tools["spend_report"].invoke(
            ToolCall(name="spend_report", args={"until": "next week"}, id="c3", type="tool_call")
        )
    finally:
        kit.close()
    check_spend(spend.artifact.model_dump(mode="json"), window, before, after)
    assert runway.artifact.window_end in {midnight(before), midnight(after)}
    assert (refused.status, refused.content) == ("error", REFUSAL.format(name="until", value="next week"))


def test_mcp_and_rest(anchor: tuple[str, Window]) -> None:
    """`serve --sandbox` in process: its sandbox pinned by the variable, like any other."""
    _, window = anchor
    with running(load_settings(sandbox=True)) as launcher, httpx.Client(timeout=30) as client:
        rest, mcp = launcher.urls["rest"], launcher.urls["mcp"]
        before = datetime.now(UTC)
        got_rest = client.get(rest + SPEND.rest_path, params={"since": "2d", "until": "1d"})
        got_mcp = tool_call(client, mcp, SPEND.mcp_tool, {"since": "2d", "until": "1d"})
        runway = client.get(rest + RUNWAY.rest_path, params={"as_of": "yesterday"})
        after = datetime.now(UTC)
        bad_rest = client.get(rest + SPEND.rest_path, params={"since": "7days"})
        bad_mcp = tool_call(client, mcp, SPEND.mcp_tool, {"since": "7days"})
    assert got_rest.status_code == 200, got_rest.text
    check_spend(got_rest.json(), window, before, after)
    assert got_mcp.get("isError") is not True, got_mcp
    check_spend(got_mcp["structuredContent"], window, before, after)
    assert at(runway.json()["window_end"]) in {
        midnight(before) - timedelta(days=1),
        midnight(after) - timedelta(days=1),
    }
    words = REFUSAL.format(name="since", value="7days")
    assert assert_problem(bad_rest, 422)["detail"] == words
    assert bad_mcp["isError"] is True and bad_mcp["content"][0]["text"] == words


def test_the_row_cap_counts_the_window_of_a_time_ago(anchor: tuple[str, Window]) -> None:
    """The cap counts the rows since the call's one now - 24h: a cap of exactly those serves, one fewer refuses."""
    _, window = anchor
    before = datetime.now(UTC)
    with running(load_settings(sandbox=True), only="rest", max_report_rows=8) as launcher:
        served = httpx.get(launcher.urls["rest"] + SPEND.rest_path, params={"since": "24h"}, timeout=30)
    with running(load_settings(sandbox=True), only="rest", max_report_rows=7) as launcher:
        refused = httpx.get(launcher.urls["rest"] + SPEND.rest_path, params={"since": "24h"}, timeout=30)
    after = datetime.now(UTC)
    # rows 3 h + 17 min x (i % 5) apart: 0 to 21 h 34 min before the sandbox's now are within 24 hours
    assert len(window.kept(timedelta(hours=24), None, before, after)) == 8
    assert served.status_code == 200 and served.json()["row_count"] == 8, served.text
    doc = assert_problem(refused, 422)
    assert doc["code"] == "report_too_large" and "?since=" in doc["detail"]
