"""The task-level helpers without Airflow: small JSON references, idempotent reruns, race-free validation, alerts."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import pytest

from cinematch import dag_tasks
from cinematch.core.errors import BadInput, QualityGateFailed
from cinematch.pipelines import alerts, data_tasks, drift_tasks, model_tasks, run_checks


def test_importing_orchestration_pulls_in_no_warehouse() -> None:
    """DAG files import it at parse time, so it must stay light (DuckDB and pyarrow load inside the tasks)."""
    import subprocess

    tasks = "cinematch.pipelines.data_tasks, cinematch.pipelines.model_tasks, cinematch.pipelines.drift_tasks"
    code = (
        f"import sys, {tasks}, cinematch.pipelines.run_checks; print('duckdb' in sys.modules, 'pyarrow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_ingest_references_are_small_json_and_reruns_are_noops(home) -> None:
    home.land("movies.csv", "ratings.parquet")
    ref = data_tasks.ingest_batch()
    assert json.loads(json.dumps(ref)) == ref
    assert ref["batch_ids"] == ["base"] and ref["movie_batch_ids"] == ["movies"] and ref["inserted"] == 8206
    assert data_tasks.has_new_data(ref) is True
    again = data_tasks.ingest_batch()
    assert again["files"] == 0 and data_tasks.has_new_data(again) is False
    with pytest.raises(BadInput, match="batch_id needs param file"):
        data_tasks.ingest_batch(batch_id="orphan")
    assert run_checks.validate_run("t", ingest=ref)["passed"] is True


def test_etl_validation_reads_its_own_run_not_the_shared_gold(home) -> None:
    """A concurrent run (backfill beside the daily run) may rebuild gold between build and validate."""
    home.land("movies.csv", "ratings.parquet", "batch_w1.parquet")
    data_tasks.ingest_batch()
    first = data_tasks.build_silver_gold("2024-03-20")
    assert first["as_of"].startswith("2024-03-20T23:59:59") and first["checks_failed"] == []
    other = data_tasks.build_silver_gold("2024-03-31")
    assert other["gold_rows"] != first["gold_rows"]
    assert run_checks.validate_run("medallion_pipeline", etl=first)["passed"] is True
    forged = {**first, "gold_rows": {**first["gold_rows"], "movie_kpis": 1}}
    with pytest.raises(QualityGateFailed, match="etl.gold_recorded"):
        run_checks.validate_run("medallion_pipeline", etl=forged)


def test_training_is_skipped_when_nothing_is_new(home) -> None:
    home.land("movies.csv", "ratings.parquet")
    data_tasks.ingest_batch()
    data_tasks.build_silver_gold()
    assert model_tasks.pending_batches()["train"] is True
    trained = model_tasks.train_model()
    assert trained["promoted"] is True and trained["skipped"] is False
    assert model_tasks.pending_batches() == {"batch_ids": [], "champion": trained["version"], "train": False,
                                      "reason": f"nothing new since champion {trained['version']}"}  # fmt: skip
    assert model_tasks.train_model() == {"version": trained["version"], "skipped": True,
                                  "reason": "nothing new since the champion"}  # fmt: skip
    assert drift_tasks.merge_and_retrain(["base"])["skipped"] is True
    assert model_tasks.latest_model() == {
        "version": trained["version"],
        "champion": trained["version"],
        "n_versions": 1,
    }
    tested = model_tasks.test_model(trained["version"])
    assert tested["reproduces_registry"] is True
    futures = model_tasks.create_futures(tag="manual run:1", n_pairs=5)
    assert futures["pairs"] == 5 and futures["pairs_file"].endswith("manual_run_1-pairs.csv")


def test_failure_alert_posts_to_the_webhook(home, webhook, caplog) -> None:
    ti = SimpleNamespace(dag_id="medallion_pipeline", task_id="build_silver_gold", run_id="r1", try_number=3)
    dag_tasks.alert_failure({"ti": ti, "run_id": "r1", "exception": QualityGateFailed("gold.movie_kpis.unique_key")})
    assert "ALERT cinematch medallion_pipeline.build_silver_gold failed (run r1, try 3)" in caplog.text
    assert webhook.received[0]["status"] == "failed" and "QualityGateFailed" in webhook.received[0]["text"]
    assert webhook.received[0]["event"] == "gate_failed"  # a gate has its own event type
    assert alerts.notify("medallion_pipeline", {"n_checks": 4, "as_of": "2024-03-20"}, "r1")["webhook"] is True
    assert webhook.received[1]["status"] == "success" and webhook.received[1]["event"] == "success"
    dag_tasks.alert_failure({"ti": ti, "run_id": "r1", "exception": ConnectionError("connection reset")})
    assert webhook.received[2]["event"] == "failure" and webhook.received[2]["source"] == "airflow"


def test_a_dead_webhook_never_fails_the_task(home, monkeypatch) -> None:
    monkeypatch.setenv("CINEMATCH_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/nothing-listens-here")
    assert alerts.notify("buffer_ingestion_weekly", None)["webhook"] is False


def test_failure_alert_and_its_log_line_carry_no_secret(home, webhook, caplog, monkeypatch) -> None:
    key, password = "0123456789abcdef0123456789abcdef", "pw-9f8e7d6c"
    monkeypatch.setenv("CINEMATCH_TMDB_API_KEY", key)
    monkeypatch.setenv("CINEMATCH_DATABASE_URL", f"postgresql://cine:{password}@db.internal:5432/cinematch")
    ti = SimpleNamespace(dag_id="tmdb_enrichment", task_id="fetch_tmdb", run_id="r2", try_number=1)
    error = ConnectionError(f"GET https://api.themoviedb.org/3/movie/1?api_key={key} failed; db password {password}")
    dag_tasks.alert_failure({"ti": ti, "run_id": "r2", "exception": error})
    assert "ALERT cinematch tmdb_enrichment.fetch_tmdb failed" in caplog.text
    posted = json.dumps(webhook.received)
    for secret in (key, password):
        assert secret not in caplog.text and secret not in posted
    assert webhook.received[0]["event"] == "failure" and "api_key=***" in webhook.received[0]["text"]
