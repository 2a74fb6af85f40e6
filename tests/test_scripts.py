"""The scripts and the CLI as a person or an agent runs them: real subprocesses
against the sandbox on a real loopback socket."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from conftest import ROOT, SCRIPTS, LiveSandbox, assert_one_line_error, run, script_env, start_sandbox, upstream_body
from prime_billing.config import SANDBOX_API_KEY

USAGE = str(SCRIPTS / "run_usage.py")
WALLET = str(SCRIPTS / "wallet.py")


def test_usage_json_is_the_upstream_body_with_unknown_fields(sandbox: LiveSandbox, home: Path) -> None:
    out = run([USAGE, "rft_sbx_cached", "--json"], script_env(home, sandbox.url))
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body == upstream_body(sandbox, "/api/v1/billing/runs/rft_sbx_cached/usage")
    # fields this client has no model for travel through untouched
    assert body["billing_version"] == 2 and body["gpu_hours"] == 41.5
    assert body["inference"]["cached_input_tokens"] == 4_000_000
    assert out.stderr == ""


def test_wallet_json_passes_paging_and_team_through(sandbox: LiveSandbox, home: Path) -> None:
    env = script_env(home, sandbox.url)
    out = run([WALLET, "--json", "--limit", "7", "--offset", "40"], env)
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body == upstream_body(sandbox, "/api/v1/billing/wallet", limit=7, offset=40)
    assert len(body["recent_billings"]) == 6 and body["total_billings"] == 46

    team = run([WALLET, "--json", "--team", "team_sbx_demo"], env)
    assert json.loads(team.stdout)["team_id"] == "team_sbx_demo"
    # PRIME_TEAM_ID picks the team wallet when no flag is given
    env_team = run([WALLET, "--json"], {**env, "PRIME_TEAM_ID": "team_sbx_demo"})
    assert json.loads(env_team.stdout)["wallet_id"] == "wal_sbx_team"


def test_several_runs_are_fetched_and_returned_in_order(sandbox: LiveSandbox, home: Path) -> None:
    env = script_env(home, sandbox.url)
    out = run([USAGE, "rft_sbx_running", "rft_sbx_failed", "--json"], env)
    assert [d["run_id"] for d in json.loads(out.stdout)] == ["rft_sbx_running", "rft_sbx_failed"]
    assert sandbox.requests("/usage") == 2


def test_an_unknown_run_among_several_loses_none_of_the_others(sandbox: LiveSandbox, home: Path) -> None:
    env = script_env(home, sandbox.url)
    running = upstream_body(sandbox, "/api/v1/billing/runs/rft_sbx_running/usage")
    failed = upstream_body(sandbox, "/api/v1/billing/runs/rft_sbx_failed/usage")

    # summary: the found runs are printed, the unknown one is one line on stderr, exit 1
    mixed = run([USAGE, "rft_sbx_running", "rft_nope", "rft_sbx_failed"], env)
    assert mixed.returncode == 1
    assert "rft_sbx_running" in mixed.stdout and "$17.50" in mixed.stdout and "rft_sbx_failed" in mixed.stdout
    assert mixed.stderr.count("\n") == 1 and "not found (404" in mixed.stderr and "Traceback" not in mixed.stderr

    # --json: the same runs kept, the unknown one an error object in its place, exit 1
    js = run([USAGE, "rft_sbx_running", "rft_nope", "rft_sbx_failed", "--json"], env)
    assert js.returncode == 1
    assert js.stderr.count("\n") == 1 and js.stderr.startswith("run_usage.py: error: run not found (404")
    message = js.stderr.removeprefix("run_usage.py: error: ").rstrip("\n")
    error = {"run_id": "rft_nope", "error": {"code": "not_found", "status": 404, "message": message}}
    assert json.loads(js.stdout) == [running, error, failed]

    # a single id that fails still prints no JSON at all
    assert_one_line_error(run([USAGE, "rft_nope", "--json"], env), 1, "run not found (404")


def test_run_summary_carries_the_figures(sandbox: LiveSandbox, home: Path) -> None:
    out = run([USAGE, "rft_sbx_cached", "rft_sbx_failed"], script_env(home, sandbox.url))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    cached_block = text.split("\n\n")[0].splitlines()[2:]
    lines = {" ".join(ln.split()[:2]) if ln.split()[0] == "cached" else ln.split()[0]: ln for ln in cached_block}
    assert "SANDBOX DATA" in text.splitlines()[0]
    assert "qwen3-14b" in text and "COMPLETED" in text
    # cached-input split: 6M uncached at $0.6, 4M cached at $0.15, 2.5M out at $2
    assert "6,000,000 tok" in lines["input"] and "$3.60" in lines["input"]
    assert "4,000,000 tok" in lines["cached input"] and "$0.15/Mtok" in lines["cached input"]
    assert "$0.60" in lines["cached input"]
    assert "$32.00" in lines["training"] and "$41.20" in lines["total"]
    # a null rate is unknown, never $0
    failed = text[text.index("rft_sbx_failed") :]
    assert "rate unknown" in failed and "unknown" in failed.splitlines()[4] and "$0.00" not in failed
    assert "$2.45" in failed


def test_wallet_summary_carries_balance_and_rows(sandbox: LiveSandbox, home: Path) -> None:
    out = run([WALLET, "--limit", "5"], script_env(home, sandbox.url))
    assert out.returncode == 0, out.stderr
    body = upstream_body(sandbox, "/api/v1/billing/wallet", limit=5)
    assert "$123.45" in out.stdout and "46 billing rows, showing 1-5" in out.stdout
    rows = [ln for ln in out.stdout.splitlines() if ln.startswith("  2026-")]
    assert len(rows) == 5
    for line, entry in zip(rows, body["recent_billings"], strict=True):
        assert f"${entry['amount_usd']:.2f}" in line and entry["resource_type"] in line
    assert "--offset 5" in out.stdout


def test_config_file_env_and_flag_precedence(sandbox: LiveSandbox, home: Path, tmp_path: Path) -> None:
    from prime_billing.config import SANDBOX_API_KEY

    prime = home / ".prime"
    prime.mkdir()
    # what `prime login` writes; base_url with the /api/v1 suffix users often paste
    (prime / "config.json").write_text(
        json.dumps({"api_key": SANDBOX_API_KEY, "base_url": sandbox.url + "/api/v1", "team_id": "team_sbx_demo"})
    )
    bare = script_env(home)  # no PRIME_* variables at all
    out = run([WALLET, "--json"], bare)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["team_id"] == "team_sbx_demo"  # key, URL and team all from the file

    # environment wins over the file: a wrong key in the env is used (and refused)
    wrong = run([WALLET, "--json"], {**bare, "PRIME_API_KEY": "pk-wrong"})
    assert wrong.returncode == 1 and "401" in wrong.stderr
    # PRIME_BASE_URL alias wins over the file's base_url
    dead = run([WALLET], {**bare, "PRIME_BASE_URL": "http://127.0.0.1:9"})
    assert dead.returncode == 1 and "cannot reach http://127.0.0.1:9" in dead.stderr
    # the flag wins over the environment
    flag = run([WALLET, "--json", "--base-url", sandbox.url], {**bare, "PRIME_API_BASE_URL": "http://127.0.0.1:9"})
    assert flag.returncode == 0, flag.stderr
    # team: env beats the file (an unknown team is refused), the flag beats the env
    env_team = run([WALLET, "--json"], {**bare, "PRIME_TEAM_ID": "team_unknown"})
    assert env_team.returncode == 1 and "access denied (403" in env_team.stderr
    flag_team = run([WALLET, "--json", "--team", "team_sbx_demo"], {**bare, "PRIME_TEAM_ID": "team_unknown"})
    assert json.loads(flag_team.stdout)["wallet_id"] == "wal_sbx_team"


def test_no_key_anywhere_is_a_usage_error(home: Path) -> None:
    out = run([WALLET], script_env(home))
    assert out.returncode == 2
    assert out.stderr.strip().endswith("set PRIME_API_KEY or run `prime login` (try --sandbox for demo data)")
    broken = home / ".prime"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    out = run([WALLET], script_env(home))
    assert out.returncode == 2 and "config.json is not valid JSON" in out.stderr and out.stderr.count("\n") == 1


#: a key no Prime key could be: each would be sent, refused 401 (or break the header), and look like a wrong key
BAD_KEYS = {
    "space": "pk-top secret",
    "newline": "pk-top\nsecret",
    "trailing-newline": "pk-topsecret\n",
    "tab": "pk-top\tsecret",
    "control": "pk-top\x1bsecret",
    "blank": "   ",
}


@pytest.mark.parametrize("key", BAD_KEYS.values(), ids=BAD_KEYS.keys())
def test_a_key_that_cannot_be_a_key_is_refused_naming_where_it_is(sandbox: LiveSandbox, home: Path, key: str) -> None:
    """From PRIME_API_KEY or from the config file, the refusal names that place, never the key,
    and nothing is sent."""
    said = "is blank" if not key.strip() else "holds a space, line break or control character"
    env = {**script_env(home, sandbox.url), "PRIME_API_KEY": key}
    from_env = run([WALLET], env)
    assert_one_line_error(from_env, 2, f"PRIME_API_KEY {said}")
    assert "set PRIME_API_KEY to the key alone, or unset it" in from_env.stderr

    prime = home / ".prime"
    prime.mkdir()
    (prime / "config.json").write_text(json.dumps({"api_key": key}), encoding="utf-8")
    del env["PRIME_API_KEY"]
    from_file = run([WALLET], env)
    assert_one_line_error(from_file, 2, f"the api_key in {prime / 'config.json'} {said}")
    assert "run `prime login` again or fix the file" in from_file.stderr

    for out in (from_env, from_file):
        assert "pk-top" not in out.stderr and "secret" not in out.stderr
    assert sandbox.requests() == 0  # refused before anything was sent


@pytest.mark.parametrize(
    ("fault", "needle"),
    [
        ({"status": 402}, "payment required (402"),
        ({"status": 403}, "access denied (403"),
        (
            {"status": 422, "body": '{"detail": [{"loc": ["query", "limit"], "msg": "too big"}]}'},
            '(422: "limit: too big")',  # the upstream's words, quoted
        ),
        ({"status": 500}, "unavailable (500)"),
        ({"status": 200, "body": "<html>oops</html>", "content_type": "text/html"}, "not JSON (text/html)"),
        ({"action": "drift"}, "does not match the Wallet schema"),
        ({"action": "truncate"}, "not JSON"),
        ({"status": 429, "retry_after": "3600"}, "rate limited (429): wait 3600s"),
    ],
)
def test_upstream_failures_give_one_line_and_exit_1(sandbox: LiveSandbox, home: Path, fault: dict, needle: str) -> None:
    sandbox.faults(next=[fault])
    out = run([WALLET, "--json"], script_env(home, sandbox.url))
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert needle in out.stderr
    assert out.stderr.startswith("wallet.py: error: ")


def test_auth_not_found_and_forbidden_runs(sandbox: LiveSandbox, home: Path) -> None:
    env = script_env(home, sandbox.url)
    for run_id, code, needle in [
        ("rft_missing", 1, "run not found (404"),
        ("rft_sbx_other_team", 1, "access denied (403"),
    ]:
        assert_one_line_error(run([USAGE, run_id], env), code, needle)
    bad_key = run([USAGE, "rft_sbx_running"], {**env, "PRIME_API_KEY": "pk-nope"})
    assert bad_key.returncode == 1 and "rejected the API key (401" in bad_key.stderr


def test_retries_get_through_429_and_503(sandbox: LiveSandbox, home: Path) -> None:
    sandbox.faults(next=[{"status": 429, "retry_after": "0.2"}, {"status": 503}])
    out = run([USAGE, "rft_sbx_running", "--json"], script_env(home, sandbox.url))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["total_cost_usd"] == 17.5
    assert sandbox.requests("/usage") == 3


def test_retries_give_up_after_a_bounded_number_of_attempts(sandbox: LiveSandbox, home: Path) -> None:
    sandbox.faults(rate=1.0, rate_fault={"status": 503})
    out = run([USAGE, "rft_sbx_running"], script_env(home, sandbox.url, PRIME_BILLING_MAX_RETRIES="2"))
    assert out.returncode == 1
    assert "unavailable (503) after 3 attempts: try again later" in out.stderr
    assert sandbox.requests("/usage") == 3
    # a Retry-After beyond the retry budget is not waited out: one attempt, the wait is reported
    sandbox.box.clear_faults()
    sandbox.box.stats.clear()
    sandbox.faults(next=[{"status": 503, "retry_after": "600"}])
    out = run([USAGE, "rft_sbx_running"], script_env(home, sandbox.url))
    assert out.returncode == 1 and sandbox.requests("/usage") == 1


@pytest.mark.parametrize(
    "run_id", ["../wallet", "a/b", "%2e%2e", "", ".", "..", "x" * 129, "rft abc", "r?x=1", "rft\n"]
)
def test_hostile_run_ids_never_reach_upstream(sandbox: LiveSandbox, home: Path, run_id: str) -> None:
    assert_one_line_error(run([USAGE, run_id], script_env(home, sandbox.url)), 2, "is not a valid id")
    assert sandbox.requests() == 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--limit", "0"], "limit must be 1..100, got 0"),
        (["--limit", "101"], "limit must be 1..100, got 101"),
        (["--offset", "-1"], "offset must be 0..10000000, got -1"),
        (["--limit", "ten"], "limit must be a whole number, got 'ten'"),
        (["--team", "../x"], "team_id '../x' is not a valid id"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_wallet_arguments_are_refused_before_sending(
    sandbox: LiveSandbox, home: Path, args: list[str], needle: str
) -> None:
    assert_one_line_error(run([WALLET, *args], script_env(home, sandbox.url)), 2, needle)
    assert sandbox.requests() == 0


def test_the_key_never_shows(sandbox: LiveSandbox, home: Path) -> None:
    secret = "pk-live-SECRET-abcdef123456"
    env = script_env(home, sandbox.url, PRIME_API_KEY=secret)
    # an upstream that echoes the key back in its error detail
    sandbox.faults(next=[{"status": 401, "body": json.dumps({"detail": f"bad key Bearer {secret} ({secret})"})}])
    outs = [run([WALLET], env), run([WALLET, "--json"], env), run([USAGE, "../x"], env), run([USAGE, "--help"], env)]
    for out in outs:
        assert secret not in out.stdout + out.stderr
    assert "bad key Bearer *** (***)" in outs[0].stderr


def test_cli_and_scripts_agree(sandbox: LiveSandbox, home: Path) -> None:
    env = script_env(home, sandbox.url)
    cli = run(["-m", "prime_billing.cli", "usage", "rft_sbx_completed"], env)
    script = run([USAGE, "rft_sbx_completed"], env)
    assert cli.returncode == script.returncode == 0
    assert cli.stdout == script.stdout and "$40.80" in cli.stdout


def test_sandbox_flag_uses_demo_data_without_network_or_key(home: Path) -> None:
    env = script_env(home, PRIME_API_BASE_URL="http://127.0.0.1:9")
    out = run([USAGE, "rft_sbx_running", "--sandbox"], env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("SANDBOX DATA") and "$17.50" in out.stdout
    js = run([WALLET, "--sandbox", "--json"], env)
    assert json.loads(js.stdout)["sandbox"] is True


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An interpreter with nothing installed (no httpx, no pydantic), made once per session."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    probe = subprocess.run([python, "-c", "import httpx"], env=_no_pythonpath(), capture_output=True, timeout=30)
    assert probe.returncode != 0, "the bare venv can import httpx: the test below would prove nothing"
    return python


def _no_pythonpath(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """A PYTHONPATH could lend the bare interpreter the packages it must not have."""
    return {k: v for k, v in env.items() if k != "PYTHONPATH"}


CORE_FIX, SERVE_FIX = "pip install httpx pydantic", "pip install 'prime-billing-skill[serve]'"


@pytest.mark.parametrize(
    ("script", "args", "fix"),
    [
        pytest.param(script, args, fix, id=script)
        for script, args, fix in [
            ("run_usage.py", ["rft_sbx_running", "--sandbox"], CORE_FIX),
            ("wallet.py", ["--sandbox"], CORE_FIX),
            ("reconcile.py", ["rft_sbx_completed", "--sandbox"], CORE_FIX),
            ("spend.py", ["--sandbox"], CORE_FIX),
            ("runway.py", ["--sandbox"], CORE_FIX),
            ("pace.py", ["--budget", "300", "--sandbox"], CORE_FIX),
            ("serve.py", ["--sandbox"], SERVE_FIX),
        ]
    ],
)
def test_a_python_without_the_dependencies_gets_one_line_naming_the_fix(
    bare_python: str, home: Path, script: str, args: list[str], fix: str
) -> None:
    out = subprocess.run(
        [bare_python, str(SCRIPTS / script), *args],
        env=_no_pythonpath(script_env(home)),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert_one_line_error(out, 2, f"uv run {SCRIPTS / script} ...")
    missing = "missing dependency uvicorn" if fix == SERVE_FIX else "missing dependencies httpx and pydantic"
    assert out.stderr.startswith(f"{script}: error: {missing}: {fix}, ")


def test_a_missing_module_of_our_own_is_a_bug_and_keeps_its_traceback(tmp_path: Path, home: Path) -> None:
    shutil.copytree(ROOT / "skill" / "prime_billing", tmp_path / "skill" / "prime_billing")
    shutil.copytree(SCRIPTS, tmp_path / "scripts")
    (tmp_path / "skill" / "prime_billing" / "models.py").unlink()
    out = run([str(tmp_path / "scripts" / "wallet.py"), "--sandbox"], script_env(home))
    assert out.returncode == 1 and "Traceback" in out.stderr
    assert "No module named 'prime_billing.models'" in out.stderr and "missing dependency" not in out.stderr


# --------------------------------------------------------------------------- some packages only

#: modules inside the packages a user installs: an error must never ask for one of them by name
INNER = ("annotated_types", "pydantic_core", "typing_inspection", "httpcore", "h11", "anyio", "sniffio", "idna")


@pytest.fixture(scope="module")
def site_modules() -> dict[str, dict[str, Path]]:
    """The top-level modules from site-packages that a wallet read against a loopback upstream loads
    ("all"), and that httpx and pydantic load alone: each with the file or folder it comes from, to
    link into a path of the test's own."""
    live, _ = start_sandbox()
    env = {**os.environ, "PRIME_API_BASE_URL": live.url, "PRIME_API_KEY": SANDBOX_API_KEY}
    script = SCRIPTS / "wallet.py"
    wallet = f"import runpy, sys\nsys.argv = ['wallet.py']\nrunpy.run_path({str(script)!r}, run_name='__main__')"
    try:
        return {
            "all": _site_modules_loaded(wallet, env),
            "httpx": _site_modules_loaded("import httpx", env),
            "pydantic": _site_modules_loaded("import pydantic; pydantic.BaseModel", env),
        }
    finally:
        live.server.shutdown()  # type: ignore[attr-defined]
        live.server.server_close()  # type: ignore[attr-defined]


