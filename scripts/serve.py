#!/usr/bin/env python3
# /// script
# requires-python = ">=3.11"
# dependencies = [
#     "httpx>=0.28.1", "pydantic>=2.14", "mcp>=2.3,<3", "starlette>=1.10", "uvicorn>=0.54",
#     "aiohttp>=3.14", "httptools>=0.9", "uvloop>=0.23; sys_platform != 'win32'",
#     "prometheus-client>=0.26.0", "limits>=5.8,<6", "redis[hiredis]>=8.1", "cachetools>=8.0",
# ]
# ///
"""Serve REST (8080) and MCP (9090, /mcp) for other programs: serve.py [--sandbox] [--host H] [--only rest|mcp]

Needs the serve extra: pip install 'prime-billing-skill[serve]'.
"""

import sys
from pathlib import Path

# Prefer the package bundled beside this script (the skill folder), then an installed one.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "skill"))

from prime_billing.cli import run_command

if __name__ == "__main__":
    sys.exit(run_command("serve", Path(__file__).name))
