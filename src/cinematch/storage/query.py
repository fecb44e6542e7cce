"""`cinematch sql`: read-only queries on a read-only connection with no file access."""

from __future__ import annotations

from typing import Any

import duckdb

from cinematch.core.errors import BadInput, CineMatchError
from cinematch.core.settings import Settings
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
    if not settings.duckdb_path.exists():  # a read never creates the warehouse (no DDL on read paths)
        raise CineMatchError(
            f"no warehouse at {settings.duckdb_path}: run `cinematch init` (or ingest a batch) first, "
            "or set CINEMATCH_HOME to the home you meant"
        )
    with HomeLock(settings, exclusive=False):
        con = duckdb.connect(
            str(settings.duckdb_path),
            read_only=True,
            config={"enable_external_access": False, "lock_configuration": True},
        )
        try:
            check_file(con, settings.duckdb_path)  # a truncated file names the way back (warehouse.damaged)
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
