#!/usr/bin/env python3
# /// script
# requires-python = ">=3.11"
# dependencies = ["httpx>=0.27", "pydantic>=2.7", "tqdm>=4.70"]
# ///
"""When the balance runs out: runway.py [--days N] [--min-balance USD] [--as-of DATE] [--team ID] [--json]"""

import sys
from pathlib import Path

# Prefer the package bundled beside this script (the skill folder), then an installed one.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "skill"))

from prime_billing.cli import run_script

if __name__ == "__main__":
    sys.exit(run_script("runway", Path(__file__).name))
