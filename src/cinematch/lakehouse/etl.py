"""`cinematch etl`: bronze → silver → gold, each layer in its own transaction behind a quality gate."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import Any

import duckdb

from cinematch.core.errors import QualityGateFailed
from cinematch.core.log import get_logger, log_event
from cinematch.core.results import Result, optional
from cinematch.core.settings import Settings
from cinematch.lakehouse import gold as gold_layer
from cinematch.lakehouse import gold_checks
from cinematch.lakehouse import sources as extras
from cinematch.lakehouse.quality import CheckResult, describe_failure, failures, run_checks
from cinematch.lakehouse.silver import BRONZE_CHECKS, SILVER_CHECKS, build_silver
from cinematch.storage import lake
from cinematch.storage.audit import new_run_id, record_run, utcnow
from cinematch.storage.warehouse import table_exists

log = get_logger(__name__)

SILVER_TABLES = ("silver.ratings", "silver.movies")


@dataclass(eq=False)
class EtlRun(Result):
    """One `cinematch etl` run: per-layer counts and every check's result (``layers``), and what it did."""

    run_id: str
    full_refresh: bool
    layers: dict[str, dict[str, Any]]
    new_batches: list[str]
    placeholders: int
    up_to_date: bool
    status: str
    as_of: datetime | None = optional()  # the logical date gold was built for (absent when gold was skipped)
    lake: dict[str, str] | None = optional()  # lake table -> the version written
    lake_seconds: float | None = optional()
    engine: str | None = optional()  # "spark" when the Spark engine computed silver and gold
    spark_seconds: float | None = optional()
    spark_write_seconds: dict[str, float] | None = optional()


def logical_end(day: date) -> datetime:
    """The last instant of a logical date: gold "as of" a day includes that whole day."""
    return datetime.combine(day + timedelta(days=1), dtime()) - timedelta(microseconds=1)


def gold_exists(con: duckdb.DuckDBPyConnection) -> bool:
    return table_exists(con, "gold", "movie_kpis")


def _partitions(con: duckdb.DuckDBPyConnection, relation: str, params: list[str] | None = None) -> set[tuple[int, int]]:
    """The (year, month) partitions of silver.ratings that the rows of ``relation`` fall in."""
    rows = con.execute(f"select distinct year(rated_at), month(rated_at) from {relation}", params).fetchall()
    return {(int(y), int(m)) for y, m in rows}


def _changed_partitions(con: duckdb.DuckDBPyConnection, batch_ids: list[str]) -> set[tuple[int, int]]:
    """(year, month) partitions of silver.ratings that this run's batches touched.

    A replaced rating shares its key, rated_at included, with its replacement: same partition.
    """
    if not batch_ids:
        return set()
    marks = ", ".join("?" for _ in batch_ids)
    return _partitions(con, f"silver.ratings where batch_id in ({marks})", batch_ids)


# when the last gold build finished (the epoch before the first)
_LAST_GOLD = """coalesce((select max(finished_at) from ops.pipeline_runs
                          where pipeline = 'etl' and step = 'gold' and status = 'completed'),
                         timestamp '1970-01-01')"""


