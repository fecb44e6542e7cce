"""PostgreSQL warehouse: a connection with the DuckDB API the library uses, on PostgreSQL.

The library writes its SQL once, in DuckDB's dialect. :class:`PgConnection` offers the subset of the
``DuckDBPyConnection`` API the library calls (``execute``, ``executemany``, ``sql``, ``register``, ...) and
transpiles each statement with sqlglot (``_pgsql``, cached per statement text). What PostgreSQL cannot do is
emulated here, in one place:

- ``register(name, arrow)``: ``insert into t select ... from <registered>`` runs the select in a private DuckDB
  and streams the result into ``t`` with COPY (``_pgcopy``; this is the ingestion path). Any other statement
  that reads a registered table gets a TEMP table loaded with COPY.
- ``copy (q) to 'file' (...)``: q runs in PostgreSQL, a private DuckDB writes the file (the same Parquet/CSV
  layout as the embedded warehouse writes).
- ``attach 'file.duckdb' as a``: statements naming ``a.`` run in that DuckDB file; ``create table a.t as q``
  reads q's rows from PostgreSQL as Arrow (how the serving views are published).
- ``begin transaction`` opens a REPEATABLE READ transaction, so a multi-statement layer build sees one snapshot.

Results use DuckDB's Python types: integral ``numeric`` (``sum`` of bigint) comes back as ``int``, other
``numeric`` as ``float``, ``json`` as text; every session runs in UTC.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import sqlglot
from sqlglot import exp

from cinematch.core.errors import BadInput, CineMatchError, LockBusy
from cinematch.core.log import get_logger, log_event
from cinematch.core.secrets import database_target, parse_database_url, redact
from cinematch.storage import pg_copy as _pgcopy
from cinematch.storage import pg_migrations as _pgschema
from cinematch.storage.pg_dialect import Translation, table_name, translate

try:
    import psycopg
    from psycopg.adapt import Loader
    from psycopg.pq import TransactionStatus
except ImportError:  # the `postgres` extra is optional; PgConnection explains how to install it
    psycopg = None  # type: ignore[assignment]
    Loader = object  # type: ignore[assignment,misc]

log = get_logger(__name__)

WRITER_LOCK = 0x43494E454D41_02  # pg_advisory_lock key (any fixed bigint) shared by writer commands
# Commands that run concurrently across machines: ingestion relies on the ingestion_metadata primary key.
CONCURRENT_COMMANDS = ("ingest", "airflow ingest_batch")
MIGRATIONS = _pgschema.MIGRATIONS


class _NumericLoader(Loader):  # type: ignore[misc,valid-type]
    """``numeric`` → ``int`` when integral (``sum`` of bigint, ``extract``), else ``float``, as DuckDB returns."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        return int(text) if text.lstrip("-").isdigit() else float(text)


class _TextLoader(Loader):  # type: ignore[misc,valid-type]
    """``json`` stays text: the library decodes it where DuckDB would have handed it a string."""

    def load(self, data: Any) -> str:
        return bytes(data).decode()


class PgResult:
    """What ``execute`` returns: rows fetched eagerly and a DB-API ``description``."""

    def __init__(self, description: list[tuple] | None, rows: list[tuple]) -> None:
        self.description = description
        self._rows = rows
        self._pos = 0

    def fetchall(self) -> list[tuple]:
        rows, self._pos = self._rows[self._pos :], len(self._rows)
        return rows

    def fetchone(self) -> tuple | None:
        if self._pos >= len(self._rows):
            return None
        self._pos += 1
        return self._rows[self._pos - 1]

    def fetchmany(self, size: int = 1) -> list[tuple]:
        rows = self._rows[self._pos : self._pos + size]
        self._pos += len(rows)
        return rows


