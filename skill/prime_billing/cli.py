"""The `prime-billing` command and the scripts, built from the operations table.

Output contract: stdout carries the answer only (a compact summary, or with
`--json` one JSON document: the upstream body unchanged); stderr carries one
line per error, never a traceback. Exit codes: 0 ok, 1 the API or network
failed, 2 bad invocation or missing configuration, 3 a check did not pass
(`reconcile` found a mismatch, the balance is below `wallet --min-balance`):
the answer is still printed, and stderr says by how much in one line.
A missing dependency is one line naming what to install (exit 2). SIGTERM ends
any command with exit 0, SIGINT with 130, at once and without a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from .__version__ import __version__
from .errors import ConfigError, InvalidInputError, PrimeBillingError
from .subcommand import Subcommand

EXIT_OK, EXIT_API, EXIT_USAGE, EXIT_CHECK = 0, 1, 2, 3
#: Ctrl-C: the shell's convention (128 + SIGINT)
EXIT_INTERRUPTED = 130
EXIT_CODES = "exit codes: 0 ok, 1 API or network failure, 2 bad invocation or configuration"
#: said only by the commands that can return it
EXIT_CHECK_HELP = ", 3 a check did not pass ({})"
#: the top-level help's epilog; `{checks}`: every command that can fail a check (from the table)
TOP_EPILOG = (
    "Every command takes --sandbox for demo data (no key needed) and --help for its options. "
    "Configuration: PRIME_API_KEY or `prime login` (~/.prime/config.json); PRIME_API_BASE_URL; "
    "PRIME_TEAM_ID for a team's wallet; PRIME_BILLING_TIMEOUT and PRIME_BILLING_MAX_RETRIES. "
    f"E{EXIT_CODES[1:]}{EXIT_CHECK_HELP.format('{checks}')}."
)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the fix."""

    def __init__(self, *args: Any, epilog_from: Callable[[], str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: the epilog, worked out only when help is shown: it names the commands that can fail a
        #: check, which loads those reports' models (a script that only runs would not need them)
        self.epilog_from = epilog_from

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")

    def format_help(self) -> str:
        if self.epilog_from is not None:
            self.epilog, self.epilog_from = self.epilog_from(), None
        return super().format_help()


def _add_common(p: argparse.ArgumentParser, op: Any) -> None:
    if op.composite:
        rows = " and every row" if hasattr(op.model, "write_csv") else ""  # a report with rows to export
        json_help = f"print the report as one JSON document: every figure{rows}"
    elif any(param.many for param in op.params):
        json_help = "print the API's JSON body unchanged (several ids: an array in their order)"
    else:
        json_help = "print the API's JSON body unchanged"
    p.add_argument("--json", action="store_true", help=json_help)
    p.add_argument(
        "--sandbox",
        action="store_true",
        help=(
            "use built-in demo data instead of Prime's API; runs: rft_sbx_running, rft_sbx_completed, "
            "rft_sbx_cached, rft_sbx_failed, rft_sbx_mismatch (its wallet rows are $0.37 short), "
            "rft_sbx_other_team (403); team: team_sbx_demo"
        ),
    )
    p.add_argument(
        "--base-url", metavar="URL", help="API base URL (default: PRIME_API_BASE_URL or api.primeintellect.ai)"
    )


def _extensions(op: Any) -> list[Any]:
    """Operations whose extra flags join this operation's command (`cli_extends`)."""
    from .operations import OPERATIONS

    return [o for o in OPERATIONS if o.cli_extends == op.command]


def _add_op_args(p: argparse.ArgumentParser, op: Any) -> None:
    """One argument per field of the operation's inputs model (and its extensions'). Values stay text:
    the model checks them, so a bad one reads the same here as on every other surface."""
    names = {param.name for param in op.params}
    extra = [q for r in _extensions(op) for q in r.params if q.name not in names]
    for param in (*op.params, *extra):
        if not param.cli.has_flag:  # the CLI sends it itself (`Cli(output_rows=True)`)
            continue
        if param.location == "path":
            p.add_argument(
                param.name,
                metavar=param.name.upper(),
                nargs="+" if param.many else None,
                help=param.description + (" Give several to fetch them at once." if param.many else ""),
            )
        else:
            default = f" (default {_default(param.default)})" if param.default is not None else ""
            p.add_argument(param.flag, dest=param.name, metavar=_metavar(param), help=param.description + default)
    if hasattr(op.model, "write_csv"):
        from .wording import phrase

        what = phrase(getattr(op.model, "csv_what", "the rows"), "cli")
        p.add_argument("--csv", metavar="FILE", help=f"also write {what} as CSV to FILE ('-' for stdout instead)")
    if op.finished is not None:
        p.add_argument("--watch", action="store_true", help="poll until finished: in place on a terminal, JSON lines")
        p.add_argument(
            "--interval", type=float, default=30.0, metavar="S", help="seconds between polls with --watch (default 30)"
        )
    _add_common(p, op)


def _default(value: Any) -> str:
    """A default as it is typed: a list as its values with commas (`50,80,100`)."""
    return ",".join(f"{v:g}" for v in value) if isinstance(value, tuple) else str(value)


def _checks(op: Any) -> bool:
    """The operation's answer can fail a check (exit 3): its model says when (`alert`)."""
    return "alert" in dir(op.model)


def _metavar(param: Any) -> str:
    """The field's own (`Cli(metavar=...)`), else N for a whole number, else its name."""
    return param.cli.metavar or ("N" if param.field.annotation is int else param.name.upper())


def _check_commands(op: Any) -> list[str]:
    """How the commands that can fail a check read: `reconcile`, `wallet --min-balance` (an extension)."""
    return [o.command if o is op else f"{op.command} {o.params[0].flag}" for o in (op, *_extensions(op)) if _checks(o)]


def _op_parser(op: Any, prog: str | None = None, parent: Any = None) -> argparse.ArgumentParser:
    def epilog() -> str:
        checks = _check_commands(op)
        return EXIT_CODES + (EXIT_CHECK_HELP.format(", ".join(checks)) if checks else "")

    if parent is None:
        p = Parser(prog=prog, description=op.description, epilog_from=epilog)
    else:
        p = parent.add_parser(
            op.command, help=op.description.split(":")[0], description=op.description, epilog_from=epilog
        )
    _add_op_args(p, op)
    p.set_defaults(_run=lambda ns, _op=op: _run_operation(_op, ns))
    return p


def exit_code(err: PrimeBillingError) -> int:
    """The exit code for `err`: 2 for what the caller can fix here (arguments, configuration), else 1."""
    return EXIT_USAGE if isinstance(err, ConfigError | InvalidInputError) else EXIT_API


def _fail(prog: str, err: BaseException, code: int) -> int:
    print(f"{prog}: error: {err.worded('cli') if isinstance(err, PrimeBillingError) else err}", file=sys.stderr)
    return code


def _run_operation(op: Any, ns: argparse.Namespace) -> int:
    from .client import Client
    from .config import load_settings

    settings = load_settings(base_url=ns.base_url, sandbox=ns.sandbox)
    op = _extension_chosen(op, ns)
    values = {p.name: getattr(ns, p.name) if p.cli.has_flag else _rows_wanted(op, ns) for p in op.params}
    many = next((p.name for p in op.params if p.many), None)
    calls = [{**values, many: v} for v in values[many]] if many else [values]
    prog = ns._prog

    # Check every argument first: nothing is fetched or printed if one is bad.
    for args in calls:
        op.check(args)
    csv_to = getattr(ns, "csv", None)
    if csv_to == "-" and ns.json:
        raise InvalidInputError("--csv - and --json both want stdout: give --csv a file name")
    if getattr(ns, "watch", False):
        from .watch import watch

        return watch(op, calls, settings, ns)
    progress = _Progress(prog) if op.composite and sys.stderr.isatty() else None
    with Client(settings) as client:
        if len(calls) == 1:
            outcomes: list[Any] = [_attempt(client, op.name, calls[0], progress)]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(8, len(calls))) as pool:
                outcomes = list(pool.map(lambda a: _attempt(client, op.name, a), calls))
    if progress is not None:
        progress.done()

    errors = [o for o in outcomes if isinstance(o, PrimeBillingError)]
    done = [o for o in outcomes if not isinstance(o, PrimeBillingError)]
    if csv_to and not errors:
        _write_csv(outcomes, csv_to)
        if csv_to == "-":
            return _alerts(prog, outcomes)
    if ns.json:
        if errors and len(outcomes) == 1:  # the one document failed: nothing to print
            return _fail(prog, errors[0], exit_code(errors[0]))
        if len(outcomes) == 1:
            sys.stdout.write(outcomes[0].json())
        else:
            import json

            # several ids: one element per id, in order; a failed one is an error object,
            # so the runs that were found are never lost to another's failure
            docs = [
                _error_doc(str(many), a[many], o) if isinstance(o, PrimeBillingError) else o.raw
                for a, o in zip(calls, outcomes, strict=True)
            ]
            sys.stdout.write(json.dumps(docs, ensure_ascii=False))
        sys.stdout.write("\n")
    elif done:
        from .render import SANDBOX_BANNER

        bars = sys.stdout.isatty()  # a person reads it: a bar per period; piped, none
        text = "\n\n".join(o.summary(banner=False, surface="cli", bars=bars) for o in done)
        print(f"{SANDBOX_BANNER}\n{text}" if any(o.sandbox for o in done) else text)
    for e in errors:
        _fail(prog, e, exit_code(e))
    if errors:
        return max(exit_code(e) for e in errors)
    return _alerts(prog, done)


def _rows_wanted(op: Any, ns: argparse.Namespace) -> bool:
    """Whether the output carries the report's rows (`include_rows`): `--json` and `--csv` always, the text
    only where it lists them (a reconciliation its run's rows, the budget check its page). A summary of a
    long wallet is then folded as the pages come, never held whole."""
    if ns.json or getattr(ns, "csv", None):
        return True
    from .render import lists_rows  # the text is coming: its module loads now rather than later

    return lists_rows(op.model)


def _error_doc(key: str, value: Any, exc: PrimeBillingError) -> dict[str, Any]:
    """A failed id's place in a `--json` array: the id and what went wrong, as the error classes say it."""
    return {key: value, "error": {"code": exc.code, "status": exc.status, "message": exc.worded("cli")}}


def _attempt(client: Any, name: str, args: dict[str, Any], progress: Any = None) -> Any:
    try:
        return client.call(name, args, on_step=progress)
    except PrimeBillingError as exc:
        return exc


def _extension_chosen(op: Any, ns: argparse.Namespace) -> Any:
    """The operation a flag asked for: an extension (`cli_extends`) when one of its own flags is given."""
    names = {p.name for p in op.params}
    for extension in _extensions(op):
        if any(getattr(ns, p.name, None) is not None for p in extension.params if p.name not in names):
            return extension
    return op


def _alerts(prog: str, results: Sequence[Any]) -> int:
    """A check that did not pass: its one line on stderr, exit 3."""
    lines = [a for r in results if (a := r.alert_in("cli"))]
    for line in lines:
        print(f"{prog}: alert: {line}", file=sys.stderr)
    return EXIT_CHECK if lines else EXIT_OK


def _write_csv(results: Sequence[Any], target: str) -> None:
    if target == "-":
        for r in results:
            r.data.write_csv(sys.stdout)
        return
    try:
        with open(target, "w", encoding="utf-8", newline="") as out:
            for r in results:
                r.data.write_csv(out)
    except OSError as exc:
        raise InvalidInputError(f"cannot write {target}: {exc.strerror}; pick another --csv path") from None


class _Progress:
    """A progress bar on a terminal's stderr while a report reads a wallet of several pages, wiped
    when done; never when piped. tqdm is imported only once a second page shows there is a bar
    to draw, so a one-page answer and every piped run never load it."""

    def __init__(self, prog: str) -> None:
        self.prog = prog
        self.bar: Any = None
        #: the first wallet page's rows and the wallet's length then, once it came
        self.first: tuple[int, int] | None = None
        #: no bar can be drawn (a script run with only its own dependencies): the answer is the same
        self.off = False

    def __call__(self, result: Any) -> None:
        total, page = getattr(result.data, "total_billings", None), getattr(result.data, "recent_billings", None)
        if total is None or page is None or self.off:
            return  # not a wallet page (a run's usage)
        if self.first is None:
            self.first = (len(page), total)
            return
        if self.bar is None:
            try:
                from tqdm import tqdm
            except ImportError:
                self.off = True
                return
            read, total = self.first
            self.bar = tqdm(total=total, initial=read, desc=self.prog, unit=" rows", leave=False, file=sys.stderr)
        self.bar.update(min(len(page), self.bar.total - self.bar.n))  # rows read twice (shifted) count once

    def done(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _sandbox_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8770, help="0 picks a free port (default 8770)")
    p.add_argument(
        "--latency-ms", type=float, nargs=2, metavar=("LO", "HI"), help="random added latency (default: none)"
    )
    p.add_argument(
        "--fail-rate", type=float, default=0.0, metavar="P", help="fraction of requests answered 503 (default 0)"
    )


def _run_sandbox(ns: argparse.Namespace) -> int:
    """The sandbox on a socket, with the fault injector behind `--fail-rate` and `--latency-ms`."""
    _quit_on(signal.SIGINT, EXIT_OK)  # a server stopped by Ctrl-C has done its job
    from .sandbox.faults import FaultySandbox
    from .sandbox.server import serve

    box = FaultySandbox()
    box.set_faults({"rate": ns.fail_rate, **({"latency": [x / 1000 for x in ns.latency_ms]} if ns.latency_ms else {})})
    try:
        serve(box, ns.host, ns.port, announce=lambda line: print(line, flush=True))
    except OSError as exc:
        return _fail(
            ns._prog,
            PrimeBillingError(f"cannot listen on {ns.host}:{ns.port}: {exc.strerror}; pick another --port"),
            EXIT_USAGE,
        )
    return EXIT_OK


SANDBOX = Subcommand(
    "sandbox",
    help="serve the demo API on loopback",
    description=(
        "Serve the sandbox (a stand-in for Prime's billing API with demo data) over HTTP. "
        "Point PRIME_API_BASE_URL at it and use the key it prints."
    ),
    arguments=_sandbox_arguments,
    run=_run_sandbox,
)


def _serve_commands(sub: Any) -> None:
    """`serve` and `mcp`: their parsers only; the server stack loads when they run."""
    from .serve.command import MCP, SERVE

    SERVE.add_to(sub)
    MCP.add_to(sub)


def _skill_arguments(p: argparse.ArgumentParser) -> None:
    """`skill install|pack`: the skill folder an agent reads, from this installation (see `bundle`)."""
    actions = p.add_subparsers(dest="skill_action", required=True, metavar="ACTION", parser_class=Parser)
    install = actions.add_parser(
        "install",
        help="write DIR/prime-intellect-billing/, updating it in place",
        description="Write DIR/prime-intellect-billing/ (default DIR: ~/.claude/skills). Re-running updates it "
        "in place: a file edited since is kept and the new version written beside it as NAME.new, and files "
        "this command did not write are never deleted.",
    )
    where = install.add_mutually_exclusive_group()
    where.add_argument("--dest", metavar="DIR", help="skills folder to install into (default ~/.claude/skills)")
    where.add_argument("--project", action="store_true", help="install into ./.claude/skills, this project's")
    pack = actions.add_parser(
        "pack",
        help="write the skill as a zip to upload to claude.ai",
        description="Write the skill as a zip whose top folder is prime-intellect-billing/, "
        "the shape claude.ai's skill upload takes.",
    )
    pack.add_argument(
        "out", metavar="OUT.zip", help="the zip to write: a new or regular file (replaced), or - for stdout"
    )


def _run_skill(ns: argparse.Namespace) -> int:
    from .bundle import run

    return run(ns)


SKILL = Subcommand(
    "skill",
    help="install the skill into a skills folder, or pack it as a zip for claude.ai",
    description="Write the skill (SKILL.md, its scripts and references, the modules they import) "
    "as the folder prime-intellect-billing/ or as a zip of it.",
    arguments=_skill_arguments,
    run=_run_skill,
)


def _doctor_command(sub: Any) -> None:
    """`doctor`: its module holds the checks, loaded only once a parser with it is built."""
    from .doctor import DOCTOR

    DOCTOR.add_to(sub)


#: subcommands beyond the operations table; each adds its parser, imports lazily. `run_command`
#: adds them in this order until it has the one asked for, so a command listed before the
#: server's needs nothing of the server stack (the skill's scripts ship without it)
EXTRA_COMMANDS: list[Callable[[Any], object]] = [SANDBOX.add_to, _doctor_command, _serve_commands, SKILL.add_to]


def build_parser(prog: str = "prime-billing") -> argparse.ArgumentParser:
    from .operations import OPERATIONS

    def epilog() -> str:
        checks = ", ".join(c for op in OPERATIONS if op.cli_extends is None for c in _check_commands(op))
        return TOP_EPILOG.replace("{checks}", checks)

    parser = Parser(
        prog=prog, description="Prime Intellect billing: RFT run cost and wallet balance.", epilog_from=epilog
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for op in OPERATIONS:
        if op.cli_extends is None:
            _op_parser(op, parent=sub)
    for add in EXTRA_COMMANDS:
        add(sub)
    return parser


def execute(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse `argv` with `parser` and run the command it picks; returns the exit code.

    A process entry point only: it installs process-wide signal handlers (see `_quit_on`)."""
    return _guarded(parser.prog, lambda: _dispatch(parser, argv))


def main(argv: Sequence[str] | None = None) -> int:
    """The `prime-billing` command."""
    return _guarded("prime-billing", lambda: _dispatch(build_parser(), argv))


def run_script(command: str, prog: str, argv: Sequence[str] | None = None) -> int:
    """Entry for `scripts/*.py`: one operation's parser, under the script's name."""

    def parser() -> argparse.ArgumentParser:
        from .operations import OPERATIONS

        op = next(o for o in OPERATIONS if o.command == command and o.cli_extends is None)
        return _op_parser(op, prog=prog)

    return _guarded(prog, lambda: _dispatch(parser(), argv))


def run_command(command: str, prog: str, argv: Sequence[str] | None = None) -> int:
    """Entry for a script that runs one of `EXTRA_COMMANDS` (`scripts/serve.py`,
    `scripts/doctor.py`): that command's parser, built by its own registration, under the
    script's name. So the command's module needs nothing from this one."""

    def parser() -> argparse.ArgumentParser:
        sub = Parser(prog=prog).add_subparsers(parser_class=Parser)
        for add in EXTRA_COMMANDS:
            add(sub)
            if command in sub.choices:
                break
        chosen: argparse.ArgumentParser = sub.choices[command]
        chosen.prog = prog
        return chosen

    return _guarded(prog, lambda: _dispatch(parser(), argv))


def _dispatch(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    ns = parser.parse_args(argv)
    ns._prog = parser.prog
    code = int(ns._run(ns))
    sys.stdout.flush()  # the answer is out before a late SIGTERM could drop the buffer
    return code


def _guarded(prog: str, body: Callable[[], int]) -> int:
    """Run `body` (building the parser too: that is where the dependencies load) so
    that every way it can end is an exit code and at most one line per error."""
    _quit_on(signal.SIGTERM, EXIT_OK)
    _quit_on(signal.SIGINT, EXIT_INTERRUPTED)
    try:
        return body()
    except PrimeBillingError as exc:
        return _fail(prog, exc, exit_code(exc))
    except ModuleNotFoundError as exc:
        if not _third_party(exc.name):
            raise  # one of this package's own modules, or the stdlib's: a bug, keep the traceback
        return _fail(prog, PrimeBillingError(_missing_dependency(prog, exc)), EXIT_USAGE)
    except KeyboardInterrupt:  # a SIGINT that came while another handler was in place
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader (`| head`) went away: not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    finally:
        _settle()


def _quit_on(sig: int, code: int) -> None:
    """From now on `sig` ends the process at once with `code`, wherever it lands.

    `os._exit` rather than an exception: no `finally` or `except` can turn a late
    signal into a traceback, stdout's buffer is dropped instead of flushed (so a
    half-written answer never goes out), and worker threads blocked on a slow
    upstream are not waited for. Open sockets are closed by the kernel."""
    with contextlib.suppress(ValueError):  # not the main thread: signals are not ours to handle
        signal.signal(sig, lambda _sig, _frame: os._exit(code))


def _settle() -> None:
    """The command is over: a signal from here on is ignored and the exit code is the
    command's own. Left alone, Python's shutdown restores the default action, and a
    SIGTERM landing then would end the process with 143."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(ValueError):
            signal.signal(sig, signal.SIG_IGN)


def _third_party(name: str | None) -> bool:
    top = (name or "").partition(".")[0]
    return bool(top) and top != __package__ and top not in sys.stdlib_module_names


#: what a user installs for the commands and scripts (each one's import name is its package's name)
REQUIRED = ("httpx", "pydantic")


def _missing_dependency(prog: str, exc: ModuleNotFoundError) -> str:
    """`missing dependency X: <how to install it>`, X being a package a user installs, never the
    module inside it that failed to load: `pydantic`, not `annotated_types`. Every one the
    commands need that is absent is named at once; one present whose own dependency is missing is
    "incomplete" (installing it again brings what it lacks). A script also gets its `uv run`
    line, since each one declares its own dependencies (PEP 723)."""
    ours, theirs = _import_chain(exc)
    if ours.split(".")[:2] == [__package__, "serve"]:  # the server stack
        wanted, fix = [theirs], "pip install 'prime-billing-skill[serve]'"
    else:
        wanted, fix = [*REQUIRED, theirs], "pip install " + " ".join(REQUIRED)
    absent = [name for name in dict.fromkeys(wanted) if not _found(name)]
    if prog.endswith(".py"):
        path = sys.argv[0] if os.path.basename(sys.argv[0]) == prog else f"scripts/{prog}"
        fix += f", or run it as: uv run {path} ..."
    if not absent:
        return f"dependency {theirs} is incomplete (a package it needs is missing): {fix}"
    return f"missing dependenc{'y' if len(absent) == 1 else 'ies'} {' and '.join(absent)}: {fix}"


def _import_chain(exc: ModuleNotFoundError) -> tuple[str, str]:
    """Who failed to import what: the innermost module of this package in the traceback, and the
    package it was importing, by its top-level name: the first module after it outside this package
    and the standard library, else the missing module itself."""
    ours, theirs, tb = "", "", exc.__traceback__
    while tb is not None:
        name = str(tb.tb_frame.f_globals.get("__name__", ""))
        if name == __package__ or name.startswith(f"{__package__}."):
            ours, theirs = name, ""
        elif not theirs and ours and _third_party(name):
            theirs = name.partition(".")[0]
        tb = tb.tb_next
    return ours, theirs or str(exc.name).partition(".")[0]


def _found(name: str) -> bool:
    """The package can be found on the path (without importing it)."""
    from importlib.util import find_spec

    try:
        return find_spec(name) is not None
    except (ImportError, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(main())
