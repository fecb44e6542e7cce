"""Per-layer retention (bronze 90 days, silver 2 years, gold 5 years by default), applied only on request."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cinematch.core.log import get_logger, log_event
from cinematch.core.results import Result
from cinematch.core.settings import Settings
from cinematch.storage.audit import record_run, utcnow
from cinematch.storage.protocol import Warehouse

log = get_logger(__name__)


def _rules(settings: Settings, now: datetime, newest: datetime | None) -> list[tuple[str, str, str, datetime]]:
    """(layer, table, predicate, cutoff) for every table retention applies to.

    Bronze ages by ingestion time (wall clock) and only rows silver already holds are removed, so nothing
    unprocessed is lost. Silver and gold age by rating time relative to the newest rating, since datasets
    such as MovieLens are historical and a wall-clock rule would empty them.
    """
    bronze_cut = now - timedelta(days=settings.retention_bronze_days)
    rules = [
        ("bronze", "bronze.ratings_buffer",
         "ingested_at < $cutoff and batch_id in (select batch_id from silver.processed_batches)", bronze_cut),
        ("bronze", "bronze.quarantine", "quarantined_at < $cutoff", bronze_cut),
    ]  # fmt: skip
    if newest is not None:
        silver_cut = newest - timedelta(days=settings.retention_silver_days)
        gold_cut = newest - timedelta(days=settings.retention_gold_days)
        rules += [
            ("silver", "silver.ratings", "rated_at < $cutoff", silver_cut),
            ("gold", "gold.genre_analytics", "make_date(year, month, 1) < cast($cutoff as date)", gold_cut),
            ("gold", "gold.temporal_trends", "year < year($cutoff)", gold_cut),
        ]
    return rules


@dataclass(eq=False)
class RetentionRun(Result):
    """Rows past each layer's retention: counted (``dry_run``) or deleted, per table."""

    dry_run: bool
    tables: list[dict[str, Any]]
    deleted: int


def apply_retention(con: Warehouse, settings: Settings, dry_run: bool = True) -> RetentionRun:
    """Count (dry run) or delete the rows past each layer's retention, in one transaction."""
    started = utcnow()
    tables = {r[0] for r in con.execute("select table_schema || '.' || table_name from information_schema.tables")
              .fetchall()}  # fmt: skip
    newest = con.execute("select max(rated_at) from silver.ratings").fetchall()[0][0] if "silver.ratings" in tables \
        else None  # fmt: skip
    out = []
    con.execute("begin transaction")
    try:
        for layer, table, predicate, cutoff in _rules(settings, started, newest):
            if table not in tables:
                continue
            n = con.execute(f"select count(*) from {table} where {predicate}", {"cutoff": cutoff}).fetchall()[0][0]
            if n and not dry_run:
                con.execute(f"delete from {table} where {predicate}", {"cutoff": cutoff})
            out.append({"layer": layer, "table": table, "cutoff": cutoff, "rows": n})
        if not dry_run:
            record_run(con, "retention", "apply", started, "completed", sum(r["rows"] for r in out), {"tables": out})
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    log_event(log, "retention", dry_run=dry_run, rows=sum(r["rows"] for r in out))
    return RetentionRun(dry_run=dry_run, tables=out, deleted=0 if dry_run else sum(r["rows"] for r in out))
