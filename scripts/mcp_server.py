#!/usr/bin/env python3
# /// script
# requires-python = ">=3.11"
# dependencies = [
#     "httpx>=0.28.1", "pydantic>=2.14", "mcp>=2.3,<3", "starlette>=1.10", "uvicorn>=0.54",
#     "aiohttp>=3.14", "httptools>=0.9", "uvloop>=0.23; sys_platform != 'win32'",
#     "prometheus-client>=0.26.0",
# ]
# ///
"""The MCP tools over stdio, for clients that launch a command: mcp_server.py [--sandbox] [--base-url URL]

Run it as: uv run --script scripts/mcp_server.py (the Claude Code plugin does), or with the serve
extra installed (pip install '.[serve]' in a clone).
"""

import sys
from pathlib import Path

# Prefer the package beside this script (a clone, or the plugin's own files), then an installed one.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "skill"))

from prime_billing.cli import run_command

if __name__ == "__main__":
    sys.exit(run_command("mcp", Path(__file__).name))
