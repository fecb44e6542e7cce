"""The serving lists' whole-table helpers (cold-start list, new-movie slot, distinct ids) against plain references,
at a size that takes their counting paths (thousands of ratings over compact id ranges)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from cinematch.recommender.batch import RECENT_DAYS, new_movie_slot, popular_recent
from cinematch.recommender.interactions import unique_ids


def ratings_table(seed: int = 3, n: int = 20_000) -> pa.Table:
    rng = np.random.default_rng(seed)
    users = rng.integers(1, 400, n)
    movies = (rng.zipf(1.6, n) % 900) + 1  # popular low ids, a long tail
    start = datetime(2024, 1, 1, tzinfo=UTC)
    times = [start + timedelta(days=int(d)) for d in rng.integers(0, 400, n)]
    return pa.table({"user_id": pa.array(users, pa.int64()), "movie_id": pa.array(movies, pa.int64()),
                     "rating": pa.array(rng.integers(1, 11, n) / 2.0), "rated_at": pa.array(times)})  # fmt: skip


@pytest.mark.parametrize("ids", [np.array([5, 3, 5, 9]), np.arange(10_000) % 37 + 7, np.array([1, 10**12] * 3_000)])
def test_unique_ids_equals_numpy_unique(ids: np.ndarray) -> None:
    """Few ids, many over a compact range (counted) and a wide range (sorted): the same as np.unique."""
    got, counts = unique_ids(ids)
    want, want_counts = np.unique(ids, return_counts=True)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(counts, want_counts)


def test_popular_recent_ranks_by_recent_then_all_time_ratings() -> None:
    table = ratings_table()
    movies = table.column("movie_id").to_numpy()
    ts = np.array([t.timestamp() for t in table.column("rated_at").to_pylist()])
    recent = ts >= ts.max() - RECENT_DAYS * 86_400
    placeholders = np.array([1, 2])
    ids = sorted(set(movies.tolist()) - {1, 2})
    key = {m: (-int((recent & (movies == m)).sum()), -int((movies == m).sum()), m) for m in ids}
    want = sorted(ids, key=lambda m: key[m])[:25]
    assert popular_recent(table, 25, placeholders).tolist() == want


def test_new_movie_slot_equals_a_per_user_reference() -> None:
    table = ratings_table()
    users = np.unique(table.column("user_id").to_numpy())
    catalogue = np.arange(1, 700)  # movies 700-900 are new to the model
    rng = np.random.default_rng(8)
    genres = {g: np.sort(rng.choice(np.arange(1, 901), 250, replace=False)) for g in ("A", "B", "C", "D")}
    got = new_movie_slot(table, users, catalogue, genres)

    user_col, movie_col = table.column("user_id").to_numpy(), table.column("movie_id").to_numpy()
    names = sorted(genres)
    new_ids, counts = np.unique(movie_col[movie_col >= 700], return_counts=True)
    new_score = {
        m: [float(m in set(genres[g])) * np.log1p(c) for g in names] for m, c in zip(new_ids, counts, strict=True)
    }
    for k, user in enumerate(users):
        mine = movie_col[user_col == user]
        taste = np.array([np.isin(mine, genres[g]).sum() for g in names], float)
        taste /= max(taste.sum(), 1.0)
        best, best_score = -1, 0.0
        for m in new_ids:  # ascending: the first of equal scores wins, as argmax does
            score = 0.0 if m in set(mine.tolist()) else float(np.dot(taste, new_score[m]))
            if score > best_score + 1e-6:
                best, best_score = int(m), score
        assert got[k] == best, (user, got[k], best)
    assert (got >= 0).sum() > 100  # most users have a taste for some new movie


def test_histories_average_a_pair_rated_twice_and_keep_single_ratings_exact() -> None:
    """Without repeated pairs one sparse build serves both matrices; a repeated (user, movie) pair is averaged."""
    from cinematch.recommender.interactions import histories

    table = ratings_table(seed=5, n=6_000)
    key = table.column("user_id").to_numpy() * 10_000 + table.column("movie_id").to_numpy()
    single = table.take(np.sort(np.unique(key, return_index=True)[1]))  # each (user, movie) pair once
    hist = histories(single, np.arange(1, 800))
    users, movies = single.column("user_id").to_numpy(), single.column("movie_id").to_numpy()
    inside = movies < 800
    assert hist.binary.nnz == int(inside.sum()) and set(hist.binary.data.tolist()) == {1.0}
    u = np.searchsorted(hist.user_ids, users[inside])
    np.testing.assert_array_equal(np.asarray(hist.ratings[u, movies[inside] - 1]).ravel(),
                                  single.column("rating").to_numpy()[inside].astype(np.float32))  # fmt: skip
    first = int(np.flatnonzero(inside)[0])
    user, movie, rating = int(users[first]), int(movies[first]), float(single.column("rating")[first].as_py())
    again = pa.concat_tables([single, pa.table({"user_id": pa.array([user], pa.int64()),
                              "movie_id": pa.array([movie], pa.int64()), "rating": pa.array([0.5]),
                              "rated_at": single.column("rated_at").slice(0, 1)})])  # fmt: skip
    twice = histories(again, np.arange(1, 800))
    row = int(np.searchsorted(twice.user_ids, user))
    assert twice.binary.nnz == hist.binary.nnz and twice.binary[row, movie - 1] == 1.0
    assert twice.ratings[row, movie - 1] == pytest.approx((rating + 0.5) / 2)


def test_because_text_names_one_two_or_no_movies_per_slot() -> None:
    from cinematch.recommender.batch import _because_text

    first, second = np.array([3, -1, 5, 7, -1]), np.array([4, -1, -1, 8, -1])
    assert _because_text(first, second).to_pylist() == ["3,4", "", "5", "7,8", ""]  # every slot kept, in order


def test_new_movie_slot_from_histories_equals_the_matrix_of_every_rating() -> None:
    """The taste from the caller's histories plus the new movies' own ratings gives the same slots as the matrix of
    every rating; with a repeated (user, movie) pair it falls back to that matrix (which counts the pair twice)."""
    from cinematch.recommender.interactions import histories

    table = ratings_table(seed=9, n=8_000)
    key = table.column("user_id").to_numpy() * 10_000 + table.column("movie_id").to_numpy()
    single = table.take(np.sort(np.unique(key, return_index=True)[1]))
    catalogue = np.arange(1, 700)
    rng = np.random.default_rng(10)
    genres = {g: np.sort(rng.choice(np.arange(1, 901), 250, replace=False)) for g in ("A", "B", "C", "D")}
    for data in (single, table):
        users = np.unique(data.column("user_id").to_numpy())
        hist = histories(data, catalogue, users)
        got = new_movie_slot(data, users, catalogue, genres, hist)
        np.testing.assert_array_equal(got, new_movie_slot(data, users, catalogue, genres))
        assert (got >= 0).sum() > 50
    assert single.num_rows < table.num_rows  # the second table repeats pairs
