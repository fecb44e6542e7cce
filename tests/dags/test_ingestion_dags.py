"""buffer_ingestion_weekly and medallion_pipeline under dag.test(): exactly once, asset events, reruns change nothing."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.airflow

BUFFER_URI = "cinematch://bronze/ratings_buffer"


def test_buffer_ingestion_loads_once_and_emits_the_asset(home, run_dag, webhook, asset_events) -> None:
    home.land("movies.csv", "ratings.parquet")
    events = asset_events(BUFFER_URI)

    first = run_dag("buffer_ingestion_weekly", "2024-03-25")
    assert first.state == "success"
    assert set(first.states.values()) == {"success"}
    assert first.xcom["ingest_batch"]["batch_ids"] == ["base"]
    assert first.xcom["check_buffer_status"]["total_records"] == 8000
    assert home.query("select count(*) from bronze.ratings_buffer") == [(8000,)]
    assert asset_events(BUFFER_URI) == events + 1
    assert sorted(p.name for p in (home.landing / "processed").iterdir()) == ["base.parquet", "movies.csv"]
    assert [h["status"] for h in webhook.received] == ["success"]
    assert "base" in webhook.received[0]["text"]
    before = home.snapshot()

    # nothing new in landing: a clean short-circuit, no asset event, every table unchanged
    again = run_dag("buffer_ingestion_weekly", "2024-03-26")
    assert again.state == "success"
    assert again.states["has_new_data"] == "success" and again.states["publish_buffer"] == "skipped"
    assert again.states["validate_run"] == "success" and again.states["notify"] == "success"
    assert asset_events(BUFFER_URI) == events + 1
    assert home.snapshot() == before

    # a batch chosen by params, twice: loaded once, then skipped by checksum
    conf = {"file": str(home.dataset / "batch_w1.parquet"), "batch_id": "week_1"}
    by_param = run_dag("buffer_ingestion_weekly", "2024-04-01", conf)
    assert by_param.xcom["ingest_batch"]["batch_ids"] == ["week_1"]
    assert by_param.xcom["ingest_batch"]["inserted"] == 48
    assert asset_events(BUFFER_URI) == events + 2
    after_param = home.snapshot()
    repeat = run_dag("buffer_ingestion_weekly", "2024-04-02", conf)
    assert repeat.xcom["ingest_batch"]["skipped"] == ["week_1"]
    assert repeat.states["publish_buffer"] == "skipped"
    assert home.snapshot() == after_param
    assert home.query("select count(*) from bronze.ratings_buffer") == [(8048,)]


def test_medallion_pins_gold_to_the_logical_date_and_reruns_change_nothing(home, run_dag) -> None:
    home.land("movies.csv", "ratings.parquet", "batch_w1.parquet")

    first = run_dag("medallion_pipeline", "2024-03-20")
    assert first.state == "success" and set(first.states.values()) == {"success"}
    built = first.xcom["build_silver_gold"]
    assert built["as_of"].startswith("2024-03-20T23:59:59")
    assert sorted(built["new_batches"]) == ["base", "batch_w1", "movies"]
    assert built["checks_failed"] == [] and built["checks_run"] > 0
    assert home.query("select max(as_of) from gold.movie_kpis")[0][0].isoformat().startswith("2024-03-20T23:59:59")
    assert home.query("select count(*) from silver.ratings") == [(8048,)]
    # the new gold reaches the API: CURRENT names views whose trending is this run's (no champion yet)
    _, meta, trending_as_of = home.views()
    assert meta["model_version"] is None and trending_as_of.isoformat().startswith("2024-03-20T23:59:59")
    before = home.snapshot()

    rerun = run_dag("medallion_pipeline", "2024-03-20")
    assert rerun.state == "success"
    assert rerun.xcom["ingest_raw"]["files"] == 0 and rerun.xcom["build_silver_gold"]["new_batches"] == []
    assert home.snapshot() == before

    # the next day's run (as a backfill would do it) moves gold forward, silver stays put
    later = run_dag("medallion_pipeline", "2024-03-31")
    assert later.xcom["build_silver_gold"]["as_of"].startswith("2024-03-31T23:59:59")
    after = home.snapshot()
    assert after["silver.ratings"] == before["silver.ratings"]
    assert after["gold.movie_kpis"] != before["gold.movie_kpis"]
    assert home.views()[2].isoformat().startswith("2024-03-31T23:59:59")


def test_sessions_users_and_content_flow_through_the_weekly_ingestion(home, run_dag) -> None:
    """Landing files are routed by kind: users/sessions CSV and content JSON load beside ratings, then reach gold."""
    home.land("movies.csv", "ratings.parquet", "users.csv", "content.json", "sessions.csv")
    run = run_dag("buffer_ingestion_weekly", "2024-03-25")
    assert run.state == "success" and set(run.states.values()) == {"success"}, run.states
    loaded = {b["batch_id"]: b["kind"] for b in run.xcom["ingest_batch"]["loaded"]}
    assert loaded == {"base": "ratings", "movies": "movies", "users": "users", "content": "content",
                      "sessions": "sessions"}  # fmt: skip
    assert home.query("select count(*) from bronze.sessions") == [(2400,)]  # a seeded 30% of the 8000 ratings

    built = run_dag("medallion_pipeline", "2024-03-25")
    assert built.state == "success", built.states
    assert home.query("select sum(views) from gold.content_performance") == [(2400,)]
    assert home.query("select sum(n_sessions) from gold.user_engagement")[0][0] > 0
