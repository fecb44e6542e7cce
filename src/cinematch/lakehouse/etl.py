"""`cinematch etl`: bronze → silver → gold, each layer in its own transaction behind a quality gate.

This is the one flow of a run, whatever computes it: the bronze checks and gate, the detection of new batches,
the silver and gold transactions with their gates and ``ops.pipeline_runs`` rows, the up-to-date decision and the
result document (``EtlRun``). The layers themselves are built by a ``LakehouseCompute`` (lakehouse/compute.py):
the warehouse in process by default, Spark when ``pipelines/engine.py`` hands one in.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import Any

from cinematch.core.errors import QualityGateFailed
from cinematch.core.log import get_logger, log_event
from cinematch.core.results import Result, optional
from cinematch.core.settings import Settings
from cinematch.lakehouse import gold_checks, silver
from cinematch.lakehouse import sources as extras
from cinematch.lakehouse.compute import LAST_GOLD, EtlScope, InProcessCompute, LakehouseCompute
from cinematch.lakehouse.quality import CheckResult, describe_failure, failures, run_checks
from cinematch.storage.audit import new_run_id, record_run, utcnow
from cinematch.storage.protocol import Warehouse
from cinematch.storage.warehouse import table_exists

log = get_logger(__name__)

UP_TO_DATE = {"skipped": True, "reason": "no new batches since the last run"}


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


def gold_exists(con: Warehouse) -> bool:
    return table_exists(con, "gold", "movie_kpis")


def _last_gold_run(con: Warehouse) -> str | None:
    rows = con.execute(
        """select run_id from ops.pipeline_runs where pipeline = 'etl' and step = 'gold' and status = 'completed'
           order by finished_at desc limit 1"""
    ).fetchall()
    return rows[0][0] if rows else None


def _gold_behind_silver(con: Warehouse, run_id: str) -> bool:
    """Whether an earlier silver run brought batches that no later gold run has seen (a kill between the commits)."""
    rows = con.execute(
        f"""select details from ops.pipeline_runs where pipeline = 'etl' and step = 'silver' and status = 'completed'
            and run_id <> ? and finished_at > {LAST_GOLD}""",
        [run_id],
    ).fetchall()
    return any((json.loads(d) if isinstance(d, str) else d or {}).get("batches") for (d,) in rows)


def gate(con: Warehouse, layer: str, results: list[CheckResult], run: dict[str, Any], started: datetime) -> None:
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


@contextlib.contextmanager
def _transaction(con: Warehouse) -> Iterator[None]:
    """One layer's transaction: committed when the block ends, rolled back when anything in it fails."""
    con.execute("begin transaction")
    try:
        yield
    except QualityGateFailed:
        raise  # the gate rolled back already (before recording the failure)
    except BaseException:
        with contextlib.suppress(Exception):  # the original failure is the one to report
            con.execute("rollback")
        raise
    con.execute("commit")


def _gold_due(
    con: Warehouse,
    batches: list[Any],
    full_refresh: bool,
    as_of: datetime | None,
    extra_changed: bool = False,
    gold_behind: bool = False,
) -> bool:
    """Whether gold must be built: something new, a full refresh, a logical date, or no gold yet."""
    return bool(batches) or extra_changed or full_refresh or as_of is not None or not gold_exists(con) or gold_behind


