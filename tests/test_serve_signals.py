"""A stop signal at the earliest moment a supervisor could send one: exit 0, no traceback.

A supervisor (Kubernetes, systemd) may stop the launcher the moment its probe first
succeeds; that must be as clean as a stop an hour later, every time, not most times.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from conftest import ROOT, script_env
from proxy_harness import ServeProcess

SERVE = ("--sandbox", "--rest-port", "0", "--mcp-port", "0", "--no-access-log")


def stop_once_healthy(home: Path, sig: signal.Signals) -> tuple[int | None, str]:
    """Start the launcher, wait for /healthz to first answer 200, send `sig` at once:
    the exit code and stderr."""
    with ServeProcess(script_env(home), *SERVE) as proc:
        deadline = time.monotonic() + 30  # failure guard only
        with httpx.Client(trust_env=False, timeout=5) as client:
            while True:
                try:
                    if client.get(proc.urls["rest"] + "/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the launcher never answered /healthz"
                time.sleep(0.01)
        proc.finish(sig)
    return proc.returncode, proc.stderr


def stop_many(home: Path, sig: signal.Signals, tries: int) -> list[tuple[int | None, str]]:
    with ThreadPoolExecutor(4) as pool:  # four at a time keeps the test short
        return list(pool.map(lambda i: stop_once_healthy(home, sig), range(tries)))


def test_sigterm_right_after_the_first_healthy_probe_exits_0_every_time(home: Path) -> None:
    """20 of 20 starts stopped by SIGTERM at once exit 0 with no traceback."""
    outcomes = stop_many(home, signal.SIGTERM, 20)
    failed = [(code, err) for code, err in outcomes if code != 0 or "Traceback" in err]
    assert not failed, failed[:2]


def test_sigint_right_after_the_first_healthy_probe_exits_0(home: Path) -> None:
    """Ctrl-C at the same moment: exit 0, no traceback."""
    outcomes = stop_many(home, signal.SIGINT, 5)
    failed = [(code, err) for code, err in outcomes if code != 0 or "Traceback" in err]
    assert not failed, failed[:2]


def test_stdio_mcp_server_exits_0_on_sigterm(home: Path) -> None:
    """`prime-billing mcp` (stdio), stopped by SIGTERM as soon as it has answered `initialize`
    (so its handlers are surely in place) while its client still holds stdin open."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "prime_billing", "mcp", "--sandbox"],
        env=script_env(home),
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        hello = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "0"},
            },
        }
        proc.stdin.write(json.dumps(hello) + "\n")
        proc.stdin.flush()
        answer = json.loads(proc.stdout.readline())
        assert answer["id"] == 1 and "result" in answer, answer
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(10)  # failure guard: an exit takes well under a second
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err = proc.stderr.read() if proc.stderr else ""
        proc.stdin.close()
    assert code == 0, err
    assert "Traceback" not in err
