"""
### tmdb_enrichment

Every 4 hours: enrich the MovieLens catalogue from the TMDB API, then rebuild silver and gold.

- **tasks**: `fetch_tmdb` (details, credits and reviews of the movies of `links.csv` not fetched yet, rate-limited
  to `CINEMATCH_TMDB_RATE_LIMIT` requests/s, resumable: a killed run loses only its in-flight ids) →
  `build_silver_gold` (silver.tmdb_movies/tmdb_reviews with review sentiment, gold.tmdb_sentiment and the TMDB
  columns of gold.movie_kpis, behind the quality gates; gold is rebuilt as of the end of the logical date, also
  when no ratings batch is new) → `publish_views` (the TMDB details reach the API) → `notify`.
- **params**: `links` (a MovieLens links.csv; default: the one beside the ingested movies file), `limit`
  (at most this many new movies per run; empty = all).
- **needs**: `CINEMATCH_TMDB_API_KEY` (never logged) and optionally `CINEMATCH_TMDB_BASE_URL`.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Param, dag, task

from cinematch import dag_tasks as steps
from cinematch.pipelines import alerts, data_tasks


@dag(
    schedule="0 */4 * * *",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["cinematch", "tmdb", "enrichment"],
    default_args=steps.default_args(),
    params={
        "links": Param(None, type=["null", "string"], description="links.csv; empty = beside the movies file"),
        "limit": Param(None, type=["null", "integer"], description="at most this many new movies per run"),
    },
)
def tmdb_enrichment() -> None:
    @task(pool=steps.POOL, **steps.lineage("tmdb"))
    def fetch_tmdb(params: dict | None = None) -> dict:
        return data_tasks.fetch_tmdb(links=params["links"], limit=params["limit"])

    @task(pool=steps.POOL, **steps.lineage("etl"))
    def build_silver_gold(fetched: dict, logical_date: datetime | None = None) -> dict:
        return data_tasks.build_silver_gold(logical_date)

    @task
    def notify(built: dict, published: dict, run_id: str | None = None) -> dict:
        return alerts.notify("tmdb_enrichment", built, run_id, published)

    built = build_silver_gold(fetch_tmdb())
    notify(built, steps.publish(built))


tmdb_enrichment()
