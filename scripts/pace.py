#!/usr/bin/env python3
# /// script
# requires-python = ">=3.11"
# dependencies = ["httpx>=0.27", "pydantic>=2.7", "tqdm>=4.70"]
# ///
"""On track for a budget? pace.py --budget USD [--period month|week|day] [--warn 50,80,100] [--as-of DATE] [--json]"""

import sys
from pathlib import Path

# Prefer the package bundled beside this script (the skill folder), then an installed one.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "skill"))

from prime_billing.cli import run_script

if __name__ == "__main__":
    sys.exit(run_script("pace", Path(__file__).name))
