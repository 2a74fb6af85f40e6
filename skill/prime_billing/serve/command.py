"""`prime-billing serve` and `prime-billing mcp`: their parsers, `serve`'s made from `options.Options`.

The server stack loads when one of them runs. The CLI adds them (`cli.EXTRA_COMMANDS`), and so does
`scripts/serve.py`: this module imports nothing from the CLI.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from dataclasses import fields
from pathlib import Path

from ..errors import ConfigError
from ..subcommand import Subcommand
from .options import Options, flag_of

SERVE_DESCRIPTION = (
    "Serve the operations over REST (port 8080) and MCP streamable HTTP (port 9090, /mcp) from one process, on "
    "127.0.0.1 unless --host says otherwise. A non-loopback --host needs a token (PRIME_BILLING_TOKEN or "
    "--token-file) or --auth passthrough."
)
#: a token on the command line is readable by every local user (/proc/PID/cmdline, ps)
TOKEN_WARNING = (
    "warning: --token is visible to every user of this machine (ps, /proc); use PRIME_BILLING_TOKEN or "
    "--token-file PATH instead"
)
FLAGGED = [f for f in fields(Options) if "help" in f.metadata]
#: the variables whose comma-separated items the repeatable flags add to
LISTS = {"allow_hosts": "PRIME_BILLING_ALLOWED_HOSTS", "allow_origins": "PRIME_BILLING_ALLOWED_ORIGINS"}


def _upstream_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sandbox", action="store_true", help="answer from built-in demo data instead of Prime's API")
    p.add_argument(
        "--base-url", metavar="URL", help="API base URL (default: PRIME_API_BASE_URL or api.primeintellect.ai)"
    )


def _serve_arguments(p: argparse.ArgumentParser) -> None:
    bounds = p.add_argument_group("resource bounds")
    for f in FLAGGED:
        m, kind = f.metadata, next((t for t in (float, int) if str(f.type).startswith(t.__name__)), str)
        kw = {k: m[k] for k in ("choices", "action", "metavar") if k in m}
        if "action" not in kw:
            kw |= {"type": kind, "metavar": kw.get("metavar", {float: "S", int: "N"}.get(kind))}
        default = None if m.get("action") == "append" else f.default
        kw |= {"dest": f.name, "default": default, "help": m["help"].format(default)}
        (bounds if m.get("bounds") else p).add_argument(flag_of(f.name), **kw)
    # secrets read into a field rather than flags of their own
    p.add_argument(
        "--token-file",
        metavar="PATH",
        help="callers must send `Authorization: Bearer TOKEN`, TOKEN read from this file (default PRIME_BILLING_TOKEN)",
    )
    p.add_argument("--token", metavar="TOKEN", help="as --token-file, but visible to every local user: avoid")
    p.add_argument("--state-url-file", metavar="PATH", help="as --state-url, read from this file (out of ps)")
    _upstream_args(p)


def _mcp_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stdio", action="store_true", default=True, help="speak MCP on stdin/stdout (the default)")
    _upstream_args(p)


def _one_word(raw: str, where: str, fix: str) -> str:
    """A secret (a token, a URL), the whitespace around it dropped. One that is blank, or holds a space or a control
    character, could never arrive in an `Authorization` header: refused at start, never echoed."""
    word = raw.strip()
    if not word:
        raise ConfigError(f"{where} is empty or only whitespace: {fix}")
    if any(c.isspace() or not c.isprintable() for c in word):
        raise ConfigError(f"{where} holds a line break, space or control character inside the token (one word): {fix}")
    return word


def _read(flag: str, path: str, what: str) -> str:
    where = f"{flag} {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {where}: {exc.strerror}; fix the path") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where} is not UTF-8 text: put the {what} in it as text") from None
    return _one_word(text, where, f"put the {what} in it")


def _token(ns: argparse.Namespace) -> str | None:
    if ns.token_file:
        return _read("--token-file", ns.token_file, "token")
    if ns.token:
        print(f"{ns._prog}: {TOKEN_WARNING}", file=sys.stderr)
        return _one_word(str(ns.token), "--token", "give the token")
    raw = os.environ.get("PRIME_BILLING_TOKEN")
    return _one_word(raw, "PRIME_BILLING_TOKEN", "set it to the token, or unset it") if raw else None


def options_from(ns: argparse.Namespace) -> Options:
    """The parsed flags, with what the environment and the secret files add, as one checked `Options`."""
    values = {f.name: getattr(ns, f.name) for f in FLAGGED}
    for f in FLAGGED:  # repeatable: the flags given, then a variable's comma-separated items
        if f.metadata.get("action") == "append":
            listed = os.environ.get(LISTS[f.name], "").split(",") if f.name in LISTS else []
            values[f.name] = (*(values[f.name] or ()), *(v for v in listed if v.strip()))
    state_file = ns.state_url_file and _read("--state-url-file", ns.state_url_file, "URL")
    values["state_url"] = ns.state_url or state_file or os.environ.get("PRIME_BILLING_STATE_URL") or None
    return Options(token=_token(ns), **values)


def _run_serve(ns: argparse.Namespace) -> int:
    from ..config import load_settings
    from .runner import serve

    options = options_from(ns)
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
    "serve", "serve REST (8080) and MCP (9090) for programs and agents", SERVE_DESCRIPTION, _serve_arguments, _run_serve
)
MCP = Subcommand(
    "mcp",
    "MCP over stdio, for clients that launch a local command",
    "Run the MCP tools over stdio (for Claude Desktop and other clients that launch a command). For MCP over HTTP "
    "use `serve --only mcp`.",
    _mcp_arguments,
    _run_mcp,
)