class PgRelation:
    """What ``sql`` returns: a lazy query with ``to_arrow_table``, ``fetchall``, ``columns`` and ``limit``."""

    def __init__(self, con: PgConnection, sql: str, params: Any = None) -> None:
        self._con, self._sql, self._params = con, sql, params

    @property
    def columns(self) -> list[str]:
        return [name for name, _ in self._con._describe(self._sql, self._params)]

    def limit(self, n: int) -> PgRelation:
        return PgRelation(self._con, f"select * from ({self._sql}) as _cm_limit limit {int(n)}", self._params)

    def fetchall(self) -> list[tuple]:
        return self._con.execute(self._sql, self._params).fetchall()

    def fetchone(self) -> tuple | None:
        return self._con.execute(self._sql, self._params).fetchone()

    def to_arrow_table(self) -> pa.Table:
        return self._con.fetch_arrow(self._sql, self._params)

    arrow = to_arrow_table

    def fetchnumpy(self) -> dict[str, np.ndarray]:
        table = self.to_arrow_table()
        return {name: table.column(name).to_numpy() for name in table.column_names}

    def df(self) -> Any:
        return self.to_arrow_table().to_pandas()


_ATTACH_RE = re.compile(r"^\s*attach\s+'(?:[^']|'')*'\s+as\s+([A-Za-z_][A-Za-z0-9_]*)\s*;?\s*$", re.I | re.S)
_DETACH_RE = re.compile(r"^\s*(detach|checkpoint)\s+([A-Za-z_][A-Za-z0-9_]*)\s*;?\s*$", re.I)
_COPY_TO_RE = re.compile(r"^\s*copy\s+\((?P<query>.*)\)\s+to\s+'(?P<path>(?:[^']|'')*)'\s*(?P<options>\(.*\))?\s*;?\s*$",
                         re.I | re.S)  # fmt: skip


