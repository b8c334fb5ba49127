"""SQL literals of values read back from a database (a watermark, a high-water mark).

Values travel as bound parameters wherever a statement takes them; a watermark is
rendered into a model's query text instead, before EXPLAIN and the build, so both
read the same SQL and an error names the same line.
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

from sqlglot import exp


def sql_literal(value: Any, dialect: str) -> str:
    """A SQL literal of a value read back from the target; NULL for None."""
    literal: exp.Expression
    if value is None:
        literal = exp.null()
    elif isinstance(value, bool):
        literal = exp.Boolean(this=value)
    elif isinstance(value, (int, float, decimal.Decimal)):
        literal = exp.Literal.number(value)
    elif isinstance(value, dt.datetime):
        type_ = "timestamptz" if value.tzinfo is not None else "timestamp"
        literal = exp.cast(exp.Literal.string(value.isoformat(sep=" ")), type_)
    elif isinstance(value, dt.date):
        literal = exp.cast(exp.Literal.string(value.isoformat()), "date")
    else:
        literal = exp.Literal.string(str(value))
    return literal.sql(dialect=dialect)
