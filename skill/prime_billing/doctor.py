"""`prime-billing doctor` (and `scripts/doctor.py`): is this set up, and does the API answer?

One line per thing a first run depends on, each saying where it came from and what
changes it: the version, the key (where it was found, never the key nor any part of
it), the base URL, the team, and one wallet read of one row. Exit 0 when all is well,
2 when the configuration is missing or broken (the lines say what to set), 1 when the
API or the network failed. A CLI command rather than an operation of the table: it
checks this installation, not Prime's data.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .subcommand import Subcommand

if TYPE_CHECKING:
    from .config import Settings
    from .errors import PrimeBillingError

#: the CLI's exit codes (cli.py): all is well, the API or network failed, the configuration is not usable
EXIT_OK, EXIT_API, EXIT_CONFIG = 0, 1, 2
#: how each line starts: the check passed, failed, or was not tried (an earlier one failed)
MARKS = {True: "ok", False: "FAIL", None: "--"}


@dataclass
class Check:
    #: its key in `--json`
    key: str
    #: how its line names it
    label: str
    #: True passed, False failed, None not tried
    ok: bool | None
    #: the fact and what to do about it, in the CLI's words
    text: str
    #: the same facts for programs (`--json`); never the key
    facts: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return f"{MARKS[self.ok]:<4} {self.label:<8}  {self.text}"


def diagnose(
    *, base_url: str | None, team_id: str | None, sandbox: bool
) -> tuple[list[Check], PrimeBillingError | None]:
    """Every check, in order, and the first problem found (which decides the exit code), if any."""
    import platform

    from .__version__ import __version__
    from .config import load_settings
    from .errors import ConfigError

    version = Check(
        "version",
        "version",
        True,
        f"prime-billing-skill {__version__} on Python {platform.python_version()}",
        {"version": __version__, "python": platform.python_version()},
    )
    try:
        settings = load_settings(base_url=base_url, team_id=team_id, sandbox=sandbox)
    except ConfigError as exc:
        broken = Check("configuration", "config", False, exc.worded("cli"))
        return [version, broken, _not_read("fix the configuration first")], exc
    key, problem = _key(settings)
    team, team_problem = _team(settings)
    problem = problem or team_problem
    checks = [version, key, _base_url(settings), team]
    if problem is not None:
        return [*checks, _not_read(f"fix the {'key' if key.ok is False else 'team'} first")], problem
    wallet, problem = _wallet(settings)
    return [*checks, wallet], problem


def _where(source: str | None, flag: str) -> str:
    """Where a setting came from, in the CLI's words."""
    from .config import ARGUMENT, DEFAULT

    if source == ARGUMENT:
        return flag
    if source == DEFAULT or source is None:
        return "the default"
    if source.startswith("PRIME_"):
        return f"the environment ({source})"
    return f"{source} (written by `prime login`)"


def _key(settings: Settings) -> tuple[Check, PrimeBillingError | None]:
    from .config import ARGUMENT, SANDBOX
    from .errors import ConfigError

    source = settings.sources.get("api_key")
    if source == SANDBOX:
        text = "none needed: --sandbox answers from built-in demo data"
        return Check("key", "key", True, text, {"source": SANDBOX}), None
    try:
        settings.require_key()
    except ConfigError as exc:
        return Check("key", "key", False, exc.worded("cli"), {"source": source if settings.api_key else None}), exc
    if source == ARGUMENT:
        text = "given as an argument"
    elif source is not None and source.startswith("PRIME_"):
        text = f"found in {_where(source, '')}, which comes before ~/.prime/config.json"
    else:
        text = f"found in {_where(source, '')}; PRIME_API_KEY would come before it"
    return Check("key", "key", True, text, {"source": source}), None


