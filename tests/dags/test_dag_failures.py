"""Retries and alerts under dag.test(): a transient error is retried, bad input fails fast and alerts."""

from __future__ import annotations

from pathlib import Path

import pytest

from cinematch.pipelines import data_tasks

pytestmark = pytest.mark.airflow


def test_transient_error_is_retried_with_backoff(home, run_dag, monkeypatch, tmp_path: Path, webhook) -> None:
    """The first try of check_buffer_status fails like a dropped connection; the retry (after 1 s) succeeds."""
    flag = tmp_path / "failed-once"
    real = data_tasks.buffer_status

    def flaky() -> dict:
        if not flag.exists():
            flag.touch()
            raise ConnectionError("simulated transient failure")
        return real()

    monkeypatch.setattr(data_tasks, "buffer_status", flaky)
    home.land("movies.csv")
    run = run_dag("buffer_ingestion_weekly", "2024-05-06")
    assert run.state == "success"
    assert run.states["check_buffer_status"] == "success" and run.tries["check_buffer_status"] == 2
    assert run.tries["ingest_batch"] == 1
    assert [h["status"] for h in webhook.received] == ["success"]  # a retry that recovers raises no alert


def test_bad_input_fails_fast_and_alerts(home, run_dag, webhook, caplog) -> None:
    """A missing batch file is BadInput: no retries (the retry policy), the failure alert names DAG and task."""
    run = run_dag("buffer_ingestion_weekly", "2024-05-13", {"file": "no-such-batch.csv"})
    assert run.state == "failed"
    assert run.states["ingest_batch"] == "failed" and run.tries["ingest_batch"] == 1
    assert run.states["validate_run"] == run.states["notify"] == "upstream_failed"
    assert len(webhook.received) == 1
    alert = webhook.received[0]
    assert alert["status"] == "failed"
    assert (alert["dag_id"], alert["task_id"]) == ("buffer_ingestion_weekly", "ingest_batch")
    assert "no-such-batch.csv" in alert["text"] and "BadInput" in alert["text"]
    assert "ALERT cinematch buffer_ingestion_weekly.ingest_batch failed" in caplog.text
