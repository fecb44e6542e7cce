"""DAG integrity under real Airflow: the four ids parse cleanly, fast, with tags, retries, pools and schedules."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.airflow

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"
POOL = "cinematch_warehouse"
DAG_IDS = (
    "buffer_ingestion_weekly",
    "medallion_pipeline",
    "etl_train_test_pipeline",
    "drift_detection_retrain_pipeline",
    "tmdb_enrichment",
)

WRITERS = {
    "buffer_ingestion_weekly": {"ingest_batch", "check_buffer_status", "validate_run"},
    "medallion_pipeline": {"ingest_raw", "build_silver_gold", "validate_run", "publish_views"},
    "etl_train_test_pipeline": {"run_etl", "create_futures", "needs_training", "train_model", "test_model"},
    "drift_detection_retrain_pipeline": {"process_new_data", "detect_drift", "decide", "merge_and_retrain"},
    "tmdb_enrichment": {"fetch_tmdb", "build_silver_gold", "publish_views"},
}
# What each DAG changes that the API serves, and so must publish after: gold (trending, genres, TMDB details),
# the champion, drift reports. buffer_ingestion_weekly only loads bronze; the drift DAG it triggers publishes.
PUBLISHES_AFTER = {
    "medallion_pipeline": {"build_silver_gold", "validate_run"},
    "etl_train_test_pipeline": {"run_etl", "train_model", "validate_run"},
    "etl_train_test_pipeline_spark": {"run_etl", "train_model", "validate_run"},
    "drift_detection_retrain_pipeline": {"process_new_data", "detect_drift", "merge_and_retrain", "validate_run"},
    "tmdb_enrichment": {"build_silver_gold"},
}


def test_dags_import_without_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert not dagbag.captured_warnings
    assert set(DAG_IDS) <= set(dagbag.dag_ids)


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_dag_contract(dagbag, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    assert "cinematch" in dag.tags and len(dag.tags) >= 2
    assert dag.doc_md and dag_id in dag.doc_md
    assert dag.max_active_runs == 1
    for task in dag.tasks:
        assert task.retries >= 1, task.task_id
        assert task.retry_exponential_backoff >= 2, task.task_id
        assert task.on_failure_callback, task.task_id
        assert task.retry_policy is not None, task.task_id
    pooled = {t.task_id for t in dag.tasks if t.pool == POOL}
    assert WRITERS[dag_id] <= pooled


@pytest.mark.parametrize("dag_id", sorted(PUBLISHES_AFTER))
def test_dags_that_change_what_is_served_publish_it(dagbag, dag_id: str) -> None:
    """Regression: no DAG published the serving views, so a new champion or trending list never reached the API."""
    dag = dagbag.dags[dag_id]
    publish = dag.get_task("publish_views")
    assert PUBLISHES_AFTER[dag_id] <= publish.get_flat_relative_ids(upstream=True)
    assert "notify" in publish.downstream_task_ids  # the success alert names the published views
    assert publish.pool == POOL


def test_schedules_and_asset_chaining(dagbag) -> None:
    medallion = dagbag.dags["medallion_pipeline"]
    assert medallion.catchup is True and medallion.start_date is not None
    # data intervals: the run of day D has logical date D and starts when D is over, so as_of = end of D
    assert type(medallion.timetable).__name__ == "CronDataIntervalTimetable"
    assert type(dagbag.dags["etl_train_test_pipeline"].timetable).__name__ == "NullTimetable"
    publish = dagbag.dags["buffer_ingestion_weekly"].get_task("publish_buffer")
    assert [a.uri for a in publish.outlets] == ["cinematch://bronze/ratings_buffer"]
    drift = dagbag.dags["drift_detection_retrain_pipeline"]
    assert "cinematch://bronze/ratings_buffer" in str(drift.timetable.asset_condition)
    assert drift.get_task("validate_run").trigger_rule == "none_failed_min_one_success"


def test_parsing_is_fast_and_touches_no_warehouse(tmp_path: Path, airflow_env: dict) -> None:
    """A fresh interpreter parses the whole dags/ folder, the OpenLineage provider installed, in < 1 s.

    As Airflow 3's DAG processor does (``[dag_processor] parsing_pre_import_modules``, on by default), the
    ``airflow.*`` modules the DAG files import are imported first, once, outside the timed parse; the parse is
    then every DAG file run, with all their cinematch imports and lineage declarations (min of three, each in a
    fresh interpreter: this machine is shared). It imports neither DuckDB nor sqlglot and creates no HOME.
    """
    home = tmp_path / "never-created"
    script = f"""
import sys, time
import airflow.providers.openlineage  # the provider must be installed: its import cost is part of the target
from airflow.dag_processing.dagbag import DagBag
from airflow.utils.file import iter_airflow_imports, list_py_file_paths
for path in list_py_file_paths({str(DAGS_FOLDER)!r}):
    for module in iter_airflow_imports(path):
        __import__(module)
t0 = time.perf_counter()
bag = DagBag(dag_folder={str(DAGS_FOLDER)!r})
seconds = time.perf_counter() - t0
lazy = not any(m in sys.modules for m in ("duckdb", "sqlglot"))
print(seconds, len(bag.import_errors), lazy, ",".join(sorted(bag.dags)))
"""
    env = {**os.environ, **airflow_env, "CINEMATCH_HOME": str(home)}
    runs = []
    for _ in range(3):
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        seconds, n_errors, lazy, dag_ids = proc.stdout.split()[-4:]
        assert set(DAG_IDS) | {"etl_train_test_pipeline_spark"} <= set(dag_ids.split(",")) and n_errors == "0"
        assert lazy == "True"
        runs.append(float(seconds))
    assert min(runs) < 1.0, f"parsing took {runs} s"
    assert not home.exists()


def test_tasks_declare_what_they_read_and_write(dagbag) -> None:
    """Warehouse tables as Table inlets/outlets, folders as File ones: the OpenLineage provider translates both."""
    from airflow.providers.common.compat.lineage.entities import File, Table

    def names(entities: list) -> set[str]:
        return {e.name if isinstance(e, Table) else e.url.rsplit("/", 1)[-1] for e in entities}

    etl = dagbag.dags["medallion_pipeline"].get_task("build_silver_gold")
    assert {"bronze.ratings_buffer", "bronze.movies"} <= names(etl.inlets)
    assert {"silver.ratings", "gold.movie_kpis", "gold.trending_movies"} <= names(etl.outlets)
    train = dagbag.dags["etl_train_test_pipeline"].get_task("train_model")
    assert "silver.ratings" in names(train.inlets) and "models" in names(train.outlets)
    assert all(isinstance(e, Table | File) for e in [*etl.inlets, *etl.outlets, *train.outlets])
    spark = dagbag.dags["etl_train_test_pipeline_spark"]
    assert names(spark.get_task("run_etl").outlets) == names(etl.outlets)
    # spark-submit returns no result: the task that reads it names the models folder, with the version at COMPLETE
    assert names(spark.get_task("training_result").outlets) == {"models"}
    for dag_id in DAG_IDS:
        for task_id in WRITERS[dag_id] - {"validate_run", "needs_training", "decide"}:
            task = dagbag.dags[dag_id].get_task(task_id)
            assert task.inlets or task.outlets, f"{dag_id}.{task_id} declares no lineage"
    # the asset that schedules the drift DAG is still an outlet, beside no lineage entity
    assert [a.uri for a in dagbag.dags["buffer_ingestion_weekly"].get_task("publish_buffer").outlets] == [
        "cinematch://bronze/ratings_buffer"
    ]