class PgConnection:
    """A PostgreSQL connection with the part of the ``DuckDBPyConnection`` API the library uses."""

    dialect = "postgres"

    def __init__(self, url: str, read_only: bool = False, application_name: str = "cinematch") -> None:
        if psycopg is None:
            raise CineMatchError(
                "CINEMATCH_DATABASE_URL is set but psycopg is not installed: pip install 'cinematch[postgres]'"
            )
        scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", url)
        if scheme and scheme.group(1).lower() not in ("postgresql", "postgres"):
            raise BadInput(
                f"CINEMATCH_DATABASE_URL must be a postgresql:// URL, not {scheme.group(1)}://; "
                "unset it to use the DuckDB file in CINEMATCH_HOME"
            )
        target = database_target(parse_database_url(url))  # a malformed string stops here, unquoted (exit 2)
        options = "-c TimeZone=UTC -c DateStyle=ISO,MDY -c extra_float_digits=1"
        if read_only:
            options += " -c default_transaction_read_only=on"
        try:
            self._pg = psycopg.connect(url, autocommit=True, application_name=application_name[:63], options=options)
        except psycopg.Error as exc:
            # libpq's text echoes connection values (a mis-split password can sit in the host name), so the
            # message is built from the parsed host, port and database and a fixed phrase for the cause
            raise CineMatchError(
                f"cannot connect to PostgreSQL at {target}: {connect_failure(exc)}; "
                "check CINEMATCH_DATABASE_URL and that the server is running"
            ) from None
        self._pg.adapters.register_loader("numeric", _NumericLoader)
        for name in ("json", "jsonb"):
            self._pg.adapters.register_loader(name, _TextLoader)
        self.read_only = read_only
        self._registered: dict[str, pa.Table] = {}
        self._materialized: set[str] = set()
        self._attached: dict[str, duckdb.DuckDBPyConnection] = {}
        self._columns: dict[str, list[tuple[str, str]]] = {}

    # -- the DuckDB-like API ---------------------------------------------------------------------------------

    def execute(self, sql: str, params: Any = None) -> PgResult:
        """Run one DuckDB-dialect statement; returns an object with ``fetchall``/``fetchone``/``description``."""
        special = self._special(sql, params)
        if special is not None:
            return special
        tr = translate(sql)
        alias = next((a for a in self._attached if any(t.startswith(a + ".") for t in tr.tables)), None)
        if alias is not None:
            return self._in_attached(alias, sql, params)
        registered = {t for t in tr.tables if t in self._registered}
        if registered:
            if tr.insert_target and tr.insert_source_tables and tr.insert_source_tables <= self._registered.keys():
                return self._insert_from_registered(tr, params)
            self._materialize(registered)
        return self._run(tr, params)

    def executemany(self, sql: str, seq: Sequence[Any]) -> None:
        tr = translate(sql)
        self._materialize({t for t in tr.tables if t in self._registered})
        if len(tr.statements) != 1:
            for params in seq:
                self._run(tr, params)
            return
        with self._pg.cursor() as cur:
            cur.executemany(tr.statements[0], [self._bind(tr, p) for p in seq])

    def sql(self, sql: str, params: Any = None) -> PgRelation | None:
        """A lazy relation for queries; other statements run at once and give None (as in DuckDB)."""
        if any(r.match(sql) for r in (_COPY_TO_RE, _ATTACH_RE, _DETACH_RE)) or translate(sql).kind != "query":
            self.execute(sql, params)
            return None
        return PgRelation(self, sql, params)

    def register(self, name: str, table: Any) -> PgConnection:
        """Make an Arrow table (or a pandas frame) queryable as ``name`` until ``unregister``."""
        if not isinstance(table, pa.Table):
            table = pa.table(table) if isinstance(table, dict) else pa.Table.from_pandas(table, preserve_index=False)
        self._drop_materialized(name.lower())
        self._registered[name.lower()] = table
        return self

    def unregister(self, name: str) -> PgConnection:
        self._registered.pop(name.lower(), None)
        self._drop_materialized(name.lower())
        return self

    def close(self) -> None:
        for side in self._attached.values():
            side.close()
        self._attached.clear()
        if not self._pg.closed:
            self._pg.close()

    # -- PostgreSQL-only helpers ------------------------------------------------------------------------------

    def copy_arrow(self, table: str, data: pa.Table, columns: Sequence[str] | None = None) -> int:
        """Append ``data`` to ``table`` with COPY (binary when the rows allow it, else CSV)."""
        if columns is not None:
            data = data.rename_columns(list(columns))
        types = None
        if "." in table and not table.startswith('"'):
            known = dict(self._table_columns(table))
            types = [known.get(c, "") for c in data.column_names]
        with self._pg.cursor() as cur:
            return _pgcopy.copy_in(cur, table, data, types)

    def fetch_arrow(self, sql: str, params: Any = None) -> pa.Table:
        """Run a query and return an Arrow table; scalar results stream through ``COPY ... TO STDOUT``."""
        tr = translate(sql)
        self._materialize({t for t in tr.tables if t in self._registered})
        if len(tr.statements) != 1:
            raise BadInput("a query that returns rows must be one statement")
        bound = self._bind(tr, params)
        with self._pg.cursor() as cur:
            desc = self._describe_pg(cur, tr.statements[0], bound)
            if _pgcopy.scalar_result(desc):
                return _pgcopy.copy_out(cur, tr.statements[0], bound, desc)
            cur.execute(tr.statements[0], bound)
            return _pgcopy.rows_to_arrow(desc, cur.fetchall())

    def migrate(self) -> list[int]:
        """Apply pending schema migrations (idempotent; concurrent callers queue on an advisory lock)."""
        return _pgschema.apply_migrations(self._pg)

    def raw(self) -> Any:
        """The underlying psycopg connection, for code that needs PostgreSQL itself."""
        return self._pg

    @property
    def in_transaction(self) -> bool:
        return self._pg.info.transaction_status != TransactionStatus.IDLE

    # -- internals ---------------------------------------------------------------------------------------------

    def _type_name(self, oid: int) -> str:
        info = self._pg.adapters.types.get(oid)
        return info.name if info else str(oid)

    def _bind(self, tr: Translation, params: Any) -> dict[str, Any] | None:
        if not tr.params:
            if params:
                raise BadInput(f"the statement takes no parameters but {len(params)} were given")
            return None
        if isinstance(params, dict):
            missing = [n for n in tr.params if not re.fullmatch(r"_p\d+", n) and n not in params]
            if missing:
                raise BadInput(f"missing SQL parameter(s): {', '.join(missing)}")
            return {n: _py(params.get(n)) for n in tr.params}
        values = list(params or [])
        if len(values) != tr.positional:
            raise BadInput(f"the statement takes {tr.positional} parameter(s) but {len(values)} were given")
        return {f"_p{i}": _py(v) for i, v in enumerate(values)}

    def _run(self, tr: Translation, params: Any) -> PgResult:
        bound = self._bind(tr, params)
        wrap = len(tr.statements) > 1 and not self.in_transaction  # e.g. drop + create: both or neither
        with self._pg.cursor() as cur:
            if wrap:
                cur.execute("begin")
            try:
                for stmt, takes_params in zip(tr.statements, tr.bound, strict=True):
                    cur.execute(stmt, bound if takes_params else None)
                    if stmt[:6].lower() in ("drop t", "create", "alter "):
                        self._columns.clear()  # a table may have new columns now
                if wrap:
                    cur.execute("commit")
            except BaseException:
                if wrap and not self._pg.closed:
                    self._pg.execute("rollback")
                raise
            if cur.description is None:
                return PgResult(None, [])
            desc = [(d.name, self._type_name(d.type_code), None, None, None, None, None) for d in cur.description]
            return PgResult(desc, cur.fetchall())

    def _describe_pg(self, cur: Any, statement: str, bound: dict | None) -> list[tuple[str, str]]:
        cur.execute(f"select * from ({statement}) as _cm_q limit 0", bound)
        return [(d.name, self._type_name(d.type_code)) for d in cur.description or []]

    def _describe(self, sql: str, params: Any) -> list[tuple[str, str]]:
        tr = translate(sql)
        with self._pg.cursor() as cur:
            return self._describe_pg(cur, tr.statements[0], self._bind(tr, params))

    def _table_columns(self, table: str) -> list[tuple[str, str]]:
        """(name, information_schema type) of ``schema.table``'s columns, in order; cached per connection."""
        if table not in self._columns:
            schema, _, name = table.rpartition(".")
            rows = self._pg.execute(
                """select column_name, data_type from information_schema.columns
                   where table_schema = %s and table_name = %s order by ordinal_position""",
                [schema, name],
            ).fetchall()
            if not rows:
                raise CineMatchError(f"table {table} does not exist in PostgreSQL; run `cinematch init`")
            self._columns[table] = [(r[0], r[1]) for r in rows]
        return self._columns[table]

    def _insert_from_registered(self, tr: Translation, params: Any) -> PgResult:
        """``insert into t select ... from <registered>``: rows built locally, streamed into t with COPY.

        A select of plain columns and constants takes the columns as they are and evaluates each constant once
        (kept as a one-value dictionary column); anything else is evaluated by a private DuckDB.
        """
        bound = self._bind(tr, params)
        local = duckdb.connect()
        try:
            if tr.insert_plan is not None:
                (source,) = tr.insert_source_tables
                data = _project(self._registered[source], tr.insert_plan, local, bound)
            else:
                for name in tr.insert_source_tables:
                    local.register(name, self._registered[name])
                data = local.sql(tr.insert_select or "", params=bound).to_arrow_table()
        finally:
            local.close()
        target = tr.insert_target or ""
        columns = tr.insert_columns or [c for c, _ in self._table_columns(target)]
        self.copy_arrow(target, data, columns)
        return PgResult(None, [])

    def _materialize(self, names: set[str]) -> None:
        for name in sorted(names - self._materialized):
            data = self._registered[name]
            cols = ", ".join(f'"{f.name}" {_pgcopy.pg_type(f.type)}' for f in data.schema)
            self._pg.execute(f'drop table if exists "{name}"')
            self._pg.execute(f'create temp table "{name}" ({cols})')
            self.copy_arrow(f'"{name}"', data)
            self._materialized.add(name)

    def _drop_materialized(self, name: str) -> None:
        if name in self._materialized:
            self._materialized.discard(name)
            if self._pg.info.transaction_status != TransactionStatus.INERROR:
                self._pg.execute(f'drop table if exists "{name}"')

    def _special(self, sql: str, params: Any) -> PgResult | None:
        """ATTACH/DETACH/CHECKPOINT of a DuckDB file and COPY ... TO a file, which PostgreSQL cannot do here."""
        if m := _ATTACH_RE.match(sql):
            side = duckdb.connect()
            side.execute(sql)
            self._attached[m.group(1).lower()] = side
            return PgResult(None, [])
        if (m := _DETACH_RE.match(sql)) and m.group(2).lower() in self._attached:
            alias = m.group(2).lower()
            self._attached[alias].execute(sql)
            if m.group(1).lower() == "detach":
                self._attached.pop(alias).close()
            return PgResult(None, [])
        if m := _COPY_TO_RE.match(sql):
            data = self.fetch_arrow(m["query"], params)
            local = duckdb.connect()
            try:
                local.register("_cm_copy", data)
                local.execute(f"copy (select * from _cm_copy) to '{m['path']}' {m['options'] or ''}")
            finally:
                local.close()
            return PgResult(None, [])
        return None

    def _in_attached(self, alias: str, sql: str, params: Any) -> PgResult:
        """A statement naming the attached DuckDB file; ``create table a.t as q`` reads q from PostgreSQL."""
        side = self._attached[alias]
        tree = sqlglot.parse_one(sql, read="duckdb")
        if isinstance(tree, exp.Create) and isinstance(tree.expression, exp.Query):
            query = tree.expression
            if not any(table_name(t).startswith(alias + ".") for t in query.find_all(exp.Table)):
                side.register("_cm_src", self.fetch_arrow(query.sql(dialect="duckdb"), params))
                try:
                    side.execute(f"create table {tree.this.sql(dialect='duckdb')} as select * from _cm_src")
                finally:
                    side.unregister("_cm_src")
                return PgResult(None, [])
        cur = side.execute(sql, params or None)
        return PgResult(cur.description, cur.fetchall() if cur.description else [])