def _retention_since_gold(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether retention deleted rows after the last gold build: gold's stored sums then count ratings that
    silver no longer has, so gold is rebuilt whole rather than merged."""
    rows = con.execute(
        f"""select count(*) from ops.pipeline_runs where pipeline = 'retention' and status = 'completed' and rows > 0
            and finished_at > {_LAST_GOLD}"""
    ).fetchall()
    return bool(rows[0][0] > 0)


def _last_gold_run(con: duckdb.DuckDBPyConnection) -> str | None:
    rows = con.execute(
        """select run_id from ops.pipeline_runs where pipeline = 'etl' and step = 'gold' and status = 'completed'
           order by finished_at desc limit 1"""
    ).fetchall()
    return rows[0][0] if rows else None


def _gold_behind_silver(con: duckdb.DuckDBPyConnection, run_id: str) -> bool:
    """Whether an earlier silver run brought batches that no later gold run has seen (a kill between the commits)."""
    rows = con.execute(
        f"""select details from ops.pipeline_runs where pipeline = 'etl' and step = 'silver' and status = 'completed'
            and run_id <> ? and finished_at > {_LAST_GOLD}""",
        [run_id],
    ).fetchall()
    return any((json.loads(d) if isinstance(d, str) else d or {}).get("batches") for (d,) in rows)


def _write_lake(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    changed: set[tuple[int, int]] | None,
    gold_run: str,
    append_batches: list[str] | None = None,
) -> dict[str, str]:
    """Write every lake table, then mark it in sync.

    silver.ratings: only the ``changed`` partitions are rewritten when given, and the rows of
    ``append_batches`` are added to the others as new files (lake.write_table).
    """
    tables = [*SILVER_TABLES, *(f"gold.{m}" for m in gold_layer.GOLD_MODELS), *extras.lake_tables()]
    written = {}
    for t in tables:
        ratings = t == "silver.ratings"
        path = lake.write_table(
            con, t, settings.lake_dir, changed if ratings else None, append_batches if ratings else None
        )
        written[t] = str(path)
    lake.mark_synced(settings.lake_dir, gold_run)
    return written


def _scoped_batches(pending: list[dict[str, Any]], full_refresh: bool, as_of: datetime | None) -> list[str] | None:
    """The new ratings batches when gold may be rebuilt by affected keys only, else None (rebuild whole).

    New movies change genres of old ratings, and a logical date moves every window: both rebuild whole.
    """
    if full_refresh or as_of is not None or any(b["kind"] == "movies" for b in pending):
        return None
    return [b["batch_id"] for b in pending if b["kind"] == "ratings"]


def gate(
    con: duckdb.DuckDBPyConnection, layer: str, results: list[CheckResult], run: dict[str, Any], started: datetime
) -> None:
    """Stop the run when a check fails: roll back the layer and record why."""
    failed = failures(results)
    if not failed:
        return
    con.execute("rollback")
    message = describe_failure(failed[0])
    record_run(
        con, "etl", layer, started, "failed", None,
        {"checks": [r.to_dict() for r in results], "error": message}, run["run_id"],
    )  # fmt: skip
    log_event(log, "quality_gate_failed", layer=layer, check=failed[0].check.name)
    raise QualityGateFailed(message + f"; the {layer} layer was rolled back, fix the input and rerun `cinematch etl`")


def run_etl(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    full_refresh: bool = False,
    as_of: datetime | None = None,
    write_lake: bool = True,
) -> EtlRun:
    """Bring silver and gold up to date and return per-layer counts and every check's result.

    Rerunning with nothing new changes nothing. ``as_of`` pins gold to a logical date (backfills). This is the
    in-process (DuckDB/PostgreSQL) computation; the pipelines hand the run to the Spark engine when configured.
    """
    run: dict[str, Any] = {"run_id": new_run_id(), "full_refresh": full_refresh, "layers": {}}
    tol = settings.soft_check_tolerance

    started = utcnow()
    bronze_results = run_checks(con, BRONZE_CHECKS, tol)
    run["layers"]["bronze"] = {"checks": [r.to_dict() for r in bronze_results]}
    con.execute("begin transaction")
    gate(con, "bronze", bronze_results, run, started)
    con.execute("commit")

    started, t0 = utcnow(), time.perf_counter()
    con.execute("begin transaction")
    silver = build_silver(con, full_refresh=full_refresh)
    pending = silver.pop("pending")
    replaced = silver.pop("replaced")
    # lake partitions holding a replaced rating are rewritten; new ratings elsewhere are appended as new files
    rewrite = _partitions(con, "_silver_replaced") if replaced else None
    extra_rows, extra_changed = extras.build_silver(con, pending, full_refresh)
    silver["rows"].update(extra_rows)
    # incremental runs check the new batches' rows (unchanged rows passed before); full refreshes check all
    checked = None if full_refresh else [b["batch_id"] for b in pending if b["kind"] == "ratings"]
    silver_results = run_checks(con, (*SILVER_CHECKS, *extras.silver_checks()), tol, new_batches=checked)
    gate(con, "silver", silver_results, run, started)
    silver_info = {**silver, "seconds": round(time.perf_counter() - t0, 3),
                   "checks": [r.to_dict() for r in silver_results]}  # fmt: skip
    record_run(con, "etl", "silver", started, "completed", silver["rows"]["ratings"], silver_info, run["run_id"])
    con.execute("commit")
    run["layers"]["silver"] = silver_info
    run["new_batches"] = silver["batches"]
    run["placeholders"] = silver["rows"]["placeholders"]

    # a run killed after its silver commit left gold (or the lake) behind silver: catch up even with nothing new
    last_gold = _last_gold_run(con)
    lake_behind = write_lake and lake.synced_run(settings.lake_dir) != last_gold
    # then gold and the lake are rebuilt whole, not by the new batches
    gold_behind = _gold_behind_silver(con, run["run_id"])
    changed = (
        bool(silver["batches"]) or extra_changed or full_refresh or as_of is not None
        or not gold_exists(con) or gold_behind
    )  # fmt: skip
    if not changed:
        run["layers"]["gold"] = {"skipped": True, "reason": "no new batches since the last run"}
        if lake_behind and last_gold is not None:
            run["lake"] = _write_lake(con, settings, None, last_gold)
        run["up_to_date"] = True
        run["status"] = "completed"
        return EtlRun(**run)

    started, t0 = utcnow(), time.perf_counter()
    con.execute("begin transaction")
    scoped = None if gold_behind or _retention_since_gold(con) else _scoped_batches(pending, full_refresh, as_of)
    gold_rows = gold_layer.build_gold(con, as_of=as_of, new_batches=scoped, replaced=replaced)
    gold_rows.update(extras.build_gold(con, as_of))
    gold_results = run_checks(con, (*gold_checks.GOLD_CHECKS, *extras.gold_checks()), tol)
    gate(con, "gold", gold_results, run, started)
    resolved = con.execute("select max(as_of) from gold.movie_kpis").fetchall()[0][0]
    gold_info = {"rows": gold_rows, "as_of": resolved, "seconds": round(time.perf_counter() - t0, 3),
                 "checks": [r.to_dict() for r in gold_results]}  # fmt: skip
    record_run(con, "etl", "gold", started, "completed", sum(gold_rows.values()), gold_info, run["run_id"])
    con.execute("commit")
    run["layers"]["gold"] = gold_info
    run["as_of"] = resolved

    if write_lake:
        t0 = time.perf_counter()
        whole = full_refresh or lake_behind or gold_behind
        append = None if whole or rewrite is None else silver["batches"]
        partitions = None if whole else rewrite if append else _changed_partitions(con, silver["batches"])
        run["lake"] = _write_lake(con, settings, partitions, run["run_id"], append)
        run["lake_seconds"] = round(time.perf_counter() - t0, 3)
    run["up_to_date"] = False
    run["status"] = "completed"
    return EtlRun(**run)
