"""Signals as a supervisor sends them: SIGTERM ends every command with exit 0 at
any moment, SIGINT with 130 (0 for the sandbox server), never with a traceback."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, SCRIPTS, LiveSandbox, script_env, start_sandbox_command

#: what "at once" means here; the slow upstream below answers after 5 s
PROMPT = 1.0


def _start_sandbox_command(home: Path) -> tuple[subprocess.Popen[str], int]:
    """`prime-billing sandbox --port 0`, once it has announced where it listens."""
    proc, url = start_sandbox_command(home)
    return proc, int(url.rsplit(":", 1)[1])


def _stop(proc: subprocess.Popen[str], sig: int) -> tuple[int, str, str, float]:
    """Send `sig`; the exit code, stdout, stderr and the seconds it took to exit."""
    sent = time.monotonic()
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    return proc.returncode, out, err, time.monotonic() - sent


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize(
    ("sig", "tries"), [pytest.param(signal.SIGTERM, 20, id="SIGTERM"), pytest.param(signal.SIGINT, 4, id="SIGINT")]
)
def test_sandbox_command_exits_0_on_a_signal_right_after_announcing(home: Path, sig: int, tries: int) -> None:
    for _ in range(tries):
        proc, port = _start_sandbox_command(home)
        code, out, err, took = _stop(proc, sig)  # at once: the race a supervisor runs
        assert (code, out) == (0, ""), err
        assert "Traceback" not in err and took < PROMPT, (err, took)
        assert _refused(port)  # the listening socket went with it


@pytest.mark.parametrize(
    ("args", "sig", "code"),
    [
        pytest.param([str(SCRIPTS / "wallet.py")], signal.SIGTERM, 0, id="wallet-SIGTERM"),
        pytest.param([str(SCRIPTS / "wallet.py"), "--json"], signal.SIGINT, 130, id="wallet-SIGINT"),
        # several ids fetch on worker threads: the exit does not wait for them either
        pytest.param(
            [str(SCRIPTS / "run_usage.py"), "rft_sbx_running", "rft_sbx_failed", "--json"],
            signal.SIGTERM,
            0,
            id="usage-threads-SIGTERM",
        ),
    ],
)
def test_a_command_blocked_on_a_slow_upstream_stops_at_once(
    sandbox: LiveSandbox, home: Path, args: list[str], sig: int, code: int
) -> None:
    sandbox.faults(latency=[5, 5])
    proc = subprocess.Popen(
        [sys.executable, *args],
        env=script_env(home, sandbox.url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 30
    while sandbox.requests() == 0:  # the request is in: the command is now waiting on the upstream
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()  # type: ignore[union-attr]
        time.sleep(0.01)
    got, out, err, took = _stop(proc, sig)
    assert (got, out) == (code, ""), err
    assert "Traceback" not in err and took < PROMPT, (err, took)
