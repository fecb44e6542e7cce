"""`cinematch sql`: read-only queries on a read-only connection with no file access."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import duckdb

from cinematch.core.errors import BadInput
from cinematch.core.settings import Settings
from cinematch.storage import catalogue
from cinematch.storage.integrity import check_file
from cinematch.storage.lock import HomeLock


def run_readonly(settings: Settings, query: str, limit: int = 1000) -> list[dict[str, Any]]:
    """Run ``query`` on a read-only DuckDB connection that cannot reach files or other databases.

    Safety comes from the connection (``read_only`` and ``enable_external_access=false``, locked),
    not from inspecting the SQL text. With PostgreSQL, the query runs in a READ ONLY transaction
    (``cinematch.storage.pg_query.run_readonly``).
    """
    if settings.database_url is not None:
        from cinematch.storage.pg_query import run_readonly as run_readonly_pg

        return run_readonly_pg(settings.database_url.get_secret_value(), query, limit)
    if not settings.duckdb_path.exists():
        # A read never creates the warehouse: the query runs, read-only as ever, on the empty tables of the
        # catalogue in a scratch file (so every table reads as empty, as in a fresh warehouse).
        with tempfile.TemporaryDirectory(prefix="cinematch-sql-") as scratch:
            empty = Path(scratch) / "empty.duckdb"
            with duckdb.connect(str(empty)) as con:
                for ddl in catalogue.duckdb_ddl():
                    con.execute(ddl)
            return _query(settings, empty, query, limit)
    with HomeLock(settings, exclusive=False):
        return _query(settings, settings.duckdb_path, query, limit)


def _query(settings: Settings, path: Path, query: str, limit: int) -> list[dict[str, Any]]:
    """``query`` on the DuckDB file ``path``, read-only, with no file access; refusals are one BadInput line."""
    con = duckdb.connect(
        str(path), read_only=True, config={"enable_external_access": False, "lock_configuration": True}
    )
    try:
        check_file(con, path)  # a truncated file names the way back (warehouse.damaged)
        rel = con.sql(query)
        if rel is None:
            raise BadInput("the statement returned no rows; `cinematch sql` runs read-only SELECT queries")
        cols = rel.columns
        rows = rel.limit(limit).fetchall() if limit else rel.fetchall()
    except duckdb.Error as exc:
        first = " ".join(str(exc).split())[:240]
        if "disabled" in first.lower() or "permission" in first.lower():
            raise BadInput(
                f"refused: `cinematch sql` cannot read or write files, attach databases or load extensions ({first})"
            ) from None
        if "read-only" in first.lower() or "read_only" in first.lower():
            raise BadInput(f"refused: the warehouse is read-only here ({first})") from None
        own_file = isinstance(exc, duckdb.IOException) and str(settings.duckdb_path) in str(exc)
        if "corrupt" in first.lower() or own_file or isinstance(exc, duckdb.FatalException):
            raise  # a damaged file: the CLI's error convention diagnoses it and names the way back
        raise BadInput(f"query failed: {first}") from None
    finally:
        con.close()
    return [dict(zip(cols, r, strict=True)) for r in rows]
