"""Reads of the warehouse's durable records (audit rows, ETL steps, registry status, drift reports, merges).

The pipelines' tasks and end-of-run checks read these by key; the SQL lives here, next to the catalogue that
defines the tables, so no layer above storage writes warehouse SQL for them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cinematch.storage.protocol import Warehouse
from cinematch.storage.warehouse import query_rows

# the bronze table a batch kind lands in (ratings go to the buffer; movies, users, ... to their own table)
_BRONZE_TABLE = {"ratings": "bronze.ratings_buffer"}

DRIFT_REPORT_COLUMNS = (
    "report_id", "decision", "should_retrain", "score", "kl_divergence", "mean_shift", "median_shift",
    "n_current", "model_version",
)  # fmt: skip


@dataclass(frozen=True)
class BatchAudit:
    """A batch's audit row (``bronze.ingestion_metadata``) beside the rows its bronze table really holds."""

    status: str
    record_count: int
    rows_in_table: int

    def as_tuple(self) -> tuple[str, int, int]:
        return (self.status, self.record_count, self.rows_in_table)


@dataclass(frozen=True)
class StepRecord:
    """One ``ops.pipeline_runs`` row of a run: its status, row count and decoded details."""

    status: str
    rows: int | None
    details: dict[str, Any]


def json_column(value: Any) -> dict[str, Any]:
    """A JSON column as a dict (DuckDB returns text, PostgreSQL already decoded)."""
    return value if isinstance(value, dict) else json.loads(value or "{}")


def bronze_table(kind: str) -> str:
    """The bronze table that holds the rows of a batch of ``kind``."""
    if kind in _BRONZE_TABLE:
        return _BRONZE_TABLE[kind]
    if kind.isidentifier():  # a kind is a fixed word from the ingest step, never user text
        return f"bronze.{kind}"
    raise ValueError(f"not a batch kind: {kind!r}")


def batch_audit(con: Warehouse, batch_id: str, kind: str) -> BatchAudit | None:
    """The audit row of ``batch_id`` and the count of its rows in its bronze table (None without an audit row)."""
    rows = con.execute(
        f"""select m.status, m.record_count, (select count(*) from {bronze_table(kind)} where batch_id = m.batch_id)
            from bronze.ingestion_metadata m where m.batch_id = ?""",
        [batch_id],
    ).fetchall()
    return BatchAudit(*rows[0]) if rows else None


def etl_steps(con: Warehouse, run_id: str) -> dict[str, StepRecord]:
    """The ``ops.pipeline_runs`` rows of one ETL run, by step (bronze, silver, gold)."""
    rows = con.execute(
        "select step, status, rows, details from ops.pipeline_runs where pipeline = 'etl' and run_id = ?", [run_id]
    ).fetchall()
    return {step: StepRecord(status, n, json_column(details)) for step, status, n, details in rows}


def model_status(con: Warehouse, version: str) -> str | None:
    """A model version's registry status (champion, retired, rejected, ...), None when it is not registered."""
    rows = con.execute("select status from ops.model_registry where version = ?", [version]).fetchall()
    return str(rows[0][0]) if rows else None


def drift_report(con: Warehouse, report_id: str) -> dict[str, Any] | None:
    """A stored drift report's decision and scores (``DRIFT_REPORT_COLUMNS``), None when it is not stored."""
    rows = query_rows(
        con, f"select {', '.join(DRIFT_REPORT_COLUMNS)} from ops.drift_reports where report_id = ?", [report_id]
    )
    return rows[0] if rows else None


def merged_batches(con: Warehouse) -> dict[str, str]:
    """Every batch merged into the training set, with the model version it was merged into."""
    return dict(con.execute("select batch_id, model_version from ops.training_batches").fetchall())


def newest_buffer_ratings(con: Warehouse, n: int) -> list[tuple[Any, ...]]:
    """The ``n`` newest ratings in the buffer as ``(user_id, movie_id, date)``, newest first, ties by ids."""
    return con.execute(
        """select user_id, movie_id, cast(rated_at as date) from bronze.ratings_buffer
           order by rated_at desc, user_id, movie_id limit ?""",
        [int(n)],
    ).fetchall()
