"""A scan that fails ends its process at once, even while other pages of its batch are still unanswered.

The sandbox holds every page of a batch at its gate but one, which it answers 503 (retries off):
the process must have printed its one line and exited while the others are still held, so
nothing waits for a read that only the per-attempt timeout would end. The held requests are
released only after the process is gone (no clock is raced: the state is polled).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import ROOT, SCRIPTS, LiveSandbox, script_env, start_sandbox, until
from prime_billing.compose import PAGES_IN_FLIGHT
from prime_billing.sandbox.faults import FaultReply, FaultySandbox

WALLET_PATH = "/api/v1/billing/wallet"


@dataclass
class OnePageOfTheBatchFails(FaultySandbox):
    """A 2,000-row wallet whose scan's pages 1 and 2 (each asked alone) are answered; at page 3, the
    first of a batch of PAGES_IN_FLIGHT, the gate shuts; the batch's last page to arrive is answered
    503 at once, so it fails while the other PAGES_IN_FLIGHT - 1 are held."""

    rows: int | None = 2000
    wallet_requests: int = 0
    counting: threading.Lock = field(default_factory=threading.Lock)

    def dispatch(self, method: str, target: str, headers: Mapping[str, str], body: bytes = b"") -> FaultReply:
        if not target.startswith(WALLET_PATH):
            return super().dispatch(method, target, headers, body)
        with self.counting:  # one wallet request at a time: the one that fails is the last one in
            self.wallet_requests += 1
            if self.wallet_requests == 3:
                self.set_faults({"hold": True})
            elif self.wallet_requests == 2 + PAGES_IN_FLIGHT:
                self.set_faults({"next": [{"status": 503, "hold": False}]})
            return super().dispatch(method, target, headers, body)


@pytest.fixture
def failing() -> Iterator[LiveSandbox]:
    live, _ = start_sandbox(OnePageOfTheBatchFails())
    try:
        yield live
    finally:
        live.box.release()
        live.server.shutdown()  # type: ignore[attr-defined]
        live.server.server_close()  # type: ignore[attr-defined]


#: a library user: the sync or the async client, the error printed, exit 1 (no `with`: nothing closes the client)
LIBRARY = """
import asyncio, sys
sys.path.insert(0, "skill")
from prime_billing import AsyncClient, Client, PrimeBillingError, Settings
settings = Settings(api_key=sys.argv[2], base_url=sys.argv[3], max_retries=0)
try:
    if sys.argv[1] == "sync":
        Client(settings).call("spend_report")
    else:
        asyncio.run(AsyncClient(settings).call("spend_report"))
except PrimeBillingError as exc:
    print(exc, file=sys.stderr)
    sys.exit(1)
"""


def exits_while_held(live: LiveSandbox, command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `command`; once it has exited, the batch's other pages must still be held at the gate."""
    proc = subprocess.Popen(
        [sys.executable, *command], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        # the per-attempt timeout (30 s) and the gate's own limit (30 s) are both far beyond this guard
        until(lambda: proc.poll() is not None, "the process exits after its error", guard=15.0)
        # the batch's other pages are still held at the gate: the process waited for none of them
        assert live.box.stats["requests"] == 2 + PAGES_IN_FLIGHT
        assert live.box.inflight >= PAGES_IN_FLIGHT - 1
    finally:
        if proc.poll() is None:
            proc.kill()
        stdout, stderr = proc.communicate()
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def test_spend_exits_at_once_when_one_page_of_a_batch_fails(failing: LiveSandbox, home: Path) -> None:
    env = script_env(home, failing.url, PRIME_BILLING_MAX_RETRIES="0")
    out = exits_while_held(failing, [str(SCRIPTS / "spend.py")], env)
    assert (out.returncode, out.stdout) == (1, ""), out.stderr
    assert out.stderr == "spend.py: error: Prime API unavailable (503): try again later\n"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_library_caller_exits_at_once_too(failing: LiveSandbox, home: Path, mode: str) -> None:
    env = script_env(home)
    out = exits_while_held(failing, ["-c", LIBRARY, mode, failing.box.api_key, failing.url], env)
    assert (out.returncode, out.stdout) == (1, ""), out.stderr
    assert out.stderr == "Prime API unavailable (503): try again later\n"
