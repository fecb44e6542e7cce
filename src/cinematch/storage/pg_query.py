"""`cinematch sql` on PostgreSQL: one query in a READ ONLY transaction with a statement timeout."""

from __future__ import annotations

import contextlib
from typing import Any

from cinematch.core.errors import BadInput
from cinematch.core.secrets import redact
from cinematch.storage.pg_connect import application_name
from cinematch.storage.pg_dialect import Translation, translate
from cinematch.storage.postgres import PgConnection, schema_version

with contextlib.suppress(ImportError):  # the `postgres` extra is optional; PgConnection explains how to install it
    import psycopg

__all__ = ["run_readonly"]


def run_readonly(url: str, query: str, limit: int = 1000, timeout_ms: int = 300_000) -> list[dict[str, Any]]:
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
