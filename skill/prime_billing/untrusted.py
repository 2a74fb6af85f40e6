"""Upstream text in a line of our own: visible, quoted when it needs it, never more than one line.

Whatever the upstream sends (names, ids, statuses, types, currencies, error details, header
values) is data, and some of it reaches a terminal, a log or a language model inside a line
this package writes. Before it does, it goes through one of these:

- `shown`: text made only of ASCII letters, digits and `_ . : - / @ +` (an id, a status, a
  type, a currency, a content type) is shown bare, as it always was; anything else (empty
  included) is quoted like `quoted` does.
- `quoted`: always in double quotes (a run name, an error detail: free text).

Inside the quotes `"` and `\\` are escaped, so no quote in the text can close them, and so
is every character that could end the line, move the cursor, colour or retitle a terminal,
or reorder what it shows: C0 and C1 controls and DEL (`\\n`, `\\r`, `\\t`, `\\x1b`, `\\x85`),
the line and paragraph separators (`\\u2028`, `\\u2029`), Unicode format characters (Cf:
the bidi controls such as `\\u202e` and `\\u2066`, zero-width ones, `\\ufeff`...) and lone
surrogates (`\\udc80`). Escapes are written as Python writes them. So a line holds one
record whatever the upstream sends, and the control characters that delimit `wording`'s
advice markers can never come from it.

JSON bodies and structured content are not text: they keep the strings exactly as sent.
Stdlib only, and cheap: a bare id costs one precompiled match; only characters outside
printable ASCII are looked up in the Unicode database.
"""

from __future__ import annotations

import re

__all__ = ["quoted", "shown"]

#: what is shown bare: nothing a terminal or a reader could take for anything but an id
_BARE = re.compile(r"[A-Za-z0-9_.:/@+-]+")
#: what may need an escape: everything but printable ASCII, and the quote and the backslash
_SUSPECT = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "\\": "\\\\"}
#: controls, format characters, surrogates, line and paragraph separators
_ESCAPED = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def shown(text: str, limit: int | None = None) -> str:
    """`text` bare when it is id-like, else `quoted`; at most `limit` characters of it."""
    if (limit is None or len(text) <= limit) and _BARE.fullmatch(text):
        return text
    return quoted(text, limit)


def quoted(text: str, limit: int | None = None) -> str:
    """`text` in double quotes, escaped (see the module); cut to `limit` characters inside
    the quotes (an escape counts whole, and is never cut), ending in `…` when cut."""
    body = _SUSPECT.sub(_escape, text)
    if limit is not None and len(body) > limit:
        body = _cut(text, limit)
    return f'"{body}"'


def _escape(match: re.Match[str]) -> str:
    char = match[0]
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code >= 0xA0:  # above the C1 controls: only some characters need it
        from unicodedata import category

        if category(char) not in _ESCAPED:
            return char
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _cut(text: str, limit: int) -> str:
    pieces, used = [], 0
    for char in text:
        piece = _SUSPECT.sub(_escape, char)
        if used + len(piece) > limit - 1:
            break
        pieces.append(piece)
        used += len(piece)
    return "".join(pieces) + "…"
