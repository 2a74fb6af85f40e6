"""How much of an agent's context each MCP tool answer takes, on the sandbox.

Everything on 127.0.0.1: the sandbox and `prime-billing serve --only mcp`, each in
its own process; the official MCP client calls every tool (spend twice: with
`by=day` it adds its periods), then each report again with `include_rows=true`.
A size is the characters of the text content plus those of the structured
content as JSON (`json.dumps`, its default separators). Goal: every answer
without `include_rows` at most 8,000 characters.

    python benchmarks/mcp_answer_sizes.py
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_rest import servers

GOAL = 8_000
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("prime-intellect-getrunusage", {"run_id": "rft_sbx_cached"}),
    ("prime-intellect-getwallet", {}),
    ("prime-intellect-reconcile", {"run_id": "rft_sbx_completed"}),
    ("prime-intellect-spend", {}),
    ("prime-intellect-spend", {"by": "day"}),
    ("prime-intellect-budget", {"min_balance": 10}),
    ("prime-intellect-runway", {"as_of": "2026-11-21"}),
    ("prime-intellect-pace", {"budget": 300, "as_of": "2026-11-20T11:00:00Z", "warn": list(range(10, 101, 10))}),
]
WITH_ROWS = ("prime-intellect-reconcile", "prime-intellect-spend", "prime-intellect-budget")


async def measure(url: str) -> list[tuple[str, dict[str, Any], int, int]]:
    from mcp import Client

    calls = CALLS + [(tool, {**args, "include_rows": True}) for tool, args in CALLS if tool in WITH_ROWS]
    rows = []
    async with Client(url) as client:
        for tool, args in calls:
            result = await client.call_tool(tool, args)
            if result.is_error:
                raise SystemExit(f"{tool} {args} failed: {result.content}")
            text = sum(len(getattr(c, "text", "")) for c in result.content)
            structured = len(json.dumps(result.structured_content)) if result.structured_content is not None else 0
            rows.append((tool, args, text, structured))
    return rows


def main() -> None:
    with servers("--only", "mcp", "--mcp-port", "0", "--no-access-log") as s:
        rows = asyncio.run(measure(s.url + "/mcp"))
    print(f"{'tool':<30} {'arguments':<56} {'text':>6} {'structured':>10} {'total':>7}")
    worst = 0
    for tool, args, text, structured in rows:
        total = text + structured
        if "include_rows" not in args:
            worst = max(worst, total)
        print(f"{tool:<30} {json.dumps(args):<56} {text:>6,} {structured:>10,} {total:>7,}")
    verdict = "met" if worst <= GOAL else "NOT met"
    print(f"\ngoal: every answer without include_rows <= {GOAL:,} characters: {verdict} (largest {worst:,})")


if __name__ == "__main__":
    main()
