"""The warehouse: the DuckDB file in HOME (or PostgreSQL when configured), its sessions, init and query helpers."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cinematch.core.errors import CineMatchError
from cinematch.core.log import get_logger
from cinematch.core.settings import Settings
from cinematch.storage.duckdb_backend import DuckDBBackend, init_schema
from cinematch.storage.lock import HomeLock
from cinematch.storage.protocol import Backend, Warehouse

__all__ = [
    "backend",
    "batch_table",
    "connect",
    "describe",
    "ensure_inside",
    "init_schema",
    "query_rows",
    "read_session",
    "table_exists",
    "warehouse_exists",
    "write_session",
]

log = get_logger(__name__)


def backend(settings: Settings) -> Backend:
    """The warehouse's backend: PostgreSQL when ``CINEMATCH_DATABASE_URL`` is set, else the DuckDB file in HOME.

    Every DuckDB/PostgreSQL difference of connecting, initialising, locking and existing lives behind it.
    """
    if settings.database_url is None:
        return DuckDBBackend(settings)
    from cinematch.storage.pg_backend import PostgresBackend  # the `postgres` extra is optional

    return PostgresBackend(settings, settings.database_url.get_secret_value())


def connect(settings: Settings, read_only: bool = False, command: str = "cinematch") -> Warehouse:
    """Open the warehouse: the DuckDB file in HOME, or PostgreSQL when ``CINEMATCH_DATABASE_URL`` is set.

    Either connection is a :class:`~cinematch.storage.protocol.Warehouse` (PostgreSQL:
    ``cinematch.storage.postgres.PgConnection``).
    """
    return backend(settings).connect(read_only, command)


@contextmanager
def write_session(settings: Settings, command: str = "cinematch") -> Iterator[Warehouse]:
    """Exclusive lock + read-write connection with every table created."""
    with HomeLock(settings, exclusive=True, command=command), backend(settings).writing(command) as con:
        yield con


@contextmanager
def read_session(settings: Settings) -> Iterator[Warehouse]:
    """Read-only connection (DuckDB: under the shared lock; PostgreSQL: no lock, readers see committed snapshots)."""
    with backend(settings).reading() as con:
        yield con


def warehouse_exists(settings: Settings) -> bool:
    """Whether the warehouse has been created (DuckDB file in HOME, or the schema in PostgreSQL)."""
    return backend(settings).exists()


def describe(settings: Settings) -> str:
    """Where the warehouse lives, safe to print (a PostgreSQL URL without its password)."""
    return backend(settings).describe()


def table_exists(con: Warehouse, schema: str, table: str) -> bool:
    """Whether ``schema.table`` exists in the warehouse."""
    n = con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, table]
    ).fetchall()[0][0]
    return bool(n > 0)


def batch_table(con: Warehouse, name: str, batch_ids: Iterable[str]) -> None:
    """(Re)create the temp table ``name(batch_id)`` holding ``batch_ids`` (empty when there are none).

    Queries then select ``where batch_id in (select batch_id from name)``, whatever the number of ids.
    """
    con.execute(f"create or replace temp table {name}(batch_id varchar)")
    rows = [[b] for b in batch_ids]
    if rows:  # executemany refuses an empty list
        con.executemany(f"insert into {name} values (?)", rows)


def query_rows(con: Warehouse, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    """Run a query and return rows as dicts."""
    cur = con.execute(sql, params or [])
    cols = [d[0] for d in cur.description or ()]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def ensure_inside(base: Path, candidate: Path) -> Path:
    """Resolve ``candidate`` and refuse it if it leaves ``base`` (paths from users or the API)."""
    resolved = candidate.resolve()
    if not resolved.is_relative_to(base.resolve()):
        raise CineMatchError(f"path {candidate} is outside {base}; refusing to touch it")
    return resolved
