"""The `prime-billing` command and the scripts, built from the operations table.

Output contract: stdout carries the answer only (a compact summary, or with
`--json` one JSON document: the upstream body unchanged); stderr carries one
line per error, never a traceback. Exit codes: 0 ok, 1 the API or network
failed, 2 bad invocation or missing configuration.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from . import __version__
from .errors import PrimeBillingError

EXIT_OK, EXIT_API, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the fix."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the upstream JSON body unchanged (one document)")
    p.add_argument("--sandbox", action="store_true", help="use built-in demo data instead of Prime's API")
    p.add_argument(
        "--base-url", metavar="URL", help="API base URL (default: PRIME_API_BASE_URL or api.primeintellect.ai)"
    )


def _add_op_args(p: argparse.ArgumentParser, op: Any) -> None:
    for param in op.params:
        if param.location == "path":
            p.add_argument(
                param.name,
                metavar=param.name.upper(),
                nargs="+" if param.many else None,
                help=param.description,
            )
        else:
            flag = param.flag or "--" + param.name.replace("_", "-")
            kind = int if param.type is int else str
            default = f" (default {param.default})" if param.default is not None else ""
            p.add_argument(
                flag, dest=param.name, type=kind, metavar="N" if kind is int else "ID", help=param.description + default
            )
    _add_common(p)


def _op_parser(op: Any, prog: str | None = None, parent: Any = None) -> argparse.ArgumentParser:
    epilog = "exit codes: 0 ok, 1 API or network failure, 2 bad invocation or configuration"
    if parent is None:
        p = _Parser(prog=prog, description=op.description, epilog=epilog)
    else:
        p = parent.add_parser(op.command, help=op.description.split(":")[0], description=op.description, epilog=epilog)
    _add_op_args(p, op)
    p.set_defaults(_run=lambda ns, _op=op: _run_operation(_op, ns))
    return p


def _fail(prog: str, err: BaseException, code: int) -> int:
    print(f"{prog}: error: {err}", file=sys.stderr)
    return code


def _run_operation(op: Any, ns: argparse.Namespace) -> int:
    from .client import Client
    from .config import load_settings

    settings = load_settings(base_url=ns.base_url, sandbox=ns.sandbox)
    values = {p.name: getattr(ns, p.name) for p in op.params}
    many = next((p.name for p in op.params if p.many), None)
    calls = [{**values, many: v} for v in values[many]] if many else [values]
    prog = ns._prog

    # Check every argument first: nothing is fetched or printed if one is bad.
    for args in calls:
        op.check(args)
    with Client(settings) as client:
        if len(calls) == 1:
            outcomes: list[Any] = [_attempt(client, op.name, calls[0])]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(8, len(calls))) as pool:
                outcomes = list(pool.map(lambda a: _attempt(client, op.name, a), calls))

    errors = [o for o in outcomes if isinstance(o, PrimeBillingError)]
    if ns.json:
        if errors:  # one JSON document or none: never a partial one
            for e in errors:
                _fail(prog, e, e.exit_code)
            return max(e.exit_code for e in errors)
        import json

        docs = [o.raw for o in outcomes]
        sys.stdout.write(json.dumps(docs[0] if len(docs) == 1 else docs, ensure_ascii=False))
        sys.stdout.write("\n")
        return EXIT_OK
    done = [o for o in outcomes if not isinstance(o, PrimeBillingError)]
    if done:
        from .render import SANDBOX_BANNER

        text = "\n\n".join(o.summary(banner=False) for o in done)
        print(f"{SANDBOX_BANNER}\n{text}" if any(o.sandbox for o in done) else text)
    for e in errors:
        _fail(prog, e, e.exit_code)
    return max((e.exit_code for e in errors), default=EXIT_OK)


def _attempt(client: Any, name: str, args: dict[str, Any]) -> Any:
    try:
        return client.call(name, args)
    except PrimeBillingError as exc:
        return exc


def _sandbox_command(sub: Any) -> None:
    p = sub.add_parser(
        "sandbox",
        help="serve the demo API on loopback",
        description=(
            "Serve the sandbox (a stand-in for Prime's billing API with demo data) over HTTP. "
            "Point PRIME_API_BASE_URL at it and use the key it prints."
        ),
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8770, help="0 picks a free port (default 8770)")
    p.add_argument("--latency-ms", type=float, nargs=2, metavar=("LO", "HI"), help="random added latency")
    p.add_argument("--fail-rate", type=float, default=0.0, metavar="P", help="fraction of requests answered 503")

    def run(ns: argparse.Namespace) -> int:
        from .sandbox import Sandbox, serve

        box = Sandbox()
        box.set_faults(
            {"rate": ns.fail_rate, **({"latency": [x / 1000 for x in ns.latency_ms]} if ns.latency_ms else {})}
        )
        try:
            serve(box, ns.host, ns.port, announce=lambda line: print(line, flush=True))
        except OSError as exc:
            return _fail(
                ns._prog,
                PrimeBillingError(f"cannot listen on {ns.host}:{ns.port}: {exc.strerror}; pick another --port"),
                EXIT_USAGE,
            )
        return EXIT_OK

    p.set_defaults(_run=run)


#: subcommands beyond the operations table; each adds its parser, imports lazily
EXTRA_COMMANDS: list[Callable[[Any], None]] = [_sandbox_command]


def build_parser(prog: str = "prime-billing") -> argparse.ArgumentParser:
    from .operations import OPERATIONS

    parser = _Parser(prog=prog, description="Prime Intellect billing: RFT run cost and wallet balance.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for op in OPERATIONS:
        _op_parser(op, parent=sub)
    for add in EXTRA_COMMANDS:
        add(sub)
    return parser


def _execute(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    ns = parser.parse_args(argv)
    ns._prog = parser.prog
    try:
        return int(ns._run(ns))
    except PrimeBillingError as exc:
        return _fail(parser.prog, exc, exc.exit_code)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader (`| head`) went away: not an error worth a traceback
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return _execute(build_parser(), argv)


def run_script(command: str, prog: str, argv: Sequence[str] | None = None) -> int:
    """Entry for `scripts/*.py`: one operation's parser, under the script's name."""
    from .operations import OPERATIONS

    op = next(o for o in OPERATIONS if o.command == command)
    return _execute(_op_parser(op, prog=prog), argv)


if __name__ == "__main__":
    sys.exit(main())
