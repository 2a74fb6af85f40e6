"""What a composite operation's plan yields: the sub-calls it asks the client for.

Kept apart from the reports themselves (compose, spend, runway...), so the
client, which drives every plan, loads none of them until one is asked for.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, NamedTuple


class SubCall(NamedTuple):
    """One step a plan asks for: call operation `name` with `args`, send back its Result."""

    name: str
    args: dict[str, Any]


#: what a composite operation's `compose(args)` returns. It yields a `SubCall` and gets its Result
#: back, or yields a list of them, run at once, and gets their Results back in the same order.
Plan = Generator[SubCall | list[SubCall], Any, Any]
