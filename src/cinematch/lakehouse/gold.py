"""Gold layer: business tables built from silver by the SQL models of cinematch/lakehouse/sql/gold, and their checks."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

import duckdb

from cinematch.core.errors import BadInput, CineMatchError
from cinematch.core.log import get_logger, log_event, timed
from cinematch.lakehouse import incremental
from cinematch.lakehouse.quality import Check, CheckResult
from cinematch.lakehouse.quality import run_checks as _run_checks
from cinematch.lakehouse.sql import gold as gold_sql

log = get_logger(__name__)

# Build order is irrelevant (every model reads only silver); the tuple fixes the order of the returned counts.
GOLD_MODELS: tuple[str, ...] = (
    "genre_analytics",
    "trending_movies",
    "temporal_trends",
    "user_engagement",
    "movie_kpis",
)
DEFAULT_PRIOR_WEIGHT = 25.0

# Columns a model gained after warehouses were built with it. Incremental runs insert into the stored table, so a
# table that lacks one is dropped first and rebuilt whole (a merge cannot fill what was never stored).
_ADDED_COLUMNS: dict[str, tuple[str, ...]] = {
    "trending_movies": ("is_new", "window_complete"),
    "temporal_trends": ("prev_period_end", "n_ratings_prev_period", "avg_rating_prev_period"),
}

_PARAM_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_LINE_COMMENT_RE = re.compile(r"--[^\n]*")


def load_sql(name: str) -> str:
    """Return the text of the gold model ``name`` (a member of GOLD_MODELS)."""
    if name not in GOLD_MODELS:
        raise BadInput(f"unknown gold model {name!r}; expected one of {', '.join(GOLD_MODELS)}")
    return gold_sql.read(name)


def _sql_params(sql: str) -> set[str]:
    # DuckDB rejects values for parameters a statement does not use, so pass only the ones the model names.
    return set(_PARAM_RE.findall(_LINE_COMMENT_RE.sub("", sql)))


def _naive_utc(as_of: datetime | None) -> datetime | None:
    # silver timestamps are naive UTC; an aware value would otherwise be cast via the session time zone.
    if as_of is None or as_of.tzinfo is None:
        return as_of
    return as_of.astimezone(UTC).replace(tzinfo=None)


def _require_silver(con: duckdb.DuckDBPyConnection) -> None:
    found = {
        row[0]
        for row in con.execute(
            "select table_name from information_schema.tables where table_schema = 'silver' "
            "and table_name in ('ratings', 'movies')"
        ).fetchall()
    }
    missing = sorted({"ratings", "movies"} - found)
    if missing:
        raise CineMatchError(f"missing {', '.join('silver.' + m for m in missing)}; build the silver layer first")


def outdated_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The gold tables an older version built without a column their model has now (they need a whole rebuild)."""
    outdated = []
    for name, added in _ADDED_COLUMNS.items():
        have = {r[0] for r in con.execute(
            "select column_name from information_schema.columns where table_schema = 'gold' and table_name = ?",
            [name]).fetchall()}  # fmt: skip
        if have and not set(added) <= have:
            outdated.append(name)
    return outdated


