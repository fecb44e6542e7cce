"""The rows of ``ops.replay_periods`` and the warehouse reads a replay resumes from after a kill."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cinematch.storage.audit import utcnow
from cinematch.storage.protocol import Warehouse
from cinematch.storage.warehouse import query_rows

TABLE = "ops.replay_periods"


@dataclass(frozen=True)
class RowKey:
    """One period of one policy of one replay; bounds in UTC."""

    replay_id: str
    policy: str
    period: int
    start: datetime
    end: datetime


def get(con: Warehouse, key: RowKey) -> dict[str, Any] | None:
    """The stored row of ``key`` (None before its period was scored)."""
    rows = query_rows(con, f"select * from {TABLE} where replay_id = ? and policy = ? and period = ?",
                      [key.replay_id, key.policy, key.period])  # fmt: skip
    return rows[0] if rows else None


def columns(con: Warehouse) -> list[str]:
    """The table's columns, in order (from the warehouse, so they follow the catalogue)."""
    return [d[0] for d in con.execute(f"select * from {TABLE} limit 0").description or ()]


def _record(cols: list[str], row: dict[str, Any], now: datetime) -> list[Any]:
    """``row``'s values in the order of ``cols`` (missing ones None), stamped ``recorded_at``."""
    values = {**dict.fromkeys(cols), **{k: v for k, v in row.items() if k in cols}, "recorded_at": now}
    return [values[c] for c in cols]


def _insert(cols: list[str]) -> str:
    return f"insert into {TABLE} ({', '.join(cols)}) values ({', '.join('?' for _ in cols)})"


def put(con: Warehouse, row: dict[str, Any]) -> None:
    """Insert or replace one row (keyed by replay, policy and period) in one transaction."""
    cols = columns(con)
    con.execute("begin transaction")
    try:
        con.execute(f"delete from {TABLE} where replay_id = ? and policy = ? and period = ?",
                    [row["replay_id"], row["policy"], row["period"]])  # fmt: skip
        con.execute(_insert(cols), _record(cols, row, utcnow()))
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def put_many(con: Warehouse, rows: list[dict[str, Any]]) -> None:
    """Replace the rows of one replay's policies with ``rows`` (the copy kept in the user's warehouse), at once."""
    if not rows:
        return
    cols = columns(con)
    now = utcnow()
    con.execute("begin transaction")
    try:
        for key in {(row["replay_id"], row["policy"]) for row in rows}:
            con.execute(f"delete from {TABLE} where replay_id = ? and policy = ?", list(key))
        con.executemany(_insert(cols), [_record(cols, row, now) for row in rows])
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise


def rows_of(con: Warehouse, replay_id: str) -> list[dict[str, Any]]:
    return query_rows(con, f"select * from {TABLE} where replay_id = ? order by policy, period", [replay_id])


def latest_replay(con: Warehouse) -> list[dict[str, Any]]:
    """Every row of the replay recorded last (empty before the first replay)."""
    return query_rows(
        con,
        f"""select * from {TABLE} where replay_id = (select replay_id from {TABLE} order by recorded_at desc limit 1)
            order by policy, period""",
    )


def drift_report_with(con: Warehouse, batch_id: str) -> dict[str, Any] | None:
    """The newest drift report whose checked batches include ``batch_id`` (the first made after it landed).

    Replay homes are DuckDB files, so the JSON list is searched with DuckDB's functions.
    """
    rows = query_rows(
        con,
        """select * from ops.drift_reports where list_contains(from_json(batch_ids, '["VARCHAR"]'), ?)
           order by checked_at desc, report_id desc limit 1""",
        [batch_id],
    )
    if not rows:
        return None
    return {**rows[0], "batch_ids": json.loads(rows[0]["batch_ids"])}
