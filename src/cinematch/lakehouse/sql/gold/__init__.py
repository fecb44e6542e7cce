"""The gold SQL: one file per model, its incremental form and state; shared CTEs live in ``_<name>.sql`` files."""

from __future__ import annotations

import re
from importlib import resources

_INCLUDE = re.compile(r"^[ \t]*-- @include (\w+)[ \t]*$", re.MULTILINE)


def read(name: str) -> str:
    """The text of ``<name>.sql`` with every ``-- @include X`` line replaced by the CTEs of ``_X.sql``.

    Every engine (DuckDB, Spark SQL, PostgreSQL) receives the expanded text, so a shared CTE has one definition.
    """
    text = resources.files(__name__).joinpath(f"{name}.sql").read_text(encoding="utf-8")
    return _INCLUDE.sub(lambda m: read("_" + m.group(1)).strip("\n"), text).strip().rstrip(";")
