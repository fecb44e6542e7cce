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

import contextlib
import re
from collections.abc import Sequence
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import sqlglot
from sqlglot import exp

from cinematch.core.errors import BadInput, CineMatchError
from cinematch.storage import pg_copy as _pgcopy
from cinematch.storage import pg_migrations as _pgschema
from cinematch.storage.pg_connect import open_session
from cinematch.storage.pg_dialect import Translation, table_name, translate
from cinematch.storage.pg_results import PgRelation, PgResult

with contextlib.suppress(ImportError):  # the `postgres` extra is optional; open_session explains how to install it
    from psycopg.pq import TransactionStatus

__all__ = ["PgConnection", "schema_version"]


_ATTACH_RE = re.compile(r"^\s*attach\s+'(?:[^']|'')*'\s+as\s+([A-Za-z_][A-Za-z0-9_]*)\s*;?\s*$", re.I | re.S)
_DETACH_RE = re.compile(r"^\s*(detach|checkpoint)\s+([A-Za-z_][A-Za-z0-9_]*)\s*;?\s*$", re.I)
_COPY_TO_RE = re.compile(r"^\s*copy\s+\((?P<query>.*)\)\s+to\s+'(?P<path>(?:[^']|'')*)'\s*(?P<options>\(.*\))?\s*;?\s*$",
                         re.I | re.S)  # fmt: skip


class PgConnection:
    """A PostgreSQL connection with the part of the ``DuckDBPyConnection`` API the library uses (a ``Warehouse``)."""

    def __init__(self, url: str, read_only: bool = False, application_name: str = "cinematch") -> None:
        self._pg = open_session(url, read_only, application_name)
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

    def sql(self, sql: str, params: Any = None) -> PgRelation:
        """A lazy relation for queries; other statements run at once and give a relation of no rows."""
        if any(r.match(sql) for r in (_COPY_TO_RE, _ATTACH_RE, _DETACH_RE)) or translate(sql).kind != "query":
            self.execute(sql, params)
            return PgRelation(self, "select 0 as changed where false")
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
            known = dict(self.table_columns(table))
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
        return bool(self._pg.info.transaction_status != TransactionStatus.IDLE)

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

    def _describe_pg(self, cur: Any, statement: str, bound: dict[str, Any] | None) -> list[tuple[str, str]]:
        cur.execute(f"select * from ({statement}) as _cm_q limit 0", bound)
        return [(d.name, self._type_name(d.type_code)) for d in cur.description or []]

    def describe(self, sql: str, params: Any) -> list[tuple[str, str]]:
        tr = translate(sql)
        with self._pg.cursor() as cur:
            return self._describe_pg(cur, tr.statements[0], self._bind(tr, params))

    def table_columns(self, table: str) -> list[tuple[str, str]]:
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
        columns = tr.insert_columns or [c for c, _ in self.table_columns(target)]
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


def _project(
    source: pa.Table, plan: tuple[tuple[str, str], ...], local: Any, params: dict[str, Any] | None
) -> pa.Table:
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


def _py(value: Any) -> Any:
    """numpy scalars → Python values."""
    return value.item() if isinstance(value, np.generic) else value


def schema_version(con: PgConnection) -> int | None:
    """The newest applied migration, or None when the database has no CineMatch schema yet."""
    return _pgschema.schema_version(con.raw())
