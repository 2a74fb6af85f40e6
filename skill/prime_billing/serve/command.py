"""`prime-billing serve` and `prime-billing mcp`: parsers only; the server stack
loads when one of them runs, so every other command stays light.

The CLI adds these commands (`SERVE`, `MCP`, through `cli.EXTRA_COMMANDS`), and so
does `scripts/serve.py` (`cli.run_command`): this module imports nothing from the CLI."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from ..errors import ConfigError
from ..subcommand import Subcommand
from . import MCP_PORT, REST_PORT


def _upstream_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sandbox", action="store_true", help="answer from built-in demo data instead of Prime's API")
    p.add_argument(
        "--base-url", metavar="URL", help="API base URL (default: PRIME_API_BASE_URL or api.primeintellect.ai)"
    )


SERVE_DESCRIPTION = (
    "Serve the operations over REST (port 8080) and MCP streamable HTTP (port 9090, /mcp) from one "
    "process, on 127.0.0.1 unless --host says otherwise. A non-loopback --host needs a token "
    "(PRIME_BILLING_TOKEN or --token-file) or --auth passthrough."
)
#: a token on the command line is readable by every local user (/proc/PID/cmdline, ps)
TOKEN_WARNING = (
    "warning: --token is visible to every user of this machine (ps, /proc); "
    "use PRIME_BILLING_TOKEN or --token-file PATH instead"
)


def _serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--rest-port", type=int, default=REST_PORT, metavar="N", help=f"REST port (default {REST_PORT})")
    p.add_argument("--mcp-port", type=int, default=MCP_PORT, metavar="N", help=f"MCP port (default {MCP_PORT})")
    p.add_argument("--only", choices=("rest", "mcp"), help="serve REST only or MCP only")
    p.add_argument(
        "--token-file",
        metavar="PATH",
        help="callers must send `Authorization: Bearer TOKEN`, TOKEN read from this file "
        "(default: the PRIME_BILLING_TOKEN environment variable)",
    )
    p.add_argument("--token", metavar="TOKEN", help="as --token-file, but visible to every local user: avoid")
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
        "--drain",
        type=float,
        default=30.0,
        metavar="S",
        help="on SIGTERM, wait up to S seconds for requests in progress (default 30)",
    )
    p.add_argument("--no-access-log", action="store_true", help="no JSON access log lines on stderr")
    _upstream_args(p)
    from .limits import add_arguments

    add_arguments(p)


def _mcp_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stdio", action="store_true", default=True, help="speak MCP on stdin/stdout (the default)")
    _upstream_args(p)


def _env_list(name: str) -> list[str]:
    return [v for v in os.environ.get(name, "").split(",") if v.strip()]


def _token(ns: argparse.Namespace) -> str | None:
    if ns.token_file:
        where = f"--token-file {ns.token_file}"
        try:
            text = Path(ns.token_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read {where}: {exc.strerror}; fix the path") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{where} is not UTF-8 text: put the token in it as text") from None
        return _one_token(text, where, "put the token in it")
    if ns.token:
        print(f"{ns._prog}: {TOKEN_WARNING}", file=sys.stderr)
        return _one_token(str(ns.token), "--token", "give the token")
    raw = os.environ.get("PRIME_BILLING_TOKEN")
    return _one_token(raw, "PRIME_BILLING_TOKEN", "set it to the token, or unset it") if raw else None


def _one_token(raw: str, where: str, fix: str) -> str:
    """The token, around which whitespace is dropped. A bearer token is one word: one that is blank,
    or holds a line break, a space or a control character, could never arrive in an `Authorization`
    header, so every caller would be refused; it is refused at start instead. Never echoes the token."""
    token = raw.strip()
    if not token:
        raise ConfigError(f"{where} is empty or only whitespace: {fix}")
    if any(c.isspace() or not c.isprintable() for c in token):
        raise ConfigError(f"{where} holds a line break, space or control character inside the token (one word): {fix}")
    return token


def _run_serve(ns: argparse.Namespace) -> int:
    from ..config import load_settings
    from .limits import from_args
    from .runner import ServeOptions, serve

    options = ServeOptions(
        host=ns.host,
        rest_port=ns.rest_port,
        mcp_port=ns.mcp_port,
        only=ns.only,
        token=_token(ns),
        passthrough=ns.auth == "passthrough",
        cache_ttl=ns.cache_ttl,
        allow_hosts=(*ns.allow_host, *_env_list("PRIME_BILLING_ALLOWED_HOSTS")),
        allow_origins=(*ns.allow_origin, *_env_list("PRIME_BILLING_ALLOWED_ORIGINS")),
        drain_seconds=ns.drain,
        access_log=not ns.no_access_log,
        limits=from_args(ns),
    )
    settings = load_settings(base_url=ns.base_url, sandbox=ns.sandbox)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C before the handlers were in place
        serve(options, settings, announce=lambda line: print(line, flush=True))
    return 0


def _run_mcp(ns: argparse.Namespace) -> int:
    from ..config import load_settings
    from .runner import serve_stdio

    serve_stdio(load_settings(base_url=ns.base_url, sandbox=ns.sandbox))
    return 0


SERVE = Subcommand(
    "serve",
    help="serve REST (8080) and MCP (9090) for other programs and agents",
    description=SERVE_DESCRIPTION,
    arguments=_serve_arguments,
    run=_run_serve,
)
MCP = Subcommand(
    "mcp",
    help="MCP over stdio, for clients that launch a local command",
    description="Run the MCP tools over stdio (for Claude Desktop and other clients that launch a command). "
    "For MCP over HTTP use `serve --only mcp`.",
    arguments=_mcp_arguments,
    run=_run_mcp,
)
