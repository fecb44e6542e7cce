"""Sources beyond ratings and movies (viewing sessions, TMDB): one registry for their builds and checks.

Each source module defines (its tables are in storage/catalogue.py):
    LAKE_TABLES    silver/gold tables it writes to the Parquet lake
    SILVER_CHECKS, GOLD_CHECKS   quality checks declared next to its definitions
    build_silver(con, batches, full_refresh) -> dict[str, int]   rows per silver table (+ ``_changed``, see below)
    build_gold(con, as_of) -> dict[str, int]                     rows per gold table it wrote

``run_etl`` calls them inside the silver and gold transactions, after the ratings and movies tables, so a
source may join them (and may add columns to a ratings gold table, which it then owns).
"""

from __future__ import annotations

from datetime import datetime
from types import ModuleType
from typing import Any

from cinematch.lakehouse import tmdb, viewing
from cinematch.lakehouse.quality import Check

SOURCE_MODULES: tuple[ModuleType, ...] = (viewing, tmdb)


def sources() -> list[ModuleType]:
    """The source modules, in build order."""
    return list(SOURCE_MODULES)


def silver_checks() -> tuple[Check, ...]:
    return tuple(c for mod in sources() for c in mod.SILVER_CHECKS)


def gold_checks() -> tuple[Check, ...]:
    return tuple(c for mod in sources() for c in mod.GOLD_CHECKS)


def lake_tables() -> tuple[str, ...]:
    return tuple(t for mod in sources() for t in mod.LAKE_TABLES)


def build_silver(con: Any, batches: list[dict[str, Any]], full_refresh: bool) -> tuple[dict[str, int], bool]:
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
