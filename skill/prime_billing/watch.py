"""`usage RUN_ID --watch`: poll a run until it finishes, with its cost rate.

On a terminal the summary is redrawn in place; with `--json` each poll is one
JSON line per run (for programs); piped without `--json`, one plain line per
run per poll (for logs). The rate is USD per hour since the previous poll,
from the billed total, so it is what the run is costing right now. A transient
upstream failure is reported and the watch goes on; any other failure ends it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from .config import Settings
from .errors import InvalidInputError, RateLimitError, UpstreamUnavailableError
from .money import money, usd
from .render import SANDBOX_BANNER
from .untrusted import shown

#: shortest pause between polls; anything faster only burns rate limit
MIN_INTERVAL = 0.05
#: longest pause between polls (a day): a longer one is a typo, and past the platform's clock `sleep` cannot wait it
MAX_INTERVAL = 86_400.0


def _rate(prev: tuple[float, float] | None, now: float, cost: float) -> dict[str, float | None]:
    """Cost change and USD/hour since the previous poll (None on the first one)."""
    if prev is None:
        return {"cost_delta_usd": None, "elapsed_s": None, "usd_per_hour": None}
    then, before = prev
    elapsed = max(now - then, 1e-9)
    delta = float(money(cost) - money(before))
    return {"cost_delta_usd": delta, "elapsed_s": elapsed, "usd_per_hour": delta / elapsed * 3600}


def _rate_text(figures: dict[str, float | None]) -> str:
    per_hour, delta = figures["usd_per_hour"], figures["cost_delta_usd"]
    if per_hour is None or delta is None:
        return "rate: from the next poll"
    return f"rate {usd(per_hour)}/h since the last poll ({'+' if delta >= 0 else ''}{usd(delta)})"


def watch(op: Any, calls: list[dict[str, Any]], settings: Settings, ns: argparse.Namespace) -> int:
    from .client import Client

    interval = float(ns.interval)
    if not MIN_INTERVAL <= interval <= MAX_INTERVAL:
        raise InvalidInputError(
            f"--interval must be {MIN_INTERVAL:g} to {MAX_INTERVAL:g} seconds (a day), got {ns.interval:g}"
        )
    in_place = sys.stdout.isatty() and not ns.json
    prev: dict[int, tuple[float, float]] = {}
    latest: dict[int, Any] = {}
    rates: dict[int, dict[str, float | None]] = {}
    drawn = 0
    poll = 0
    with Client(settings) as client:
        while True:
            poll += 1
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            lines: list[str] = []
            for i, args in enumerate(calls):
                if i in latest and op.finished(latest[i].data):
                    continue  # a finished run no longer changes: poll only the others
                try:
                    result = client.call(op.name, args)
                except (UpstreamUnavailableError, RateLimitError) as exc:
                    print(f"{ns._prog}: warning: {exc.worded('cli')} (still watching)", file=sys.stderr, flush=True)
                    continue
                now = time.monotonic()
                run = result.data
                figures = _rate(prev.get(i), now, run.total_cost_usd)
                prev[i] = (now, run.total_cost_usd)
                latest[i], rates[i] = result, figures
                finished = op.finished(run)
                if ns.json:
                    line = {
                        "polled_at": stamp,
                        "poll": poll,
                        "run_id": run.run_id,
                        "status": run.status,
                        "finished": finished,
                        "total_cost_usd": run.total_cost_usd,
                        "total_tokens": run.total_tokens,
                        **figures,
                        "usage": result.raw,
                    }
                    sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
                elif not in_place:
                    lines.append(
                        f"{stamp} {shown(run.run_id)} {shown(run.status) if run.status else 'status unknown'}"
                        f" {usd(run.total_cost_usd)} billed"
                        f" · {_rate_text(figures)}"
                    )
            done = len(latest) == len(calls) and all(op.finished(r.data) for r in latest.values())
            sandbox = any(r.sandbox for r in latest.values())
            if in_place:
                for i in sorted(latest):
                    lines += [latest[i].summary(banner=False, surface="cli"), f"  {_rate_text(rates[i])}", ""]
                state = "finished" if done else f"next poll in {interval:g}s · Ctrl-C stops"
                block = ([SANDBOX_BANNER] if sandbox else []) + lines + [f"poll {poll} at {stamp} · {state}"]
                if drawn:
                    sys.stdout.write(f"\x1b[{drawn}F\x1b[J")  # back to the block's first line, clear below
                sys.stdout.write("\n".join(block) + "\n")
                drawn = len("\n".join(block).split("\n"))
            elif lines:
                if poll == 1 and sandbox:
                    lines.insert(0, SANDBOX_BANNER)
                sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()
            if done:
                if not ns.json and not in_place:
                    states = ", ".join(f"{shown(r.data.run_id)} {shown(r.data.status or '')}" for r in latest.values())
                    sys.stdout.write(f"finished: {states}\n")
                return 0
            time.sleep(interval)