def _base_url(settings: Settings) -> Check:
    from .config import DEFAULT, SANDBOX

    source = settings.sources.get("base_url")
    if source == SANDBOX:
        return Check(
            "base_url", "base URL", True, "none: --sandbox needs no network", {"value": None, "source": source}
        )
    url = settings.base_url
    if source == DEFAULT:
        text = f"{url}, the default (PRIME_API_BASE_URL or --base-url sets another)"
    elif source is not None and source.startswith("PRIME_"):
        text = f"{url}, from {_where(source, '')}; unset it for Prime's own API"
    else:
        text = f"{url}, from {_where(source, '--base-url')}"
    return Check("base_url", "base URL", True, text, {"value": url, "source": source})


def _team(settings: Settings) -> tuple[Check, PrimeBillingError | None]:
    from .errors import InvalidInputError
    from .operations import get

    team, source = settings.team_id, settings.sources.get("team_id")
    facts = {"value": team, "source": source if team else None}
    if not team:
        return Check(
            "team", "team", True, "none: the personal wallet (--team ID or PRIME_TEAM_ID reads a team's)", facts
        ), None
    try:
        get("get_wallet").check({"limit": 1, "team_id": team})
    except InvalidInputError as exc:
        return Check("team", "team", False, f"{exc.worded('cli')}: fix {_where(source, '--team')}", facts), exc
    undo = "unset it for the personal wallet" if source == "PRIME_TEAM_ID" else "--team ID reads another"
    return Check("team", "team", True, f"{team}, from {_where(source, '--team')}: a team's wallet; {undo}", facts), None


def _wallet(settings: Settings) -> tuple[Check, PrimeBillingError | None]:
    from .client import Client
    from .errors import PrimeBillingError

    try:
        with Client(settings) as client:
            wallet = client.call("get_wallet", {"limit": 1}).data
    except PrimeBillingError as exc:
        error = {"code": exc.code, "status": exc.status, "message": exc.worded("cli")}
        return Check("wallet", "wallet", False, exc.worded("cli"), {"error": error}), exc
    read, total = len(wallet.recent_billings), wallet.total_billings
    text = f"the API answered a read of one row (limit=1); the wallet holds {total:,} billing rows"
    return Check("wallet", "wallet", True, text, {"rows_read": read, "total_billings": total}), None


def _not_read(why: str) -> Check:
    return Check("wallet", "wallet", None, f"not read: {why}")


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--team", metavar="ID", dest="team_id", help="check a team's wallet (default: PRIME_TEAM_ID, else personal)"
    )
    p.add_argument("--json", action="store_true", help="print the checks as one JSON document")
    p.add_argument("--sandbox", action="store_true", help="check against the built-in demo data (no key needed)")
    p.add_argument(
        "--base-url", metavar="URL", help="API base URL (default: PRIME_API_BASE_URL or api.primeintellect.ai)"
    )


def run(ns: argparse.Namespace) -> int:
    """Print every check (stdout); a problem also gets its one line on stderr, and its exit code."""
    from .errors import ConfigError, InvalidInputError

    checks, problem = diagnose(base_url=ns.base_url, team_id=ns.team_id, sandbox=ns.sandbox)
    if ns.json:
        doc = {"ok": problem is None, "checks": {c.key: {"ok": c.ok, "message": c.text, **c.facts} for c in checks}}
        sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
    else:
        summary = "all set" if problem is None else "not set up: do what the FAIL line says, then run doctor again"
        sys.stdout.write("\n".join([*(c.line() for c in checks), summary]) + "\n")
    if problem is None:
        return EXIT_OK
    sys.stdout.flush()  # the report first, then the error line, as a terminal shows them
    print(f"{ns._prog}: error: {problem.worded('cli')}", file=sys.stderr)
    return EXIT_CONFIG if isinstance(problem, ConfigError | InvalidInputError) else EXIT_API


DOCTOR = Subcommand(
    "doctor",
    help="check the set-up: key, base URL, team, version and one wallet read",
    description="Check the set-up: where the key comes from (never the key), the base URL, the team, "
    "the version, and whether one wallet read (limit=1) succeeds; each line says what to do. "
    "Exit 0 when all is well, 2 when the configuration is missing or broken, 1 when the API fails.",
    arguments=_arguments,
    run=run,
)