def run_etl(
    con: Warehouse,
    settings: Settings,
    full_refresh: bool = False,
    as_of: datetime | None = None,
    write_lake: bool = True,
    compute: LakehouseCompute | None = None,
) -> EtlRun:
    """Bring silver and gold up to date and return per-layer counts and every check's result.

    Rerunning with nothing new changes nothing. ``as_of`` pins gold to a logical date (backfills). ``compute``
    builds the layers: the warehouse in process when None (one instance per run; the pipelines pass Spark's
    when configured).
    """
    compute = compute if compute is not None else InProcessCompute()
    run: dict[str, Any] = {"run_id": new_run_id(), "full_refresh": full_refresh, "layers": {}}
    tol = settings.soft_check_tolerance
    as_of = compute.logical_date(as_of)

    started = utcnow()
    bronze_results = run_checks(con, silver.BRONZE_CHECKS, tol)
    run["layers"]["bronze"] = {"checks": [r.to_dict() for r in bronze_results]}
    con.execute("begin transaction")
    gate(con, "bronze", bronze_results, run, started)
    con.execute("commit")

    batches = silver.new_batches(con)
    scope = EtlScope(settings, run["run_id"], full_refresh, as_of, write_lake, batches)
    if compute.skips_unchanged_silver and not _gold_due(con, batches, full_refresh, as_of):
        _recheck_silver(con, settings, run, compute)
        return _finish(con, run, compute, scope, gold_built=False)

    try:
        compute.prepare(con, scope)
        started, t0 = utcnow(), time.perf_counter()
        with _transaction(con):
            built = compute.build_silver(con, scope)
            extra_rows, extra_changed = extras.build_silver(con, built.batches, full_refresh)
            rows = {**built.rows, **extra_rows}
            checks = (*silver.SILVER_CHECKS, *extras.silver_checks())
            silver_results = run_checks(con, checks, tol, new_batches=built.checked)
            gate(con, "silver", silver_results, run, started)
            batch_ids = [b["batch_id"] for b in built.batches]
            silver_info = compute.layer_info("silver", {
                "rows": rows, "merged": built.merged, "batches": batch_ids,
                "seconds": round(time.perf_counter() - t0, 3), "checks": [r.to_dict() for r in silver_results],
            })  # fmt: skip
            record_run(con, "etl", "silver", started, "completed", rows["ratings"], silver_info, run["run_id"])
        compute.publish("silver")
        run["layers"]["silver"] = silver_info
        run["new_batches"] = batch_ids
        run["placeholders"] = rows["placeholders"]

        # a run killed after its silver commit left gold behind silver: catch up even with nothing new
        scope.last_gold = _last_gold_run(con)
        scope.gold_behind = _gold_behind_silver(con, run["run_id"])
        if not _gold_due(con, batch_ids, full_refresh, as_of, extra_changed, scope.gold_behind):
            run["layers"]["gold"] = dict(UP_TO_DATE)
            return _finish(con, run, compute, scope, gold_built=False)

        started, t0 = utcnow(), time.perf_counter()
        with _transaction(con):
            gold_rows = compute.build_gold(con, scope)
            gold_rows.update(extras.build_gold(con, as_of))
            gold_results = run_checks(con, (*gold_checks.GOLD_CHECKS, *extras.gold_checks()), tol)
            gate(con, "gold", gold_results, run, started)
            resolved = con.execute("select max(as_of) from gold.movie_kpis").fetchall()[0][0]
            gold_info = compute.layer_info("gold", {
                "rows": gold_rows, "as_of": resolved, "seconds": round(time.perf_counter() - t0, 3),
                "checks": [r.to_dict() for r in gold_results],
            })  # fmt: skip
            record_run(con, "etl", "gold", started, "completed", sum(gold_rows.values()), gold_info, run["run_id"])
        compute.publish("gold")
    except BaseException:
        compute.discard()  # a failed layer rolled back: what the compute wrote for it must not show either
        raise
    run["layers"]["gold"] = gold_info
    run["as_of"] = resolved
    return _finish(con, run, compute, scope, gold_built=True)


def _recheck_silver(con: Warehouse, settings: Settings, run: dict[str, Any], compute: LakehouseCompute) -> None:
    """Nothing new, and the compute does not rebuild silver then: check the warehouse's silver as it stands."""
    started, t0 = utcnow(), time.perf_counter()
    with _transaction(con):
        results = run_checks(con, silver.SILVER_CHECKS, settings.soft_check_tolerance)
        gate(con, "silver", results, run, started)
        counts = silver.silver_counts(con)
        info = compute.layer_info("silver", {
            "rows": counts, "merged": 0, "batches": [], "seconds": round(time.perf_counter() - t0, 3),
            "checks": [r.to_dict() for r in results],
        })  # fmt: skip
        record_run(con, "etl", "silver", started, "completed", counts["ratings"], info, run["run_id"])
    run["layers"]["silver"] = info
    run["new_batches"] = []
    run["placeholders"] = counts["placeholders"]
    run["layers"]["gold"] = dict(UP_TO_DATE)


def _finish(
    con: Warehouse, run: dict[str, Any], compute: LakehouseCompute, scope: EtlScope, gold_built: bool
) -> EtlRun:
    run.update(compute.finish(con, scope, gold_built))
    run["up_to_date"] = not gold_built
    run["status"] = "completed"
    return EtlRun(**run)