def _project(source: pa.Table, plan: tuple[tuple[str, str], ...], local: Any, params: dict | None) -> pa.Table:
    """Columns of ``source`` and constants, per ``plan``; DuckDB evaluates the constants (one row) for their types."""
    consts = [expr for kind, expr in plan if kind == "const"]
    one_row = local.sql(f"select {', '.join(consts)}", params=params).to_arrow_table() if consts else None
    arrays: list[pa.ChunkedArray | pa.Array] = []
    k = 0
    zeros = pa.array(np.zeros(source.num_rows, np.int8))
    for kind, name in plan:
        if kind == "star":
            arrays += source.columns
        elif kind == "col":
            arrays.append(source.column(name))
        else:
            value = one_row.column(k).combine_chunks()  # type: ignore[union-attr]
            if value.null_count:
                arrays.append(pa.nulls(source.num_rows, value.type))
            else:
                arrays.append(pa.DictionaryArray.from_arrays(zeros, value))
            k += 1
    return pa.table(arrays, names=[f"c{i}" for i in range(len(arrays))])


# (what libpq says, what we print): the cause of a failed connection, as a fixed phrase
_CONNECT_CAUSES = (
    ("password authentication failed", "password authentication failed"),
    ("no password supplied", "the server asks for a password and none was given"),
    ("pg_hba.conf", "the server does not accept this user from this host (pg_hba.conf)"),
    ("does not exist", "the database or role does not exist"),
    ("connection refused", "connection refused"),
    ("timeout", "connection timed out"),
    ("timed out", "connection timed out"),
    ("could not translate host name", "unknown host name"),
    ("name or service not known", "unknown host name"),
    ("no such file or directory", "no server socket in that directory"),
    ("too many", "the server has too many connections"),
    ("starting up", "the server is starting up"),
    ("shutting down", "the server is shutting down"),
    ("ssl", "SSL negotiation failed"),
)


