"""The silver SQL: the statements that build silver.ratings (full refresh and merge) and silver.movies."""

from __future__ import annotations

from importlib import resources


def read(name: str) -> str:
    """The text of ``<name>.sql``.

    Every engine (DuckDB, Spark SQL, PostgreSQL) receives this text, so silver has one definition.
    """
    return resources.files(__name__).joinpath(f"{name}.sql").read_text(encoding="utf-8").strip().rstrip(";")
