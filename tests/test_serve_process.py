"""The launcher as a process: start-up refusals, SIGTERM draining, access log lines, light CLI imports."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from conftest import ROOT, LiveSandbox, run, script_env, until, upstream_body
from prime_billing.config import SANDBOX_API_KEY

TOKEN = "tok-for-the-test-0123"


def refuses(url: str) -> bool:
    """Whether nothing accepts connections at the URL's address any more."""
    host, port = url.removeprefix("http://").split("/")[0].rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_cli_import_path_stays_free_of_the_server_stack(home: Path) -> None:
    code = (
        "import sys, prime_billing.cli as c; c.build_parser();"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('mcp', 'starlette', 'uvicorn', 'aiohttp')];"
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
        # the upstream answers only once released (through its HTTP control API, as another process would)
        assert httpx.post(sandbox.url + "/_sandbox/faults", json={"hold": True}).status_code == 200
        answer: list[httpx.Response] = []
        auth = {"Authorization": f"Bearer {TOKEN}"}
        slow = threading.Thread(
            target=lambda: answer.append(httpx.get(rest + "/v1/api/v1/billing/wallet", headers=auth, timeout=30))
        )
        try:
            slow.start()
            until(lambda: sandbox.box.inflight == 1, "the request held upstream")
            proc.send_signal(signal.SIGTERM)
            # draining: the port takes no one new while the request in flight is still held
            until(lambda: refuses(rest), "the launcher stopped accepting")
            assert sandbox.box.inflight == 1 and proc.poll() is None and not answer
        finally:
            released = httpx.post(sandbox.url + "/_sandbox/release")
        assert released.json() == {"released": True}
        slow.join(30)
        assert proc.wait(30) == 0
        assert answer and answer[0].status_code == 200
        assert answer[0].json() == upstream_body(sandbox, "/api/v1/billing/wallet")
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
