"""The ``select`` of every serving view, run against the warehouse when a publication is written.

Tables of a views file:

- ``recommendations``  the champion's top-N per user with titles, genres and ``because`` (up to two movie ids of the
                       user's history that contributed most), recomputed from every user's current history at each
                       publish (``serving.recommendations``), so users and ratings that arrived since training count.
- ``fallback``         the cold-start list, popular and recent: movies by their ratings in the last 90 days of
                       activity (the ``score``), then by ``bayesian_rating``, among non-placeholder movies with at least
                       ``min_ratings`` ratings, where ``min_ratings`` = the 75th percentile of ``n_ratings`` over rated
                       movies, capped at 50 and at least 1 (so a small catalogue still has a list, and a large one
                       is not filtered down to blockbusters only). Ties go to the more popular movie.
- ``trending``         ``gold.trending_movies`` (top 100 per window) with genres.
- ``genres``           per genre: all-time ratings and mean, and the latest month's ratings, mean and share.
- ``models``           ``ops.model_registry`` rows with the headline metrics as columns.
- ``drift``            ``ops.drift_reports`` history (empty until the first drift check).
- ``buffer``           ``bronze.ingestion_metadata`` history with the cumulative ratings count.
- ``rating_distribution``  half-star histogram of the reference (the champion's training batches; without a champion,
                       every ratings batch but the latest) against the latest ratings batch, from ``silver.ratings``.
- ``content_performance``  ``gold.content_performance`` (per movie: views, unique viewers, watch time, completion
                       rate from viewing sessions) with genres; empty before any sessions are loaded.
- ``meta``             one row: published_at, model_version, the model's batch_ids, counts.
- ``user_summary``, ``user_ratings``, ``user_genres``, ``population_genres``: the user page's views
                       (:mod:`cinematch.serving.user_sql`).
"""

from __future__ import annotations

from typing import Any

from cinematch.recommender.batch import RECENT_DAYS
from cinematch.serving.user_sql import user_view_sql

__all__ = ["ALIAS", "FALLBACK_SIZE", "TRENDING_SIZE", "view_sql"]

FALLBACK_SIZE = 100  # the API's k is bounded to 100
TRENDING_SIZE = 100
ALIAS = "cm_views"

_PERFORMANCE_COLUMNS = (
    "movie_id, title, views, unique_viewers, total_watch_hours, avg_watch_minutes, runtime_minutes, "
    "completion_rate, completed_views, first_viewed_at, last_viewed_at, views_rank, as_of"
)


