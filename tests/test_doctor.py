"""`prime-billing doctor` and scripts/doctor.py: the set-up check in its three outcomes (all well,
configuration missing or broken, the API failing), run as a person or an agent runs them:
subprocesses against the sandbox on a real loopback socket."""

from __future__ import annotations

import json
import re
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest

from conftest import SCRIPTS, LiveSandbox, run, script_env, upstream_body
from prime_billing.config import SANDBOX_API_KEY

HOW = {
    "script": ([str(SCRIPTS / "doctor.py")], "doctor.py"),
    "module": (["-m", "prime_billing", "doctor"], "prime-billing"),
}
LINE = re.compile(r"(ok|FAIL|--) +(version|key|base URL|team|wallet|config)  +(.*)")
WALLET = "/api/v1/billing/wallet"


def doctor(how: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run([*HOW[how][0], *args], env)


def checks(out: subprocess.CompletedProcess[str]) -> dict[str, tuple[str, str]]:
    """Each line of the report: its label, and its mark and text. The last line is the verdict."""
    *lines, _ = out.stdout.splitlines()
    parsed = [LINE.fullmatch(line) for line in lines]
    assert all(parsed), out.stdout
    return {m[2]: (m[1], m[3]) for m in parsed if m}


def assert_refused(out: subprocess.CompletedProcess[str], how: str, code: int, failed: str, said: str) -> None:
    """The report is on stdout with the failing line marked; stderr is one line saying the same."""
    assert out.returncode == code, (out.stdout, out.stderr)
    found = checks(out)
    assert found[failed] == ("FAIL", found[failed][1]) and said in found[failed][1], out.stdout
    assert [label for label, (mark, _) in found.items() if mark == "FAIL"] == [failed]
    assert out.stdout.splitlines()[-1] == "not set up: do what the FAIL line says, then run doctor again"
    assert out.stderr.startswith(f"{HOW[how][1]}: error: ") and said in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


# --------------------------------------------------------------------------- all well: exit 0


@pytest.mark.parametrize("how", HOW)
def test_all_well_says_where_each_setting_came_from(sandbox: LiveSandbox, home: Path, how: str) -> None:
    env = script_env(home, sandbox.url)
    out = doctor(how, env)
    assert (out.returncode, out.stderr) == (0, ""), out.stderr
    found = checks(out)
    assert list(found) == ["version", "key", "base URL", "team", "wallet"]
    assert all(mark == "ok" for mark, _ in found.values())
    assert f"prime-billing-skill {version('prime-billing-skill')} on Python 3." in found["version"][1]
    assert found["key"][1].startswith("found in the environment (PRIME_API_KEY)")
    assert (
        found["base URL"][1]
        == f"{sandbox.url}, from the environment (PRIME_API_BASE_URL); unset it for Prime's own API"
    )
    assert found["team"][1].startswith("none: the personal wallet (--team ID or PRIME_TEAM_ID")
    assert sandbox.requests(WALLET) == 1  # one read, no more
    total = upstream_body(sandbox, WALLET)["total_billings"]
    assert found["wallet"][1].endswith(f"(limit=1); the wallet holds {total:,} billing rows")
    assert out.stdout.splitlines()[-1] == "all set"
    assert SANDBOX_API_KEY not in out.stdout and "sbx-demo" not in out.stdout

    doc = json.loads(doctor(how, env, "--json").stdout)
    assert doc["ok"] is True and all(c["ok"] for c in doc["checks"].values())
    assert doc["checks"]["key"]["source"] == "PRIME_API_KEY"
    assert doc["checks"]["base_url"] == {"ok": True, "message": found["base URL"][1], "value": sandbox.url,
                                         "source": "PRIME_API_BASE_URL"}  # fmt: skip
    # the upstream's default page is 20 rows: one row came back, so limit=1 was sent
    assert doc["checks"]["wallet"]["rows_read"] == 1 and doc["checks"]["wallet"]["total_billings"] == total
    assert "sbx-demo" not in json.dumps(doc)


def test_settings_from_the_config_file_are_named_as_coming_from_it(sandbox: LiveSandbox, home: Path) -> None:
    prime = home / ".prime"
    prime.mkdir()
    path = prime / "config.json"
    path.write_text(json.dumps({"api_key": SANDBOX_API_KEY, "base_url": sandbox.url, "team_id": "team_sbx_demo"}))
    out = doctor("script", script_env(home))
    assert out.returncode == 0, out.stderr
    found = checks(out)
    written = f"{path} (written by `prime login`)"
    assert found["key"] == ("ok", f"found in {written}; PRIME_API_KEY would come before it")
    assert found["base URL"] == ("ok", f"{sandbox.url}, from {written}")
    assert found["team"][1].startswith(f"team_sbx_demo, from {written}: a team's wallet")
    total = upstream_body(sandbox, WALLET, teamId="team_sbx_demo")["total_billings"]
    assert found["wallet"][1].endswith(f"the wallet holds {total:,} billing rows")
    assert "sbx-demo" not in out.stdout + out.stderr


@pytest.mark.parametrize("how", HOW)
def test_the_sandbox_needs_no_key_and_no_network(sandbox: LiveSandbox, home: Path, how: str) -> None:
    out = doctor(how, script_env(home, PRIME_API_BASE_URL="http://127.0.0.1:9"), "--sandbox")
    assert (out.returncode, out.stderr) == (0, ""), out.stderr
    found = checks(out)
    assert found["key"] == ("ok", "none needed: --sandbox answers from built-in demo data")
    assert found["wallet"][1].endswith("the wallet holds 46 billing rows")  # the demo wallet's 46 rows
    assert sandbox.requests() == 0


# --------------------------------------------------------------------------- configuration: exit 2


def _no_key(home: Path, sandbox: LiveSandbox) -> dict[str, str]:
    return script_env(home)


def _bad_key(home: Path, sandbox: LiveSandbox) -> dict[str, str]:
    return {**script_env(home, sandbox.url), "PRIME_API_KEY": "pk-doctor\nsecret-half"}


def _bad_file(home: Path, sandbox: LiveSandbox) -> dict[str, str]:
    (home / ".prime").mkdir()
    (home / ".prime" / "config.json").write_text("{not json")
    return script_env(home)


def _bad_url(home: Path, sandbox: LiveSandbox) -> dict[str, str]:
    return {**script_env(home, sandbox.url), "PRIME_API_BASE_URL": "ftp://example.test"}


def _bad_team(home: Path, sandbox: LiveSandbox) -> dict[str, str]:
    return script_env(home, sandbox.url, PRIME_TEAM_ID="../x")


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize(
    ("setup", "failed", "said"),
    [
        pytest.param(_no_key, "key", "no Prime API key: set PRIME_API_KEY or run `prime login`", id="no-key"),
        pytest.param(_bad_key, "key", "PRIME_API_KEY holds a space, line break or control character", id="bad-key"),
        pytest.param(_bad_file, "config", "config.json is not valid JSON: run `prime login` again", id="bad-file"),
        pytest.param(_bad_url, "config", "base URL 'ftp://example.test' is not an http(s) URL", id="bad-url"),
        pytest.param(_bad_team, "team", "team_id '../x' is not a valid id", id="bad-team"),
    ],
)
def test_a_missing_or_broken_configuration_exits_2_and_reads_nothing(
    sandbox: LiveSandbox, home: Path, how: str, setup: object, failed: str, said: str
) -> None:
    out = doctor(how, setup(home, sandbox))  # type: ignore[operator]
    assert_refused(out, how, 2, failed, said)
    assert checks(out)["wallet"][0] == "--" and "not read: fix the" in checks(out)["wallet"][1]
    assert "pk-doctor" not in out.stdout + out.stderr and "secret-half" not in out.stdout + out.stderr
    assert sandbox.requests() == 0


# --------------------------------------------------------------------------- the API fails: exit 1


@pytest.mark.parametrize("how", HOW)
def test_a_key_the_api_refuses_exits_1_and_never_shows_it(sandbox: LiveSandbox, home: Path, how: str) -> None:
    key = "pk-doctor-wrong-7f3a9c"
    # an upstream that echoes the key back in its error detail
    sandbox.faults(next=[{"status": 401, "body": json.dumps({"detail": f"bad key {key}"})}])
    out = doctor(how, script_env(home, sandbox.url, PRIME_API_KEY=key))
    assert_refused(out, how, 1, "wallet", "401")
    assert checks(out)["key"][0] == "ok"  # a key was found: the API is what refused it
    for shown in (out.stdout, out.stderr):
        assert key[:6] not in shown and key[-6:] not in shown  # not the key, nor a part of it


@pytest.mark.parametrize("how", HOW)
def test_an_upstream_that_fails_exits_1(sandbox: LiveSandbox, home: Path, how: str) -> None:
    sandbox.faults(rate=1.0, rate_fault={"status": 503})
    env = script_env(home, sandbox.url, PRIME_BILLING_MAX_RETRIES="0")
    out = doctor(how, env)
    assert_refused(out, how, 1, "wallet", "unavailable (503)")
    doc = json.loads(doctor(how, env, "--json").stdout)
    assert doc["ok"] is False and doc["checks"]["wallet"]["ok"] is False
    assert doc["checks"]["wallet"]["error"]["status"] == 503 and doc["checks"]["key"]["ok"] is True
