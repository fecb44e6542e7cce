"""OpenLineage through the Airflow provider's listener: a real dag.test() run writes its events to a file.

The run happens in a fresh interpreter: the provider reads its transport once per process (and caches that it is
disabled), so the file transport is configured there, in the environment, as a deployment would configure it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tests.dags.conftest import DAGS_FOLDER, POOL
from tests.openlineage_schema import validate_event

pytestmark = pytest.mark.airflow

RUN = f"""
import json, sys
from datetime import UTC, datetime
from cinematch.pipelines import data_tasks
data_tasks.ingest_batch()  # landing -> bronze, so the DAG has ratings to build and train on
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(dag_folder={str(DAGS_FOLDER)!r}, known_pools={{"default_pool", {POOL!r}}}).dags["etl_train_test_pipeline"]
run = dag.test(logical_date=datetime(2024, 3, 24, tzinfo=UTC))
print("STATE", run.state)
"""


def _datasets(event: dict, side: str) -> dict[tuple[str, str], dict]:
    return {(d["namespace"], d["name"]): d for d in event.get(side, [])}


def _task_events(events: list[dict], task_id: str) -> dict[str, dict]:
    found = {e["eventType"]: e for e in events if e["job"]["name"] == f"etl_train_test_pipeline.{task_id}"}
    assert {"START", "COMPLETE"} <= set(found), f"{task_id}: {sorted(found)}"
    return found


def test_a_dag_run_emits_valid_lineage_naming_the_tables(home, airflow_db, airflow_env, tmp_path: Path) -> None:
    import airflow.providers.openlineage  # noqa: F401  (a missing provider fails the test)

    home.land("movies.csv", "ratings.parquet")
    events_file = tmp_path / "events.jsonl"
    env = {**os.environ, **airflow_env, "CINEMATCH_HOME": str(home.path),
           "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(events_file),
                                                          "append": True}),
           "AIRFLOW__OPENLINEAGE__NAMESPACE": "cinematch-test"}  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", RUN], capture_output=True, text=True, env=env, timeout=480)
    assert proc.returncode == 0 and "STATE success" in proc.stdout, (proc.stdout[-2000:], proc.stderr[-3000:])

    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    checked = {url.rsplit("/", 1)[-1] for e in events for url in validate_event(e)}  # facet names
    assert {"ColumnLineageDatasetFacet", "DatasetVersionDatasetFacet", "JobTypeJobFacet", "AirflowRunFacet"} <= checked
    assert {e["job"]["namespace"] for e in events} == {"cinematch-test"}

    warehouse = f"duckdb://{socket.gethostname()}{(home.path / 'warehouse.duckdb').resolve().as_posix()}"
    files = f"file://{socket.gethostname()}"

    def table(name: str) -> tuple[str, str]:
        return warehouse, f"warehouse.{name}"

    # the ETL: bronze in, silver and gold out; at COMPLETE the gold tables carry their column lineage
    etl = _task_events(events, "run_etl")
    for event in etl.values():
        assert table("bronze.ratings_buffer") in _datasets(event, "inputs")
        assert {table("silver.ratings"), table("gold.movie_kpis"), table("gold.trending_movies")} <= set(
            _datasets(event, "outputs")
        )
    assert "columnLineage" not in _datasets(etl["START"], "outputs")[table("gold.movie_kpis")].get("facets", {})
    kpis = _datasets(etl["COMPLETE"], "outputs")[table("gold.movie_kpis")]["facets"]["columnLineage"]["fields"]
    ratings_ns, ratings_name = table("silver.ratings")
    fields = [(f["namespace"], f["name"], f["field"]) for f in kpis["avg_rating"]["inputFields"]]
    assert fields == [(ratings_ns, ratings_name, "rating")]
    assert [(f["name"], f["field"]) for f in kpis["title"]["inputFields"]] == [("warehouse.silver.movies", "title")]

    # training: silver in, the model folder out, with the version it registered at COMPLETE
    train = _task_events(events, "train_model")
    assert table("silver.ratings") in _datasets(train["START"], "inputs")
    models = (files, (home.path / "models").resolve().as_posix().lstrip("/"))
    version = _datasets(train["COMPLETE"], "outputs")[models]["facets"]["version"]["datasetVersion"]
    assert home.query("select version from ops.model_registry") == [(version,)]
    assert (home.path / "models" / version).is_dir()

    # publishing: gold and the registry in, the serving views out
    publish = _task_events(events, "publish_views")
    assert {table("gold.trending_movies"), table("ops.model_registry"), models} <= set(
        _datasets(publish["COMPLETE"], "inputs")
    )
    serving = (files, (home.path / "serving").resolve().as_posix().lstrip("/"))
    assert set(_datasets(publish["COMPLETE"], "outputs")) == {serving}
    # tasks that declare no lineage still report their run, with no datasets; nothing names a password
    assert _task_events(events, "validate_run")["COMPLETE"].get("outputs", []) == []
    assert "password" not in events_file.read_text().lower()
