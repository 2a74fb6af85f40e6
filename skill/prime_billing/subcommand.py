"""A command beyond the operations table, as data: the CLI adds every one of them the same way.

`cli.EXTRA_COMMANDS` adds `sandbox` and `skill` (declared in `cli`), `doctor` (in
`doctor`) and `serve` and `mcp` (in `serve.command`; neither module needs anything
from the CLI). What a
command runs imports its own stack when it runs, so building the parser stays
cheap. Standard library only: the skill's scripts load it with the CLI.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NamedTuple


class Subcommand(NamedTuple):
    name: str
    #: the line in the top-level command list
    help: str
    #: what `NAME --help` says first
    description: str
    #: adds the command's own arguments to its parser
    arguments: Callable[[argparse.ArgumentParser], None]
    #: runs it with the parsed arguments; returns the exit code
    run: Callable[[argparse.Namespace], int]

    def add_to(self, sub: Any) -> argparse.ArgumentParser:
        """Add the command to `sub` (an `add_subparsers()` action) and return its parser."""
        p: argparse.ArgumentParser = sub.add_parser(self.name, help=self.help, description=self.description)
        self.arguments(p)
        p.set_defaults(_run=self.run)
        return p
