"""The warehouse: the DuckDB file in HOME (or PostgreSQL when configured), its tables, and the home's write lock."""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from cinematch._log import get_logger, log_event
from cinematch.errors import CineMatchError, LockBusy
from cinematch.settings import Settings

log = get_logger(__name__)

SCHEMAS = ("bronze", "silver", "gold", "ops", "serving")

# One DDL list for every table the platform owns; `init` runs it idempotently.
DDL: tuple[str, ...] = (
    """create table if not exists bronze.ratings_buffer (
        user_id bigint not null, movie_id bigint not null, rating double not null,
        rated_at timestamp not null, batch_id varchar not null, source_file varchar,
        ingested_at timestamp not null)""",
    """create table if not exists bronze.ingestion_metadata (
        batch_id varchar primary key, ingestion_date timestamp not null, record_count bigint not null,
        quarantined_count bigint not null default 0, status varchar not null, checksum varchar not null,
        source varchar, kind varchar not null default 'ratings', notes varchar,
        duration_seconds double, rows_per_second double)""",
    """create table if not exists bronze.quarantine (
        batch_id varchar not null, reason varchar not null, row_number bigint,
        user_id varchar, movie_id varchar, rating varchar, rated_at varchar, raw varchar,
        source_file varchar, quarantined_at timestamp not null)""",
    """create table if not exists bronze.movies (
        movie_id bigint not null, title varchar, genres varchar[], release_year integer,
        batch_id varchar not null, source_file varchar, ingested_at timestamp not null)""",
    """create table if not exists ops.pipeline_runs (
        run_id varchar not null, pipeline varchar not null, step varchar not null,
        started_at timestamp not null, finished_at timestamp, status varchar not null,
        rows bigint, duration_seconds double, details json)""",
    """create table if not exists ops.model_registry (
        version varchar primary key, created_at timestamp not null, status varchar not null,
        is_champion boolean not null default false, params json, metrics json,
        batch_ids json, data_checksum varchar, n_train bigint, n_test bigint,
        promotion json, path varchar)""",
    """create table if not exists ops.drift_reports (
        report_id varchar primary key, checked_at timestamp not null, model_version varchar,
        batch_ids json, n_reference bigint, n_current bigint, kl_divergence double,
        mean_shift double, median_shift double, psi double, ks_statistic double, score double,
        model_rmse_reference double, model_rmse_current double, model_degradation double,
        decision varchar not null, should_retrain boolean not null, details json)""",
)


def utcnow() -> datetime:
    """Naive UTC now (the warehouse stores naive UTC timestamps)."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def connect(settings: Settings, read_only: bool = False, command: str = "cinematch") -> duckdb.DuckDBPyConnection:
    """Open the warehouse: the DuckDB file in HOME, or PostgreSQL when ``CINEMATCH_DATABASE_URL`` is set.

    The PostgreSQL connection offers the same API (``cinematch.engines.postgres.PgConnection``).
    """
    if settings.database_url is not None:
        from cinematch.engines.postgres import PgConnection, application_name

        url = settings.database_url.get_secret_value()
        return PgConnection(url, read_only=read_only, application_name=application_name(command))  # type: ignore[return-value]
    path = settings.duckdb_path
    if read_only:
        if not path.exists():
            raise CineMatchError(
                f"no warehouse at {path}: run `cinematch init` (or ingest a batch) first, "
                "or set CINEMATCH_HOME to the home you meant"
            )
        return _open_duckdb(path, read_only=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _open_duckdb(path, read_only=False)


def _open_duckdb(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Open the DuckDB file; a damaged one is one clear line naming the way back, not a traceback."""
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except (duckdb.IOException, duckdb.SerializationException, duckdb.InternalException) as exc:
        first = " ".join(str(exc).split())[:160]
        raise CineMatchError(
            f"the warehouse file {path} is damaged ({first}); move it aside, then `cinematch init` and re-ingest "
            "the batch files (or restore a backup); serving keeps answering from the last published views"
        ) from None


def init_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every schema and table (idempotent)."""
    if is_postgres(con):  # numbered migrations, serialized across processes (engines/postgres.py)
        con.migrate()  # type: ignore[attr-defined]
        return
    for schema in SCHEMAS:
        con.execute(f"create schema if not exists {schema}")
    from cinematch.lakehouse import extras  # the extra sources' tables (sessions, TMDB)

    for ddl in (*DDL, *extras.ddl()):
        con.execute(ddl)


class HomeLock:
    """An advisory file lock on HOME: writers take it exclusively, readers shared.

    DuckDB allows one read-write process per file, so commands queue here with a clear message
    instead of failing inside DuckDB.
    """

    def __init__(self, settings: Settings, exclusive: bool = True, command: str = "cinematch") -> None:
        self.path = settings.home_dir / ".lock"
        self.exclusive = exclusive
        self.command = command
        self.timeout = settings.lock_timeout_seconds
        self._fd: int | None = None

    def __enter__(self) -> HomeLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        mode = fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH
        deadline = time.monotonic() + self.timeout
        announced = False
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = self._holder(fd)
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LockBusy(
                        f"another cinematch command ({holder}) is writing to {self.path.parent}; "
                        "wait for it to finish and run this again"
                    ) from None
                if not announced:
                    log_event(log, "waiting_for_lock", holder=holder, home=str(self.path.parent))
                    announced = True
                time.sleep(0.1)
        if self.exclusive:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": self.command}).encode(), 0)
        self._fd = fd
        return self

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            info = json.loads(os.pread(fd, 4096, 0) or b"{}")
            return f"pid {info.get('pid')}: {info.get('command')}"
        except (OSError, ValueError):
            return "unknown"

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


@contextmanager
def write_session(settings: Settings, command: str = "cinematch") -> Iterator[duckdb.DuckDBPyConnection]:
    """Exclusive lock + read-write connection with every table created."""
    with HomeLock(settings, exclusive=True, command=command):
        con = connect(settings, command=command)
        try:
            init_schema(con)
            if is_postgres(con):
                from cinematch.engines.postgres import writer_lock

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
    from cinematch.engines.postgres import schema_version

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
    from cinematch.secrets import redact

    return redact(settings.database_url.get_secret_value())


def record_run(
    con: duckdb.DuckDBPyConnection,
    pipeline: str,
    step: str,
    started_at: datetime,
    status: str,
    rows: int | None = None,
    details: dict[str, Any] | None = None,
    run_id: str | None = None,
) -> None:
    """Append one row to ops.pipeline_runs (counts, durations, details as JSON)."""
    finished = utcnow()
    con.execute(
        "insert into ops.pipeline_runs values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            run_id or new_run_id(),
            pipeline,
            step,
            started_at,
            finished,
            status,
            rows,
            (finished - started_at).total_seconds(),
            json.dumps(details or {}, default=str),
        ],
    )


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    """Whether ``schema.table`` exists in the warehouse."""
    n = con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, table]
    ).fetchall()[0][0]
    return n > 0


def batch_table(con: duckdb.DuckDBPyConnection, name: str, batch_ids: Iterable[str]) -> None:
    """(Re)create the temp table ``name(batch_id)`` holding ``batch_ids`` (empty when there are none).

    Queries then select ``where batch_id in (select batch_id from name)``, whatever the number of ids.
    """
    con.execute(f"create or replace temp table {name}(batch_id varchar)")
    rows = [[b] for b in batch_ids]
    if rows:  # executemany refuses an empty list
        con.executemany(f"insert into {name} values (?)", rows)


def query_rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[dict]:
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
