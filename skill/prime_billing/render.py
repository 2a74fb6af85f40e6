"""Compact text for people and agents: the figures that matter, few tokens.

Every surface (CLI, LangChain content, MCP text) shows the same lines, so an
answer read from one can be checked against another.
"""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import CostLine, RunUsage, Wallet

SANDBOX_BANNER = "SANDBOX DATA (demo account, not real billing)"


def usd(value: float | None) -> str:
    """Cents for ordinary figures, more digits for sub-cent ones; None is unknown."""
    if value is None:
        return "unknown"
    if value != 0 and abs(value) < 0.01:
        return f"${value:,.4f}"
    return f"-${-value:,.2f}" if value < 0 else f"${value:,.2f}"


def rate(value: float | None) -> str:
    return "rate unknown" if value is None else f"@ ${value:g}/Mtok"


def _row(label: str, tokens: int, rate_text: str, cost: str) -> str:
    return f"  {label:<14}{tokens:>14,} tok  {rate_text:<18}{cost:>10}"


def _cost_row(line: CostLine, indent: str = "  ") -> str:
    return _row(indent + line.label, line.tokens, rate(line.rate_per_mtok), usd(line.cost_usd))


def run_summary(run: RunUsage) -> str:
    c = run.costs
    head = [f"run {run.run_id}"]
    if run.run_name:
        head.append(f'"{run.run_name}"')
    head += [run.base_model or "model unknown", run.status or "status unknown", f"{run.record_count} records"]
    lines = [" · ".join(head)]
    lines.append(_row("training", run.training.tokens, rate(c.training.rate_per_mtok), usd(c.training_billed_usd)))
    lines.append(_row("inference", run.inference.tokens, "", usd(c.inference_billed_usd)))
    lines.append(_cost_row(c.inference_input))
    if c.inference_cached_input is not None:
        lines.append(_cost_row(c.inference_cached_input))
    lines.append(_cost_row(c.inference_output))
    lines.append(_row("total", run.total_tokens, "billed", usd(c.total_billed_usd)))
    return "\n".join(lines)


def wallet_summary(wallet: Wallet, *, offset: int = 0) -> str:
    rows = wallet.recent_billings
    owner = f"team {wallet.team_id}" if wallet.team_id else "personal"
    first, last = (offset + 1, offset + len(rows)) if rows else (0, 0)
    lines = [
        f"wallet {wallet.wallet_id} ({owner}) · balance {usd(wallet.balance_usd)} {wallet.currency}"
        f" · {wallet.total_billings} billing rows, showing {first}-{last}"
    ]
    if rows:
        lines.append(f"  {'created (UTC)':<17} {'amount':>10}  {'type':<11} resource")
        for r in rows:
            try:
                stamp = r.created_at.astimezone(UTC) if r.created_at.tzinfo else r.created_at
            except OverflowError:  # at the calendar's edge a date cannot change zone: show it as given
                stamp = r.created_at
            when = stamp.strftime("%Y-%m-%d %H:%M")
            lines.append(f"  {when:<17} {usd(r.amount_usd):>10}  {r.resource_type or '-':<11} {r.resource_id or '-'}")
    if last < wallet.total_billings and rows:
        lines.append(f"  more rows: [[offset={last}]]")
    return "\n".join(lines)
