"""The SparkSubmitOperator variant of etl_train_test_pipeline parses in a real DagBag with the same contract."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.airflow

DAG_ID = "etl_train_test_pipeline_spark"


def test_spark_dag_parses_with_spark_submit_tasks(dagbag) -> None:
    errors = {path: err for path, err in dagbag.import_errors.items() if Path(path).stem == DAG_ID}
    assert errors == {}
    dag = dagbag.dags[DAG_ID]
    assert {"cinematch", "spark"} <= set(dag.tags) and dag.doc_md and DAG_ID in dag.doc_md
    assert dag.max_active_runs == 1 and type(dag.timetable).__name__ == "NullTimetable"
    submitted = {t.task_id: t for t in dag.tasks if type(t).__name__ == "SparkSubmitOperator"}
    assert set(submitted) == {"run_etl", "train_model"}
    for task in submitted.values():
        assert task._conn_id == "spark_default" and task.pool == "cinematch_warehouse"
        assert Path(task.application).name == "spark_submit.py" and Path(task.application).is_file()
    assert submitted["run_etl"].application_args == ["etl", "--tag", "{{ run_id }}"]
    assert submitted["train_model"].application_args[:3] == ["train", "--tag", "{{ run_id }}"]
    assert dag.get_task("etl_result").upstream_task_ids == {"run_etl"}
    assert dag.get_task("training_result").upstream_task_ids == {"train_model"}
    for task in dag.tasks:
        assert task.retries >= 1 and task.on_failure_callback, task.task_id


@pytest.mark.spark
def test_spark_dag_runs_spark_submit_jobs_on_local_spark(home, run_dag, monkeypatch) -> None:
    """dag.test() with spark_default at local[2]: both SparkSubmitOperator tasks run spark_submit.py for real."""
    bin_dir = Path(sys.executable).parent  # the worker's PATH holds this environment's spark-submit
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_DEFAULT", json.dumps({"conn_type": "spark", "host": "local[2]"}))
    monkeypatch.setenv("CINEMATCH_ENGINE", "spark")
    # short-lived JVMs start faster on 2 cores with the C1 JIT and the serial GC (driver and launcher share one)
    monkeypatch.setenv("SPARK_SUBMIT_OPTS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xss8m")
    home.land("movies.csv", "ratings.parquet")
    assert run_dag("buffer_ingestion_weekly", "2024-03-24").state == "success"

    run = run_dag(DAG_ID, "2024-03-24")
    assert run.state == "success", run.states
    assert set(run.states.values()) == {"success"}, run.states
    # the jobs ran in spark-submit's process: their references are files that the next tasks passed on
    built, trained = run.xcom["etl_result"], run.xcom["training_result"]
    assert built["command"] == "etl" and built["engine"] == "spark" and built["status"] == "completed"
    assert trained["command"] == "train" and trained["engine"] == "spark" and trained["promoted"] is True
    version = trained["version"]
    refs = sorted(p.name for p in (home.path / "runs" / "spark").glob("*.json"))
    assert len(refs) == 2 and refs[0].endswith("-etl.json") and refs[1].endswith("-train.json")

    # gold written by Spark: each of the 8000 base ratings counted once
    assert home.query("select sum(n_ratings), count(*) from gold.user_engagement")[0][0] == 8000
    for table in ("genre_analytics", "trending_movies", "temporal_trends", "movie_kpis"):
        assert home.query(f"select count(*) from gold.{table}")[0][0] > 0, table
    assert home.query("select version, is_champion from ops.model_registry") == [(version, True)]
    assert json.loads((home.path / "models" / version / "metadata.json").read_text())["engine"] == "spark"
    assert run.xcom["find_latest_model"]["version"] == version
    assert run.xcom["test_model"]["version"] == version and run.xcom["test_model"]["n_test"] > 0
