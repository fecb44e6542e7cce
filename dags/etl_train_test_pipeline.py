"""
### etl_train_test_pipeline

On demand: ETL, create futures, train, find the latest model, test it on held-out data.

- **tasks**: `run_etl` (incremental bronze → silver → gold) → `create_futures` (champion predictions for
  `pairs_file`, or for the 200 newest buffered (user, movie, date) triples, under `CINEMATCH_HOME/futures/`) →
  `needs_training` (short-circuit) → `train_model` (register a version; promoted only if not worse) →
  `find_latest_model` (newest `version_*` folder) → `test_model` (metrics on the held-out 20 %) →
  `validate_run` → `publish_views` (the serving views: the champion's recommendations and the new trending and
  genre tables reach the API) → `notify`. A promotion or a refused promotion is posted to the alert webhook.
- **params**: `pairs_file` (default: generated from the buffer), `force_train` (default false).
- **idempotent**: with nothing merged into silver since the champion, `train_model` is skipped (no duplicate
  version); the latest model is still found and tested, and the run ends green.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, task

from cinematch import dag_tasks as steps
from cinematch.pipelines import alerts, data_tasks, model_tasks


@dag(
    schedule=None,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["cinematch", "training", "ml"],
    default_args=steps.default_args(),
    params={
        "pairs_file": Param(None, type=["null", "string"], description="user,movie[,date] pairs to predict"),
        "force_train": Param(False, type="boolean", description="train even if nothing new was merged"),
    },
)
def etl_train_test_pipeline() -> None:
    @task(pool=steps.POOL, **steps.lineage("etl"))
    def run_etl() -> dict:
        return data_tasks.build_silver_gold()

    @task(pool=steps.POOL, **steps.lineage("train"))
    def train_model(params: dict | None = None) -> dict:
        return alerts.announce_training(model_tasks.train_model(force=params["force_train"]))

    trained = train_model()
    steps.model_steps("etl_train_test_pipeline", run_etl(), trained, trained)


etl_train_test_pipeline()
