"""The sandbox's demo data: five runs and two wallets, the same in every sandbox but for their dates.

The bodies have the upstream's own shape (UPSTREAM.md). The personal wallet's
`rft_run` rows add up to what each run billed, except `rft_sbx_mismatch`'s,
which are 37 cents short on purpose, for `reconcile` to find. The wallets' rows
are dated back from a "now" the sandbox is given (`wallets`): the newest at it,
the others at fixed steps before it, so the demo looks alive whenever it runs
and one given "now" reproduces every answer exactly.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

TEAM_ID = "team_sbx_demo"
PERSONAL_WALLET = "wal_sbx_personal"
FORBIDDEN_RUNS = frozenset({"rft_sbx_other_team"})

#: run id: name, base model, status, usage records
_RUN_NAMES = {
    "rft_sbx_running": ("gsm8k-grpo", "qwen2.5-7b", "RUNNING", 12),
    "rft_sbx_completed": ("math-rl-v2", "llama-3.1-8b-instruct", "COMPLETED", 48),
    "rft_sbx_cached": ("code-rft-cache", "qwen3-14b", "COMPLETED", 30),
    "rft_sbx_failed": ("tool-use-rft", "mistral-7b", "FAILED", 3),
    "rft_sbx_mismatch": ("reward-sweep", "qwen2.5-1.5b", "STOPPED", 5),
}
#: run id: training (tokens, $/Mtok, $) and inference (input tokens, output tokens, input $/Mtok,
#: output $/Mtok, $); a None rate is one the backend could not snapshot: shown as unknown, never $0
_RUN_COSTS: dict[str, tuple[tuple[int, float | None, float], tuple[int, int, float | None, float | None, float]]] = {
    "rft_sbx_running": ((5_000_000, 2.5, 12.5), (1_000_000, 3_000_000, 0.5, 1.5, 5.0)),
    "rft_sbx_completed": ((12_000_000, 3.0, 36.0), (6_000_000, 2_000_000, 0.4, 1.2, 4.8)),
    "rft_sbx_cached": ((8_000_000, 4.0, 32.0), (10_000_000, 2_500_000, 0.6, 2.0, 9.2)),
    "rft_sbx_failed": ((1_200_000, None, 2.1), (200_000, 100_000, 0.5, None, 0.35)),
    "rft_sbx_mismatch": ((2_000_000, 1.0, 2.0), (1_000_000, 500_000, 0.2, 0.6, 0.5)),
}
#: a newer backend: cached input tokens and their rate, and fields this client does not know yet
_NEWER_BACKEND = "rft_sbx_cached"

#: the wallet charges for each run, in cents; the mismatch run is short by 37 cents
_RUN_CHARGES: dict[str, list[int]] = {
    "rft_sbx_running": [350] * 5,
    "rft_sbx_completed": [510] * 8,
    "rft_sbx_cached": [1030] * 4,
    "rft_sbx_failed": [245],
    "rft_sbx_mismatch": [100, 113],
}
_OTHER_CHARGES: list[tuple[str, str | None, int]] = (
    [
        ("pods", f"pod_sbx_{i:02d}", c)
        for i, c in enumerate([412, 1288, 96, 2350, 731, 149, 864, 1999, 57, 640, 318, 1204])
    ]
    + [("disks", f"disk_sbx_{i}", c) for i, c in enumerate([120, 120, 120, 85, 85, 240])]
    + [("sandboxes", f"sbx_box_{i}", c) for i, c in enumerate([33, 71, 12, 48])]
    + [("inference", None, c) for c in [205, 17, 392, 88]]
)


def _usage_body(run_id: str) -> dict[str, Any]:
    """One run's usage body, built from the tables above."""
    name, model, status, records = _RUN_NAMES[run_id]
    (t_tokens, t_rate, t_cost), (i_in, i_out, in_rate, out_rate, i_cost) = _RUN_COSTS[run_id]
    inference = {"tokens": i_in + i_out, "input_tokens": i_in, "output_tokens": i_out, "cost_usd": i_cost}
    pricing = {"training_per_mtok": t_rate, "inference_input_per_mtok": in_rate, "inference_output_per_mtok": out_rate}
    body: dict[str, Any] = {
        "run_id": run_id,
        "run_name": name,
        "base_model": model,
        "status": status,
        "training": {"tokens": t_tokens, "input_tokens": 0, "output_tokens": 0, "cost_usd": t_cost},
        "inference": inference,
        "total_tokens": t_tokens + i_in + i_out,
        "total_cost_usd": round(t_cost + i_cost, 2),
        "pricing": pricing,
        "record_count": records,
    }
    if run_id == _NEWER_BACKEND:
        inference["cached_input_tokens"] = 4_000_000
        pricing["inference_cached_input_per_mtok"] = 0.15
        body.update(billing_version=2, gpu_hours=41.5)
    return body


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _billing_rows(
    wallet: str, charges: list[tuple[str, str | None, int]], seed: int, newest: datetime
) -> list[dict[str, Any]]:
    """Rows newest first, the newest at `newest`, each older one a fixed step before the last."""
    rng = random.Random(seed)
    charges = charges[:]
    rng.shuffle(charges)
    rows = []
    for i, (rtype, rid, cents) in enumerate(charges):
        created = newest - timedelta(hours=3 * i, minutes=17 * (i % 5))
        billed = stamp(created + timedelta(minutes=5))
        rows.append(
            {
                "id": f"bill_{wallet[4:]}_{i:03d}",
                "created_at": stamp(created),
                "updated_at": billed,
                "last_billed_at": None if rtype == "inference" else billed,
                "amount_usd": cents / 100,
                "currency": "USD",
                "resource_type": rtype,
                "resource_id": rid,
            }
        )
    return rows


def _wallet(wallet_id: str, team: str | None, balance: float, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"wallet_id": wallet_id, "team_id": team, "balance_usd": balance, "currency": "USD", "rows": rows}


RUNS: dict[str, dict[str, Any]] = {run_id: _usage_body(run_id) for run_id in _RUN_NAMES}

_PERSONAL_CHARGES = [("rft_run", run, c) for run, cents in _RUN_CHARGES.items() for c in cents] + _OTHER_CHARGES
_TEAM_CHARGES: list[tuple[str, str | None, int]] = [("pods", f"pod_team_{i}", 1500 + 25 * i) for i in range(8)]


def wallets(newest: datetime) -> dict[str | None, dict[str, Any]]:
    """The wallets by team id (None: the caller's own), each its body with its rows under "rows",
    the newest row of each created at `newest`."""
    return {
        None: _wallet(PERSONAL_WALLET, None, 123.45, _billing_rows(PERSONAL_WALLET, _PERSONAL_CHARGES, 7, newest)),
        TEAM_ID: _wallet("wal_sbx_team", TEAM_ID, 980.0, _billing_rows("wal_sbx_team", _TEAM_CHARGES, 3, newest)),
    }


#: how a RUNNING run advances by default, one step per usage request after the first (see `Sandbox.progress`):
#: three steps of 500,000 training tokens and $1.25, then COMPLETED
DEMO_PROGRESS: dict[str, dict[str, Any]] = {
    "rft_sbx_running": {"steps": 3, "usd_per_step": 1.25, "tokens_per_step": 500_000, "final": "COMPLETED"}
}
