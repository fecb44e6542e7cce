"""etl_train_test_pipeline and drift_detection_retrain_pipeline under dag.test(): models, drift reports, branches."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.airflow


def _assert_serves(home, champion: str, run) -> str:
    """serving/CURRENT names views of ``champion`` built from the warehouse's current gold; returns its name."""
    name, meta, trending_as_of = home.views()
    assert run.states["publish_views"] == "success"
    assert run.xcom["publish_views"]["views_version"] == name.removesuffix(".duckdb")
    assert meta["model_version"] == champion
    assert trending_as_of == home.query("select max(as_of) from gold.trending_movies")[0][0]  # fresh, not stale
    return name


def test_train_then_drift_skip_then_drift_retrain(home, run_dag, monkeypatch, caplog, webhook) -> None:
    # the tiny batches (48 and 480 ratings) are below the default 1000 needed for a drift decision
    monkeypatch.setenv("CINEMATCH_DRIFT_MIN_RECORDS", "40")
    home.land("movies.csv", "ratings.parquet")
    assert run_dag("buffer_ingestion_weekly", "2024-03-24").state == "success"

    # first training run: no champion yet, so futures are only a pairs file; the model is registered and tested
    first = run_dag("etl_train_test_pipeline", "2024-03-24")
    assert first.state == "success" and set(first.states.values()) == {"success"}
    assert first.xcom["create_futures"]["predictions"] is None
    version = first.xcom["train_model"]["version"]
    assert first.xcom["train_model"]["promoted"] is True
    assert first.xcom["find_latest_model"] == {"version": version, "champion": version, "n_versions": 1}
    tested = first.xcom["test_model"]
    assert tested["version"] == version and tested["n_test"] > 0 and tested["reproduces_registry"] is True
    assert home.query("select version from ops.model_registry where is_champion") == [(version,)]
    # the new champion reaches the API without `cinematch publish` (regression: no DAG published)
    first_views = _assert_serves(home, version, first)
    promoted = [h for h in webhook.received if h["event"] == "champion_promoted"]
    assert len(promoted) == 1 and promoted[0]["version"] == version and promoted[0]["source"] == "airflow"
    success = webhook.received[-1]
    assert success["event"] == "success" and first_views.removesuffix(".duckdb") in success["text"]

    # nothing merged since the champion: training is skipped, no second version; futures now predicted
    again = run_dag("etl_train_test_pipeline", "2024-03-25")
    assert again.state == "success"
    assert again.states["needs_training"] == "success" and again.states["train_model"] == "skipped"
    assert again.states["find_latest_model"] == again.states["test_model"] == again.states["validate_run"] == "success"
    assert again.xcom["create_futures"]["version"] == version and again.xcom["create_futures"]["pairs"] == 200
    assert home.query("select count(*) from ops.model_registry") == [(1,)]
    assert _assert_serves(home, version, again) != first_views  # republished: the futures run moved nothing else

    # a week without drift: the skip branch, a stored report, the champion stays
    home.land("batch_w1.parquet")
    assert run_dag("buffer_ingestion_weekly", "2024-03-31").state == "success"
    calm = run_dag("drift_detection_retrain_pipeline", "2024-03-31")
    assert calm.state == "success"
    drift = calm.xcom["detect_drift"]
    assert drift["decision"] in ("no_drift", "warning") and drift["should_retrain"] is False
    assert drift["batch_ids"] == ["batch_w1"] and drift["score"] is not None
    assert calm.states["skip_retrain"] == "success"
    assert calm.states["merge_and_retrain"] == calm.states["test_model"] == "skipped"
    assert calm.states["validate_run"] == calm.states["notify"] == "success"
    assert home.query(f"select decision from ops.drift_reports where report_id = '{drift['report_id']}'") == [
        (drift["decision"],)
    ]
    assert f"event=drift_decision report_id={drift['report_id']} decision={drift['decision']}" in caplog.text
    _assert_serves(home, version, calm)
    assert "retrain_decided" not in [h["event"] for h in webhook.received]  # no event for a skip
    posted = len(webhook.received)

    # two drifted weeks: the retrain branch merges exactly the checked batches and registers a new version
    home.land("batch_w2.parquet", "batch_w3.parquet")
    assert run_dag("buffer_ingestion_weekly", "2024-04-14").state == "success"
    drifted = run_dag("drift_detection_retrain_pipeline", "2024-04-14")
    assert drifted.state == "success"
    drift = drifted.xcom["detect_drift"]
    assert drift["decision"] == "retrain" and drift["should_retrain"] is True
    assert drifted.states["skip_retrain"] == "skipped"
    assert (
        drifted.states["merge_and_retrain"]
        == drifted.states["test_model"]
        == drifted.states["validate_run"]
        == "success"
    )
    retrained = drifted.xcom["merge_and_retrain"]
    assert sorted(retrained["merged_batches"]) == sorted(drift["batch_ids"]) == ["batch_w1", "batch_w2", "batch_w3"]
    assert drifted.xcom["find_latest_model"]["version"] == retrained["version"] != version
    assert home.query("select count(*) from ops.model_registry") == [(2,)]
    assert home.query("select count(*) from ops.drift_reports") == [(2,)]
    champion = home.query("select version from ops.model_registry where is_champion")[0][0]
    _assert_serves(home, champion, drifted)
    events = [h["event"] for h in webhook.received[posted:]]
    outcome = "champion_promoted" if retrained["promoted"] else "promotion_refused"
    assert [e for e in events if e != "success"] == ["retrain_decided", outcome]
    decided = webhook.received[posted + events.index("retrain_decided")]
    assert decided["report_id"] == drift["report_id"] and decided["decision"] == "retrain"

    # rerun: the buffer is empty now, so the decision is insufficient_data and nothing is retrained
    rerun = run_dag("drift_detection_retrain_pipeline", "2024-04-15")
    assert rerun.state == "success"
    assert rerun.xcom["detect_drift"]["decision"] == "insufficient_data"
    assert rerun.states["merge_and_retrain"] == "skipped"
    assert home.query("select count(*) from ops.model_registry") == [(2,)]
