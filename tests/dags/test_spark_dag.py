"""The SparkSubmitOperator variant of etl_train_test_pipeline parses in a real DagBag with the same contract."""

from __future__ import annotations

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
        assert Path(task.application).name == "spark_jobs.py" and Path(task.application).is_file()
    assert submitted["run_etl"].application_args == ["etl", "--tag", "{{ run_id }}"]
    assert submitted["train_model"].application_args[:3] == ["train", "--tag", "{{ run_id }}"]
    assert dag.get_task("etl_result").upstream_task_ids == {"run_etl"}
    assert dag.get_task("training_result").upstream_task_ids == {"train_model"}
    for task in dag.tasks:
        assert task.retries >= 1 and task.on_failure_callback, task.task_id
