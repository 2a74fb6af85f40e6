"""A Retry-After that is not a usable number of seconds (`inf`, `nan`, `1e308`, a date centuries ahead)
is garbage, read as the longest wait there is (`MAX_RETRY_AFTER`, a day: 86400 s): every surface
says a finite wait, the launcher passes on a finite integer header, nothing answers 500, and the
retry budget (30 s) ends the retries at the first answer, since a day is far beyond it.
"""

from __future__ import annotations

import math
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
from mcp import Client as MCPClient
from mcp.client.streamable_http import streamable_http_client

from conftest import SCRIPTS, LiveSandbox, assert_one_line_error, run, script_env
from prime_billing.client import MAX_RETRY_AFTER, retry_after_seconds
from prime_billing.config import SANDBOX_API_KEY
from prime_billing.errors import RateLimitError, UpstreamUnavailableError
from serve_harness import assert_problem, running, sandbox_settings

WALLET = str(SCRIPTS / "wallet.py")
REST_WALLET = "/v1/api/v1/billing/wallet"
WALLET_TOOL = "prime-intellect-getwallet"
#: upstream Retry-After values that say no usable number of seconds
GARBAGE = ["inf", "Infinity", "-nan", "nan", "1e308", "Fri, 31 Dec 9999 23:59:59 GMT"]
#: how every surface words the wait: a day, the ceiling
A_DAY = "wait 86400s and try again"


def test_the_ceiling_is_a_day() -> None:
    assert MAX_RETRY_AFTER == 24 * 60 * 60


@pytest.mark.parametrize("value", GARBAGE)
def test_garbage_reads_as_the_ceiling(value: str) -> None:
    assert retry_after_seconds(value) == 86400.0


def test_usable_values_are_kept_and_bounded() -> None:
    assert retry_after_seconds("7") == 7.0 and retry_after_seconds("0.3") == 0.3
    assert retry_after_seconds("86401") == 86400.0  # beyond a day: the ceiling
    assert retry_after_seconds("-inf") == 0.0 and retry_after_seconds("-3") == 0.0  # the past: now
    assert retry_after_seconds("soon") is None  # not a number nor a date: as if absent


@pytest.mark.parametrize("value", GARBAGE)
def test_the_cli_says_a_finite_wait_after_one_attempt(sandbox: LiveSandbox, home: Path, value: str) -> None:
    sandbox.faults(next=[{"status": 429, "retry_after": value}])
    out = run([WALLET, "--json"], script_env(home, sandbox.url))  # 2 retries allowed, a 30 s budget
    assert_one_line_error(out, 1, f"wallet.py: error: rate limited (429): {A_DAY}")
    assert sandbox.requests() == 1  # a day's wait is beyond the budget: not retried


def test_rest_answers_429_and_502_with_a_finite_integer_retry_after(sandbox: LiveSandbox) -> None:
    with running(sandbox_settings(sandbox.url)) as launcher:
        for value in GARBAGE:
            sandbox.faults(next=[{"status": 429, "retry_after": value}])
            limited = httpx.get(launcher.urls["rest"] + REST_WALLET)
            assert assert_problem(limited, 429)["detail"] == f"rate limited (429): {A_DAY}", value
            assert limited.headers["retry-after"] == "86400", value
            sandbox.faults(next=[{"status": 503, "retry_after": value}])
            unavailable = httpx.get(launcher.urls["rest"] + REST_WALLET)
            assert assert_problem(unavailable, 502)["code"] == "upstream_unavailable", value
            assert unavailable.headers["retry-after"] == "86400", value
    assert sandbox.requests() == 2 * len(GARBAGE)


def test_mcp_answers_an_error_line(sandbox: LiveSandbox) -> None:
    async def go() -> list[tuple[bool, str]]:
        answers = []
        with running(sandbox_settings(sandbox.url)) as launcher:
            http = httpx2.AsyncClient(timeout=30)
            async with MCPClient(streamable_http_client(launcher.urls["mcp"], http_client=http)) as client:
                for value in GARBAGE:
                    sandbox.faults(next=[{"status": 429, "retry_after": value}])
                    result = await client.call_tool(WALLET_TOOL, {})
                    answers.append((bool(result.is_error), "".join(getattr(c, "text", "") for c in result.content)))
        return answers

    assert anyio.run(go) == [(True, f"rate limited (429): {A_DAY}")] * len(GARBAGE)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (RateLimitError("rate limited (429)", status=429, retry_after=math.inf), 429),
        (RateLimitError("rate limited (429)", status=429, retry_after=math.nan), 429),
        (UpstreamUnavailableError("Prime API unavailable (503)", status=503, retry_after=1e308), 502),
        (UpstreamUnavailableError("Prime API unavailable (503)", status=503, retry_after=2.2), 502),
    ],
)
def test_a_problem_built_from_any_error_has_a_whole_bounded_header(error: Exception, status: int) -> None:
    """The launcher's problem documents hold whatever wait an error carries, however it was made."""
    from prime_billing.serve.problems import from_error

    answer = from_error(error)  # type: ignore[arg-type]
    assert answer.status_code == status
    assert answer.headers["retry-after"] == ("3" if error.retry_after == 2.2 else "86400")  # type: ignore[attr-defined]
    assert SANDBOX_API_KEY not in answer.body.decode()
