"""Gold layer: every model against values computed by hand from a 14-rating fixture, and every check."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from cinematch.core.errors import BadInput, CineMatchError
from cinematch.lakehouse.gold import GOLD_MODELS, build_gold, load_sql
from cinematch.lakehouse.gold_checks import GOLD_CHECKS, checks_for, run_checks
from cinematch.lakehouse.quality import Check

SILVER_DDL = """
create schema silver;
create table silver.ratings(
    user_id BIGINT, movie_id BIGINT, rating DOUBLE, rated_at TIMESTAMP,
    batch_id VARCHAR, ingested_at TIMESTAMP
);
create table silver.movies(
    movie_id BIGINT, title VARCHAR, genres VARCHAR[], release_year INTEGER, is_placeholder BOOLEAN
);
"""

MOVIES = [
    (1, "Toy Story", ["Animation", "Comedy"], 1995, False),
    (2, "Heat", ["Action", "Crime"], 1995, False),
    (3, "Amelie", ["Comedy", "Romance"], 2001, False),
    (4, "Unknown #4", [], None, True),  # placeholder: counts as '(no genres listed)'
    (5, "Never Rated", ["Drama"], 2010, False),
    (6, "Also Never Rated", ["Drama", "Thriller"], 2011, False),
]

# (user_id, movie_id, rating, rated_at); as_of defaults to the newest: 2024-03-31 12:00 (r12).
RATINGS = [
    (1, 1, 4.0, "2022-06-10 10:00"),  # r1
    (2, 1, 3.0, "2022-06-20 10:00"),  # r2
    (1, 2, 5.0, "2023-01-15 09:00"),  # r3
    (3, 3, 2.0, "2023-06-01 08:00"),  # r4
    (2, 2, 4.5, "2023-12-31 23:00"),  # r5  in the previous 90d window
    (3, 1, 3.5, "2024-01-01 12:00"),  # r6  exactly as_of - 90d: previous 90d window, not current
    (1, 1, 4.0, "2024-02-10 10:00"),  # r7
    (2, 3, 5.0, "2024-03-01 12:00"),  # r8  exactly as_of - 30d: previous 30d window
    (3, 4, 1.0, "2024-03-20 10:00"),  # r9
    (1, 1, 5.0, "2024-03-24 12:00"),  # r10 exactly as_of - 7d: previous 7d window
    (2, 4, 2.5, "2024-03-25 09:00"),  # r11
    (3, 3, 4.0, "2024-03-31 12:00"),  # r12 exactly as_of: inside every current window
    (1, 2, 3.0, "2024-03-28 15:00"),  # r13
    (1, 1, 4.5, "2024-03-28 18:00"),  # r14 same day as r13 (one active day for user 1)
]
AS_OF = datetime(2024, 3, 31, 12, 0)
M = 51.0 / 14  # global mean: the 14 ratings sum to 51
C = 25.0


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def make_silver(ratings: list[tuple[int, int, float, str]] = RATINGS) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(SILVER_DDL)
    con.executemany("insert into silver.movies values (?, ?, ?, ?, ?)", MOVIES)
    if ratings:  # executemany rejects an empty batch
        con.executemany(
            "insert into silver.ratings values (?, ?, ?, ?, 'batch-1', timestamp '2024-04-01 00:00')",
            [(u, m, r, ts(t)) for u, m, r, t in ratings],
        )
    return con


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    con = make_silver()
    build_gold(con)
    return con


def fetch(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cur = con.execute(sql)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def approx(x: float | None) -> Any:
    return None if x is None else pytest.approx(x, rel=1e-12, abs=1e-12)


# --- models -------------------------------------------------------------------------------------------------


def test_build_returns_row_counts(con: duckdb.DuckDBPyConnection) -> None:
    assert build_gold(con) == {
        "genre_analytics": 18,
        "trending_movies": 12,
        "temporal_trends": 15,
        "user_engagement": 3,
        "movie_kpis": 6,
    }
    assert {r["as_of"] for r in fetch(con, "select distinct as_of from gold.movie_kpis")} == {AS_OF}


def test_genre_analytics(con: duckdb.DuckDBPyConnection) -> None:
    # (genre, year, month): n_ratings, n_users, n_movies, avg_rating, n_ratings_month
    expected = {
        ("Animation", 2022, 6): (2, 2, 1, 3.5, 2),  # r1, r2
        ("Comedy", 2022, 6): (2, 2, 1, 3.5, 2),
        ("Action", 2023, 1): (1, 1, 1, 5.0, 1),  # r3
        ("Crime", 2023, 1): (1, 1, 1, 5.0, 1),
        ("Comedy", 2023, 6): (1, 1, 1, 2.0, 1),  # r4
        ("Romance", 2023, 6): (1, 1, 1, 2.0, 1),
        ("Action", 2023, 12): (1, 1, 1, 4.5, 1),  # r5
        ("Crime", 2023, 12): (1, 1, 1, 4.5, 1),
        ("Animation", 2024, 1): (1, 1, 1, 3.5, 1),  # r6
        ("Comedy", 2024, 1): (1, 1, 1, 3.5, 1),
        ("Animation", 2024, 2): (1, 1, 1, 4.0, 1),  # r7
        ("Comedy", 2024, 2): (1, 1, 1, 4.0, 1),
        # March 2024: r8..r14 (7 ratings)
        ("Comedy", 2024, 3): (4, 3, 2, (5.0 + 5.0 + 4.0 + 4.5) / 4, 7),  # r8, r10, r12, r14
        ("Romance", 2024, 3): (2, 2, 1, 4.5, 7),  # r8, r12
        ("Animation", 2024, 3): (2, 1, 1, 4.75, 7),  # r10, r14 (both user 1)
        ("(no genres listed)", 2024, 3): (2, 2, 1, 1.75, 7),  # r9, r11: placeholder movie 4
        ("Action", 2024, 3): (1, 1, 1, 3.0, 7),  # r13
        ("Crime", 2024, 3): (1, 1, 1, 3.0, 7),
    }
    rows = fetch(con, "select * from gold.genre_analytics")
    got = {(r["genre"], r["year"], r["month"]): r for r in rows}
    assert set(got) == set(expected)
    for key, (n, users, movies, avg, n_month) in expected.items():
        r = got[key]
        assert (r["n_ratings"], r["n_users"], r["n_movies"], r["n_ratings_month"]) == (
            n,
            users,
            movies,
            n_month,
        )
        assert r["avg_rating"] == approx(avg), key
        assert r["share_of_ratings"] == approx(n / n_month), key
        assert r["month_start"].isoformat() == f"{key[1]}-{key[2]:02d}-01"
    # 12 ratings of 2-genre movies + 2 of the placeholder = 26 (rating, genre) pairs
    assert sum(r["n_ratings"] for r in rows) == 26
    assert got[("Comedy", 2024, 3)]["share_of_ratings"] == approx(4 / 7)


def trending_score(n: int, window_sum: float, n_prev: int, days: int, prior: float = C) -> float:
    momentum = 1.0 if n_prev == 0 else 1.0 + math.log(1.0 + max((n - n_prev) / n_prev, 0.0))  # new: no bonus
    bayes = (prior * M + window_sum) / (prior + n)
    return n / days * (bayes / 5.0) * momentum


def test_trending_movies(con: duckdb.DuckDBPyConnection) -> None:
    # (movie, days): n, sum of current ratings, n_prev, avg_prev, velocity, rank. A movie without ratings in the
    # previous window is new: velocity null (not n / 1) and no momentum bonus.
    expected = {
        # 7d: (03-24 12:00, 03-31 12:00]; prev (03-17 12:00, 03-24 12:00]
        (1, 7): (1, 4.5, 1, 5.0, 0.0, 1),  # r14; prev r10 (exactly at the boundary)
        (2, 7): (1, 3.0, 0, None, None, 3),  # r13
        (3, 7): (1, 4.0, 0, None, None, 2),  # r12 (exactly at as_of)
        (4, 7): (1, 2.5, 1, 1.0, 0.0, 4),  # r11; prev r9
        # 30d: (03-01 12:00, 03-31 12:00]; prev (01-31 12:00, 03-01 12:00]
        (1, 30): (2, 9.5, 1, 4.0, 1.0, 1),  # r10, r14; prev r7
        (2, 30): (1, 3.0, 0, None, None, 4),  # r13
        (3, 30): (1, 4.0, 1, 5.0, 0.0, 3),  # r12; prev r8 (exactly at the boundary)
        (4, 30): (2, 3.5, 0, None, None, 2),  # r9, r11
        # 90d: (01-01 12:00, 03-31 12:00]; prev (2023-10-03 12:00, 01-01 12:00]
        (1, 90): (3, 13.5, 1, 3.5, 2.0, 1),  # r7, r10, r14; prev r6 (exactly at the boundary)
        (2, 90): (1, 3.0, 1, 4.5, 0.0, 4),  # r13; prev r5
        (3, 90): (2, 9.0, 0, None, None, 2),  # r8, r12
        (4, 90): (2, 3.5, 0, None, None, 3),  # r9, r11
    }
    rows = fetch(con, "select * from gold.trending_movies")
    got = {(r["movie_id"], r["window_days"]): r for r in rows}
    assert set(got) == set(expected)  # movies 5 and 6 (never rated) are absent
    titles = {m[0]: m[1] for m in MOVIES}
    for (movie, days), (n, window_sum, n_prev, avg_prev, velocity, rank) in expected.items():
        r = got[(movie, days)]
        assert r["window"] == f"{days}d"
        assert r["title"] == titles[movie]
        assert (r["n_ratings"], r["n_ratings_prev"], r["trending_rank"]) == (n, n_prev, rank), (movie, days)
        assert r["avg_rating"] == approx(window_sum / n)
        assert r["avg_rating_prev"] == approx(avg_prev)
        assert r["velocity"] == approx(velocity)
        assert r["is_new"] is (n_prev == 0)
        # the data begins 2022-06-10, before every previous window's start
        assert r["window_complete"] is True
        assert r["bayesian_rating"] == approx((C * M + window_sum) / (C + n))
        assert r["trending_score"] == approx(trending_score(n, window_sum, n_prev, days))
        assert r["window_end"] == AS_OF
        assert r["window_start"] == AS_OF - timedelta(days=days)


def test_new_movies_get_no_momentum_boost_and_short_data_marks_windows_incomplete() -> None:
    """Regression: velocity was n_ratings / 1 for a movie new in the window, a 1 + ln(1 + n) boost (x2.4 here).

    Movie 1 is steady (3 ratings in each 7-day window), movie 2 is new with the same 3 ratings, same values. The
    data begins 20 days before as_of: the 7-day window and the one before it are covered, the 30 and 90-day
    windows are not.
    """
    days = [-12, -11, -10, -3, -2, -1]
    steady = [(10 + i, 1, 4.0, f"{AS_OF + timedelta(days=d):%Y-%m-%d %H:%M}") for i, d in enumerate(days)]
    new = [(20 + i, 2, 4.0, f"{AS_OF + timedelta(days=d):%Y-%m-%d %H:%M}") for i, d in enumerate(days[3:])]
    first = [(30, 3, 4.0, f"{AS_OF - timedelta(days=20):%Y-%m-%d %H:%M}")]
    con = make_silver(steady + new + first)
    build_gold(con)
    rows = {(r["movie_id"], r["window_days"]): r for r in fetch(con, "select * from gold.trending_movies")}
    old, fresh = rows[(1, 7)], rows[(2, 7)]
    assert (old["n_ratings"], old["n_ratings_prev"], old["velocity"], old["is_new"]) == (3, 3, 0.0, False)
    assert (fresh["n_ratings"], fresh["n_ratings_prev"], fresh["velocity"], fresh["is_new"]) == (3, 0, None, True)
    # same rate, same ratings: the same score (the old formula gave the new movie 1 + ln 4 = 2.39 times more)
    assert fresh["trending_score"] == approx(old["trending_score"])
    assert old["trending_rank"] == 1  # the tie goes to movie_id, newness earns nothing
    assert {r["window_days"]: r["window_complete"] for r in rows.values()} == {7: True, 30: False, 90: False}
    assert [r.check.name for r in run_checks(con) if not r.passed] == []


def test_trending_window_boundaries_move_with_as_of() -> None:
    con = make_silver()
    as_of = datetime(2024, 3, 28, 15, 0)  # exactly r13
    build_gold(con, as_of=as_of)
    got = {
        (r["movie_id"], r["window_days"]): (r["n_ratings"], r["n_ratings_prev"])
        for r in fetch(con, "select * from gold.trending_movies")
    }
    # 7d: (03-21 15:00, 03-28 15:00] holds r10, r11, r13; r9 (03-20) is in the previous window; r12, r14 are
    # after as_of and ignored.
    assert {k: v for k, v in got.items() if k[1] == 7} == {(1, 7): (1, 0), (4, 7): (1, 1), (2, 7): (1, 0)}


def test_temporal_trends(con: duckdb.DuckDBPyConnection) -> None:
    all_2023 = 11.5 / 3
    all_2024 = 32.5 / 9
    # Each year compares with the same period of the year before: 1 January to the day of year of its last rating.
    # 2022 ends on 06-20 (r2), 2023 on 12-31 (r5: the whole year), 2024 on 03-31 (r12: day 91 of a leap year,
    # so 2023 up to 04-01, which holds only r3).
    end_2022, end_2023, end_2024 = date(2021, 6, 20), date(2022, 12, 31), date(2023, 4, 1)
    # (year, genre): n_ratings, avg_rating, n_ratings_prev_period, avg_rating_prev_period, yoy_volume_change,
    # yoy_avg_rating_change
    expected = {
        (2022, "ALL"): (2, 3.5, None, None, None, None),
        (2022, "Animation"): (2, 3.5, None, None, None, None),
        (2022, "Comedy"): (2, 3.5, None, None, None, None),
        (2023, "ALL"): (3, all_2023, 2, 3.5, (3 - 2) / 2, all_2023 - 3.5),
        (2023, "Action"): (2, 4.75, None, None, None, None),
        (2023, "Crime"): (2, 4.75, None, None, None, None),
        (2023, "Comedy"): (1, 2.0, 2, 3.5, (1 - 2) / 2, 2.0 - 3.5),
        (2023, "Romance"): (1, 2.0, None, None, None, None),
        # a full year against 2023 would be (9 - 3) / 3; the same period (r3 only) gives (9 - 1) / 1
        (2024, "ALL"): (9, all_2024, 1, 5.0, (9 - 1) / 1, all_2024 - 5.0),
        (2024, "Animation"): (4, 17.0 / 4, None, None, None, None),  # no Animation in 2023: null, not 2022
        (2024, "Comedy"): (6, 26.0 / 6, 0, None, None, None),  # 2023's Comedy (r4, June) is after 04-01
        (2024, "Romance"): (2, 4.5, 0, None, None, None),
        (2024, "Action"): (1, 3.0, 1, 5.0, 0.0, 3.0 - 5.0),  # r3
        (2024, "Crime"): (1, 3.0, 1, 5.0, 0.0, 3.0 - 5.0),
        (2024, "(no genres listed)"): (2, 1.75, None, None, None, None),
    }
    got = {(r["year"], r["genre"]): r for r in fetch(con, "select * from gold.temporal_trends")}
    assert set(got) == set(expected)
    for key, (n, avg, n_prev, avg_prev, yoy_n, yoy_avg) in expected.items():
        r = got[key]
        assert r["n_ratings"] == n, key
        assert r["avg_rating"] == approx(avg), key
        assert r["n_ratings_prev_period"] == n_prev, key
        assert r["avg_rating_prev_period"] == approx(avg_prev), key
        assert r["yoy_volume_change"] == approx(yoy_n), key
        assert r["yoy_avg_rating_change"] == approx(yoy_avg), key
        assert r["prev_period_end"] == {2022: end_2022, 2023: end_2023, 2024: end_2024}[key[0]], key


def _daily(first: str, last: str, rating: float = 4.0) -> list[tuple[int, int, float, str]]:
    """One rating a day at noon from ``first`` to ``last`` (inclusive), each by a new user of movie 1."""
    days = pd.date_range(first, last, freq="D")
    return [(i + 1, 1, rating, f"{d:%Y-%m-%d} 12:00") for i, d in enumerate(days)]


@pytest.mark.parametrize("last", ["2024-03-20", "2023-03-20", "2024-12-30", "2025-02-28"])
def test_steady_daily_ratings_give_zero_yoy(last: str) -> None:
    """Regression: a steady one rating a day gave -0.78 for a year known to 20 March (79 days against 365)."""
    con = make_silver(_daily("2021-01-01", last))
    build_gold(con)
    year = int(last[:4])
    days = (date.fromisoformat(last) - date(year, 1, 1)).days + 1
    rows = {r["genre"]: r for r in fetch(con, f"select * from gold.temporal_trends where year = {year}")}
    for genre in ("ALL", "Animation", "Comedy"):  # movie 1's genres
        r = rows[genre]
        assert (r["n_ratings"], r["n_ratings_prev_period"]) == (days, days), genre
        assert r["yoy_volume_change"] == 0.0 and r["yoy_avg_rating_change"] == 0.0, genre
    # the complete years before compare whole years: 2022 has 365 days, as 2021 has
    full = {r["year"]: r for r in fetch(con, "select * from gold.temporal_trends where genre = 'ALL' and year < 2023")}
    assert full[2022]["prev_period_end"] == date(2021, 12, 31) and full[2022]["yoy_volume_change"] == 0.0
    assert [r.check.name for r in run_checks(con) if not r.passed] == []


def test_user_engagement(con: duckdb.DuckDBPyConnection) -> None:
    # user: n, active_days, first, last, avg, genre_diversity, high_rating_share
    expected = {
        # r1 r3 r7 r10 r13 r14; r13+r14 share 03-28; genres of movies 1, 2
        1: (6, 5, "2022-06-10 10:00", "2024-03-28 18:00", 25.5 / 6, 4, 5 / 6),
        # r2 r5 r8 r11; movie 4 (placeholder) adds no genre
        2: (4, 4, "2022-06-20 10:00", "2024-03-25 09:00", 15.0 / 4, 5, 2 / 4),
        # r4 r6 r9 r12; rated movie 3 twice; the 4.0 of r12 counts as high
        3: (4, 4, "2023-06-01 08:00", "2024-03-31 12:00", 10.5 / 4, 3, 1 / 4),
    }
    got = {r["user_id"]: r for r in fetch(con, "select * from gold.user_engagement")}
    assert set(got) == set(expected)
    for user, (n, days, first, last, avg, diversity, high) in expected.items():
        r = got[user]
        assert (r["n_ratings"], r["active_days"], r["genre_diversity"]) == (n, days, diversity), user
        assert (r["first_rated_at"], r["last_rated_at"]) == (ts(first), ts(last))
        assert r["avg_rating"] == approx(avg)
        assert r["high_rating_share"] == approx(high)


def test_movie_kpis(con: duckdb.DuckDBPyConnection) -> None:
    # movie: n, sum, avg, sample stddev (sum of squared deviations / (n - 1)), popularity_rank
    expected = {
        1: (6, 24.0, 4.0, math.sqrt((0 + 1 + 0.25 + 0 + 1 + 0.25) / 5), 1),  # 4, 3, 3.5, 4, 5, 4.5
        2: (
            3,
            12.5,
            12.5 / 3,
            math.sqrt(((5 - 12.5 / 3) ** 2 + (4.5 - 12.5 / 3) ** 2 + (3 - 12.5 / 3) ** 2) / 2),
            2,
        ),
        3: (3, 11.0, 11.0 / 3, math.sqrt(((2 - 11 / 3) ** 2 + (5 - 11 / 3) ** 2 + (4 - 11 / 3) ** 2) / 2), 3),
        4: (2, 3.5, 1.75, math.sqrt((0.75**2 + 0.75**2) / 1), 4),
        5: (0, 0.0, None, None, 5),  # unrated: tie at 0 with movie 6, lower id first
        6: (0, 0.0, None, None, 6),
    }
    got = {r["movie_id"]: r for r in fetch(con, "select * from gold.movie_kpis")}
    assert set(got) == set(expected)
    for movie, (n, total, avg, std, rank) in expected.items():
        r = got[movie]
        assert (r["n_ratings"], r["popularity_rank"]) == (n, rank), movie
        assert r["avg_rating"] == approx(avg)
        assert r["stddev_rating"] == (None if std is None else pytest.approx(std, rel=1e-9))
        assert r["bayesian_rating"] == approx((C * M + total) / (C + n))
    assert got[2]["n_ratings"] == got[3]["n_ratings"] == 3  # the tie: movie 2 ranks before movie 3
    assert got[5]["bayesian_rating"] == approx(M)  # no evidence: the prior
    assert (got[4]["title"], got[4]["release_year"], got[4]["is_placeholder"]) == ("Unknown #4", None, True)
    assert (got[1]["title"], got[1]["release_year"], got[1]["is_placeholder"]) == ("Toy Story", 1995, False)


def test_prior_weight_parameter() -> None:
    con = make_silver()
    build_gold(con, prior_weight=10.0)
    got = {r["movie_id"]: r["bayesian_rating"] for r in fetch(con, "select * from gold.movie_kpis")}
    assert got[1] == approx((10 * M + 24.0) / (10 + 6))
    trend = fetch(con, "select bayesian_rating from gold.trending_movies where movie_id = 1 and window_days = 7")
    assert trend[0]["bayesian_rating"] == approx((10 * M + 4.5) / (10 + 1))
    build_gold(con, prior_weight=0.0)  # no shrinkage: the plain mean; unrated movies have no rating at all
    got = {r["movie_id"]: r["bayesian_rating"] for r in fetch(con, "select * from gold.movie_kpis")}
    assert got[1] == approx(4.0)
    assert got[5] is None
    assert all(r.passed for r in run_checks(con) if r.check.severity == "hard")


def test_explicit_as_of_ignores_later_ratings() -> None:
    con = make_silver()
    counts = build_gold(con, as_of=datetime(2023, 12, 31, 23, 0))  # exactly r5: only r1..r5 count
    assert counts["user_engagement"] == 3
    kpis = {r["movie_id"]: r["n_ratings"] for r in fetch(con, "select * from gold.movie_kpis")}
    assert kpis == {1: 2, 2: 2, 3: 1, 4: 0, 5: 0, 6: 0}
    years = {(r["year"], r["genre"]): r["n_ratings"] for r in fetch(con, "select * from gold.temporal_trends")}
    assert years[(2023, "ALL")] == 3 and 2024 not in {y for y, _ in years}
    trending = fetch(con, "select movie_id, window_days, n_ratings, n_ratings_prev from gold.trending_movies")
    # 7d and 30d hold only r5; 90d (2023-10-02 23:00, 2023-12-31 23:00] also only r5; r4 (June) is before 180d
    assert sorted((r["movie_id"], r["window_days"], r["n_ratings"], r["n_ratings_prev"]) for r in trending) == [
        (2, 7, 1, 0),
        (2, 30, 1, 0),
        (2, 90, 1, 0),
    ]
    assert all(r.passed for r in run_checks(con))  # the reconciliations use the tables' as_of, not max(rated_at)


def test_aware_as_of_is_converted_to_utc() -> None:
    con = make_silver()
    build_gold(con, as_of=datetime(2024, 3, 31, 14, 0, tzinfo=timezone(timedelta(hours=2))))
    assert fetch(con, "select distinct as_of from gold.trending_movies") == [{"as_of": AS_OF}]
    build_gold(con, as_of=AS_OF.replace(tzinfo=UTC))
    assert fetch(con, "select distinct as_of from gold.movie_kpis") == [{"as_of": AS_OF}]


def test_build_runs_in_callers_transaction() -> None:
    con = make_silver()
    con.begin()
    build_gold(con)
    con.rollback()
    assert fetch(con, "select count(*) as n from information_schema.tables where table_schema = 'gold'") == [{"n": 0}]


def test_empty_silver_builds_empty_tables() -> None:
    con = make_silver(ratings=[])
    counts = build_gold(con)
    assert counts == {m: (6 if m == "movie_kpis" else 0) for m in GOLD_MODELS}
    failed = [r.check.name for r in run_checks(con) if not r.passed]
    assert failed == ["trending_movies.window_7d_not_empty"]  # soft: nothing rated lately


def test_bad_arguments() -> None:
    with pytest.raises(BadInput):
        load_sql("../silver/ratings")
    with pytest.raises(CineMatchError, match=r"silver\.ratings"):
        build_gold(duckdb.connect())
    with pytest.raises(BadInput):
        build_gold(make_silver(), prior_weight=-1.0)
    with pytest.raises(BadInput):
        build_gold(make_silver(), prior_weight=float("nan"))
    with pytest.raises(ValueError):
        Check("x", "movie_kpis", "select 1", severity="fatal")


@pytest.mark.parametrize("name", GOLD_MODELS)
def test_sql_files_follow_the_portable_shape(name: str) -> None:
    sql = load_sql(name)
    code = re.sub(r"--[^\n]*", "", sql).lower()
    assert code.rstrip().endswith("select * from final")
    assert re.search(r"\bfinal as \(", code)
    assert set(re.findall(r"\$(\w+)", code)) <= {"as_of", "prior_weight"}
    for duckdb_only in ("qualify", "filter (", "columns(", "::", "list_", "exclude", "replace(", "->"):
        assert duckdb_only not in code, (name, duckdb_only)


# --- checks -------------------------------------------------------------------------------------------------


def test_check_registry() -> None:
    names = [c.name for c in GOLD_CHECKS]
    assert len(names) == len(set(names))
    assert {c.table for c in GOLD_CHECKS} == set(GOLD_MODELS)
    assert all(c.name.startswith(c.table + ".") for c in GOLD_CHECKS)
    assert checks_for("movie_kpis") and all(c.table == "movie_kpis" for c in checks_for("movie_kpis"))


def test_every_check_passes_on_the_fixture(con: duckdb.DuckDBPyConnection) -> None:
    failed = {r.check.name: r.sample for r in run_checks(con) if not r.passed}
    assert failed == {}


def _late_rating(con: duckdb.DuckDBPyConnection) -> None:
    # arrives in silver after gold was built: gold is stale and must not reconcile
    con.execute("insert into silver.ratings values (2, 1, 3.0, timestamp '2024-03-30 00:00', 'late', now())")


def _dup(table: str) -> str:
    return f"insert into gold.{table} select * from gold.{table} limit 1"


GA_MARCH_COMEDY = "where genre = 'Comedy' and year = 2024 and month = 3"

# check name -> statements that make exactly that kind of defect (other checks may trip as well)
BREAKERS: dict[str, list[str]] = {
    "genre_analytics.unique_key": [_dup("genre_analytics")],
    "genre_analytics.counts_valid": [f"update gold.genre_analytics set n_users = 5 {GA_MARCH_COMEDY}"],
    "genre_analytics.share_in_unit_interval": [
        f"update gold.genre_analytics set share_of_ratings = 1.2 {GA_MARCH_COMEDY}"
    ],
    "genre_analytics.avg_rating_in_range": [f"update gold.genre_analytics set avg_rating = 0.2 {GA_MARCH_COMEDY}"],
    "genre_analytics.reconciles_genre_pairs": [
        "update silver.movies set genres = ['Animation', 'Comedy', 'Family'] where movie_id = 1"
    ],
    "genre_analytics.reconciles_month_totals": [
        f"update gold.genre_analytics set n_ratings_month = 8 {GA_MARCH_COMEDY}"
    ],
    "trending_movies.unique_key": [_dup("trending_movies")],
    "trending_movies.window_labels_valid": [
        "update gold.trending_movies set \"window\" = '7d' where movie_id = 1 and window_days = 30"
    ],
    "trending_movies.counts_valid": [
        "update gold.trending_movies set n_ratings_prev = -1 where movie_id = 2 and window_days = 7"
    ],
    "trending_movies.avg_ratings_in_range": [
        "update gold.trending_movies set avg_rating_prev = 3.0 where movie_id = 2 and window_days = 7"
    ],
    "trending_movies.velocity_formula": [
        "update gold.trending_movies set velocity = 5.0 where movie_id = 1 and window_days = 90"
    ],
    "trending_movies.window_complete_valid": [
        "update gold.trending_movies set window_complete = false where movie_id = 1 and window_days = 7"
    ],
    "trending_movies.windows_nested": [
        "update gold.trending_movies set n_ratings = 3 where movie_id = 1 and window_days = 7"
    ],
    "trending_movies.ranks_valid": [
        "update gold.trending_movies set trending_score = 100 where window_days = 90 and trending_rank = 4"
    ],
    "trending_movies.reconciles_with_silver": ["late"],
    "trending_movies.window_7d_not_empty": ["delete from gold.trending_movies where window_days = 7"],
    "temporal_trends.unique_key": [_dup("temporal_trends")],
    "temporal_trends.counts_valid": [
        "update gold.temporal_trends set avg_rating = 6.0 where genre = 'ALL' and year = 2022"
    ],
    "temporal_trends.genre_within_all": ["delete from gold.temporal_trends where genre = 'ALL' and year = 2022"],
    "temporal_trends.yoy_consistent": [
        "update gold.temporal_trends set yoy_volume_change = 0.0 where genre = 'Animation' and year = 2024"
    ],
    "temporal_trends.prev_period_reconciles_with_silver": [
        # a 2023 rating inside 2024's period (to 2023-04-01) arrives after the build
        "insert into silver.ratings values (2, 3, 3.0, timestamp '2023-02-01 00:00', 'late', now())"
    ],
    "temporal_trends.reconciles_with_silver": ["late"],
    "user_engagement.unique_key": [_dup("user_engagement")],
    "user_engagement.values_valid": ["update gold.user_engagement set active_days = 7 where user_id = 1"],
    "user_engagement.reconciles_with_silver": ["delete from gold.user_engagement where user_id = 3"],
    "movie_kpis.unique_key": [_dup("movie_kpis")],
    "movie_kpis.covers_silver_movies": [
        "insert into silver.movies values (7, 'Added After Build', ['Drama'], 2020, false)"
    ],
    "movie_kpis.stats_valid": ["update gold.movie_kpis set stddev_rating = 0.5 where movie_id = 5"],
    "movie_kpis.bayesian_shrinks_toward_mean": ["update gold.movie_kpis set bayesian_rating = 4.9 where movie_id = 1"],
    "movie_kpis.ranks_valid": [
        "update gold.movie_kpis set popularity_rank = 5 - popularity_rank where movie_id in (2, 3)"
    ],
    # a rating of a movie silver.movies does not know, built into gold: movie_kpis cannot account for it
    "movie_kpis.reconciles_with_silver": [
        "insert into silver.ratings values (1, 99, 4.0, timestamp '2024-03-30 00:00', 'b', now())",
        "rebuild",
    ],
}


def test_every_check_has_a_breaker() -> None:
    assert set(BREAKERS) == {c.name for c in GOLD_CHECKS}


@pytest.mark.parametrize("check", GOLD_CHECKS, ids=lambda c: c.name)
def test_each_check_trips_on_bad_input(con: duckdb.DuckDBPyConnection, check: Check) -> None:
    for statement in BREAKERS[check.name]:
        if statement == "late":
            _late_rating(con)
        elif statement == "rebuild":
            build_gold(con)
        else:
            con.execute(statement)
    (result,) = run_checks(con, (check,))
    assert not result.passed
    assert result.sample and len(result.sample) <= 5


# --- randomized ---------------------------------------------------------------------------------------------


def random_silver(
    seed: int = 7, n_ratings: int = 5_000, genres: list[str] | None = None, max_genres: int = 3
) -> tuple[duckdb.DuckDBPyConnection, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    genres = genres or ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller", "Western"]
    n_movies, n_users = 150, 300
    movies = []
    for movie_id in range(1, n_movies + 1):
        k = int(rng.integers(0, max_genres + 1))  # 0 genres -> placeholder-like; some lists are null
        listed = None if k == 0 and movie_id % 2 else list(rng.choice(genres, size=k, replace=False))
        movies.append((movie_id, f"Movie {movie_id}", listed, 1950 + movie_id % 70, k == 0))
    start = np.datetime64("2022-01-01T00:00:00")
    seconds = rng.integers(0, 2 * 365 * 86_400, size=n_ratings)
    ratings = pd.DataFrame(
        {
            "user_id": rng.integers(1, n_users + 1, size=n_ratings),
            "movie_id": rng.integers(1, n_movies + 1, size=n_ratings),
            "rating": rng.integers(1, 11, size=n_ratings) / 2.0,
            "rated_at": start + seconds.astype("timedelta64[s]"),
        }
    ).drop_duplicates(["user_id", "movie_id", "rated_at"])
    con = duckdb.connect()
    con.execute(SILVER_DDL)
    con.executemany("insert into silver.movies values (?, ?, ?, ?, ?)", movies)
    con.register("ratings_arrow", pa.Table.from_pandas(ratings, preserve_index=False))
    con.execute(
        "insert into silver.ratings select user_id, movie_id, rating, rated_at, 'b', rated_at from ratings_arrow"
    )
    con.unregister("ratings_arrow")
    genre_map = {m[0]: (sorted(set(m[2])) if m[2] else ["(no genres listed)"]) for m in movies}
    ratings["genres"] = ratings["movie_id"].map(genre_map)
    return con, ratings


def test_randomized_reconciles_with_pandas() -> None:
    con, df = random_silver()
    counts = build_gold(con, prior_weight=C)
    failed = {r.check.name: r.sample for r in run_checks(con) if not r.passed and r.check.severity == "hard"}
    assert failed == {}
    assert counts["user_engagement"] == df["user_id"].nunique()

    m = df["rating"].mean()
    per_movie = df.groupby("movie_id")["rating"].agg(["count", "sum", "mean"])
    kpis = con.execute("select movie_id, n_ratings, avg_rating, bayesian_rating from gold.movie_kpis").df()
    kpis = kpis.set_index("movie_id").join(per_movie, how="left").fillna({"count": 0, "sum": 0.0})
    assert (kpis["n_ratings"] == kpis["count"]).all()
    np.testing.assert_allclose(kpis["bayesian_rating"], (C * m + kpis["sum"]) / (C + kpis["count"]), rtol=1e-9)

    pairs = df.explode("genres")
    monthly = pairs.groupby([pairs["genres"], pairs["rated_at"].dt.year, pairs["rated_at"].dt.month]).size()
    ga = con.execute("select genre, year, month, n_ratings from gold.genre_analytics").df()
    assert dict(zip(zip(ga["genre"], ga["year"], ga["month"], strict=True), ga["n_ratings"], strict=True)) == {
        k: v for k, v in monthly.items()
    }

    as_of = df["rated_at"].max()
    for days in (7, 30, 90):
        window = df[(df["rated_at"] > as_of - pd.Timedelta(days=days)) & (df["rated_at"] <= as_of)]
        gold = con.execute("select movie_id, n_ratings from gold.trending_movies where window_days = ?", [days]).df()
        assert dict(zip(gold["movie_id"], gold["n_ratings"], strict=True)) == (
            window.groupby("movie_id").size().to_dict()
        )

    users = con.execute("select user_id, high_rating_share, active_days from gold.user_engagement").df()
    expected_high = (df["rating"] >= 4.0).groupby(df["user_id"]).mean()
    users = users.set_index("user_id")
    np.testing.assert_allclose(users["high_rating_share"], expected_high.loc[users.index], rtol=1e-12)
    expected_days = df.groupby("user_id")["rated_at"].agg(lambda s: s.dt.date.nunique())
    assert (users["active_days"] == expected_days.loc[users.index]).all()


def test_genre_sets_wider_than_one_bitmask_word() -> None:
    # 150 genres span three 62-bit words of the genre masks; movies carry up to 40 of them
    con, df = random_silver(seed=3, n_ratings=3_000, genres=[f"G{i:03d}" for i in range(150)], max_genres=40)
    build_gold(con, prior_weight=C)
    pairs = df.explode("genres")
    month = [pairs["genres"], pairs["rated_at"].dt.year, pairs["rated_at"].dt.month]
    expected_users = pairs.groupby(month)["user_id"].nunique()
    ga = con.execute("select genre, year, month, n_users from gold.genre_analytics").df()
    assert dict(zip(zip(ga["genre"], ga["year"], ga["month"], strict=True), ga["n_users"], strict=True)) == {
        k: v for k, v in expected_users.items()
    }
    listed = pairs[pairs["genres"] != "(no genres listed)"]
    expected_diversity = listed.groupby("user_id")["genres"].nunique().reindex(df["user_id"].unique(), fill_value=0)
    ue = con.execute("select user_id, genre_diversity from gold.user_engagement").df().set_index("user_id")
    assert expected_diversity.max() > 62
    assert (ue["genre_diversity"] == expected_diversity.loc[ue.index]).all()


_INCREMENTAL_SQL = ("genre_analytics_merge", "temporal_trends_merge", "user_engagement_merge", "movie_kpis_merge",
                    "user_genre_masks", "user_month_genre_masks")  # fmt: skip


@pytest.mark.parametrize("name", (*GOLD_MODELS, *_INCREMENTAL_SQL))
def test_includes_expand_into_one_portable_statement(name: str) -> None:
    from cinematch.lakehouse.sql import gold as gold_sql

    sql = gold_sql.read(name)
    assert "@include" not in sql  # every shared CTE expanded, however deep
    code = re.sub(r"--[^\n]*", "", sql).lower()
    assert code.rstrip().endswith("select * from final")
    assert set(re.findall(r"\$(\w+)", code)) <= {"as_of", "prior_weight", "since", "since_month"}
    ctes = re.findall(r"^(\w+) as \($", code, flags=re.MULTILINE)
    assert ctes and len(ctes) == len(set(ctes)), name  # an include must not define a CTE twice
