"""CSV exports of the reports: a spreadsheet reads every cell as data, and every row as one record.

Cells hold upstream text (ids, types, currencies), and a spreadsheet runs a cell starting with
`=`, `+`, `-` or `@` as a formula (and some strip a leading TAB or CR first): such text gets a
leading `'`, OWASP's advice against CSV injection. Numbers are written as numbers, a negative
amount included; only text is ever prefixed. A cell holding a line feed or a carriage return is
quoted, so the file reads back with Python's `csv` module as exactly one record per row: the
module quotes a line feed itself, but not a lone carriage return when lines end in `\\n`, so a
row holding one is written with all its text quoted (numbers still bare).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import BillingEntry

#: the columns of a report's rows, in the upstream's names
ROW_COLUMNS = (
    "id",
    "created_at",
    "updated_at",
    "last_billed_at",
    "amount_usd",
    "currency",
    "resource_type",
    "resource_id",
)
#: how a cell a spreadsheet would run as a formula begins
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def write_table(out: IO[str], columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """`columns`, then each row of cells (text or numbers); returns the row count."""
    plain = csv.writer(out, lineterminator="\n")
    quoting = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    plain.writerow(columns)
    n = 0
    for values in rows:
        cells, carriage_return = [], False
        for value in values:
            if isinstance(value, str):
                if value.startswith(_FORMULA):
                    value = "'" + value
                carriage_return = carriage_return or "\r" in value
            cells.append(value)
        (quoting if carriage_return else plain).writerow(cells)
        n += 1
    return n


def write_rows_csv(rows: Iterable[BillingEntry], out: IO[str]) -> int:
    """Wallet rows (header first), dates in UTC as ISO 8601; returns the row count."""

    def cells(row: BillingEntry) -> list[Any]:
        data = row.model_dump(mode="json")
        return ["" if data.get(c) is None else data[c] for c in ROW_COLUMNS]

    return write_table(out, ROW_COLUMNS, map(cells, rows))
