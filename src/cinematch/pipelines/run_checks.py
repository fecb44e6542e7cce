"""End-of-run checks of a DAG run: this run's durable records (audit, registry, drift reports) against its references."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from cinematch.core.log import get_logger, log_event
from cinematch.pipelines.task_io import json_ref, task_session
from cinematch.storage.protocol import Warehouse

if TYPE_CHECKING:
    pass

# cinematch.storage.records is imported inside the checks: DAG files import this module at parse time

log = get_logger(__name__)


def _check(checks: list[dict[str, Any]], name: str, passed: bool, detail: Any = None) -> None:
    checks.append({"check": name, "passed": bool(passed), "detail": detail})


def _validate_ingest(con: Warehouse, ref: dict[str, Any], checks: list[dict[str, Any]]) -> None:
    from cinematch.storage import records

    for r in ref["rejected"]:
        _check(checks, "ingest.no_rejected_files", False, f"{r['file']}: {r['error']}")
    for b in ref["loaded"]:
        audit = records.batch_audit(con, b["batch_id"], b["kind"])
        ok = (
            audit is not None
            and audit.status == "completed"
            and audit.record_count == audit.rows_in_table == b["inserted"]
        )
        _check(checks, f"ingest.{b['batch_id']}.rows_match_audit", ok, audit.as_tuple() if audit else "no audit row")


def _validate_etl(con: Warehouse, ref: dict[str, Any], checks: list[dict[str, Any]]) -> None:
    """Read this run's own audit rows: gold is one shared table that a concurrent run may already have rebuilt."""
    from cinematch.storage import records

    _check(checks, "etl.completed", ref["status"] == "completed", ref["status"])
    _check(checks, "etl.quality_checks_passed", not ref["checks_failed"], ref["checks_failed"] or ref["checks_run"])
    steps = records.etl_steps(con, ref["run_id"])
    silver = steps.get("silver")
    _check(checks, "etl.silver_recorded", silver is not None and silver.status == "completed" and (silver.rows or 0) > 0,
           (silver.status, silver.rows) if silver else "no ops.pipeline_runs row")  # fmt: skip
    if ref["gold_rows"] is not None:
        gold = steps.get("gold")
        recorded = gold.details.get("rows") if gold else None
        _check(checks, "etl.gold_recorded", gold is not None and gold.status == "completed" and recorded == ref["gold_rows"],
               recorded or "no ops.pipeline_runs row")  # fmt: skip
        _check(checks, "etl.gold.movie_kpis_not_empty", ref["gold_rows"].get("movie_kpis", 0) > 0, ref["gold_rows"])


def _validate_training(con: Warehouse, ref: dict[str, Any], checks: list[dict[str, Any]]) -> None:
    from cinematch.storage import records

    if ref.get("skipped"):
        _check(checks, "training.skipped_cleanly", True, ref.get("reason"))
        return
    status = records.model_status(con, ref["version"])
    _check(checks, "training.version_registered", status is not None, ref["version"])
    # a later run may have replaced this champion already, so "was promoted" is champion or retired now
    expected = ("champion", "retired") if ref.get("promoted") else ("rejected",)
    _check(checks, "training.promotion_recorded", status in expected, status)


def _validate_test(ref: dict[str, Any], checks: list[dict[str, Any]]) -> None:
    if ref.get("skipped"):
        return
    rmse = ref.get("rmse")
    _check(checks, "test.rmse_finite", rmse is not None and math.isfinite(rmse) and 0 <= rmse <= 5, rmse)
    _check(checks, "test.held_out_not_empty", (ref.get("n_test") or 0) > 0, ref.get("n_test"))


def _validate_drift(con: Warehouse, ref: dict[str, Any], checks: list[dict[str, Any]]) -> None:
    from cinematch.storage import records

    if ref.get("report_id") is None:
        _check(checks, "drift.no_champion_yet", True, ref.get("decision"))
        return
    stored = records.drift_report(con, ref["report_id"])
    _check(checks, "drift.report_stored", stored is not None and stored["decision"] == ref["decision"], ref["decision"])


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
