"""The user page's views (user_summary, user_ratings, user_genres, population_genres) against the warehouse."""

from __future__ import annotations

import pytest

from cinematch.core.settings import Settings
from cinematch.serving.read import ViewStore
from cinematch.serving.user_sql import RECENT_RATINGS
from cinematch.storage.warehouse import write_session


def test_user_views_hold_every_rater(served_home: Settings) -> None:
    views = ViewStore(served_home).get()
    assert views is not None
    summary = views.query("select user_id, n_ratings from user_summary order by user_id")
    per_user = views.query("select user_id, count(*) as n, min(position) as lo, max(position) as hi "
                           "from user_ratings group by user_id order by user_id")  # fmt: skip
    with write_session(served_home) as wh:
        counts = wh.execute("select user_id, count(*) from silver.ratings group by user_id order by user_id").fetchall()
    assert [(r["user_id"], r["n_ratings"]) for r in summary] == counts
    # at most RECENT_RATINGS per user, numbered 1..n without gaps
    expected = {u: min(n, RECENT_RATINGS) for u, n in counts}
    assert {r["user_id"]: r["n"] for r in per_user} == expected
    assert all(r["lo"] == 1 and r["hi"] == r["n"] for r in per_user)
    assert max(n for _, n in counts) > RECENT_RATINGS  # the limit was exercised


@pytest.mark.parametrize("user_id", [1, 7, 150])
def test_recent_ratings_are_the_newest(served_home: Settings, user_id: int) -> None:
    views = ViewStore(served_home).get()
    assert views is not None
    data = views.user_profile(user_id)
    with write_session(served_home) as wh:
        newest = wh.execute(
            """select movie_id, rating, rated_at, batch_id from silver.ratings where user_id = ?
               order by rated_at desc, movie_id desc limit ?""",
            [user_id, RECENT_RATINGS],
        ).fetchall()
    assert data.summary is not None and data.summary["user_id"] == user_id
    got = [(r["movie_id"], r["rating"], r["rated_at"].replace(tzinfo=None), r["batch_id"]) for r in data.recent]
    assert got == newest
    assert [r["position"] for r in data.recent] == list(range(1, len(newest) + 1))
    assert all(r["title"] and r["genres"] for r in data.recent)


def test_genre_mix_counts_each_rating_once_per_genre(served_home: Settings) -> None:
    views = ViewStore(served_home).get()
    assert views is not None
    population = views.query("select genre, n_ratings, share from population_genres")
    shares = views.query("select user_id, sum(share) as total from user_genres group by user_id")
    assert sum(r["share"] for r in population) == pytest.approx(1.0)
    assert all(r["total"] == pytest.approx(1.0) for r in shares)
    with write_session(served_home) as wh:
        for row in population:  # counted another way: ratings of movies whose genre list contains the genre
            n = wh.execute(
                """select count(*) from silver.ratings r join silver.movies m using (movie_id)
                   where list_contains(m.genres, ?)""",
                [row["genre"]],
            ).fetchall()[0][0]
            assert row["n_ratings"] == n, row
        user_1 = wh.execute(
            """select count(*) from silver.ratings r join silver.movies m using (movie_id)
               where r.user_id = 1 and list_contains(m.genres, 'Drama')"""
        ).fetchall()[0][0]
    mine = {g["genre"]: g["n_ratings"] for g in views.user_profile(1).genres}
    assert mine.get("Drama", 0) == user_1 > 0


def test_unknown_user_has_no_rows(served_home: Settings) -> None:
    views = ViewStore(served_home).get()
    assert views is not None
    data = views.user_profile(987_654_321)
    assert data.summary is None and data.recent == [] and data.genres == [] and len(data.population) == 7


def test_recent_ratings_cut_by_the_top_n_aggregate_equal_the_plain_window() -> None:
    """DuckDB's cut (ratings at or after the user's n-th newest time) keeps ties at that time, so the window's
    movie-id tie-break still decides: the same rows as the window over every rating, for users with fewer than n
    ratings, exactly n, and many sharing the n-th newest time."""
    import duckdb
    import numpy as np
    import pyarrow as pa

    from cinematch.serving.user_sql import _recent_ratings_sql

    rng = np.random.default_rng(4)
    users = np.repeat(np.arange(1, 61), rng.integers(1, 3 * RECENT_RATINGS, 60))
    users = np.concatenate([users, np.full(RECENT_RATINGS, 61), np.full(40, 62)])
    seconds = rng.integers(0, 50, len(users))  # few distinct times: many ties
    seconds[users == 62] = 7  # one time for all of them: the movie id decides
    ratings = pa.table({
        "user_id": users, "movie_id": rng.permutation(len(users)) + 1, "rating": rng.integers(1, 11, len(users)) / 2,
        "rated_at": pa.array(1_700_000_000 + seconds, pa.timestamp("s")).cast(pa.timestamp("us")),
        "batch_id": np.full(len(users), "b"),
    })  # fmt: skip
    con = duckdb.connect()
    con.execute("create schema silver")
    con.register("_r", ratings)
    con.execute("create table silver.ratings as select * from _r")
    plain = con.execute(_recent_ratings_sql(top_n_aggregate=False)).fetchall()
    cut = con.execute(_recent_ratings_sql(top_n_aggregate=True)).fetchall()
    assert cut == plain and len({r[0] for r in plain}) == 62
    assert sum(1 for r in plain if r[0] == 62) == RECENT_RATINGS
