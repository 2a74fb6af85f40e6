"""A longer schemathesis run against the REST adapter than the test suite's.

Everything on 127.0.0.1, each part its own process: the sandbox (upstream), the
adapter (`prime-billing serve --only rest`) and schemathesis's own CLI with all
its default checks and phases (coverage, fuzzing, stateful; the document has no examples).
Prints what schemathesis reports, then one table: operations, test cases,
failures, upstream requests the run caused, and its duration.

    python benchmarks/fuzz_rest.py [--max-examples 500] [--seed 1] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEY = "sbx-demo-key"


def start(args: list[str], env: dict[str, str], pattern: str) -> tuple[subprocess.Popen[str], str]:
    """Start a server; the first URL matching `pattern` on its first stdout line is where it listens."""
    proc = subprocess.Popen(
        [sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT
    )
    line = proc.stdout.readline() if proc.stdout else ""
    found = re.search(pattern, line)
    if not found:
        proc.kill()
        sys.exit(f"fuzz_rest: server did not start: {line.strip()!r}")
    return proc, found.group(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-examples", type=int, default=500, help="per operation (default 500)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    ns = parser.parse_args()

    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIME_")}
    env["HOME"] = tempfile.mkdtemp(prefix="fuzz-home-")
    sandbox, upstream = start(["-m", "prime_billing", "sandbox", "--port", "0"], env, r"(http://127\.0\.0\.1:\d+)")
    serve_env = {**env, "PRIME_API_BASE_URL": upstream, "PRIME_API_KEY": KEY, "PRIME_BILLING_MAX_RETRIES": "0"}
    adapter, rest = start(
        ["-m", "prime_billing", "serve", "--only", "rest", "--rest-port", "0", "--no-access-log"],
        serve_env,
        r"REST on (http://127\.0\.0\.1:\d+)",
    )
    report = Path(env["HOME"]) / "report.json"
    started = time.perf_counter()
    try:
        out = subprocess.run(
            [
                str(Path(sys.executable).parent / "schemathesis"),
                "run",
                rest + "/openapi.json",
                "--max-examples",
                str(ns.max_examples),
                "--seed",
                str(ns.seed),
                "--workers",
                str(ns.workers),
                "--report-json-path",
                str(report),
                "--no-color",
            ],
            env=env,
            capture_output=True,
            text=True,
            cwd=env["HOME"],  # its cache lands there, not in the checkout
        )
        elapsed = time.perf_counter() - started
        with urllib.request.urlopen(upstream + "/_sandbox/stats") as r:
            stats = json.load(r)
    finally:
        for proc in (adapter, sandbox):
            proc.terminate()
            proc.wait(10)
    print(out.stdout.rstrip())
    if out.stderr.strip():
        print(out.stderr.rstrip(), file=sys.stderr)
    summary = _summary(out.stdout)
    print()
    print(f"{'operations':<28}{summary.get('operations', '?')}")
    print(f"{'test cases':<28}{summary.get('cases', '?')}")
    print(f"{'failures':<28}{summary.get('failures', '?')}")
    print(f"{'upstream requests':<28}{stats.get('requests', 0)}")
    print(f"{'duration':<28}{elapsed:.1f} s")
    print(f"{'schemathesis exit code':<28}{out.returncode}")
    sys.exit(out.returncode)


def _summary(text: str) -> dict[str, str]:
    """The figures from schemathesis's closing lines (its wording, so parsed loosely)."""
    found: dict[str, str] = {}
    if m := re.search(r"Selected:\s*(\d+)/(\d+)", text):
        found["operations"] = m.group(1)
    if m := re.search(r"(\d+) generated, ([^\n]*)", text):
        found["cases"] = m.group(1)
        failed = re.search(r"(\d+) failed", m.group(2))
        found["failures"] = failed.group(1) if failed else "0"
    return found


if __name__ == "__main__":
    main()
