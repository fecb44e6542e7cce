"""Sources beyond ratings and movies (viewing sessions, TMDB): one registry for their tables, builds and checks.

Each source module defines:
    DDL            DuckDB ``create table if not exists`` statements for its bronze/silver tables
    PG_MIGRATIONS  numbered PostgreSQL migrations ``(number, name, statements)`` for the same tables
    LAKE_TABLES    silver/gold tables it writes to the Parquet lake
    SILVER_CHECKS, GOLD_CHECKS   quality checks declared next to its definitions
    build_silver(con, batches, full_refresh) -> dict[str, int]   rows per silver table (+ ``_changed``, see below)
    build_gold(con, as_of) -> dict[str, int]                     rows per gold table it wrote

``run_etl`` calls them inside the silver and gold transactions, after the ratings and movies tables, so a
source may join them (and may add columns to a ratings gold table, which it then owns).
"""

from __future__ import annotations

import importlib
from datetime import datetime
from types import ModuleType
from typing import Any

from cinematch.lakehouse.quality import Check

SOURCE_MODULES: tuple[str, ...] = ("cinematch.lakehouse.viewing", "cinematch.lakehouse.tmdb")


def sources() -> list[ModuleType]:
    """The source modules, in build order."""
    return [importlib.import_module(name) for name in SOURCE_MODULES]


def ddl() -> tuple[str, ...]:
    """DuckDB DDL of every source's tables."""
    return tuple(stmt for mod in sources() for stmt in mod.DDL)


def pg_migrations() -> tuple[tuple[int, str, tuple[str, ...]], ...]:
    """PostgreSQL migrations of every source's tables."""
    return tuple(m for mod in sources() for m in mod.PG_MIGRATIONS)


def silver_checks() -> tuple[Check, ...]:
    return tuple(c for mod in sources() for c in mod.SILVER_CHECKS)


def gold_checks() -> tuple[Check, ...]:
    return tuple(c for mod in sources() for c in mod.GOLD_CHECKS)


def lake_tables() -> tuple[str, ...]:
    return tuple(t for mod in sources() for t in mod.LAKE_TABLES)


def build_silver(con: Any, batches: list[dict], full_refresh: bool) -> tuple[dict[str, int], bool]:
    """Build every source's silver tables (inside the caller's transaction).

    Returns rows per table and whether a source took in new data that came without an ingestion batch (TMDB
    responses): a module signals it with the key ``_changed`` in its result, and gold is then rebuilt.
    """
    rows: dict[str, int] = {}
    changed = False
    for mod in sources():
        out = dict(mod.build_silver(con, batches, full_refresh))
        changed = bool(out.pop("_changed", False)) or changed
        rows.update(out)
    return rows, changed


def build_gold(con: Any, as_of: datetime | None) -> dict[str, int]:
    """Build every source's gold tables (inside the caller's transaction)."""
    rows: dict[str, int] = {}
    for mod in sources():
        rows.update(mod.build_gold(con, as_of))
    return rows
