"""Next-period (prequential) scoring of a replay: what the champion served, against what users then rated."""

from __future__ import annotations

import time
from typing import Any

import duckdb
import pyarrow as pa

from cinematch.core.errors import CineMatchError
from cinematch.core.settings import Settings
from cinematch.pipelines.replay_data import PeriodFile, ReplayPlan, read_period
from cinematch.recommender import registry
from cinematch.recommender.prequential import score_ratings, score_served
from cinematch.serving.layout import current_views
from cinematch.storage.audit import naive_utc
from cinematch.storage.protocol import Warehouse
from cinematch.storage.replay_rows import RowKey

K = 10


def served(settings: Settings) -> tuple[str, pa.Table, pa.Table]:
    """The published views' model version, personal top-10 lists and cold-start list."""
    path = current_views(settings)
    if path is None:
        raise CineMatchError(f"the replay home {settings.home_dir} has no published views; delete it and rerun")
    views = duckdb.connect(str(path), read_only=True)
    try:
        version = views.execute("select model_version from meta").fetchall()[0][0]
        lists = views.sql(f"select user_id, movie_id, rank from recommendations where rank <= {K}").to_arrow_table()
        fallback = views.sql(f"select movie_id, rank from fallback where rank <= {K}").to_arrow_table()
    finally:
        views.close()
    return str(version), lists, fallback


def score_period(
    con: Warehouse, settings: Settings, plan: ReplayPlan, period: PeriodFile, key: RowKey
) -> dict[str, Any]:
    """The period's ``scored`` row: the served top-10 (hit rate, NDCG, coverage, fallback share) and the
    champion's predicted ratings (RMSE on the known pairs) against the period's ratings, before it is ingested."""
    t0 = time.perf_counter()
    version, lists, fallback = served(settings)
    actual = read_period(period)
    n_movies = int(con.execute("select count(*) from silver.movies").fetchall()[0][0])
    top = score_served(lists, fallback, actual, catalogue_size=max(n_movies, 1), k=K)
    rmse = score_ratings(registry.load_model(settings, version).predict, actual)
    return {
        "replay_id": key.replay_id,
        "policy": key.policy,
        "period": key.period,
        "period_start": naive_utc(key.start),
        "period_end": naive_utc(key.end),
        "status": "scored",
        "model_version": version,
        "n_ratings": actual.num_rows,
        "n_users": top["n_users"],
        "hit_rate_at_10": top["hit_rate"],
        "ndcg_at_10": top["ndcg"],
        "coverage": top["coverage"],
        "fallback_share": top["fallback_share"],
        "rmse": rmse["rmse"],
        "n_rmse": rmse["n_known"],
        "n_unknown": rmse["n_unknown"],
        "seconds": round(time.perf_counter() - t0, 3),
    }
