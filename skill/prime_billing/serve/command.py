"""`prime-billing serve` and `prime-billing mcp`: parsers only; the server stack
loads when one of them runs, so every other command stays light."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from . import MCP_PORT, REST_PORT

EXTRA_HINT = "the server needs the serve extra: pip install 'prime-billing-skill[serve]'"


def _upstream_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sandbox", action="store_true", help="answer from built-in demo data instead of Prime's API")
    p.add_argument(
        "--base-url", metavar="URL", help="API base URL (default: PRIME_API_BASE_URL or api.primeintellect.ai)"
    )


SERVE_DESCRIPTION = (
    "Serve the operations over REST (port 8080) and MCP streamable HTTP (port 9090, /mcp) from one "
    "process, on 127.0.0.1 unless --host says otherwise. A non-loopback --host needs a token "
    "(PRIME_BILLING_TOKEN or --token) or --auth passthrough."
)


def add_serve(sub: Any) -> None:
    p = sub.add_parser(
        "serve", help="serve REST (8080) and MCP (9090) for other programs and agents", description=SERVE_DESCRIPTION
    )
    _serve_arguments(p)


def run_script(prog: str, argv: list[str] | None = None) -> int:
    """Entry for `scripts/serve.py`: the serve command under the script's own name."""
    from ..cli import _execute, _Parser

    p = _Parser(prog=prog, description=SERVE_DESCRIPTION)
    _serve_arguments(p)
    return _execute(p, argv)


def _serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--rest-port", type=int, default=REST_PORT, metavar="N", help=f"REST port (default {REST_PORT})")
    p.add_argument("--mcp-port", type=int, default=MCP_PORT, metavar="N", help=f"MCP port (default {MCP_PORT})")
    p.add_argument("--only", choices=("rest", "mcp"), help="serve one face only")
    p.add_argument(
        "--token", metavar="TOKEN", help="callers must send `Authorization: Bearer TOKEN` (default PRIME_BILLING_TOKEN)"
    )
    p.add_argument(
        "--auth",
        choices=("key", "passthrough"),
        default="key",
        help="key: use the configured Prime key (default); passthrough: each caller's bearer is its own Prime key",
    )
    p.add_argument(
        "--cache-ttl", type=float, default=0.0, metavar="S", help="reuse a success for S seconds (default 0: off)"
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also accept this Host name (repeatable; '*' any; default: loopback names and --host)",
    )
    p.add_argument(
        "--allow-origin", action="append", default=[], metavar="ORIGIN", help="also accept this browser Origin"
    )
    p.add_argument(
        "--drain", type=float, default=30.0, metavar="S", help="on SIGTERM, wait up to S seconds for requests in flight"
    )
    p.add_argument("--no-access-log", action="store_true", help="no JSON access log lines on stderr")
    _upstream_args(p)
    from .limits import add_arguments

    add_arguments(p)
    p.set_defaults(_run=_run_serve)


def add_mcp(sub: Any) -> None:
    p = sub.add_parser(
        "mcp",
        help="MCP over stdio, for clients that launch a local command",
        description="Run the MCP tools over stdio (for Claude Desktop and other clients that launch a command). "
        "For MCP over HTTP use `serve --only mcp`.",
    )
    p.add_argument("--stdio", action="store_true", default=True, help="speak MCP on stdin/stdout (the default)")
    _upstream_args(p)
    p.set_defaults(_run=_run_mcp)


def _env_list(name: str) -> list[str]:
    return [v for v in os.environ.get(name, "").split(",") if v.strip()]


def _run_serve(ns: argparse.Namespace) -> int:
    from ..config import load_settings

    try:
        from .runner import ServeOptions, serve
    except ImportError:
        print(f"{ns._prog}: error: {EXTRA_HINT}", file=sys.stderr)
        return 2
    from .limits import from_args

    options = ServeOptions(
        host=ns.host,
        rest_port=ns.rest_port,
        mcp_port=ns.mcp_port,
        only=ns.only,
        token=ns.token or os.environ.get("PRIME_BILLING_TOKEN") or None,
        passthrough=ns.auth == "passthrough",
        cache_ttl=ns.cache_ttl,
        allow_hosts=(*ns.allow_host, *_env_list("PRIME_BILLING_ALLOWED_HOSTS")),
        allow_origins=(*ns.allow_origin, *_env_list("PRIME_BILLING_ALLOWED_ORIGINS")),
        drain_seconds=ns.drain,
        access_log=not ns.no_access_log,
        limits=from_args(ns),
    )
    settings = load_settings(base_url=ns.base_url, sandbox=ns.sandbox)
    serve(options, settings, announce=lambda line: print(line, flush=True))
    return 0


def _run_mcp(ns: argparse.Namespace) -> int:
    from ..config import load_settings

    try:
        from .runner import serve_stdio
    except ImportError:
        print(f"{ns._prog}: error: {EXTRA_HINT}", file=sys.stderr)
        return 2
    serve_stdio(load_settings(base_url=ns.base_url, sandbox=ns.sandbox))
    return 0
