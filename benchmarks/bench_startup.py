"""Start-up cost of the scripts, as a ratio against a minimal httpx+pydantic GET.

Agents run the scripts many times, so what matters is the whole process: start
Python, import, parse flags, one GET on loopback, print JSON. Both sides fetch
the same wallet from the sandbox served on 127.0.0.1; runs are interleaved and
the median is taken. Goal: every script answering one page (`--json`) within
1.15x the baseline; the reports' modules and the progress bar load only for a
report.

    python benchmarks/bench_startup.py [--runs 21]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "skill"))

from prime_billing.config import SANDBOX_API_KEY  # noqa: E402
from prime_billing.sandbox.faults import FaultySandbox  # noqa: E402
from prime_billing.sandbox.server import make_server  # noqa: E402

#: a script answering one page, as a multiple of the baseline
GOAL = 1.15

BASELINE = """
import sys, httpx, pydantic

class Wallet(pydantic.BaseModel):
    wallet_id: str
    balance_usd: float
    currency: str

r = httpx.get(sys.argv[1] + "/api/v1/billing/wallet", headers={"Authorization": "Bearer " + sys.argv[2]}, timeout=10)
r.raise_for_status()
Wallet.model_validate(r.json())
sys.stdout.write(r.text)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()

    server = make_server(FaultySandbox(), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    home = tempfile.mkdtemp()
    # PYTHONDONTWRITEBYTECODE dropped: the warm-up runs write the .pyc files, as any machine that
    # runs the scripts more than once has them; without them every run compiles the package again
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIME_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(HOME=home, PRIME_API_BASE_URL=url, PRIME_API_KEY=SANDBOX_API_KEY)
    base = Path(home) / "baseline.py"
    base.write_text(BASELINE)

    cases = {
        "baseline: httpx+pydantic GET": [sys.executable, str(base), url, SANDBOX_API_KEY],
        "scripts/wallet.py --json": [sys.executable, str(ROOT / "scripts/wallet.py"), "--json"],
        "scripts/wallet.py (summary)": [sys.executable, str(ROOT / "scripts/wallet.py")],
        "scripts/run_usage.py ID --json": [
            sys.executable,
            str(ROOT / "scripts/run_usage.py"),
            "rft_sbx_running",
            "--json",
        ],
        "python -c 'pass' (interpreter)": [sys.executable, "-c", "pass"],
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    for cmd in cases.values():  # warm the OS caches and .pyc files
        subprocess.run(cmd, env=env, capture_output=True, check=True)
    for _ in range(args.runs):
        for name, cmd in cases.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run(cmd, env=env, capture_output=True, check=True)
            times[name].append(time.perf_counter() - t0)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[name].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    server.shutdown()

    base = "baseline: httpx+pydantic GET"
    base_ms, base_cpu = statistics.median(times[base]) * 1000, statistics.median(cpu[base]) * 1000
    print(f"start-up, median of {args.runs} runs each (sandbox on loopback)")
    print(f"{'command':<34} {'wall ms':>8} {'p90 ms':>8} {'vs base':>8} {'CPU ms':>8} {'vs base':>8}")
    for name, ts in times.items():
        med, p90 = statistics.median(ts) * 1000, sorted(ts)[int(0.9 * (len(ts) - 1))] * 1000
        used = statistics.median(cpu[name]) * 1000
        print(f"{name:<34} {med:>8.1f} {p90:>8.1f} {med / base_ms:>7.2f}x {used:>8.1f} {used / base_cpu:>7.2f}x")
    # judged on CPU time: the work a start-up does. Wall time on a shared machine swings by more
    # than the whole difference between the two sides; the CPU the process spends does not.
    for name in ("scripts/wallet.py --json", "scripts/run_usage.py ID --json"):
        ratio = statistics.median(cpu[name]) * 1000 / base_cpu
        print(f"goal: {name} <= {GOAL}x baseline (CPU): {'met' if ratio <= GOAL else 'NOT met'} ({ratio:.2f}x)")


if __name__ == "__main__":
    main()
