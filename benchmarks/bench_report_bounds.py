"""What one report request can make the launcher hold, and how long it stalls everyone else.

Everything on 127.0.0.1: the sandbox (its `rows` knob makes a wallet of any
length, rows made only as they are read) and `prime-billing serve --only rest`,
each in its own process. Two cases:

- a wallet of 200,000 rows, far over `--max-report-rows` (default 10,000):
  `GET /v1/prime-billing/spend` must be refused at once, not read whole;
- a wallet of 10,000 rows, just under the cap: the report is built in full,
  every row in the answer (`include_rows=true`, the most one request can hold).

For each: the answer's status, upstream calls, wall time, the launcher's RSS
before, after and at its peak (VmHWM), and the slowest `/healthz` answer seen
by a poller running meanwhile (how long the event loop was blocked at most).

    python benchmarks/bench_report_bounds.py
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_rest import servers


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def case(sandbox_url: str, rest: str, pid: int, rows: int) -> dict[str, float]:
    httpx.post(f"{sandbox_url}/_sandbox/faults", json={"rows": rows}).raise_for_status()
    before_calls = httpx.get(f"{sandbox_url}/_sandbox/stats").json().get("requests", 0)
    rss_before = rss_kib(pid, "VmRSS")
    stalls: list[float] = []
    done = threading.Event()

    def poll() -> None:
        with httpx.Client() as c:
            while not done.is_set():
                t = time.perf_counter()
                c.get(rest + "/healthz")
                stalls.append((time.perf_counter() - t) * 1000)

    poller = threading.Thread(target=poll)
    poller.start()
    t = time.perf_counter()
    r = httpx.get(rest + "/v1/prime-billing/spend", params={"include_rows": "true"}, timeout=300)  # the most it holds
    wall = time.perf_counter() - t
    done.set()
    poller.join()
    calls = httpx.get(f"{sandbox_url}/_sandbox/stats").json().get("requests", 0) - before_calls
    return {
        "rows": rows,
        "status": r.status_code,
        "bytes": len(r.content),
        "upstream calls": calls,
        "seconds": wall,
        "rss before MiB": rss_before / 1024,
        "rss after MiB": rss_kib(pid, "VmRSS") / 1024,
        "peak MiB": rss_kib(pid, "VmHWM") / 1024,
        "worst /healthz ms": max(stalls) if stalls else 0.0,
        "healthz polls": len(stalls),
    }


def main() -> None:
    with servers("--only", "rest", "--rest-port", "0", "--no-access-log") as s:
        httpx.get(s.url + "/v1/api/v1/billing/wallet").raise_for_status()  # warm up
        results = [case(s.upstream, s.url, s.launcher.pid, rows) for rows in (200_000, 10_000)]
    keys = list(results[0])
    print(f"{'':<20}" + "".join(f"{r['rows']:>14,} rows" for r in results))
    for k in keys[1:]:
        print(f"{k:<20}" + "".join(f"{r[k]:>19.1f}" if isinstance(r[k], float) else f"{r[k]:>19}" for r in results))


if __name__ == "__main__":
    main()
