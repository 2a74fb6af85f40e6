"""The launcher as a process: start-up refusals, SIGTERM draining, access log lines, light CLI imports."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from conftest import ROOT, LiveSandbox, run, script_env
from prime_billing.config import SANDBOX_API_KEY

TOKEN = "tok-for-the-test-0123"


def test_cli_import_path_stays_free_of_the_server_stack(home: Path) -> None:
    code = (
        "import sys, prime_billing.cli as c; c.build_parser();"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('mcp', 'starlette', 'uvicorn', 'pyreqwest')];"
        "print(heavy)"
    )
    out = run(["-c", code], script_env(home))
    assert out.stdout.strip() == "[]", out.stderr


def test_public_address_without_token_is_refused_at_start(home: Path, sandbox: LiveSandbox) -> None:
    out = run(["-m", "prime_billing", "serve", "--host", "0.0.0.0", "--rest-port", "0"], script_env(home, sandbox.url))
    assert out.returncode == 2
    assert "without a token" in out.stderr and "PRIME_BILLING_TOKEN" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_sigterm_answers_the_request_in_flight_then_exits_0(home: Path, sandbox: LiveSandbox) -> None:
    env = script_env(home, sandbox.url, PRIME_BILLING_TOKEN=TOKEN)
    proc = subprocess.Popen(
        [sys.executable, "-m", "prime_billing", "serve", "--rest-port", "0", "--mcp-port", "0"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        urls = [w.rstrip(",;") for w in line.split() if w.startswith("http://")]
        rest = urls[0]
        sandbox.faults(latency=[1.0, 1.0])
        answer: list[httpx.Response] = []
        auth = {"Authorization": f"Bearer {TOKEN}"}
        slow = threading.Thread(
            target=lambda: answer.append(httpx.get(rest + "/v1/api/v1/billing/wallet", headers=auth, timeout=20))
        )
        slow.start()
        deadline = time.monotonic() + 10
        while sandbox.requests() == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)  # the upstream is still answering
        slow.join(20)
        assert proc.wait(20) == 0
        assert answer and answer[0].status_code == 200 and answer[0].json()["wallet_id"] == "wal_sbx_personal"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read() if proc.stderr else ""
    records = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    assert {"method": "GET", "path": "/v1/api/v1/billing/wallet", "status": 200, "upstream": 1}.items() <= records[
        -1
    ].items()
    assert records[-1]["ms"] >= 0 and records[-1]["surface"] == "rest"
    assert TOKEN not in err and SANDBOX_API_KEY not in err
