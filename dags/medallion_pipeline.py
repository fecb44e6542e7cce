"""
### medallion_pipeline

Daily: bronze → silver → gold for the run's logical date, behind the quality gates of each layer.

- **tasks**: `ingest_raw` (new landing files, or `file`, into bronze; exactly once) → `build_silver_gold`
  (incremental silver; gold rebuilt as of the end of the logical date: the original's `transform_clean`,
  `transform_curated` and `model_analytics` in one gated call, one transaction per layer) → `validate_run`
  (gate results, silver and gold row counts) → `publish_views` (the new trending and genre tables reach the
  API) → `notify`.
- **params**: `file`, `batch_id` (as in `buffer_ingestion_weekly`; default: every new landing file).
- **schedule**: daily data intervals (UTC): the run for day D starts after D ends, and its logical date is D.
- **backfill**: `catchup=True` from 2024-01-01, one run at a time; each run pins gold to its own logical date,
  so `airflow backfill create --dag-id medallion_pipeline --from-date 2024-03-01 --to-date 2024-03-07` rebuilds
  those days. A rerun changes nothing: ingestion skips loaded files, silver only adds new batches, gold is
  deterministic for a date.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

from cinematch import dag_tasks as steps
from cinematch.pipelines import alerts, data_tasks, run_checks


@dag(
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=datetime(2024, 1, 1),
    catchup=True,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["cinematch", "lakehouse", "medallion"],
    default_args=steps.default_args(),
    params={
        "file": Param(None, type=["null", "string"], description="batch file; empty = every new landing file"),
        "batch_id": Param(None, type=["null", "string"], description="batch id for `file` (default: file name)"),
    },
)
def medallion_pipeline() -> None:
    @task(pool=steps.POOL, **steps.lineage("ingest"))
    def ingest_raw(params: dict | None = None) -> dict:
        return data_tasks.ingest_batch(file=params["file"], batch_id=params["batch_id"])

    @task(pool=steps.POOL, **steps.lineage("etl"))
    def build_silver_gold(ingested: dict, logical_date: datetime | None = None) -> dict:
        return data_tasks.build_silver_gold(logical_date)

    @task(pool=steps.POOL)
    def validate_run(ingested: dict, built: dict) -> dict:
        return run_checks.validate_run("medallion_pipeline", ingest=ingested, etl=built)

    @task
    def notify(summary: dict, published: dict, run_id: str | None = None) -> dict:
        return alerts.notify("medallion_pipeline", summary, run_id, published)

    ingested = ingest_raw()
    summary = validate_run(ingested, build_silver_gold(ingested))
    notify(summary, steps.publish(summary))


medallion_pipeline()
