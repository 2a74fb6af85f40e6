#!/usr/bin/env python3
"""Serve REST (8080) and MCP (9090, /mcp) for other programs: serve.py [--sandbox] [--host H] [--only rest|mcp]

Needs the serve extra: pip install 'prime-billing-skill[serve]'.
"""

import sys
from pathlib import Path

# Prefer the package bundled beside this script (the skill folder), then an installed one.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "skill"))

from prime_billing.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
