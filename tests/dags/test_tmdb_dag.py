"""tmdb_enrichment under real Airflow: dag.test() against the local fake TMDB API."""

from __future__ import annotations

import pytest
from tests.ingest.tmdb.fake_tmdb import KEY, LINKS, MOVIES, SCRIPT, FakeTmdb

pytestmark = pytest.mark.airflow


def test_tmdb_dag_schedule(dagbag) -> None:
    dag = dagbag.dags["tmdb_enrichment"]
    assert dag.catchup is False and "expression='0 */4 * * *'" in repr(dag.timetable)
    assert dag.get_task("build_silver_gold").upstream_task_ids == {"fetch_tmdb"}


def test_tmdb_dag_runs_against_fake_api(home, run_dag, monkeypatch) -> None:
    home.land("movies.csv", "ratings.parquet")
    links = home.path / "links.csv"  # not in landing/: that folder is for batches
    links.write_text(LINKS)  # the generated movies 1..6 get the fixture TMDB ids
    assert run_dag("buffer_ingestion_weekly", "2024-03-24").state == "success"
    with FakeTmdb(MOVIES, SCRIPT) as fake:
        monkeypatch.setenv("CINEMATCH_TMDB_API_KEY", KEY)
        monkeypatch.setenv("CINEMATCH_TMDB_BASE_URL", fake.url)
        monkeypatch.setenv("CINEMATCH_TMDB_RATE_LIMIT", "50")
        run = run_dag("tmdb_enrichment", "2024-03-24", {"links": str(links)})
    assert run.state == "success", run.states
    fetched = run.xcom["fetch_tmdb"]
    assert (fetched["fetched"], fetched["not_found"], fetched["malformed"], fetched["no_tmdb_id"]) == (3, 1, 1, 1)
    assert run.xcom["build_silver_gold"]["gold_rows"]["tmdb_sentiment"] == 5
    assert home.query("select count(*) from silver.tmdb_movies") == [(3,)]
    assert home.query("select budget, runtime from gold.movie_kpis where movie_id = 1") == [(30000000, 81)]