def connect_failure(exc: Exception) -> str:
    """Why a connection failed, as a fixed phrase (libpq's own text is never passed on: it echoes values)."""
    text = str(exc).lower()
    return next((said for heard, said in _CONNECT_CAUSES if heard in text), f"connection failed ({type(exc).__name__})")


def _py(value: Any) -> Any:
    """numpy scalars → Python values."""
    return value.item() if isinstance(value, np.generic) else value


def schema_version(con: PgConnection) -> int | None:
    """The newest applied migration, or None when the database has no CineMatch schema yet."""
    return _pgschema.schema_version(con.raw())


def application_name(command: str) -> str:
    """What ``pg_stat_activity`` shows for a session: the command, host and pid (names a lock's holder)."""
    return f"cinematch {command} @{socket.gethostname()}:{os.getpid()}"


@contextmanager
def writer_lock(con: PgConnection, command: str, timeout: float) -> Iterator[None]:
    """Serialize writer commands across machines with a session advisory lock; ingestion does not take it.

    PostgreSQL releases the lock when the session ends, also when the process is killed.
    """
    if command.startswith(CONCURRENT_COMMANDS):
        yield
        return
    pg = con.raw()
    deadline = time.monotonic() + timeout
    announced = False
    while not pg.execute("select pg_try_advisory_lock(%s)", [WRITER_LOCK]).fetchall()[0][0]:
        holder = _lock_holder(pg)
        if time.monotonic() >= deadline:
            raise LockBusy(
                f"another cinematch command ({holder}) is writing to this PostgreSQL warehouse; "
                "wait for it to finish and run this again"
            )
        if not announced:
            log_event(log, "waiting_for_lock", holder=holder, where="postgres")
            announced = True
        time.sleep(0.2)
    try:
        yield
    finally:
        if not pg.closed:
            if con.in_transaction:
                pg.execute("rollback")
            pg.execute("select pg_advisory_unlock(%s)", [WRITER_LOCK])


