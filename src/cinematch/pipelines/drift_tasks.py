"""DAG tasks of drift: check the unmerged batches, read the stored decision, merge and retrain."""

# Library imports happen inside the functions: DAG files import this module at parse time without
# loading DuckDB or touching CINEMATCH_HOME.

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cinematch.core.log import get_logger, kv, log_event

if TYPE_CHECKING:
    pass
from cinematch.pipelines.model_tasks import training_ref
from cinematch.pipelines.task_io import json_ref, task_session

log = get_logger(__name__)


DRIFT_KEYS = ("report_id", "model_version", "batch_ids", "decision", "should_retrain", "score", "kl_divergence",
              "mean_shift", "median_shift", "psi", "ks_statistic", "n_current", "n_reference",
              "model_degradation", "reasons")  # fmt: skip


def check_drift(expected_version: str | None = None) -> dict[str, Any]:
    """Drift of the unmerged batches against the champion's training data; the report is stored.

    Before the first model there is nothing to compare with: the decision is ``no_champion`` with
    ``should_retrain`` true, so the retrain branch trains the first model on the buffer.
    """
    from cinematch.drift.check import check_drift as drift_check
    from cinematch.recommender import registry
    from cinematch.recommender.training_set import unmerged_batches

    with task_session("check_drift") as (settings, con):
        champ = registry.champion(con)
        if champ is None:
            batches = unmerged_batches(con)
            log_event(log, "drift_decision", decision="no_champion", should_retrain=True, batches=len(batches))
            return {"report_id": None, "model_version": None, "batch_ids": batches, "decision": "no_champion",
                    "should_retrain": True, "score": None}  # fmt: skip
        if expected_version and champ["version"] != expected_version:
            log_event(log, "champion_changed", expected=expected_version, actual=champ["version"])
        doc = drift_check(con, settings)
    from cinematch.pipelines.mlflow_sync import after_drift

    after_drift(settings, doc)
    return json_ref({k: doc.get(k) for k in DRIFT_KEYS})


def drift_decision(ref: dict[str, Any]) -> dict[str, Any]:
    """The stored decision of a drift report (``ops.drift_reports``), logged with its scores."""
    if ref.get("report_id") is None:
        decision = {k: ref.get(k) for k in ("report_id", "decision", "should_retrain", "score")}
    else:
        from cinematch.storage.records import drift_report

        with task_session("drift_decision") as (_, con):
            stored = drift_report(con, ref["report_id"])
        if stored is None:
            from cinematch.core.errors import CineMatchError

            raise CineMatchError(f"drift report {ref['report_id']} is not in ops.drift_reports; rerun detect_drift")
        decision = json_ref(stored)
    log.info(kv("drift_decision", **decision))
    from cinematch.pipelines import alerts

    alerts.post_drift({**decision, "batch_ids": ref.get("batch_ids")}, "airflow")
    return decision


def merge_and_retrain(batch_ids: list[str]) -> dict[str, Any]:
    """Merge exactly the drift-checked batches into the training set, train, promote if not worse.

    Idempotent: when every batch is already merged (a retried or rerun task), the version they were merged
    into is returned with ``skipped`` true and nothing is trained.
    """
    from cinematch.pipelines.engine import train_warehouse
    from cinematch.recommender.training import params_from_settings
    from cinematch.storage.records import merged_batches

    with task_session("merge_and_retrain") as (settings, con):
        merged = merged_batches(con)
        if batch_ids and all(b in merged for b in batch_ids):
            version = merged[batch_ids[-1]]
            log_event(log, "retrain_skipped", reason="batches already merged", version=version)
            return {"version": version, "skipped": True, "reason": "batches already merged", "merged_batches": []}
        result = train_warehouse(con, settings, params_from_settings(settings), merge=list(batch_ids))
    return training_ref(result)
