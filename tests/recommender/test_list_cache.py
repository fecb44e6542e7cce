"""Stored lists between publishes: only users whose history changed are scored again, and the table is exactly
the one a full recomputation gives (cold-start list and new-movie slot included)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from tests.recommender.test_ranking_models import block_ratings

from cinematch.recommender import list_cache
from cinematch.recommender.batch import top_n_table
from cinematch.recommender.ease import EASE, EASEParams
from cinematch.recommender.ials import IALS, IALSParams
from cinematch.recommender.interactions import histories
from cinematch.recommender.ranker import Component, Ranker

GENRES = {"Drama": np.array([*range(101, 111), 500]), "Comedy": np.arange(111, 121)}


def rows(users: list[int], movies: list[int], ratings: list[float], at: int = 1_800_000_000) -> pa.Table:
    return pa.table({"user_id": pa.array(users, pa.int64()), "movie_id": pa.array(movies, pa.int64()),
                     "rating": pa.array(ratings, pa.float64()),
                     "rated_at": pa.array(np.full(len(users), at * 1_000_000), pa.timestamp("us"))})  # fmt: skip


@pytest.fixture(scope="module")
def ranker() -> Ranker:
    hist = histories(block_ratings())
    ease = EASE.fit(hist.binary, hist.item_ids, EASEParams(l2=2.0, dropout=0.25)).compact()
    ials = IALS.fit(hist.binary, hist.item_ids, IALSParams(factors=3, regularization=0.1, alpha=2.0, iterations=5))
    return Ranker([Component("ease", ease, 1.0), Component("ials", ials, 0.5)], rating_weight=0.2)


class Spy:
    """Records which users the ranker is asked to score (the real ranker does the scoring)."""

    def __init__(self, ranker: Ranker) -> None:
        self.ranker, self.asked = ranker, []

    def __enter__(self) -> Spy:
        real = self.ranker.recommend

        def recommend(hist, users, *args, **kwargs):  # type: ignore[no-untyped-def]
            self.asked.append(np.asarray(users).tolist())
            return real(hist, users, *args, **kwargs)

        self.ranker.recommend = recommend  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        del self.ranker.recommend


def test_fingerprints_ignore_row_order_and_see_every_change() -> None:
    base = rows([1, 1, 2], [101, 102, 101], [4.0, 3.5, 5.0])
    users = np.array([1, 2, 3])
    prints = list_cache.fingerprints(base, users)
    shuffled = base.take([2, 0, 1])
    assert list_cache.fingerprints(shuffled, users).tolist() == prints.tolist()
    assert prints[2] == 0 and prints[0] != prints[1]  # user 3 has no ratings
    changed = list_cache.fingerprints(rows([1, 1, 2], [101, 102, 101], [4.0, 4.0, 5.0]), users)  # a new value
    assert changed[0] != prints[0] and changed[1] == prints[1]
    added = list_cache.fingerprints(pa.concat_tables([base, rows([2], [103], [5.0])]), users)
    assert added[1] != prints[1] and added[0] == prints[0]


def splitmix_reference(x: np.ndarray) -> np.ndarray:
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return np.asarray(x ^ (x >> np.uint64(31)))


def test_rating_hashes_in_blocks_equal_the_whole_array_formula() -> None:
    """Hashed in place a block at a time (several blocks and a partial one): the same words as the plain formula,
    so fingerprints stored before stay valid."""
    rng = np.random.default_rng(2)
    n = 3 * (1 << 16) + 123
    movie = rng.integers(1, 300_000, n).astype(np.int64).view(np.uint64)
    rating = (rng.integers(1, 11, n) / 2.0).view(np.uint64)
    with np.errstate(over="ignore"):
        want = splitmix_reference(splitmix_reference(movie + np.uint64(0x9E3779B97F4A7C15)) ^ rating)
    np.testing.assert_array_equal(list_cache.rating_hashes(movie, rating), want)


def test_publish_after_a_batch_scores_only_changed_users_and_equals_a_full_recompute(
    ranker: Ranker, tmp_path: Path
) -> None:
    cache = tmp_path / "lists" / "v1-top5.npz"
    first = block_ratings()
    with Spy(ranker) as spy:
        cached = top_n_table(ranker, first, 5, GENRES, cache=cache)
    assert len(spy.asked) == 1 and len(spy.asked[0]) == 60  # nothing stored yet: everyone
    assert cached.equals(top_n_table(ranker, first, 5, GENRES))

    # a batch: user 3 rates more, user 40 changes a rating, user 77 is new, user 88 rated only a new movie (500),
    # which also becomes popular enough to take other group A users' last slot
    old = first.filter(pa.compute.and_(pa.compute.equal(first["user_id"], 40), pa.compute.equal(first["movie_id"],
                       first.filter(pa.compute.equal(first["user_id"], 40))["movie_id"][0])))  # fmt: skip
    moved = rows([40], [old["movie_id"][0].as_py()], [0.5 if old["rating"][0].as_py() > 1 else 5.0])
    keep = first.filter(pa.compute.invert(pa.compute.and_(pa.compute.equal(first["user_id"], 40),
                                                          pa.compute.equal(first["movie_id"], moved["movie_id"][0]))))  # fmt: skip
    batch = rows([3, 3, 77, 77, 88, 5, 6], [105, 106, 101, 102, 500, 500, 500], [5.0, 4.0, 4.5, 4.0, 5.0, 4.0, 4.0])
    second = pa.concat_tables([keep, moved, batch])
    with Spy(ranker) as spy:
        incremental = top_n_table(ranker, second, 5, GENRES, cache=cache)
    assert sorted(spy.asked[0]) == [3, 5, 6, 40, 77, 88]
    full = top_n_table(ranker, second, 5, GENRES)
    assert incremental.equals(full)
    assert set(full.filter(pa.compute.equal(full["movie_id"], 500))["user_id"].to_pylist()) - {5, 6}  # slot moved

    with Spy(ranker) as spy:  # nothing changed: nobody is scored, same table
        again = top_n_table(ranker, second, 5, GENRES, cache=cache)
    assert spy.asked == [[]] or spy.asked == []
    assert again.equals(full)


def test_a_damaged_or_foreign_cache_is_a_miss(ranker: Ranker, tmp_path: Path) -> None:
    table = block_ratings()
    cache = tmp_path / "v1-top5.npz"
    cache.write_bytes(b"not a zip file")
    assert top_n_table(ranker, table, 5, cache=cache).equals(top_n_table(ranker, table, 5))
    assert list_cache.load(cache, 5) is not None  # rewritten whole
    assert list_cache.load(cache, 10) is None  # another n is not this cache
    other = tmp_path / "v0-top5.npz"
    other.write_bytes(b"")
    top_n_table(ranker, table, 5, cache=cache)
    assert not other.exists()  # only the current version's lists are kept


def test_evaluation_rescores_only_users_whose_training_history_changed(ranker: Ranker) -> None:
    """The champion's evaluated lists are reused for users with the same training history; the result equals a
    full scoring, a changed user, a new user and a user without history are scored again."""
    from cinematch.recommender import evaluation

    train = block_ratings()
    users = np.array([1, 2, 31, 32])
    first = evaluation.served_lists(None, ranker, train, users, 5)  # type: ignore[arg-type]
    later = pa.concat_tables([train, rows([2, 40, 77], [110, 120, 101], [5.0, 3.0, 4.0])])  # 77: new user
    asked_for = np.array([1, 2, 31, 40, 77, 99])  # 99: no training history at all
    with Spy(ranker) as spy:
        again = evaluation.served_lists(None, ranker, later, asked_for, 5)  # type: ignore[arg-type]
    assert spy.asked == [[2, 40, 77, 99]]  # 1 and 31 kept their histories: their lists are reused
    np.testing.assert_array_equal(again[[0, 2]], first[[0, 2]])
    evaluation._EVALUATED.clear()
    np.testing.assert_array_equal(evaluation.served_lists(None, ranker, later, asked_for, 5), again)  # type: ignore[arg-type]