def _lock_holder(pg: Any) -> str:
    rows = pg.execute(
        """select a.application_name, a.client_addr::text from pg_locks l join pg_stat_activity a using (pid)
           where l.locktype = 'advisory' and l.granted and ((l.classid::bigint << 32) | l.objid::bigint) = %s
           limit 1""",
        [WRITER_LOCK],
    ).fetchall()
    if not rows:
        return "unknown"
    return f"{rows[0][0] or 'unknown'} from {rows[0][1] or 'a local socket'}"


def run_readonly(url: str, query: str, limit: int = 1000, timeout_ms: int = 300_000) -> list[dict]:
    """`cinematch sql`: one query in a READ ONLY transaction with a statement timeout.

    DuckDB-dialect text is translated like the library's SQL; text sqlglot cannot parse is sent as written
    (plain PostgreSQL). What the query may read is bounded by the role in CINEMATCH_DATABASE_URL.
    """
    try:
        tr: Translation | None = translate(query)
    except BadInput:
        tr = None
    if tr is not None:
        if len(tr.statements) != 1 or tr.kind != "query":
            raise BadInput("`cinematch sql` runs one read-only SELECT query")
        if tr.params:
            raise BadInput("`cinematch sql` takes no parameters; write the values into the query")
        text = tr.statements[0]
    else:
        text = query.strip().rstrip(";")
    con = PgConnection(url, application_name=application_name("sql"))
    pg = con.raw()
    try:
        if schema_version(con) is None:  # as with DuckDB, the first command creates the warehouse
            con.migrate()
        with pg.transaction():
            pg.execute("set transaction read only")  # first statement: it cannot be undone inside the transaction
            pg.execute(f"set local statement_timeout = {int(timeout_ms)}")
            cur = pg.execute(f"select * from ({text}) as _cm_q" + (f" limit {int(limit)}" if limit else ""))
            cols = [d.name for d in cur.description or []]
            rows = cur.fetchall()
    except psycopg.Error as exc:
        first = redact(" ".join(str(exc).split()))[:240]
        if "read-only" in first.lower():
            raise BadInput(f"refused: the warehouse is read-only here ({first})") from None
        raise BadInput(f"query failed: {first}") from None
    finally:
        con.close()
    return [dict(zip(cols, r, strict=True)) for r in rows]


__all__ = [
    "MIGRATIONS",
    "PgConnection",
    "PgRelation",
    "PgResult",
    "application_name",
    "run_readonly",
    "schema_version",
    "translate",
    "writer_lock",
]
