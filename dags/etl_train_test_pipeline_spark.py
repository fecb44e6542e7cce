"""
### etl_train_test_pipeline_spark

`etl_train_test_pipeline` with its two heavy steps submitted to Spark: enable this DAG (and pause
`etl_train_test_pipeline`) when the deployment runs `CINEMATCH_ENGINE=spark`.

- **tasks**: `run_etl` (SparkSubmitOperator: `spark_submit.py etl`) → `etl_result` → `create_futures` →
  `needs_training` (short-circuit) → `train_model` (SparkSubmitOperator: `spark_submit.py train`, Spark MLlib ALS) →
  `training_result` → `find_latest_model` → `test_model` → `validate_run` → `publish_views` → `notify`.
- **spark**: connection `spark_default` (type `spark`, host `local[2]` or a cluster master, e.g.
  `AIRFLOW_CONN_SPARK_DEFAULT='{"conn_type": "spark", "host": "local[2]"}'`); `spark-submit` of the CineMatch
  environment on the worker's PATH. The driver runs this interpreter (`spark.pyspark.python`).
- **hand-off**: each job stores its JSON reference under `CINEMATCH_HOME/runs/spark/<run id>-<step>.json`; the
  task after it reads that reference (never data) for the next steps.
- **params**: `pairs_file` (default: generated from the buffer), `force_train` (default false).
- **idempotent**: as `etl_train_test_pipeline`: nothing new since the champion, no new version.
"""

from __future__ import annotations

import sys

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Param, dag, task

from cinematch import dag_tasks as steps
from cinematch import spark_submit
from cinematch.pipelines import alerts

RUN_TAG = "{{ run_id }}"
SPARK = {"conn_id": "spark_default", "application": spark_submit.JOB, "pool": steps.POOL,
         "conf": {"spark.pyspark.python": sys.executable}}  # fmt: skip


@dag(
    schedule=None,
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["cinematch", "training", "ml", "spark"],
    default_args=steps.default_args(),
    params={
        "pairs_file": Param(None, type=["null", "string"], description="user,movie[,date] pairs to predict"),
        "force_train": Param(False, type="boolean", description="train even if nothing new was merged"),
    },
)
def etl_train_test_pipeline_spark() -> None:
    run_etl = SparkSubmitOperator(task_id="run_etl", name="cinematch-etl", application_args=["etl", "--tag", RUN_TAG],
                                  **SPARK, **steps.lineage("etl"))  # fmt: skip
    train_model = SparkSubmitOperator(task_id="train_model", name="cinematch-train", **SPARK, **steps.lineage("train"),
                                      application_args=["train", "--tag", RUN_TAG,
                                                        "--force={{ params.force_train }}"])  # fmt: skip

    @task
    def etl_result(run_id: str | None = None) -> dict:
        return spark_submit.read_ref("etl", run_id)

    @task(**steps.lineage("model_version"))  # the version Spark trained, in the models folder's lineage
    def training_result(run_id: str | None = None) -> dict:
        return alerts.announce_training(spark_submit.read_ref("train", run_id))

    built = etl_result()
    run_etl >> built
    trained = training_result()
    train_model >> trained
    steps.model_steps("etl_train_test_pipeline_spark", built, train_model, trained)


etl_train_test_pipeline_spark()
