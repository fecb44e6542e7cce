"""The warehouse: the DuckDB file in HOME (or PostgreSQL when configured), its sessions, init and query helpers."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import duckdb

from cinematch.core.errors import CineMatchError
from cinematch.core.log import get_logger
from cinematch.core.settings import Settings
from cinematch.storage import catalogue
from cinematch.storage.integrity import check_before_write, open_duckdb
from cinematch.storage.lock import HomeLock

log = get_logger(__name__)


def connect(settings: Settings, read_only: bool = False, command: str = "cinematch") -> duckdb.DuckDBPyConnection:
    """Open the warehouse: the DuckDB file in HOME, or PostgreSQL when ``CINEMATCH_DATABASE_URL`` is set.

    The PostgreSQL connection offers the same API (``cinematch.storage.postgres.PgConnection``).
    """
    if settings.database_url is not None:
        from cinematch.storage.pg_connect import application_name
        from cinematch.storage.postgres import PgConnection

        url = settings.database_url.get_secret_value()
        return PgConnection(url, read_only=read_only, application_name=application_name(command))  # type: ignore[return-value]
    path = settings.duckdb_path
    if read_only:
        if not path.exists():
            raise CineMatchError(
                f"no warehouse at {path}: run `cinematch init` (or ingest a batch) first, "
                "or set CINEMATCH_HOME to the home you meant"
            )
        return open_duckdb(path, read_only=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    return open_duckdb(path, read_only=False)


def init_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every schema and table (idempotent)."""
    if is_postgres(con):  # numbered migrations, serialized across processes (engines/postgres.py)
        con.migrate()  # type: ignore[attr-defined]
        return
    for ddl in catalogue.duckdb_ddl():
        con.execute(ddl)


@contextmanager
def write_session(settings: Settings, command: str = "cinematch") -> Iterator[duckdb.DuckDBPyConnection]:
    """Exclusive lock + read-write connection with every table created."""
    with HomeLock(settings, exclusive=True, command=command):
        con = connect(settings, command=command)
        try:
            if not is_postgres(con) and settings.duckdb_path.stat().st_size > 0:
                check_before_write(con, settings.duckdb_path, command)
            init_schema(con)
            if is_postgres(con):
                from cinematch.storage.pg_lock import writer_lock

                # across machines the HOME lock cannot help: writers queue on a PostgreSQL advisory lock
                with writer_lock(con, command, settings.lock_timeout_seconds):  # type: ignore[arg-type]
                    yield con
            else:
                yield con
        finally:
            con.close()


@contextmanager
def read_session(settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    """Shared lock + read-only connection (PostgreSQL: no lock, readers see committed snapshots)."""
    lock = HomeLock(settings, exclusive=False) if settings.database_url is None else nullcontext()
    with lock:
        con = connect(settings, read_only=True, command="read")
        try:
            if is_postgres(con) and not warehouse_exists(settings, con):
                raise CineMatchError("the PostgreSQL warehouse has no CineMatch schema yet: run `cinematch init` first")
            yield con
        finally:
            con.close()


def is_postgres(con: object) -> bool:
    """Whether ``con`` is the PostgreSQL warehouse rather than DuckDB."""
    return getattr(con, "dialect", None) == "postgres"


def warehouse_exists(settings: Settings, con: object | None = None) -> bool:
    """Whether the warehouse has been created (DuckDB file in HOME, or the schema in PostgreSQL)."""
    if settings.database_url is None:
        return settings.duckdb_path.exists()
    from cinematch.storage.postgres import schema_version

    if con is not None:
        return schema_version(con) is not None  # type: ignore[arg-type]
    own = connect(settings, read_only=True, command="status")
    try:
        return schema_version(own) is not None  # type: ignore[arg-type]
    finally:
        own.close()


def describe(settings: Settings) -> str:
    """Where the warehouse lives, safe to print (a PostgreSQL URL without its password)."""
    if settings.database_url is None:
        return str(settings.duckdb_path)
    from cinematch.core.secrets import describe_database_url

    return describe_database_url(settings.database_url.get_secret_value())


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    """Whether ``schema.table`` exists in the warehouse."""
    n = con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, table]
    ).fetchall()[0][0]
    return bool(n > 0)


def batch_table(con: duckdb.DuckDBPyConnection, name: str, batch_ids: Iterable[str]) -> None:
    """(Re)create the temp table ``name(batch_id)`` holding ``batch_ids`` (empty when there are none).

    Queries then select ``where batch_id in (select batch_id from name)``, whatever the number of ids.
    """
    con.execute(f"create or replace temp table {name}(batch_id varchar)")
    rows = [[b] for b in batch_ids]
    if rows:  # executemany refuses an empty list
        con.executemany(f"insert into {name} values (?)", rows)


def query_rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    """Run a query and return rows as dicts."""
    cur = con.execute(sql, params or [])
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def ensure_inside(base: Path, candidate: Path) -> Path:
    """Resolve ``candidate`` and refuse it if it leaves ``base`` (paths from users or the API)."""
    resolved = candidate.resolve()
    if not resolved.is_relative_to(base.resolve()):
        raise CineMatchError(f"path {candidate} is outside {base}; refusing to touch it")
    return resolved
