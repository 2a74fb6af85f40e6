"""Cost of the composite reports (spend, reconcile) against a hand-written pager.

Everything on 127.0.0.1: the sandbox served on a loopback socket is the upstream.
For each page size (the sandbox's `page_cap` forces short pages) it times, median
of N runs: the spend report through the sync client and the async client, and a
baseline written here (a plain httpx loop paging the wallet and summing floats,
with no checks, retries, models or exact money). "x base" is the report's median
over the baseline's: what the plan, validation and decimal sums cost per report.

    python benchmarks/bench_reports.py [--runs 30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "skill"))

import httpx  # noqa: E402

from prime_billing.client import AsyncClient, Client  # noqa: E402
from prime_billing.config import SANDBOX_API_KEY  # noqa: E402
from prime_billing.sandbox import Sandbox, make_server  # noqa: E402


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
    runs = parser.parse_args().runs

    box = Sandbox()
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

    http.close()
    sync.close()
    loop.run_until_complete(aclient.aclose())
    loop.close()
    server.shutdown()


async def _make_async(url: str) -> AsyncClient:
    return AsyncClient(base_url=url, api_key=SANDBOX_API_KEY)


if __name__ == "__main__":
    main()