def view_sql(version: str | None, latest: str | None, has_performance: bool = True, has_users: bool = False,
             duckdb: bool = False) -> dict[str, tuple[str, list[Any]]]:  # fmt: skip
    """One ``select`` per view table (run against the warehouse, written into the attached views file, in order);
    ``duckdb``: the warehouse is DuckDB, whose own functions some views use."""
    v = ALIAS
    recs_filter = "r.model_version = ?" if version else "false"
    return {
        "recommendations": (
            f"""select r.user_id, r.rank, r.movie_id, coalesce(m.title, 'Unknown movie ' || r.movie_id) as title,
                       coalesce(m.genres, cast([] as varchar[])) as genres, r.score, r.model_version, r.generated_at,
                       coalesce(r.because, '') as because
                from serving.recommendations r left join silver.movies m using (movie_id)
                where {recs_filter}
                order by r.user_id, r.rank""",
            [version] if version else [],
        ),
        "fallback": (
            f"""with rated as (select * from gold.movie_kpis where n_ratings > 0 and not is_placeholder),
                threshold as (
                    select greatest(1, least(50, cast(ceil(quantile_cont(n_ratings, 0.75)) as bigint))) as min_ratings
                    from rated),
                latest as (select max(rated_at) as last_rated from silver.ratings),
                recent as (
                    select s.movie_id, count(*) as n_recent
                    from silver.ratings s cross join latest l
                    where s.rated_at >= l.last_rated - interval {RECENT_DAYS} day
                    group by s.movie_id)
                select cast(row_number() over (order by coalesce(r.n_recent, 0) desc, k.bayesian_rating desc,
                                                        k.popularity_rank) as integer) as rank,
                       k.movie_id, k.title, coalesce(m.genres, cast([] as varchar[])) as genres,
                       cast(coalesce(r.n_recent, 0) as double) as score, k.bayesian_rating, k.n_ratings,
                       k.avg_rating, t.min_ratings,
                       coalesce(r.n_recent, 0) as n_recent
                from rated k cross join threshold t left join silver.movies m using (movie_id)
                     left join recent r using (movie_id)
                where k.n_ratings >= t.min_ratings
                order by rank limit {FALLBACK_SIZE}""",
            [],
        ),
        "trending": (
            f"""select t."window" as window_label, t.window_days, cast(t.trending_rank as integer) as rank, t.movie_id,
                       coalesce(t.title, 'Unknown movie ' || t.movie_id) as title,
                       coalesce(m.genres, cast([] as varchar[])) as genres, t.trending_score, t.n_ratings,
                       t.avg_rating, t.velocity, t.is_new, t.bayesian_rating, t.window_start, t.window_end,
                       t.window_complete, t.as_of
                from gold.trending_movies t left join silver.movies m using (movie_id)
                where t.trending_rank <= {TRENDING_SIZE}
                order by t.window_days, t.trending_rank""",
            [],
        ),
        "genres": (
            """with g as (select * from gold.genre_analytics),
                latest as (select max(month_start) as month_start, max(as_of) as as_of from g),
                alltime as (
                    select genre, sum(n_ratings) as n_ratings, sum(avg_rating * n_ratings) / sum(n_ratings) as avg_rating,
                           count(*) as n_months
                    from g group by genre),
                latest_month as (
                    select g.genre, g.n_ratings, g.avg_rating, g.share_of_ratings
                    from g join latest l on g.month_start = l.month_start)
                select a.genre, a.n_ratings, a.avg_rating, a.n_months, l.month_start as latest_month,
                       coalesce(lm.n_ratings, 0) as latest_n_ratings, lm.avg_rating as latest_avg_rating,
                       coalesce(lm.share_of_ratings, 0.0) as latest_share, l.as_of
                from alltime a cross join latest l left join latest_month lm using (genre)
                order by a.n_ratings desc, a.genre""",
            [],
        ),
        "models": (
            """select version, created_at, status, is_champion, cast(params as varchar) as params,
                      cast(metrics as varchar) as metrics, cast(batch_ids as varchar) as batch_ids, n_train, n_test,
                      cast(promotion as varchar) as promotion,
                      try_cast(metrics->>'rmse' as double) as rmse, try_cast(metrics->>'mae' as double) as mae,
                      try_cast(metrics->>'precision_at_10' as double) as precision_at_10,
                      try_cast(metrics->>'recall_at_10' as double) as recall_at_10,
                      try_cast(metrics->>'ndcg_at_10' as double) as ndcg_at_10
               from ops.model_registry order by version""",
            [],
        ),
        "drift": (
            """select report_id, checked_at, model_version, cast(batch_ids as varchar) as batch_ids, n_reference,
                      n_current, kl_divergence, mean_shift, median_shift, psi, ks_statistic, score,
                      model_rmse_reference, model_rmse_current, model_degradation, decision, should_retrain
               from ops.drift_reports order by checked_at, report_id""",
            [],
        ),
        "buffer": (
            """select batch_id, ingestion_date, kind, record_count, quarantined_count, status,
                      sum(case when kind = 'ratings' and status = 'completed' then record_count else 0 end)
                          over (order by ingestion_date, batch_id rows unbounded preceding) as cumulative_records
               from bronze.ingestion_metadata order by ingestion_date, batch_id""",
            [],
        ),
        "rating_distribution": (
            f"""with bins as (select cast(i as double) / 2 as rating from range(1, 11) t(i)),
                binned as (
                    select least(5.0, greatest(0.5, round(rating * 2) / 2)) as rating,
                           batch_id in (select batch_id from {v}_reference) as in_reference,
                           batch_id = ? as in_latest
                    from silver.ratings
                    where batch_id in (select batch_id from {v}_reference) or batch_id = ?),
                counts as (
                    select rating, count(*) filter (where in_reference) as reference_count,
                           count(*) filter (where in_latest) as latest_count
                    from binned group by rating)
                select b.rating, coalesce(c.reference_count, 0) as reference_count,
                       coalesce(c.latest_count, 0) as latest_count,
                       coalesce(c.reference_count, 0) / greatest(sum(coalesce(c.reference_count, 0)) over (), 1)
                           as reference_share,
                       coalesce(c.latest_count, 0) / greatest(sum(coalesce(c.latest_count, 0)) over (), 1)
                           as latest_share
                from bins b left join counts c using (rating)
                order by b.rating""",
            [latest, latest],
        ),
        # one row per movie: silver.movies, its rating KPIs and the latest TMDB fetch (nulls when not enriched)
        "movie_details": (
            """with tmdb as (
                    select * from (
                        select movie_id, tmdb_id, budget, revenue, runtime, popularity, vote_average, vote_count,
                               release_date, director, top_cast,
                               row_number() over (partition by movie_id order by fetched_at desc, tmdb_id) as pick
                        from silver.tmdb_movies where movie_id is not null) as t
                    where pick = 1)
                select m.movie_id, m.title, m.genres, m.release_year, m.is_placeholder, k.n_ratings, k.avg_rating,
                       k.bayesian_rating, t.tmdb_id, t.budget, t.revenue, t.runtime, t.popularity, t.vote_average,
                       t.vote_count, t.release_date, t.director, t.top_cast
                from silver.movies m left join gold.movie_kpis k using (movie_id) left join tmdb t using (movie_id)
                order by m.movie_id""",
            [],
        ),
        "content_performance": (
            f"""select p.*, coalesce(m.genres, cast([] as varchar[])) as genres
                from (select {_PERFORMANCE_COLUMNS} from gold.content_performance) p
                left join silver.movies m using (movie_id)
                order by p.views_rank"""
            if has_performance
            else """select cast(null as bigint) as movie_id, cast(null as varchar) as title,
                         cast(null as bigint) as views, cast(null as bigint) as unique_viewers,
                         cast(null as double) as total_watch_hours, cast(null as double) as avg_watch_minutes,
                         cast(null as double) as runtime_minutes, cast(null as double) as completion_rate,
                         cast(null as bigint) as completed_views, cast(null as timestamp) as first_viewed_at,
                         cast(null as timestamp) as last_viewed_at, cast(null as bigint) as views_rank,
                         cast(null as timestamp) as as_of, cast([] as varchar[]) as genres
                  from silver.movies where false""",
            [],
        ),
        **user_view_sql(v, has_users, top_n_aggregate=duckdb),
    }
