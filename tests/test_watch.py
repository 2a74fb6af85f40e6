"""`usage RUN_ID --watch`: polls until the run reaches a terminal state, with the cost
rate since the last poll; the sandbox's progress knob makes a RUNNING run advance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import SCRIPTS, LiveSandbox, assert_one_line_error, run, run_tty, script_env

USAGE = str(SCRIPTS / "run_usage.py")
FAST = ["--watch", "--interval", "0.05"]


def test_json_lines_until_the_run_completes(sandbox: LiveSandbox, home: Path) -> None:
    sandbox.faults(progress={"run_id": "rft_sbx_running", "steps": 3, "usd_per_step": 1.25})
    out = run([USAGE, "rft_sbx_running", *FAST, "--json"], script_env(home, sandbox.url))
    assert out.returncode == 0, out.stderr
    lines = [json.loads(ln) for ln in out.stdout.splitlines()]
    assert [ln["status"] for ln in lines] == ["RUNNING", "RUNNING", "RUNNING", "COMPLETED"]
    assert [ln["finished"] for ln in lines] == [False, False, False, True]
    assert [ln["total_cost_usd"] for ln in lines] == [17.5, 18.75, 20.0, 21.25]
    assert [ln["poll"] for ln in lines] == [1, 2, 3, 4]
    assert lines[0]["usd_per_hour"] is None and lines[0]["cost_delta_usd"] is None
    for ln in lines[1:]:
        assert ln["cost_delta_usd"] == 1.25
        assert ln["usd_per_hour"] == pytest.approx(1.25 / ln["elapsed_s"] * 3600)
    assert lines[-1]["usage"]["total_tokens"] == 9_000_000 + 3 * 500_000  # the upstream body rides along
    assert sandbox.requests("/usage") == 4  # stopped by itself at the terminal state


def test_plain_lines_when_piped_and_several_runs(sandbox: LiveSandbox, home: Path) -> None:
    sandbox.faults(progress={"run_id": "rft_sbx_running", "steps": 2, "final": "STOPPED"})
    out = run([USAGE, "rft_sbx_running", "rft_sbx_failed", *FAST], script_env(home, sandbox.url))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("SANDBOX DATA") and "\x1b[" not in out.stdout
    assert lines[-1] == "finished: rft_sbx_running STOPPED, rft_sbx_failed FAILED"
    running = [ln for ln in lines[1:-1] if " rft_sbx_running " in ln]
    assert len(running) == 3 and "rate: from the next poll" in running[0]
    assert "$18.75 billed" in running[1] and "(+$1.25)" in running[1] and "/h since the last poll" in running[1]
    # a finished run is polled once, not again
    assert len([ln for ln in lines[1:-1] if " rft_sbx_failed " in ln]) == 1
    assert sandbox.requests("rft_sbx_failed") == 1


def test_refreshes_in_place_on_a_terminal(sandbox: LiveSandbox, home: Path) -> None:
    sandbox.faults(progress={"run_id": "rft_sbx_running", "steps": 2})
    code, shown, stderr = run_tty([USAGE, "rft_sbx_running", *FAST], script_env(home, sandbox.url), stream="stdout")
    assert code == 0, stderr
    assert shown.count("\x1b[J") == 2  # two redraws over the first block
    last = shown.rsplit("\x1b[J", 1)[1]
    assert "COMPLETED" in last and "$20.00" in last and "poll 3 at" in last and "finished" in last
    assert "rate $" in last and "/h since the last poll" in last


def test_an_already_finished_run_is_polled_once(sandbox: LiveSandbox, home: Path) -> None:
    out = run([USAGE, "rft_sbx_completed", *FAST, "--json"], script_env(home, sandbox.url))
    assert out.returncode == 0
    (line,) = out.stdout.splitlines()
    assert json.loads(line)["finished"] is True and sandbox.requests("/usage") == 1


def test_a_transient_failure_is_reported_and_watching_goes_on(sandbox: LiveSandbox, home: Path) -> None:
    sandbox.faults(
        progress={"run_id": "rft_sbx_running", "steps": 1},
        next=[{"status": 503, "path": "/usage"}],
    )
    env = script_env(home, sandbox.url, PRIME_BILLING_MAX_RETRIES="0")
    out = run([USAGE, "rft_sbx_running", *FAST, "--json"], env)
    assert out.returncode == 0
    assert "warning: Prime API unavailable (503)" in out.stderr and "(still watching)" in out.stderr
    assert [json.loads(ln)["status"] for ln in out.stdout.splitlines()] == ["RUNNING", "COMPLETED"]


def test_failures_that_will_not_pass_end_the_watch(sandbox: LiveSandbox, home: Path) -> None:
    env = script_env(home, sandbox.url)
    missing = run([USAGE, "rft_missing", *FAST], env)
    assert missing.returncode == 1 and "run not found (404" in missing.stderr
    bad = run([USAGE, "rft_sbx_running", "--watch", "--interval", "0"], env)
    assert_one_line_error(bad, 2, "--interval must be 0.05 to 86400 seconds (a day), got 0")
    assert sandbox.requests("rft_sbx_running") == 0


@pytest.mark.parametrize("interval", ["inf", "1e10", "86400.5", "nan", "-inf"])
def test_an_interval_beyond_a_day_is_refused_before_any_poll(sandbox: LiveSandbox, home: Path, interval: str) -> None:
    """`sleep` cannot wait past the platform's clock (inf, 1e10): refused in one line, nothing polled."""
    out = run([USAGE, "rft_sbx_running", "--watch", f"--interval={interval}"], script_env(home, sandbox.url))
    assert_one_line_error(out, 2, f"--interval must be 0.05 to 86400 seconds (a day), got {float(interval):g}")
    assert sandbox.requests() == 0


def test_the_longest_interval_is_accepted(sandbox: LiveSandbox, home: Path) -> None:
    """A day is allowed: a finished run is answered at once, with no wait at all."""
    out = run([USAGE, "rft_sbx_completed", "--watch", "--interval", "86400", "--json"], script_env(home, sandbox.url))
    assert out.returncode == 0, out.stderr
    assert [json.loads(ln)["status"] for ln in out.stdout.splitlines()] == ["COMPLETED"]
