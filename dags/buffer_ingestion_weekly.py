"""
### buffer_ingestion_weekly

Weekly: load one batch into `bronze.ratings_buffer` exactly once, then report the buffer status.

- **params**: `file` (a batch file: absolute, or relative to `CINEMATCH_HOME/landing`; default: every new
  file in the landing folder, moved to `landing/processed/` once loaded), `batch_id` (with `file`; default: the
  file name), `kind` (`ratings`, `movies`, `users`, `sessions` or `content`; landing files are routed by their
  detected kind, so users/sessions CSVs and content JSON dropped in the landing folder load too).
- **no new data** (nothing new in landing, or the batch was already loaded): `has_new_data` short-circuits,
  `publish_buffer` is skipped and no asset event is emitted; the run still validates and ends green.
- **emits** the asset `cinematch://bronze/ratings_buffer`, which schedules `drift_detection_retrain_pipeline`.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Asset, Param, TriggerRule, dag, task

from cinematch import dag_tasks
from cinematch.pipelines import alerts, data_tasks, run_checks

BUFFER = Asset(data_tasks.BUFFER_ASSET_URI)


@dag(
    schedule="@weekly",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["cinematch", "ingestion", "bronze"],
    default_args=dag_tasks.default_args(),
    params={
        "file": Param(None, type=["null", "string"], description="batch file; empty = every new landing file"),
        "batch_id": Param(None, type=["null", "string"], description="batch id for `file` (default: file name)"),
        "kind": Param(
            "ratings", enum=["ratings", "movies", "users", "sessions", "content"], description="what `file` holds"
        ),
    },
)
def buffer_ingestion_weekly() -> None:
    @task(pool=dag_tasks.POOL, **dag_tasks.lineage("ingest"))
    def ingest_batch(params: dict | None = None) -> dict:
        return data_tasks.ingest_batch(file=params["file"], batch_id=params["batch_id"], kind=params["kind"])

    @task(pool=dag_tasks.POOL, **dag_tasks.lineage("buffer_status"))
    def check_buffer_status(ingested: dict) -> dict:
        return data_tasks.buffer_status()

    @task.short_circuit(ignore_downstream_trigger_rules=False)
    def has_new_data(ingested: dict) -> bool:
        return data_tasks.has_new_data(ingested)

    @task(outlets=[BUFFER])
    def publish_buffer(ingested: dict) -> list:
        return ingested["batch_ids"]

    @task(pool=dag_tasks.POOL, trigger_rule=TriggerRule.NONE_FAILED)
    def validate_run(ingested: dict, status: dict) -> dict:
        return run_checks.validate_run("buffer_ingestion_weekly", ingest=ingested)

    @task
    def notify(summary: dict, run_id: str | None = None) -> dict:
        return alerts.notify("buffer_ingestion_weekly", summary, run_id)

    ingested = ingest_batch()
    status = check_buffer_status(ingested)
    published = publish_buffer(ingested)
    status >> has_new_data(ingested) >> published
    checked = validate_run(ingested, status)
    published >> checked
    notify(checked)


buffer_ingestion_weekly()
