"""Soak: the launcher under sustained mixed load while its upstream fails and dies.

Everything on 127.0.0.1, each part its own process:
- the sandbox (`prime-billing sandbox --fail-rate 0.1 --latency-ms LO HI`): 10% of
  upstream requests answer 503, all of them take a random time;
- the launcher (`prime-billing serve`), with its default retries (3) and bounds;
- this script: REST callers (httpx) and MCP callers (the official MCP client, one
  session each), `--concurrency` of them in all, until `--requests` are done.
Part way through (`--outage-at`) the sandbox is killed (SIGKILL) and started
again `--outage` seconds later on the same port.

It prints: requests by surface, client-visible failures by cause (inside and
outside the outage), p50/p99 latency, upstream calls per client request, and the
launcher's RSS and open file descriptors after warm-up and at the end; then the
verdict on each goal:
- no failure a retry could have avoided: every failure ran out of retries (its
  message says "after 4 attempts"); with 10% 503s a call fails 4 times in a row
  about once in 10,000, and every caller waiting on that call sees it;
- failures from the outage (upstream unreachable) are clean 502s (REST) / tool
  errors (MCP) and stop within seconds of the upstream's return;
- RSS and descriptors flat.

    python benchmarks/soak.py [--requests 20000] [--concurrency 100] [--mcp-share 0.2]
                              [--fail-rate 0.1] [--latency-ms 2 40] [--outage 5] [--outage-at 0.4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KEY = "sbx-demo-key"
RUNS = ["rft_sbx_running", "rft_sbx_completed", "rft_sbx_cached", "rft_sbx_failed", "rft_sbx_mismatch"]
RETRIES = 3
EXHAUSTED = f"after {RETRIES + 1} attempts"
#: what the one-line errors say when the upstream cannot be reached at all
CONNECTION_WORDS = ("cannot reach", "connection to Prime API failed")


# --------------------------------------------------------------------------- processes


def start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """Start a server; its first stdout line names where it listens."""
    proc = subprocess.Popen(
        [sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if "http://" not in line:
        proc.kill()
        sys.exit(f"soak: could not start {' '.join(args)}: {line.strip()!r}")
    return proc, line


def start_sandbox(port: int, ns: argparse.Namespace, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    lo, hi = ns.latency_ms
    args = ["-m", "prime_billing", "sandbox", "--port", str(port), "--fail-rate", str(ns.fail_rate)]
    for _ in range(50):  # the old socket may linger a moment after a kill
        try:
            proc, line = start([*args, "--latency-ms", str(lo), str(hi)], env)
        except SystemExit:
            time.sleep(0.1)
            continue
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url is not None
        return proc, url.group(0)
    sys.exit(f"soak: the sandbox could not listen on port {port} again")


def sandbox_stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url + "/_sandbox/stats", timeout=5) as r:
        return json.load(r)


def resources(pid: int) -> tuple[float, int]:
    """RSS in MiB and open file descriptors of a process (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        rss_kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- load


@dataclass
class Outcome:
    surface: str
    start: float
    end: float
    ok: bool
    cause: str = ""
    detail: str = ""


@dataclass
class Run:
    total: int
    start: float = 0.0
    issued: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    kill_at: float | None = None
    back_at: float | None = None

    def take(self) -> bool:
        if self.issued >= self.total:
            return False
        self.issued += 1
        return True


def rest_request(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"/v1/api/v1/billing/runs/{rng.choice(RUNS)}/usage"
    return f"/v1/api/v1/billing/wallet?limit={rng.randint(1, 20)}&offset={rng.randint(0, 45)}"


def mcp_request(rng: random.Random) -> tuple[str, dict[str, Any]]:
    if rng.random() < 0.5:
        return "prime-intellect-getrunusage", {"run_id": rng.choice(RUNS)}
    return "prime-intellect-getwallet", {"limit": rng.randint(1, 20), "offset": rng.randint(0, 45)}


async def rest_worker(run: Run, session: Any, base: str, seed: int) -> None:
    """REST callers use aiohttp: the cheapest client at hand, so the load costs the machine little."""
    rng = random.Random(seed)
    while run.take():
        t0 = time.perf_counter()
        try:
            async with session.get(base + rest_request(rng)) as r:
                status, body = r.status, await r.read()
        except Exception as exc:  # a transport failure is a finding, not a crash of the soak
            run.outcomes.append(Outcome("rest", t0, time.perf_counter(), False, f"transport {type(exc).__name__}"))
            continue
        ok = status == 200
        cause = detail = ""
        if not ok:
            try:
                problem = json.loads(body)
                cause, detail = f"{status} {problem.get('code', '')}", problem.get("detail", "")
            except ValueError:
                cause, detail = f"{status} (not problem+json)", body[:200].decode(errors="replace")
        run.outcomes.append(Outcome("rest", t0, time.perf_counter(), ok, cause, detail))


async def mcp_worker(run: Run, url: str, seed: int) -> None:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    rng = random.Random(seed)
    http = httpx2.AsyncClient(timeout=120)
    async with Client(streamable_http_client(url, http_client=http)) as client:
        while run.take():
            name, args = mcp_request(rng)
            t0 = time.perf_counter()
            try:
                result = await client.call_tool(name, args)
            except Exception as exc:
                run.outcomes.append(Outcome("mcp", t0, time.perf_counter(), False, f"transport {type(exc).__name__}"))
                continue
            text = "".join(getattr(c, "text", "") for c in result.content)
            cause = _mcp_cause(text) if result.is_error else ""
            run.outcomes.append(Outcome("mcp", t0, time.perf_counter(), not result.is_error, cause, text))


def _mcp_cause(text: str) -> str:
    """The kind of a tool error, from its one-line explanation."""
    for words, cause in (
        ("cannot reach", "isError: cannot reach upstream"),
        ("unavailable (", "isError: upstream unavailable"),
        ("connection to Prime API failed", "isError: connection failed"),
        ("did not answer within", "isError: upstream timeout"),
    ):
        if words in text:
            return cause
    return "isError: " + text[:60]


async def outage(run: Run, ns: argparse.Namespace, box: dict[str, Any], env: dict[str, str]) -> None:
    """Kill the sandbox part way through, bring it back on the same port."""
    while len(run.outcomes) < ns.outage_at * run.total:
        if len(run.outcomes) >= run.total:
            return  # no outage asked for (--outage-at 1 or more)
        await asyncio.sleep(0.05)
    box["stats"].append(sandbox_stats(box["url"]))
    box["proc"].send_signal(signal.SIGKILL)
    box["proc"].wait()
    run.kill_at = time.perf_counter()
    await asyncio.sleep(ns.outage)
    port = int(box["url"].rsplit(":", 1)[1])
    box["proc"], _ = await asyncio.to_thread(start_sandbox, port, ns, env)
    run.back_at = time.perf_counter()


async def drive(ns: argparse.Namespace, rest: str, mcp: str, box: dict[str, Any], env: dict[str, str]) -> Run:
    import aiohttp

    n_mcp = round(ns.concurrency * ns.mcp_share)
    n_rest = ns.concurrency - n_mcp
    run = Run(ns.requests, start=time.perf_counter())
    connector = aiohttp.TCPConnector(limit=max(1, n_rest))
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        workers = [rest_worker(run, session, rest, i) for i in range(n_rest)]
        workers += [mcp_worker(run, mcp, 1000 + i) for i in range(n_mcp)]
        await asyncio.gather(outage(run, ns, box, env), *workers)
    return run


async def warm_up(rest: str, n: int) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=60) as client:
        rng = random.Random(7)
        await asyncio.gather(*(client.get(rest + rest_request(rng)) for _ in range(n)))


# --------------------------------------------------------------------------- report


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


def report(
    run: Run,
    ns: argparse.Namespace,
    elapsed: float,
    upstream: int,
    res: dict[str, tuple[float, int]],
    cpu: dict[str, float],
) -> bool:
    out = run.outcomes
    kill, back = run.kill_at or 0.0, run.back_at or 0.0
    failed = [o for o in out if not o.ok]
    # only a dead upstream refuses or drops connections here; the 503s come at --fail-rate all along
    outage = [o for o in failed if any(w in o.detail for w in CONNECTION_WORDS)]
    other = [o for o in failed if o not in outage]
    print(f"soak: {len(out)} requests in {elapsed:.1f} s ({len(out) / elapsed:.0f}/s) at concurrency {ns.concurrency}")
    print(f"  upstream: {ns.fail_rate:.0%} 503s, latency {ns.latency_ms[0]:g}-{ns.latency_ms[1]:g} ms, "
          f"killed at +{kill - run.start:.1f} s for {back - kill:.1f} s")  # fmt: skip
    print()
    print(f"{'surface':<8}{'requests':>10}{'ok':>10}{'failed':>8}{'p50 ms':>10}{'p99 ms':>10}")
    for surface in ("rest", "mcp", "all"):
        rows = [o for o in out if surface in ("all", o.surface)]
        lat = [o.end - o.start for o in rows]
        ok = sum(o.ok for o in rows)
        print(f"{surface:<8}{len(rows):>10}{ok:>10}{len(rows) - ok:>8}{pct(lat, 0.5):>10.1f}{pct(lat, 0.99):>10.1f}")
    steady = [o.end - o.start for o in out if o.ok and (o.end < kill or o.start > back + ns.settle)]
    print(f"{'steady':<8}{len(steady):>10}{'':>18}{pct(steady, 0.5):>10.1f}{pct(steady, 0.99):>10.1f}"
          f"   (successes before the outage or {ns.settle:g} s after it)")  # fmt: skip
    print()
    for title, group in (("upstream unreachable (the outage)", outage), ("503 every attempt (the fault rate)", other)):
        print(f"failures, {title}: {len(group)}")
        for cause, n in Counter(o.cause for o in group).most_common():
            print(f"  {n:>6}  {cause}")
    calls = upstream / (1 + ns.fail_rate)
    print(f"  (expected from the fault rate alone: about {calls * ns.fail_rate ** (RETRIES + 1):.1f} upstream calls "
          f"failing {RETRIES + 1} times in a row, each failing every caller waiting on it)")  # fmt: skip
    first = min((o.end for o in outage), default=kill) - kill
    last = max((o.end for o in outage), default=back) - back
    print()
    print(f"upstream calls per client request: {upstream / max(1, len(out)):.3f} ({upstream} calls)")
    (rss0, fd0), (rss1, fd1) = res["start"], res["end"]
    print(f"launcher RSS: {rss0:.1f} MiB after warm-up, {rss1:.1f} MiB at the end ({rss1 - rss0:+.1f})")
    print(f"launcher open fds: {fd0} after warm-up, {fd1} at the end ({fd1 - fd0:+d})")
    print(f"outage failures: first {first:+.2f} s after the kill, last {last:+.2f} s after the upstream came back")
    shares = ", ".join(f"{name} {sec:.1f} s" for name, sec in cpu.items())
    print(f"CPU used during the run ({os.cpu_count()} cores, {elapsed:.1f} s): {shares}")
    print()
    avoidable = [o for o in failed if EXHAUSTED not in o.detail]
    unclean = [o for o in outage if not (o.cause.startswith("502 ") or o.cause.startswith("isError: "))]
    goals = [
        ("no failure a retry could have avoided", not avoidable, f"{len(avoidable)} failed before retries ran out"),
        ("outage failures are clean 502s / tool errors", not unclean, f"{len(unclean)} were not"),
        ("outage failures stop within seconds of its return", last <= 5.0, f"last at {last:+.2f} s"),
        ("RSS flat (within 25 MiB)", rss1 - rss0 <= 25, f"{rss1 - rss0:+.1f} MiB"),
        ("descriptors flat (within 10)", fd1 - fd0 <= 10, f"{fd1 - fd0:+d}"),
    ]
    for goal, met, figure in goals:
        print(f"  [{'met' if met else 'MISSED'}] {goal}: {figure}")
    for o in (avoidable + unclean)[:5]:
        print(f"    e.g. {o.surface} {o.cause}: {o.detail[:150]}")
    return all(met for _, met, _ in goals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--mcp-share", type=float, default=0.2, help="fraction of callers speaking MCP")
    parser.add_argument("--fail-rate", type=float, default=0.1)
    parser.add_argument("--latency-ms", type=float, nargs=2, default=[2.0, 40.0], metavar=("LO", "HI"))
    parser.add_argument("--outage", type=float, default=5.0, help="seconds the upstream stays dead")
    parser.add_argument("--outage-at", type=float, default=0.4, help="fraction of requests done when it dies")
    parser.add_argument(
        "--settle", type=float, default=10.0, help="seconds after its return left out of the steady latency"
    )
    ns = parser.parse_args()

    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIME_")}
    env["HOME"] = tempfile.mkdtemp(prefix="soak-home-")
    sandbox, url = start_sandbox(0, ns, env)
    serve_env = {**env, "PRIME_API_BASE_URL": url, "PRIME_API_KEY": KEY, "PRIME_BILLING_MAX_RETRIES": str(RETRIES)}
    launcher, line = start(
        ["-m", "prime_billing", "serve", "--rest-port", "0", "--mcp-port", "0", "--no-access-log"], serve_env
    )
    rest = re.search(r"REST on (http://\S+?)[,;]", line)
    mcp = re.search(r"MCP on (http://\S+?/mcp)", line)
    if not rest or not mcp:
        sys.exit(f"soak: cannot read the launcher's ports from {line!r}")
    box: dict[str, Any] = {"proc": sandbox, "url": url, "stats": []}
    try:
        asyncio.run(warm_up(rest.group(1), 500))
        urllib.request.urlopen(urllib.request.Request(url + "/_sandbox/stats", method="DELETE"), timeout=5).read()
        time.sleep(1.0)  # the warm-up's connections close before the first reading, as at the end
        res = {"start": resources(launcher.pid)}
        cpu = {"launcher": -cpu_seconds(launcher.pid), "load generator": -_own_cpu()}
        run = _run(drive(ns, rest.group(1), mcp.group(1), box, env))
        elapsed = time.perf_counter() - run.start
        cpu["launcher"] += cpu_seconds(launcher.pid)
        cpu["load generator"] += _own_cpu()
        time.sleep(1.0)  # let idle connections settle before the last reading
        res["end"] = resources(launcher.pid)
        box["stats"].append(sandbox_stats(url))
    finally:
        launcher.terminate()
        launcher.wait(30)
        box["proc"].terminate()
        box["proc"].wait(10)
    upstream = sum(s.get("requests", 0) for s in box["stats"])
    ok = report(run, ns, elapsed, upstream, res, cpu)
    sys.exit(0 if ok else 1)


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def _run(coro: Any) -> Any:
    """On uvloop when installed: the load generator should cost as little as it can."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


if __name__ == "__main__":
    main()
