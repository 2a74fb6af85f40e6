"""Advice in each surface's own words.

Errors and summaries say what to change with a marker, `mark("offset", 20)`,
where the name is an operation's parameter (or one of a few settings below).
Each surface turns markers into its own terms: a flag on the CLI (`--offset 20`),
an argument in Python and in tools (`offset=20`), a query parameter on REST
(`?offset=20`). MCP tools take arguments too, but their caller cannot set what the
server was started with (its `--sandbox`, its `--base-url`): those are the server's.
The facts stay one text; only the words differ.

A marker is delimited by two control characters, STX and ETX
(`\x02offset=20\x03`). Upstream text reaches a line only through `untrusted`,
which writes every control character as a visible escape, so no name, id or
error detail can hold a marker, and text that merely looks like one
(`[[team_id=x]]`) is only text: advice comes from this package's own templates.
Neither delimiter is whitespace, so a message squeezed onto one line keeps them.
"""

from __future__ import annotations

import re
from typing import Literal

#: "cli": the command and scripts; "tool": Python and LangChain; "mcp": the MCP tools; "rest": the REST routes
Surface = Literal["cli", "tool", "mcp", "rest"]

#: a marker's delimiters: control characters, which no upstream text can hold once escaped
OPEN, CLOSE = "\x02", "\x03"
_MARK = re.compile(f"{OPEN}([a-z_]+)(?:=([^{CLOSE}]*))?{CLOSE}")

#: what is not an operation parameter, per surface; and a parameter's word on a surface that has no
#: name for it (the CLI sends `include_rows` itself: its --json and --csv carry every row)
_SETTINGS: dict[str, dict[str, str]] = {
    "sandbox": {
        "cli": "--sandbox",
        "tool": "sandbox=True",
        "mcp": "the server's --sandbox",
        "rest": "the server's sandbox mode",
    },
    "base_url": {
        "cli": "--base-url",
        "tool": "base_url",
        "mcp": "the server's --base-url",
        "rest": "the server's base URL",
    },
    "all_rows": {
        "cli": "--json or --csv",
        "tool": "the structured result",
        "mcp": "the structured content",
        "rest": "the JSON body",
    },
    "include_rows": {"cli": "--json or --csv"},
    #: where the rows of an answer made without them are, preposition and all: a caller asks for them;
    #: the CLI's --json and --csv hold them whatever its text was made with
    "rows_on_request": {
        "cli": "in --json or --csv",
        "tool": "with include_rows=true",
        "rest": "with ?include_rows=true",
    },
}


#: every parameter's flag and REST name (`--team`, `?teamId=`): the operations table tells them
#: here as it is built, so this module needs nothing above it
_PARAMS: dict[str, tuple[str, str]] = {}


def learn(name: str, flag: str, wire: str) -> None:
    """How a parameter is called on the CLI and on REST."""
    _PARAMS[name] = (flag, wire)


def mark(name: str, value: object = None) -> str:
    """The marker for `name` (with a value to suggest, if any: a figure of this package's own)."""
    return f"{OPEN}{name}{CLOSE}" if value is None else f"{OPEN}{name}={value}{CLOSE}"


def phrase(text: str, surface: Surface) -> str:
    """`text` with every marker in the words of `surface`."""
    if OPEN not in text:
        return text
    return _MARK.sub(lambda m: _word(m[1], m[2], surface), text)


#: a surface that words a setting as another does, unless it has words of its own: MCP tools take
#: arguments as Python and LangChain do; only what the server was started with differs
_LIKE: dict[str, Surface] = {"mcp": "tool"}


def _word(name: str, value: str | None, surface: Surface) -> str:
    words = _SETTINGS.get(name, {})
    if said := words.get(surface) or words.get(_LIKE.get(surface, surface)):
        return said
    flag, wire = _PARAMS.get(name, ("--" + name.replace("_", "-"), name))
    if surface == "cli":
        return flag if value is None else f"{flag} {value}"
    if surface == "rest":
        return f"?{wire}=" if value is None else f"?{wire}={value}"
    return name if value is None else f"{name}={value}"