def _site_modules_loaded(code: str, env: Mapping[str, str]) -> dict[str, Path]:
    probe = (
        "import atexit, json, sys, sysconfig\n"
        "def report():\n"
        "    site, found = sysconfig.get_paths()['purelib'], {}\n"
        "    for name, module in list(sys.modules.items()):\n"
        "        path = getattr(module, '__file__', None) or ''\n"
        "        if '.' not in name and path.startswith(site) and name != 'prime_billing':\n"
        "            found[name] = path.rsplit('/', 1)[0] if path.endswith('/__init__.py') else path\n"
        "    print(json.dumps(found), file=sys.stderr)\n"
        "atexit.register(report)\n"
        f"{code}\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=dict(env), capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    return {name: Path(path) for name, path in json.loads(out.stderr.splitlines()[-1]).items()}


@pytest.mark.parametrize(
    ("keep", "drop", "said"),
    [
        pytest.param((), (), "missing dependencies httpx and pydantic: ", id="nothing"),
        pytest.param(("httpx",), (), "missing dependency pydantic: ", id="httpx-no-pydantic"),
        pytest.param(("pydantic",), (), "missing dependency httpx: ", id="pydantic-no-httpx"),
        pytest.param(("all",), ("annotated_types",), "dependency pydantic is incomplete", id="no-annotated-types"),
        pytest.param(("all",), ("pydantic_core",), "dependency pydantic is incomplete", id="no-pydantic-core"),
        pytest.param(("all",), ("httpcore",), "dependency httpx is incomplete", id="no-httpcore"),
        pytest.param(("all",), ("h11",), "dependency httpx is incomplete", id="no-h11"),
        pytest.param(("all",), ("idna",), "dependency httpx is incomplete", id="no-idna"),
        pytest.param(("all",), (), "", id="everything"),
    ],
)
@pytest.mark.parametrize("how", ["script", "module"])
def test_a_python_with_only_some_packages_is_told_the_package_to_install(
    site_modules: dict[str, dict[str, Path]],
    sandbox: LiveSandbox,
    tmp_path: Path,
    home: Path,
    keep: tuple[str, ...],
    drop: tuple[str, ...],
    said: str,
    how: str,
) -> None:
    """`python -S` (no site-packages) with a path holding links to only some of the installed
    packages, reading a loopback upstream: the one line names what a user installs (httpx,
    pydantic), never a module inside them."""
    linked = {name: path for group in keep for name, path in site_modules[group].items()}
    assert set(drop) <= set(linked), "a module the wallet read never loads: dropping it proves nothing"
    lib = tmp_path / "lib"
    lib.mkdir()
    for name, path in linked.items():
        if name not in drop:
            (lib / path.name).symlink_to(path)
    env = _no_pythonpath(script_env(home, sandbox.url))
    if how == "script":
        args, prog, env["PYTHONPATH"] = [str(SCRIPTS / "wallet.py")], "wallet.py", str(lib)
    else:
        args, prog = ["-m", "prime_billing", "wallet"], "prime-billing"
        env["PYTHONPATH"] = os.pathsep.join([str(lib), str(ROOT / "skill")])
    out = subprocess.run([sys.executable, "-S", *args], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    if not said:  # the links hold all a wallet read needs: the runs above failed for what they lacked
        assert out.returncode == 0 and "balance $123.45" in out.stdout, out.stderr
        return
    assert_one_line_error(out, 2, f"{prog}: error: {said}")
    assert "pip install httpx pydantic" in out.stderr
    assert ("or run it as: uv run " in out.stderr) == (how == "script")
    assert not [name for name in INNER if name in out.stderr], out.stderr
