#!/usr/bin/env python3
# /// script
# requires-python = ">=3.11"
# dependencies = ["httpx>=0.27", "pydantic>=2.7", "tqdm>=4.70"]
# ///
"""Did the wallet pay what the run says? reconcile.py RUN_ID [--team ID] [--csv FILE] [--json] [--sandbox]

Exit 0 when the run's billed total and its wallet rows agree within one cent, 3 when they do not."""

import sys
from pathlib import Path

# Prefer the package bundled beside this script (the skill folder), then an installed one.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "skill"))

from prime_billing.cli import run_script

if __name__ == "__main__":
    sys.exit(run_script("reconcile", Path(__file__).name))
