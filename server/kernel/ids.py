"""Row ids as they arrive from outside: one range check for every path, query and form value.

Every id column is a 32-bit `integer` (PostgreSQL's type; SQLite stores 64 bits, and binding
a larger Python int raises OverflowError inside the driver). A value the column cannot hold
names no row, so the edges answer 404 before the database sees it: no 500, no traceback,
and no connection left holding SQLite's write lock.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

#: The largest value of a 32-bit `integer` column; ids start at 1.
ID_MAX = 2**31 - 1
_ID_DIGITS_MAX = len(str(ID_MAX))

#: An id field in a query or body model: out of range is a 422 naming the field.
DbId = Annotated[int, Field(ge=1, le=ID_MAX)]


def parse_id(raw: str) -> int | None:
    """The id `raw` spells in ASCII digits, or None if it cannot name a row (malformed, zero,
    negative or beyond the column's range). `str.isdigit` alone accepts '²' and '٣'."""
    if not raw.isascii() or not raw.isdigit() or len(raw.lstrip("0")) > _ID_DIGITS_MAX:
        return None
    value = int(raw)
    return value if 1 <= value <= ID_MAX else None
