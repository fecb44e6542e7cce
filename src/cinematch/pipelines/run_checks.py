"""End-of-run checks of a DAG run: this run's durable records (audit, registry, drift reports) against its references."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from cinematch.core.log import get_logger, log_event

if TYPE_CHECKING:
    import duckdb

from cinematch.pipelines.task_io import json_column, json_ref, task_session

log = get_logger(__name__)


def _check(checks: list[dict[str, Any]], name: str, passed: bool, detail: Any = None) -> None:
    checks.append({"check": name, "passed": bool(passed), "detail": detail})


def _validate_ingest(con: duckdb.DuckDBPyConnection, ref: dict[str, Any], checks: list[dict[str, Any]]) -> None:
    for r in ref["rejected"]:
        _check(checks, "ingest.no_rejected_files", False, f"{r['file']}: {r['error']}")
    for b in ref["loaded"]:
        table = "bronze.ratings_buffer" if b["kind"] == "ratings" else f"bronze.{b['kind']}"  # movies, users, ...
        rows = con.execute(
            f"""select m.status, m.record_count, (select count(*) from {table} where batch_id = m.batch_id)
                from bronze.ingestion_metadata m where m.batch_id = ?""",
            [b["batch_id"]],
        ).fetchall()
        ok = bool(rows) and rows[0][0] == "completed" and rows[0][1] == rows[0][2] == b["inserted"]
        _check(checks, f"ingest.{b['batch_id']}.rows_match_audit", ok, rows[0] if rows else "no audit row")


def _validate_etl(con: duckdb.DuckDBPyConnection, ref: dict[str, Any], checks: list[dict[str, Any]]) -> None:
    """Read this run's own audit rows: gold is one shared table that a concurrent run may already have rebuilt."""
    _check(checks, "etl.completed", ref["status"] == "completed", ref["status"])
    _check(checks, "etl.quality_checks_passed", not ref["checks_failed"], ref["checks_failed"] or ref["checks_run"])
    steps = {step: (status, rows, json_column(details)) for step, status, rows, details in con.execute(
        "select step, status, rows, details from ops.pipeline_runs where pipeline = 'etl' and run_id = ?",
        [ref["run_id"]]).fetchall()}  # fmt: skip
    silver = steps.get("silver")
    _check(checks, "etl.silver_recorded", silver is not None and silver[0] == "completed" and silver[1] > 0,
           silver[:2] if silver else "no ops.pipeline_runs row")  # fmt: skip
    if ref["gold_rows"] is not None:
        gold = steps.get("gold")
        recorded = gold[2].get("rows") if gold else None
        _check(checks, "etl.gold_recorded", gold is not None and gold[0] == "completed" and recorded == ref["gold_rows"],
               recorded or "no ops.pipeline_runs row")  # fmt: skip
        _check(checks, "etl.gold.movie_kpis_not_empty", ref["gold_rows"].get("movie_kpis", 0) > 0, ref["gold_rows"])


def _validate_training(con: duckdb.DuckDBPyConnection, ref: dict[str, Any], checks: list[dict[str, Any]]) -> None:
    if ref.get("skipped"):
        _check(checks, "training.skipped_cleanly", True, ref.get("reason"))
        return
    rows = con.execute("select status from ops.model_registry where version = ?", [ref["version"]]).fetchall()
    _check(checks, "training.version_registered", bool(rows), ref["version"])
    # a later run may have replaced this champion already, so "was promoted" is champion or retired now
    expected = ("champion", "retired") if ref.get("promoted") else ("rejected",)
    _check(checks, "training.promotion_recorded", bool(rows) and rows[0][0] in expected, rows[0][0] if rows else None)


def _validate_test(ref: dict[str, Any], checks: list[dict[str, Any]]) -> None:
    if ref.get("skipped"):
        return
    rmse = ref.get("rmse")
    _check(checks, "test.rmse_finite", rmse is not None and math.isfinite(rmse) and 0 <= rmse <= 5, rmse)
    _check(checks, "test.held_out_not_empty", (ref.get("n_test") or 0) > 0, ref.get("n_test"))


def _validate_drift(con: duckdb.DuckDBPyConnection, ref: dict[str, Any], checks: list[dict[str, Any]]) -> None:
    if ref.get("report_id") is None:
        _check(checks, "drift.no_champion_yet", True, ref.get("decision"))
        return
    rows = con.execute("select decision from ops.drift_reports where report_id = ?", [ref["report_id"]]).fetchall()
    _check(checks, "drift.report_stored", bool(rows) and rows[0][0] == ref["decision"], ref["decision"])


def validate_run(
    pipeline: str,
    ingest: dict[str, Any] | None = None,
    etl: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    test: dict[str, Any] | None = None,
    drift: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Check a run's results against the warehouse (row counts, gates, registry); raise naming what failed.

    Only durable records of this run are compared (audit rows, registry rows, drift reports), so concurrent runs
    (a backfill beside the daily run) cannot fail it. References of skipped tasks arrive as None. A failure is a
    ``QualityGateFailed``: not retried, it alerts.
    """
    from cinematch.core.errors import QualityGateFailed

    checks: list[dict[str, Any]] = []
    with task_session("validate_run") as (_, con):
        if ingest:
            _validate_ingest(con, ingest, checks)
        if etl:
            _validate_etl(con, etl, checks)
        if training:
            _validate_training(con, training, checks)
        if drift:
            _validate_drift(con, drift, checks)
    if test:
        _validate_test(test, checks)
    failed = [c for c in checks if not c["passed"]]
    summary = {"pipeline": pipeline, "passed": not failed, "n_checks": len(checks), "checks": checks,
               "batch_ids": (ingest or {}).get("batch_ids"), "inserted": (ingest or {}).get("inserted"),
               "as_of": (etl or {}).get("as_of"), "model_version": (training or test or {}).get("version"),
               "drift_decision": (drift or {}).get("decision")}  # fmt: skip
    log_event(log, "run_validated", pipeline=pipeline, checks=len(checks), failed=len(failed))
    if failed:
        first = failed[0]
        raise QualityGateFailed(
            f"{pipeline}: {len(failed)} of {len(checks)} run check(s) failed, first {first['check']} "
            f"({first['detail']}); see the task log and fix the input before rerunning"
        )
    return json_ref(summary)
