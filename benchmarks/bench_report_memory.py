"""Peak memory and time of the reports over long wallets, each run a fresh CLI process.

Everything on 127.0.0.1: `prime-billing sandbox`, in its own process, is the upstream; its
wallet is N rows long (the `rows` knob), the generated rows a second apart (`rows_every`), so
that a month's pace and a 30-day runway read every one of them as the spend report does. Each
case runs a script as a subprocess and takes its peak RSS from the kernel (`os.wait4`'s
`ru_maxrss`, the child alone) and its wall time: the summary (`spend.py`), `spend.py --by day`,
`pace.py`, `runway.py` and `spend.py --json` (every row in the answer). "x goal" is the peak
over the goal: the summary over 100,000 rows at most 100 MB (10^6 bytes); the other cases are
shown against the same figure, `--json` with every row beside it, not held to it. Every answer
is checked against the wallet as it is built: N rows, $221.52 + (N - 46) x $0.01.

`--scripts DIR` runs another checkout's scripts (its own package: each script puts its skill/
first on the path), against the same sandbox, to compare before and after.

    python benchmarks/bench_report_memory.py [--rows 10000,100000,1000000] [--runs 1] [--scripts DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_rest import KEY, ROOT, start

#: the summary over 100,000 rows, at most (bytes)
GOAL = 100_000_000
GOAL_ROWS = 100_000
#: the sandbox's "now": its demo rows end on 2026-11-30, and a million rows a second apart start
#: on 2026-11-13, so every row is in November
NOW = "2026-11-30T12:00:00Z"
AS_OF = "2026-11-30T13:00:00Z"
DEMO_ROWS, DEMO_USD = 46, Decimal("221.52")
CASES: dict[str, list[str]] = {
    "spend (summary)": ["spend.py"],
    "spend --by day": ["spend.py", "--by", "day"],
    "pace (month)": ["pace.py", "--budget", "100000", "--period", "month", "--as-of", AS_OF],
    "runway (30 days)": ["runway.py", "--days", "30", "--as-of", AS_OF],
    "spend --json (every row)": ["spend.py", "--json"],
}


def expected(rows: int) -> tuple[str, str]:
    """What every answer over `rows` rows must say: the count, and the total as the text writes it."""
    total = DEMO_USD + (rows - DEMO_ROWS) * Decimal("0.01")
    return f"{rows} rows", f"${total:,.2f}"


def measure(cmd: list[str], env: dict[str, str], out: Path) -> tuple[int, float, int]:
    """Run `cmd` with stdout to `out`: its peak RSS in bytes, its wall seconds, its exit code."""
    with out.open("wb") as sink:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        errors = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 3):  # 3: pace over its budget is still an answer
        raise SystemExit(f"{' '.join(cmd[1:])} failed ({proc.returncode}): {errors.decode()[-500:]}")
    return usage.ru_maxrss * 1024, seconds, proc.returncode


def check(name: str, out: Path, rows: int) -> None:
    """The answer holds every row once and the exact total (the JSON's first fields are enough)."""
    count, total = expected(rows)
    if name.endswith("(every row)"):
        with out.open("rb") as f:
            head = f.read(4096).decode()
        got = re.search(r'"row_count":(\d+)', head), re.search(r'"total_usd":([0-9.]+)', head)
        ok = got[0] is not None and got[1] is not None and int(got[0][1]) == rows
        ok = ok and got[1] is not None and f"${Decimal(got[1][1]):,.2f}" == total
    else:
        text = out.read_text()
        ok = count in text and total in text
    if not ok:
        raise SystemExit(f"{name} over {rows:,} rows did not say {count} and {total}: see {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="10000,100000,1000000", help="wallet lengths, comma-separated")
    parser.add_argument("--runs", type=int, default=1, help="runs of each case (median time, highest peak)")
    parser.add_argument("--scripts", type=Path, default=ROOT / "scripts", help="the scripts to run")
    args = parser.parse_args()
    sizes = [int(n) for n in args.rows.split(",")]

    before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIME_") and k != "PYTHONPATH"}
    sandbox_env = {**env, "PYTHONPATH": str(ROOT / "skill"), "PRIME_BILLING_SANDBOX_NOW": NOW}
    sandbox, url = start(["-m", "prime_billing", "sandbox", "--port", "0"], sandbox_env)
    child = {**env, "HOME": str(work), "PRIME_API_BASE_URL": url, "PRIME_API_KEY": KEY}
    results: dict[tuple[str, int], tuple[int, float]] = {}
    try:
        for rows in sizes:
            httpx.post(f"{url}/_sandbox/faults", json={"rows": rows, "rows_every": 1}).raise_for_status()
            for name, argv in CASES.items():
                cmd = [sys.executable, str(args.scripts / argv[0]), *argv[1:]]
                if not results:  # the first run writes the .pyc files: not counted
                    measure(cmd, child, work / "warm")
                out = work / "out"
                peaks, times = [], []
                for _ in range(args.runs):
                    peak, seconds, _ = measure(cmd, child, out)
                    check(name, out, rows)
                    peaks.append(peak)
                    times.append(seconds)
                results[name, rows] = max(peaks), statistics.median(times)
                print(f"  {name} over {rows:,} rows: {max(peaks) / 1e6:.1f} MB, {statistics.median(times):.2f} s",
                      file=sys.stderr)  # fmt: skip
                out.unlink()
    finally:
        sandbox.terminate()
        sandbox.wait(10)

    print(f"\npeak RSS and wall time of each report, a fresh CLI process ({args.scripts}) on a loopback sandbox;")
    after = os.getloadavg()[0]
    print(f"1-minute load average {before:.2f} at the start, {after:.2f} at the end, {os.cpu_count()} cores\n")
    print(f"{'report':<26} {'rows':>10} {'peak MB':>9} {'x goal':>7} {'seconds':>8}")
    for (name, rows), (peak, seconds) in results.items():
        print(f"{name:<26} {rows:>10,} {peak / 1e6:>9.1f} {peak / GOAL:>7.2f} {seconds:>8.2f}")
    if ("spend (summary)", GOAL_ROWS) in results:
        peak = results["spend (summary)", GOAL_ROWS][0]
        verdict = "met" if peak <= GOAL else "NOT met"
        print(f"goal: the summary over {GOAL_ROWS:,} rows at most {GOAL / 1e6:.0f} MB: {verdict} ({peak / GOAL:.2f}x)")


if __name__ == "__main__":
    main()
