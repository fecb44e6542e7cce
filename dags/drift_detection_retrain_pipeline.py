"""
### drift_detection_retrain_pipeline

When the ratings buffer changes: process new data, find the champion, detect drift, and retrain only on drift.

- **schedule**: the asset `cinematch://bronze/ratings_buffer` (emitted by `buffer_ingestion_weekly` when it
  loads new ratings); it can also be triggered by hand.
- **tasks**: `process_new_data` (incremental ETL) → `find_current_model` → `detect_drift` (stores a row in
  `ops.drift_reports`; decision and scores in the log and XCom) → `decide` (branch on the stored decision) →
  either `skip_retrain`, or `merge_and_retrain` (merge exactly the checked batches, train, promote if not worse)
  → `find_latest_model` → `test_model`; both paths join at `validate_run` (`none_failed_min_one_success`) →
  `publish_views` (the drift report and, after a retrain, the new champion reach the API) → `notify`. A retrain
  decision and the promotion outcome are posted to the alert webhook.
- **no champion yet**: the decision is `no_champion` and the retrain branch trains the first model.
- **idempotent**: a rerun finds the batches merged, so the buffer is empty and the decision is
  `insufficient_data` (skip); a retried `merge_and_retrain` returns the version it already trained.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Asset, TriggerRule, dag, task

from cinematch import dag_tasks as steps
from cinematch.pipelines import alerts, data_tasks, drift_tasks, model_tasks, run_checks


@dag(
    schedule=[Asset(data_tasks.BUFFER_ASSET_URI)],
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["cinematch", "drift", "training", "ml"],
    default_args=steps.default_args(),
)
def drift_detection_retrain_pipeline() -> None:
    @task(pool=steps.POOL, **steps.lineage("etl"))
    def process_new_data() -> dict:
        return data_tasks.build_silver_gold()

    @task(pool=steps.POOL, **steps.lineage("find_model"))
    def find_current_model(processed: dict) -> dict:
        return model_tasks.current_model()

    @task(pool=steps.POOL, **steps.lineage("drift"))
    def detect_drift(current: dict) -> dict:
        return drift_tasks.check_drift(expected_version=current["version"])

    @task.branch(pool=steps.POOL)
    def decide(drift: dict) -> str:
        return "merge_and_retrain" if drift_tasks.drift_decision(drift)["should_retrain"] else "skip_retrain"

    @task
    def skip_retrain(drift: dict) -> dict:
        return {"retrained": False, "decision": drift["decision"], "score": drift["score"]}

    @task(pool=steps.POOL, **steps.lineage("retrain"))
    def merge_and_retrain(drift: dict) -> dict:
        return alerts.announce_training(drift_tasks.merge_and_retrain(drift["batch_ids"]))

    @task(pool=steps.POOL, **steps.lineage("find_model"))
    def find_latest_model(trained: dict) -> dict:
        return model_tasks.latest_model()

    @task(pool=steps.POOL, **steps.lineage("test_model"))
    def test_model(latest: dict) -> dict:
        return model_tasks.test_model(latest["version"])

    @task(pool=steps.POOL, trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    def validate_run(drift: dict, skipped: dict | None, trained: dict | None, tested: dict | None) -> dict:
        return run_checks.validate_run("drift_detection_retrain_pipeline", drift=drift, training=trained, test=tested)

    @task
    def notify(summary: dict, published: dict, run_id: str | None = None) -> dict:
        return alerts.notify("drift_detection_retrain_pipeline", summary, run_id, published)

    drift = detect_drift(find_current_model(process_new_data()))
    skipped, trained = skip_retrain(drift), merge_and_retrain(drift)
    decide(drift) >> [skipped, trained]
    tested = test_model(find_latest_model(trained))
    summary = validate_run(drift, skipped, trained, tested)
    notify(summary, steps.publish(summary))


drift_detection_retrain_pipeline()
