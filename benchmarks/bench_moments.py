"""Cost of reading a wallet's dates as UTC `Moment`s, against pydantic's own `datetime`.

A report can hold 100,000 rows of three dates each, and every one is validated as it is
read. A `Moment` takes date-time text only (never a Unix time) and holds it in UTC, so
one wallet may mix dates with and without an offset. Timed here: a 100,000-row wallet
body validated whole (`Wallet.model_validate_json`), with every date written `Z` (what
the upstream writes), with no offset, and with `+02:00`; the baseline is the same model
with plain `datetime` fields, which checks nothing of that and keeps naive dates naive.
CPU time, best of N runs. Goal: with `Z` dates, within 1.25x the baseline (the text check
and UTC together; a date with no offset or another one costs a Python call more).

    python benchmarks/bench_moments.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "skill"))

from prime_billing.models import Wallet  # noqa: E402

ROWS = 100_000
GOAL = 1.25


class _PlainEntry(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    id: str
    created_at: datetime
    updated_at: datetime | None = None
    last_billed_at: datetime | None = None
    amount_usd: float
    currency: str = "USD"
    resource_type: str | None = None
    resource_id: str | None = None


class _PlainWallet(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    wallet_id: str
    team_id: str | None = None
    balance_usd: float
    currency: str
    total_billings: int = 0
    recent_billings: list[_PlainEntry] = []


def body(suffix: str) -> bytes:
    rows = []
    for i in range(ROWS):
        when = f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00{suffix}"
        rows.append(
            {
                "id": f"bill_{i}",
                "created_at": when,
                "updated_at": when,
                "last_billed_at": when,
                "amount_usd": 0.01,
                "currency": "USD",
                "resource_type": "pods",
                "resource_id": f"pod_{i % 50}",
            }
        )
    wallet = {"wallet_id": "wal_b", "balance_usd": 1.0, "currency": "USD", "total_billings": ROWS}
    return json.dumps({**wallet, "recent_billings": rows}).encode()


def best_ms(model: type[BaseModel], data: bytes, runs: int) -> float:
    model.model_validate_json(data)
    times = []
    for _ in range(runs):
        start = time.process_time()
        model.model_validate_json(data)
        times.append(time.process_time() - start)
    return min(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    print(f"a {ROWS:,}-row wallet body (3 dates a row), CPU ms, best of {runs}\n")
    print(f"{'dates':<10} {'datetime ms':>12} {'Moment ms':>10} {'x datetime':>11}")
    ratios = {}
    for name, suffix in (("Z", "Z"), ("no offset", ""), ("+02:00", "+02:00")):
        data = body(suffix)
        base, moment = best_ms(_PlainWallet, data, runs), best_ms(Wallet, data, runs)
        ratios[name] = moment / base
        print(f"{name:<10} {base:>12.1f} {moment:>10.1f} {moment / base:>11.2f}")
    print(f"\ngoal: Z dates within {GOAL}x: {'met' if ratios['Z'] <= GOAL else 'NOT met'} ({ratios['Z']:.2f}x)")


if __name__ == "__main__":
    main()
