#!/usr/bin/env python3
# /// script
# requires-python = ">=3.11"
# dependencies = ["httpx>=0.27", "pydantic>=2.7"]
# ///
"""Is it set up? doctor.py [--team ID] [--json] [--sandbox]: the key's source (never the key), base URL,
team, version and one wallet read. Exit 0 all well, 2 configuration missing or broken, 1 the API failed."""

import sys
from pathlib import Path

# Prefer the package bundled beside this script (the skill folder), then an installed one.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "skill"))

from prime_billing.cli import run_command

if __name__ == "__main__":
    sys.exit(run_command("doctor", Path(__file__).name))
