"""One SQL definition, two engines: DuckDB-dialect models transpiled to Spark SQL with sqlglot."""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from cinematch.core.errors import BadInput

# String literals and line comments are matched first so a "$" inside them is left alone.
_TOKEN_RE = re.compile(r"('(?:[^']|'')*')|(--[^\n]*)|\$([A-Za-z_][A-Za-z0-9_]*)")


def literal(value: Any) -> str:
    """A typed DuckDB literal for a query parameter.

    Typed literals keep the parameter's type through transpiling (``TIMESTAMP '...'`` becomes Spark's
    ``CAST('...' AS TIMESTAMP_NTZ)``), where a bare string or number would be re-typed by the other engine.
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            raise BadInput(f"timestamp parameters must be naive UTC, got {value.isoformat()}")
        return f"TIMESTAMP '{value.isoformat(sep=' ', timespec='microseconds')}'"
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, int):
        return f"CAST({value} AS BIGINT)"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadInput(f"numeric parameters must be finite, got {value!r}")
        return f"CAST({value!r} AS DOUBLE)"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise BadInput(f"unsupported SQL parameter type {type(value).__name__}")


def substitute(sql: str, params: dict[str, Any]) -> str:
    """Replace every ``$name`` with the typed literal of ``params[name]``; an unknown name is an error."""

    def repl(match: re.Match[str]) -> str:
        name = match.group(3)
        if name is None:
            return match.group(0)
        if name not in params:
            raise BadInput(f"SQL parameter ${name} has no value (given: {', '.join(sorted(params)) or 'none'})")
        return literal(params[name])

    return _TOKEN_RE.sub(repl, sql)


def view_name(table: str) -> str:
    """``silver.ratings`` → ``silver__ratings``: Spark temp views cannot live in a schema."""
    return table.replace(".", "__")


@lru_cache(maxsize=64)
def _transpile(sql: str, dialect: str) -> str:
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ErrorLevel

    tree = sqlglot.parse_one(sql, read="duckdb")

    def rename(node: exp.Expression) -> exp.Expression:
        # Qualified names are warehouse tables; CTE references carry no schema and stay as they are.
        if isinstance(node, exp.Table) and node.db and not node.catalog:
            renamed = exp.to_table(view_name(f"{node.db}.{node.name}"))
            if node.alias:
                renamed.set("alias", node.args["alias"])
            return renamed
        return node

    # unsupported_level=RAISE: a construct Spark cannot express fails here, not as a wrong result later.
    return tree.transform(rename).sql(dialect=dialect, pretty=True, comments=False, unsupported_level=ErrorLevel.RAISE)


def to_spark(sql: str, params: dict[str, Any] | None = None) -> str:
    """Spark SQL for a DuckDB query: parameters substituted first, ``schema.table`` read from temp views."""
    return _transpile(substitute(sql.strip().rstrip(";"), params or {}), "spark")


def used_params(sql: str) -> set[str]:
    """The ``$names`` a query uses outside string literals and ``--`` comments."""
    return {m.group(3) for m in _TOKEN_RE.finditer(sql) if m.group(3)}
