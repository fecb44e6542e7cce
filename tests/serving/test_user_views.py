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