def _drop_outdated(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Drop the :func:`outdated_tables`; returns their names."""
    dropped = outdated_tables(con)
    for name in dropped:
        con.execute(f"drop table gold.{name}")
    if dropped:
        log_event(log, "gold_outdated_dropped", tables=",".join(dropped), reason="built before their new columns")
    return dropped


def build_gold(
    con: duckdb.DuckDBPyConnection,
    as_of: datetime | None = None,
    prior_weight: float = DEFAULT_PRIOR_WEIGHT,
    new_batches: list[str] | None = None,
    replaced: bool = False,
) -> dict[str, int]:
    """(Re)create every gold table with CREATE OR REPLACE TABLE gold.<name> AS <sql>; returns row counts.

    ``as_of`` is the run's logical date (default: newest silver rated_at); every model ignores ratings after
    it. Runs inside the caller's transaction (no BEGIN/COMMIT here), so a failed check can roll it all back.

    ``new_batches``: the ratings batches merged into silver since gold was last built. When given, the models of
    ``incremental.SCOPES`` rewrite only the keys those ratings touch (the caller guarantees gold is otherwise
    current: same movies, no logical date, nothing else changed); the result equals a full rebuild.
    ``replaced``: silver kept the rows those batches replaced in ``_silver_replaced``, so the models of
    ``incremental.MERGES`` merge the new rows into their old ones instead.
    """
    if not math.isfinite(prior_weight) or prior_weight < 0:
        raise BadInput(f"prior_weight must be a finite number >= 0, got {prior_weight!r}")
    _require_silver(con)
    as_of = _naive_utc(as_of)
    if as_of is None:
        # Resolved once here so every model and the log agree; the SQL's own default covers direct use.
        as_of = con.execute("select max(rated_at) from silver.ratings").fetchall()[0][0]
    params: dict[str, Any] = {"as_of": as_of, "prior_weight": float(prior_weight)}
    con.execute("create schema if not exists gold")
    _drop_outdated(con)  # (then incremental.prepare finds a table missing and gold is rebuilt whole)
    scoped = new_batches is not None and incremental.prepare(con, new_batches)
    counts: dict[str, int] = {}
    with timed(log, "gold_build", as_of=as_of, prior_weight=prior_weight, scoped=bool(scoped)) as info:
        for name in GOLD_MODELS:
            sql = load_sql(name)
            used = {k: v for k, v in params.items() if k in _sql_params(sql)}
            with timed(log, "gold_model", model=name) as model_info:
                written = incremental.rebuild(con, name, sql, used, as_of, replaced) if scoped else None
                if written is None:
                    con.execute(f"create or replace table gold.{name} as\n{sql}", used)
                    incremental.rebuild_state(con, name, as_of)
                else:
                    model_info["rewritten"] = written
                counts[name] = con.execute(f"select count(*) from gold.{name}").fetchall()[0][0]
                model_info["rows"] = counts[name]
        info["tables"] = len(counts)
    incremental.finish(con)
    return counts


def run_checks(
    con: duckdb.DuckDBPyConnection, checks: tuple[Check, ...] | None = None, sample_size: int = 5
) -> list[CheckResult]:
    """Run ``checks`` (default GOLD_CHECKS) and return one result per check, in order."""
    return _run_checks(con, GOLD_CHECKS if checks is None else checks, sample_size=sample_size)


# --- checks -------------------------------------------------------------------------------------------------
# Reconciliations read as_of from the gold table itself (it is a column of every table) so they hold for any
# logical date; an empty gold table falls back to the newest silver rating, so "gold lost everything" fails.


def _as_of(table: str) -> str:
    return f"coalesce((select max(as_of) from gold.{table}), (select max(rated_at) from silver.ratings))"


def _unique(table: str, *keys: str) -> Check:
    cols = ", ".join(keys)
    nulls = " or ".join(f"{k} is null" for k in keys)
    return Check(
        name=f"{table}.unique_key",
        table=table,
        sql=f"select {cols}, count(*) as n from gold.{table} group by {cols} having count(*) > 1 or {nulls}",
        description=f"({cols}) is unique and not null",
    )


def _silver_count(table: str) -> str:
    return f"select count(*) as n from silver.ratings where rated_at <= {_as_of(table)}"


_RATING_RANGE = "{col} is null or {col} < 0.5 or {col} > 5.0"

_GENRE_PAIRS = f"""
with
listed as (
    select distinct movie_id, genre
    from (select movie_id, unnest(genres) as genre from silver.movies) as e
    where genre is not null and genre <> ''
),
per_movie as (select movie_id, count(*) as n_genres from listed group by movie_id),
rated as (
    -- counted per movie first: the genre counts then multiply thousands of rows, not every rating
    select movie_id, count(*) as n from silver.ratings where rated_at <= {_as_of("genre_analytics")} group by movie_id
),
expected as (
    select coalesce(sum(r.n * coalesce(pm.n_genres, 1)), 0) as n
    from rated as r
    left join per_movie as pm on r.movie_id = pm.movie_id
),
actual as (select coalesce(sum(n_ratings), 0) as n from gold.genre_analytics)
select e.n as expected, a.n as actual from expected as e cross join actual as a where e.n <> a.n
"""

_MONTH_TOTALS = f"""
with
expected as ({_silver_count("genre_analytics")}),
actual as (
    select coalesce(sum(n_ratings_month), 0) as n
    from (select distinct year, month, n_ratings_month from gold.genre_analytics) as m
)
select e.n as expected, a.n as actual from expected as e cross join actual as a where e.n <> a.n
"""

_TRENDING_NESTED = """
with pivoted as (
    select
        movie_id,
        sum(case when window_days = 7 then n_ratings else 0 end) as n_7d,
        sum(case when window_days = 30 then n_ratings else 0 end) as n_30d,
        sum(case when window_days = 90 then n_ratings else 0 end) as n_90d
    from gold.trending_movies
    group by movie_id
)
select * from pivoted where n_7d > n_30d or n_30d > n_90d
"""

_TRENDING_RECONCILE = f"""
with
a as (select {_as_of("trending_movies")} as as_of),
counted as (
    -- one pass over the last 90 days, each rating counted in every window that holds it
    select
        sum(case when r.rated_at > a.as_of - interval '7' day then 1 else 0 end) as n_7,
        sum(case when r.rated_at > a.as_of - interval '30' day then 1 else 0 end) as n_30,
        count(*) as n_90
    from silver.ratings as r
    cross join a
    where r.rated_at > a.as_of - interval '90' day and r.rated_at <= a.as_of
),
expected as (
    select 7 as window_days, coalesce(n_7, 0) as n from counted
    union all select 30, coalesce(n_30, 0) from counted
    union all select 90, n_90 from counted
),
actual as (
    select window_days, sum(n_ratings) as n from gold.trending_movies group by window_days
)
select e.window_days, e.n as expected, coalesce(t.n, 0) as actual
from expected as e
left join actual as t on e.window_days = t.window_days
where e.n <> coalesce(t.n, 0)
"""

_TRENDING_RANKS = """
with ranked as (
    select
        window_days,
        trending_rank,
        trending_score,
        lag(trending_score) over (partition by window_days order by trending_rank) as prev_score
    from gold.trending_movies
),
bad_order as (
    select window_days, trending_rank from ranked where prev_score < trending_score
),
bad_sequence as (
    select window_days, cast(null as bigint) as trending_rank
    from gold.trending_movies
    group by window_days
    having min(trending_rank) <> 1 or max(trending_rank) <> count(*)
        or count(distinct trending_rank) <> count(*)
)
select * from bad_order union all select * from bad_sequence
"""

_TRENDING_COMPLETE = """
with first_rating as (select min(rated_at) as data_start from silver.ratings)
select t.movie_id, t.window_days, t.window_start, t.window_complete, f.data_start
from gold.trending_movies as t
cross join first_rating as f
where t.window_complete is null
   or t.window_complete <> coalesce(f.data_start <= t.window_start - (t.window_end - t.window_start), false)
"""

_TEMPORAL_YOY = """
with expected as (
    select
        cur.year,
        cur.genre,
        cur.yoy_volume_change,
        cur.yoy_avg_rating_change,
        cur.prev_period_end,
        cur.n_ratings_prev_period,
        cur.avg_rating_prev_period,
        prev.n_ratings as prev_year_n,
        prev.avg_rating as prev_year_avg,
        cast(cur.n_ratings - cur.n_ratings_prev_period as double) / nullif(cur.n_ratings_prev_period, 0) as exp_volume,
        cur.avg_rating - cur.avg_rating_prev_period as exp_avg
    from gold.temporal_trends as cur
    left join gold.temporal_trends as prev on cur.genre = prev.genre and prev.year = cur.year - 1
)
select * from expected
where (exp_volume is null) <> (yoy_volume_change is null)
   or (exp_avg is null) <> (yoy_avg_rating_change is null)
   or abs(exp_volume - yoy_volume_change) > 1e-9
   or abs(exp_avg - yoy_avg_rating_change) > 1e-9
   or (prev_year_n is null) <> (n_ratings_prev_period is null)
   or n_ratings_prev_period < 0
   or n_ratings_prev_period > prev_year_n
   or (n_ratings_prev_period = 0) <> (avg_rating_prev_period is null)
   or prev_period_end is null
   or extract(year from prev_period_end) <> year - 1
   or (prev_period_end = make_date(year - 1, 12, 31)
       and (n_ratings_prev_period <> prev_year_n or abs(avg_rating_prev_period - prev_year_avg) > 1e-9))
"""

# The period from silver, in other terms than the model's: the day count from 1 January to the year's last rating
_TEMPORAL_PERIODS = f"""
with
a as (select {_as_of("temporal_trends")} as as_of),
rated as (
    select cast(extract(year from r.rated_at) as integer) as year, cast(r.rated_at as date) as rated_day
    from silver.ratings as r
    cross join a
    where r.rated_at <= a.as_of
),
final_days as (
    select year, max(rated_day) as final_day from rated group by year
),
expected_ends as (
    select
        year,
        case
            when final_day = make_date(year, 12, 31) then make_date(year - 1, 12, 31)
            else least(make_date(year - 1, 1, 1) + cast(final_day - make_date(year, 1, 1) as integer),
                       make_date(year - 1, 12, 31))
        end as prev_period_end
    from final_days
),
expected as (
    select
        e.year,
        e.prev_period_end,
        count(r.rated_day) as n_prev_year,
        count(case when r.rated_day <= e.prev_period_end then 1 end) as n_prev_period
    from expected_ends as e
    left join rated as r on r.year = e.year - 1
    group by e.year, e.prev_period_end
)
select t.year, t.prev_period_end, t.n_ratings_prev_period, e.prev_period_end as expected_end, e.n_prev_period
from gold.temporal_trends as t
inner join expected as e on t.year = e.year
where t.genre = 'ALL' and (
    t.prev_period_end is null
    or t.prev_period_end <> e.prev_period_end
    or (e.n_prev_year = 0 and t.n_ratings_prev_period is not null)
    or (e.n_prev_year > 0 and (t.n_ratings_prev_period is null or t.n_ratings_prev_period <> e.n_prev_period))
)
"""

_MOVIE_RANKS = """
with ranked as (
    select
        movie_id,
        n_ratings,
        popularity_rank,
        lag(n_ratings) over (order by popularity_rank) as prev_n,
        lag(movie_id) over (order by popularity_rank) as prev_movie_id
    from gold.movie_kpis
),
bad_order as (
    select movie_id, popularity_rank from ranked
    where prev_n < n_ratings or (prev_n = n_ratings and prev_movie_id > movie_id)
),
bad_sequence as (
    select cast(null as bigint) as movie_id, cast(null as bigint) as popularity_rank
    from gold.movie_kpis
    having min(popularity_rank) <> 1 or max(popularity_rank) <> count(*)
        or count(distinct popularity_rank) <> count(*)
)
select * from bad_order union all select * from bad_sequence
"""

_MOVIE_SHRINKAGE = """
with m as (
    select sum(n_ratings * avg_rating) / nullif(sum(n_ratings), 0) as global_mean from gold.movie_kpis
)
select k.movie_id, k.n_ratings, k.avg_rating, k.bayesian_rating, m.global_mean
from gold.movie_kpis as k
cross join m
where k.bayesian_rating is not null and (
    (k.n_ratings = 0 and abs(k.bayesian_rating - m.global_mean) > 1e-9)
    or (k.n_ratings > 0 and (
        k.bayesian_rating < least(k.avg_rating, m.global_mean) - 1e-9
        or k.bayesian_rating > greatest(k.avg_rating, m.global_mean) + 1e-9
    ))
)
"""

GOLD_CHECKS: tuple[Check, ...] = (
    # genre_analytics
    _unique("genre_analytics", "genre", "year", "month"),
    Check(
        "genre_analytics.counts_valid",
        "genre_analytics",
        "select * from gold.genre_analytics where n_ratings is null or n_ratings < 1 or n_users < 1"
        " or n_movies < 1 or n_users > n_ratings or n_movies > n_ratings or n_ratings > n_ratings_month",
        description="counts positive; distinct users/movies <= ratings <= month total",
    ),
    Check(
        "genre_analytics.share_in_unit_interval",
        "genre_analytics",
        "select * from gold.genre_analytics"
        " where share_of_ratings is null or share_of_ratings < 0 or share_of_ratings > 1",
        description="share_of_ratings = n_ratings / n_ratings_month within [0, 1]",
    ),
    Check(
        "genre_analytics.avg_rating_in_range",
        "genre_analytics",
        "select * from gold.genre_analytics where " + _RATING_RANGE.format(col="avg_rating"),
    ),
    Check(
        "genre_analytics.reconciles_genre_pairs",
        "genre_analytics",
        _GENRE_PAIRS,
        description="sum of n_ratings == number of (rating, genre) pairs in silver",
    ),
    Check(
        "genre_analytics.reconciles_month_totals",
        "genre_analytics",
        _MONTH_TOTALS,
        description="the month totals are consistent and add up to count(*) of silver ratings",
    ),
    # trending_movies
    _unique("trending_movies", "movie_id", "window_days"),
    Check(
        "trending_movies.window_labels_valid",
        "trending_movies",
        "select * from gold.trending_movies where not ((window_days = 7 and \"window\" = '7d')"
        " or (window_days = 30 and \"window\" = '30d') or (window_days = 90 and \"window\" = '90d'))"
        ' or window_days is null or "window" is null',
    ),
    Check(
        "trending_movies.counts_valid",
        "trending_movies",
        "select * from gold.trending_movies where n_ratings is null or n_ratings < 1"
        " or n_ratings_prev is null or n_ratings_prev < 0",
    ),
    Check(
        "trending_movies.avg_ratings_in_range",
        "trending_movies",
        "select * from gold.trending_movies where "
        + _RATING_RANGE.format(col="avg_rating")
        + " or (n_ratings_prev > 0 and ("
        + _RATING_RANGE.format(col="avg_rating_prev")
        + ")) or (n_ratings_prev = 0 and avg_rating_prev is not null)",
    ),
    Check(
        "trending_movies.velocity_formula",
        "trending_movies",
        "select * from gold.trending_movies where is_new is null or is_new <> (n_ratings_prev = 0)"
        " or (is_new and velocity is not null) or (not is_new and (velocity is null or abs(velocity"
        " - cast(n_ratings - n_ratings_prev as double) / n_ratings_prev) > 1e-9))",
        description="is_new = no rating in the previous window; velocity null for new movies, else the ratio",
    ),
    Check(
        "trending_movies.window_complete_valid",
        "trending_movies",
        _TRENDING_COMPLETE,
        description="window_complete = silver's first rating is at or before the previous window's start",
    ),
    Check(
        "trending_movies.windows_nested",
        "trending_movies",
        _TRENDING_NESTED,
        description="per movie n_ratings(7d) <= n_ratings(30d) <= n_ratings(90d)",
    ),
    Check(
        "trending_movies.ranks_valid",
        "trending_movies",
        _TRENDING_RANKS,
        description="ranks are 1..N per window and follow trending_score",
    ),
    Check(
        "trending_movies.reconciles_with_silver",
        "trending_movies",
        _TRENDING_RECONCILE,
        description="per window, sum of n_ratings == silver ratings in (as_of - w, as_of]",
    ),
    Check(
        "trending_movies.window_7d_not_empty",
        "trending_movies",
        "select count(*) as n_movies_7d from gold.trending_movies where window_days = 7 having count(*) = 0",
        severity="soft",
        description="something was rated in the 7 days before as_of (else silver is stale or as_of is off)",
    ),
    # temporal_trends
    _unique("temporal_trends", "year", "genre"),
    Check(
        "temporal_trends.counts_valid",
        "temporal_trends",
        "select * from gold.temporal_trends where n_ratings is null or n_ratings < 1 or "
        + _RATING_RANGE.format(col="avg_rating"),
    ),
    Check(
        "temporal_trends.genre_within_all",
        "temporal_trends",
        "select g.* from gold.temporal_trends as g left join gold.temporal_trends as a"
        " on a.year = g.year and a.genre = 'ALL'"
        " where g.genre <> 'ALL' and (a.n_ratings is null or g.n_ratings > a.n_ratings)",
        description="every genre-year has an ALL row with at least as many ratings",
    ),
    Check(
        "temporal_trends.yoy_consistent",
        "temporal_trends",
        _TEMPORAL_YOY,
        description="yoy columns follow the previous-period columns, which lie within the row of the year before",
    ),
    Check(
        "temporal_trends.prev_period_reconciles_with_silver",
        "temporal_trends",
        _TEMPORAL_PERIODS,
        description="per year, the ALL row's period ends on the last rating's day of year and counts silver's ratings",
    ),
    Check(
        "temporal_trends.reconciles_with_silver",
        "temporal_trends",
        f"""
        with expected as ({_silver_count("temporal_trends")}),
        actual as (select coalesce(sum(n_ratings), 0) as n from gold.temporal_trends where genre = 'ALL')
        select e.n as expected, a.n as actual from expected as e cross join actual as a where e.n <> a.n
        """,
        description="sum of the ALL rows == count(*) of silver ratings",
    ),
    # user_engagement
    _unique("user_engagement", "user_id"),
    Check(
        "user_engagement.values_valid",
        "user_engagement",
        "select * from gold.user_engagement where n_ratings is null or n_ratings < 1 or active_days < 1"
        " or active_days > n_ratings or first_rated_at > last_rated_at or genre_diversity is null"
        " or genre_diversity < 0 or high_rating_share is null or high_rating_share < 0"
        " or high_rating_share > 1 or " + _RATING_RANGE.format(col="avg_rating"),
    ),
    Check(
        "user_engagement.reconciles_with_silver",
        "user_engagement",
        f"""
        with expected as ({_silver_count("user_engagement")}),
        actual as (select coalesce(sum(n_ratings), 0) as n from gold.user_engagement)
        select e.n as expected, a.n as actual from expected as e cross join actual as a where e.n <> a.n
        """,
        description="sum of n_ratings == count(*) of silver ratings",
    ),
    # movie_kpis
    _unique("movie_kpis", "movie_id"),
    Check(
        "movie_kpis.covers_silver_movies",
        "movie_kpis",
        "select coalesce(s.movie_id, k.movie_id) as movie_id, s.movie_id is null as extra_in_gold"
        " from silver.movies as s full outer join gold.movie_kpis as k on s.movie_id = k.movie_id"
        " where s.movie_id is null or k.movie_id is null",
        description="exactly the movies of silver.movies",
    ),
    Check(
        "movie_kpis.stats_valid",
        "movie_kpis",
        "select * from gold.movie_kpis where n_ratings is null or n_ratings < 0"
        " or (n_ratings = 0 and avg_rating is not null)"
        " or (n_ratings > 0 and (" + _RATING_RANGE.format(col="avg_rating") + "))"
        " or (n_ratings < 2 and stddev_rating is not null)"
        " or (n_ratings >= 2 and (stddev_rating is null or stddev_rating < 0))"
        " or (n_ratings > 0 and bayesian_rating is null)"
        " or bayesian_rating < 0.5 or bayesian_rating > 5.0",
    ),
    Check(
        "movie_kpis.bayesian_shrinks_toward_mean",
        "movie_kpis",
        _MOVIE_SHRINKAGE,
        description="bayesian_rating lies between the movie's mean and the global mean",
    ),
    Check(
        "movie_kpis.ranks_valid",
        "movie_kpis",
        _MOVIE_RANKS,
        description="popularity_rank is 1..N by n_ratings desc, movie_id asc",
    ),
    Check(
        "movie_kpis.reconciles_with_silver",
        "movie_kpis",
        f"""
        with expected as ({_silver_count("movie_kpis")}),
        actual as (select coalesce(sum(n_ratings), 0) as n from gold.movie_kpis)
        select e.n as expected, a.n as actual from expected as e cross join actual as a where e.n <> a.n
        """,
        description="sum of n_ratings == count(*) of silver ratings (fails on ratings of unknown movies)",
    ),
)


def checks_for(table: str) -> tuple[Check, ...]:
    """The GOLD_CHECKS of one gold table."""
    return tuple(c for c in GOLD_CHECKS if c.table == table)
