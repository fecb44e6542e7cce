"""The gold layer's data-quality checks: one declaration per check, its SQL in sql/checks/gold/<name>.sql."""

from __future__ import annotations

from cinematch.lakehouse.quality import Check, CheckResult
from cinematch.lakehouse.quality import run_checks as _run_checks
from cinematch.lakehouse.sql import checks as checks_sql
from cinematch.storage.protocol import Warehouse

__all__ = ["GOLD_CHECKS", "checks_for", "run_checks"]


def run_checks(con: Warehouse, checks: tuple[Check, ...] | None = None, sample_size: int = 5) -> list[CheckResult]:
    """Run ``checks`` (default GOLD_CHECKS) and return one result per check, in order."""
    return _run_checks(con, GOLD_CHECKS if checks is None else checks, sample_size=sample_size)


# Reconciliations read as_of from the gold table itself (it is a column of every table) so they hold for any
# logical date; an empty gold table falls back to the newest silver rating, so "gold lost everything" fails.


def _check(name: str, severity: str = "hard", description: str = "") -> Check:
    """The check ``<table>.<what>`` of a gold table, with the SQL of sql/checks/gold/<name>.sql."""
    table = name.split(".", 1)[0]
    return Check(name, table, checks_sql.read("gold", name), severity=severity, description=description)


GOLD_CHECKS: tuple[Check, ...] = (
    # genre_analytics
    _check("genre_analytics.unique_key", description="(genre, year, month) is unique and not null"),
    _check(
        "genre_analytics.counts_valid",
        description="counts positive; distinct users/movies <= ratings <= month total",
    ),
    _check(
        "genre_analytics.share_in_unit_interval",
        description="share_of_ratings = n_ratings / n_ratings_month within [0, 1]",
    ),
    _check("genre_analytics.avg_rating_in_range"),
    _check(
        "genre_analytics.reconciles_genre_pairs",
        description="sum of n_ratings == number of (rating, genre) pairs in silver",
    ),
    _check(
        "genre_analytics.reconciles_month_totals",
        description="the month totals are consistent and add up to count(*) of silver ratings",
    ),
    # trending_movies
    _check("trending_movies.unique_key", description="(movie_id, window_days) is unique and not null"),
    _check("trending_movies.window_labels_valid"),
    _check("trending_movies.counts_valid"),
    _check("trending_movies.avg_ratings_in_range"),
    _check(
        "trending_movies.velocity_formula",
        description="is_new = no rating in the previous window; velocity null for new movies, else the ratio",
    ),
    _check(
        "trending_movies.window_complete_valid",
        description="window_complete = silver's first rating is at or before the previous window's start",
    ),
    _check(
        "trending_movies.windows_nested",
        description="per movie n_ratings(7d) <= n_ratings(30d) <= n_ratings(90d)",
    ),
    _check(
        "trending_movies.ranks_valid",
        description="ranks are 1..N per window and follow trending_score",
    ),
    _check(
        "trending_movies.reconciles_with_silver",
        description="per window, sum of n_ratings == silver ratings in (as_of - w, as_of]",
    ),
    _check(
        "trending_movies.window_7d_not_empty",
        severity="soft",
        description="something was rated in the 7 days before as_of (else silver is stale or as_of is off)",
    ),
    # temporal_trends
    _check("temporal_trends.unique_key", description="(year, genre) is unique and not null"),
    _check("temporal_trends.counts_valid"),
    _check(
        "temporal_trends.genre_within_all",
        description="every genre-year has an ALL row with at least as many ratings",
    ),
    _check(
        "temporal_trends.yoy_consistent",
        description="yoy columns follow the previous-period columns, which lie within the row of the year before",
    ),
    _check(
        "temporal_trends.prev_period_reconciles_with_silver",
        description="per year, the ALL row's period ends on the last rating's day of year and counts silver's ratings",
    ),
    _check(
        "temporal_trends.reconciles_with_silver",
        description="sum of the ALL rows == count(*) of silver ratings",
    ),
    # user_engagement
    _check("user_engagement.unique_key", description="(user_id) is unique and not null"),
    _check("user_engagement.values_valid"),
    _check(
        "user_engagement.reconciles_with_silver",
        description="sum of n_ratings == count(*) of silver ratings",
    ),
    # movie_kpis
    _check("movie_kpis.unique_key", description="(movie_id) is unique and not null"),
    _check("movie_kpis.covers_silver_movies", description="exactly the movies of silver.movies"),
    _check("movie_kpis.stats_valid"),
    _check(
        "movie_kpis.bayesian_shrinks_toward_mean",
        description="bayesian_rating lies between the movie's mean and the global mean",
    ),
    _check(
        "movie_kpis.ranks_valid",
        description="popularity_rank is 1..N by n_ratings desc, movie_id asc",
    ),
    _check(
        "movie_kpis.reconciles_with_silver",
        description="sum of n_ratings == count(*) of silver ratings (fails on ratings of unknown movies)",
    ),
)


def checks_for(table: str) -> tuple[Check, ...]:
    """The GOLD_CHECKS of one gold table."""
    return tuple(c for c in GOLD_CHECKS if c.table == table)
