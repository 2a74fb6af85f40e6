"""Cost of the composite reports (spend, reconcile): against a hand-written pager, and on a long wallet.

Everything on 127.0.0.1: the sandbox served on a loopback socket is the upstream.

1. For each page size (the sandbox's `page_cap` forces short pages) it times, median
   of N runs: the spend report through the sync client and the async client, and a
   baseline written here (a plain httpx loop paging the wallet and summing floats,
   with no checks, retries, models or exact money). "x base" is the report's median
   over the baseline's: what the plan, validation and decimal sums cost per report.
2. A long wallet: 10,000 rows (`rows` knob) answered after 50 ms each (`latency`),
   timed as whole CLI processes, interleaved, median of M runs: `scripts/spend.py --json`
   (every row) against `scripts/wallet.py --limit 100 --json` (one page of 100). Goal:
   spend <= 3x one page. The same for other bounds on the pages in flight
   (`compose.PAGES_IN_FLIGHT`, set in the child process before it runs).
3. Exactness of that report: every row once and the total to the cent, as read by the
   pager here; and again with rows arriving at the head during the scan (`new_rows`).

    python benchmarks/bench_reports.py [--runs 30] [--process-runs 9] [--bounds 4,8,10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "skill"))

import httpx  # noqa: E402

from prime_billing.client import AsyncClient, Client  # noqa: E402
from prime_billing.compose import PAGES_IN_FLIGHT  # noqa: E402
from prime_billing.config import SANDBOX_API_KEY  # noqa: E402
from prime_billing.sandbox.faults import FaultySandbox  # noqa: E402
from prime_billing.sandbox.server import make_server  # noqa: E402


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm the pool
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def baseline(http: httpx.Client) -> float:
    rows: list[dict] = []
    while True:
        page = http.get("/api/v1/billing/wallet", params={"limit": 100, "offset": len(rows)}).json()
        rows += page["recent_billings"]
        if not page["recent_billings"] or len(rows) >= page["total_billings"]:
            return sum(r["amount_usd"] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--process-runs", type=int, default=9, help="runs of each CLI process in part 2")
    parser.add_argument("--bounds", default="8,10,12", help="pages in flight to compare in part 2")
    args = parser.parse_args()
    runs = args.runs

    box = FaultySandbox()
    server = make_server(box, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = "http://{}:{}".format(*server.server_address[:2])
    headers = {"Authorization": f"Bearer {SANDBOX_API_KEY}"}

    loop = asyncio.new_event_loop()
    sync = Client(base_url=url, api_key=SANDBOX_API_KEY)
    aclient = loop.run_until_complete(_make_async(url))
    http = httpx.Client(base_url=url, headers=headers)

    print(f"spend report over the 46-row sandbox wallet; median of {runs} runs, loopback\n")
    print(f"{'rows/page':>9} {'pages':>5} {'baseline ms':>12} {'sync ms':>8} {'async ms':>9} {'x base':>7}")
    for cap in (None, 10, 1):
        box.clear_faults()
        if cap:
            box.set_faults({"page_cap": cap})
        base = median_ms(lambda: baseline(http), runs)
        s = median_ms(lambda: sync.call("spend_report", {}), runs)
        a = median_ms(lambda: loop.run_until_complete(aclient.call("spend_report", {})), runs)
        pages = sync.call("spend_report", {}).data.pages
        print(f"{cap or 100:>9} {pages:>5} {base:>12.2f} {s:>8.2f} {a:>9.2f} {s / base:>7.2f}")
    box.clear_faults()
    r = median_ms(lambda: sync.call("reconcile_run", {"run_id": "rft_sbx_completed"}), runs)
    print(f"\nreconcile (usage + 1 wallet page), sync client: {r:.2f} ms median")

    long_wallet(box, url, http, args.process_runs, [int(b) for b in args.bounds.split(",")])

    http.close()
    sync.close()
    loop.run_until_complete(aclient.aclose())
    loop.close()
    server.shutdown()


LONG_ROWS, LATENCY = 10_000, 0.05
#: runs the spend script with another bound on the pages in flight (a public module constant)
WITH_BOUND = (
    "import sys; sys.path.insert(0, sys.argv[1]); import prime_billing.compose as c; "
    "c.PAGES_IN_FLIGHT = int(sys.argv[2]); from prime_billing.cli import run_script; "
    "sys.exit(run_script('spend', 'spend.py', sys.argv[3:]))"
)


def long_wallet(box: FaultySandbox, url: str, http: httpx.Client, runs: int, bounds: list[int]) -> None:
    """Part 2 and 3: whole processes, as an agent runs the scripts (start-up included on both sides)."""
    home = tempfile.mkdtemp()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIME_")}
    env.update(HOME=home, PRIME_API_BASE_URL=url, PRIME_API_KEY=SANDBOX_API_KEY)
    py, scripts = sys.executable, ROOT / "scripts"
    page = "wallet.py --limit 100 --json (one page)"
    cases = {page: [py, str(scripts / "wallet.py"), "--limit", "100", "--json"]}
    for bound in sorted(set(bounds) | {PAGES_IN_FLIGHT}):
        mine = " (the default)" if bound == PAGES_IN_FLIGHT else ""
        cases[f"spend.py --json, {bound} pages in flight{mine}"] = (
            [py, str(scripts / "spend.py"), "--json"]
            if bound == PAGES_IN_FLIGHT
            else [py, "-c", WITH_BOUND, str(ROOT / "skill"), str(bound), "--json"]
        )

    box.clear_faults()
    box.set_faults({"rows": LONG_ROWS})
    expected = every_row(http)  # read before any latency or arrival: the wallet as it stands
    box.set_faults({"latency": [LATENCY, LATENCY]})
    times: dict[str, list[float]] = {name: [] for name in cases}
    for cmd in cases.values():  # warm the OS caches and .pyc files
        subprocess.run(cmd, env=env, capture_output=True, check=True)
    for _ in range(runs):
        for name, cmd in cases.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, env=env, capture_output=True, check=True)
            times[name].append(time.perf_counter() - t0)

    one = statistics.median(times[page])
    print(
        f"\nspend over {LONG_ROWS:,} rows vs one page of 100, {LATENCY * 1000:.0f} ms upstream latency; "
        f"whole CLI processes, median of {runs} runs, loopback\n"
    )
    print(f"{'command':<50} {'median s':>9} {'x one page':>11}")
    for name, ts in times.items():
        print(f"{name:<50} {statistics.median(ts):>9.2f} {statistics.median(ts) / one:>11.2f}")
    ratio = statistics.median(times[f"spend.py --json, {PAGES_IN_FLIGHT} pages in flight (the default)"]) / one
    print(f"goal: spend <= 3x one page: {'met' if ratio <= 3 else 'NOT met'} ({ratio:.2f}x)")

    box.set_faults({"latency": [0, 0]})
    print(f"\nexactness over {LONG_ROWS:,} rows: {exactness(cases, env, expected)}")
    box.set_faults({"new_rows": 5})  # they arrive after the scan's first page
    print(f"exactness with 5 rows arriving at the head mid-scan: {exactness(cases, env, expected)}")
    box.clear_faults()


def every_row(http: httpx.Client) -> list[dict]:
    """The wallet read here, page after page (no report code involved)."""
    rows: list[dict] = []
    while True:
        page = http.get("/api/v1/billing/wallet", params={"limit": 100, "offset": len(rows)}).json()
        rows += page["recent_billings"]
        if not page["recent_billings"] or len(rows) >= page["total_billings"]:
            return rows


def exactness(cases: dict[str, list[str]], env: dict[str, str], expected: list[dict]) -> str:
    """Every expected row exactly once, no other, and a total that is the sum of exactly those rows."""
    spend = next(cmd for name, cmd in cases.items() if "(the default)" in name)
    report = json.loads(subprocess.run(spend, env=env, capture_output=True, check=True, text=True).stdout)
    ids = [r["id"] for r in report["rows"]]
    cents = sum(round(r["amount_usd"] * 100) for r in expected)
    once = len(ids) == len(set(ids)) and set(ids) == {r["id"] for r in expected}
    summed = round(report["total_usd"] * 100) == cents == sum(round(r["amount_usd"] * 100) for r in report["rows"])
    verdict = "exact" if once and summed and report["row_count"] == len(expected) else "NOT exact"
    return (
        f"{verdict}: {report['row_count']:,} rows ({len(expected):,} expected, {len(ids) - len(set(ids))} twice), "
        f"total ${report['total_usd']:.2f} (expected ${cents / 100:.2f}), {report['pages']} pages"
    )


async def _make_async(url: str) -> AsyncClient:
    return AsyncClient(base_url=url, api_key=SANDBOX_API_KEY)


if __name__ == "__main__":
    main()
