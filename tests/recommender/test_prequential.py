"""Prequential scores against hand-computed values on a toy history, and the RMSE of a real ALS model."""

from __future__ import annotations

from math import log2

import numpy as np
import pyarrow as pa
import pytest

from cinematch.core.errors import BadInput
from cinematch.recommender.als import ALSModel
from cinematch.recommender.als_params import ALSParams
from cinematch.recommender.prequential import score_ratings, score_served, served_lists

# Personal lists: user 1 [10, 11, 12], user 2 [13, 14, 15] (rates nothing in the period), user 3 [16, 10, 17].
# Rows deliberately out of rank order: the rank column, not the row order, places a movie.
LISTS = pa.table(
    {
        "user_id": pa.array([1, 1, 1, 2, 2, 2, 3, 3, 3], pa.int64()),
        "movie_id": pa.array([12, 10, 11, 13, 14, 15, 17, 16, 10], pa.int64()),
        "rank": pa.array([3, 1, 2, 1, 2, 3, 3, 1, 2], pa.int32()),
    }
)
FALLBACK = pa.table({"movie_id": pa.array([21, 20, 22], pa.int64()), "rank": pa.array([2, 1, 3], pa.int32())})


def actual(pairs: list[tuple[int, int]]) -> pa.Table:
    users, movies = zip(*pairs, strict=True) if pairs else ((), ())
    return pa.table(
        {
            "user_id": pa.array(users, pa.int64()),
            "movie_id": pa.array(movies, pa.int64()),
            "rating": pa.array(np.full(len(pairs), 2.0), pa.float64()),  # low ratings are relevant too
        }
    )


# User 1 rates 11 (served at rank 2) and 30 (not served); user 3 rates 40 (no hit); user 4 has no personal list
# and rates 20, the fallback's rank 1.
PERIOD = actual([(1, 11), (1, 30), (3, 40), (4, 20)])
USER_1 = (1 / log2(3)) / (1 + 1 / log2(3))  # one hit at rank 2, two relevant movies: DCG 1/log2(3), IDCG 1 + 1/log2(3)


def test_hand_computed_scores_at_10() -> None:
    scores = score_served(LISTS, FALLBACK, PERIOD, catalogue_size=20, k=10)
    assert scores.n_users == 3 and scores.k == 10
    assert scores.hit_rate == pytest.approx(2 / 3)
    assert scores.ndcg == pytest.approx((USER_1 + 0.0 + 1.0) / 3)  # user 3: no hit; user 4: hit at rank 1 of 1
    assert scores.ndcg == pytest.approx(0.462284269)  # (0.386852807 + 0 + 1) / 3, worked out on paper
    # served to the evaluated users: {10, 11, 12} | {16, 10, 17} | fallback {20, 21, 22} = 8 movies; user 2's
    # list was served to nobody who rated, so 13-15 do not count
    assert scores.coverage == pytest.approx(8 / 20)
    assert scores.fallback_share == pytest.approx(1 / 3)
    assert dict(scores) == {
        "k": 10,
        "n_users": 3,
        "hit_rate": scores.hit_rate,
        "ndcg": scores.ndcg,
        "coverage": scores.coverage,
        "fallback_share": scores.fallback_share,
    }


def test_the_served_matrix() -> None:
    recommended, on_fallback = served_lists(LISTS, FALLBACK, np.array([1, 3, 4, 9]), 4)
    assert recommended.tolist() == [[10, 11, 12, -1], [16, 10, 17, -1], [20, 21, 22, -1], [20, 21, 22, -1]]
    assert on_fallback.tolist() == [False, False, True, True]


def test_k_truncates_the_lists_and_the_fallback() -> None:
    two = score_served(LISTS, FALLBACK, PERIOD, catalogue_size=20, k=2)
    # user 1 [10, 11]: the rank-2 hit stays, IDCG over min(2, 2) ranks; user 3 [16, 10]; user 4 [20, 21]
    assert two.hit_rate == pytest.approx(2 / 3)
    assert two.ndcg == pytest.approx((USER_1 + 1.0) / 3)
    assert two.coverage == pytest.approx(5 / 20)
    one = score_served(LISTS, FALLBACK, PERIOD, catalogue_size=20, k=1)
    # user 1 [10]: its hit at rank 2 is cut off; user 3 [16]; user 4 [20] still a hit
    assert one.hit_rate == pytest.approx(1 / 3)
    assert one.ndcg == pytest.approx(1 / 3)  # user 4: DCG 1, IDCG over min(1, 1) rank = 1
    assert one.coverage == pytest.approx(3 / 20)
    assert one.fallback_share == pytest.approx(1 / 3)


def test_a_movie_rated_twice_counts_once() -> None:
    twice = actual([(1, 11), (1, 11), (1, 30), (3, 40), (4, 20), (4, 20)])
    scores = score_served(LISTS, FALLBACK, twice, catalogue_size=20)
    assert scores.n_users == 3
    assert scores.ndcg == pytest.approx((USER_1 + 1.0) / 3)  # counted twice, user 1 would have IDCG over 3 ranks
    assert scores.hit_rate == pytest.approx(2 / 3)


def test_a_hit_after_a_gap_in_the_ranks_keeps_its_served_rank() -> None:
    gapped = pa.table({"user_id": [5, 5], "movie_id": [50, 51], "rank": [1, 3]})
    scores = score_served(gapped, FALLBACK, actual([(5, 51)]), catalogue_size=10)
    assert scores.ndcg == pytest.approx(1 / log2(4))  # rank 3, one relevant movie
    assert scores.coverage == pytest.approx(2 / 10) and scores.fallback_share == 0.0


def test_no_fallback_list_scores_cold_users_zero() -> None:
    empty = pa.table({"movie_id": pa.array([], pa.int64()), "rank": pa.array([], pa.int32())})
    scores = score_served(LISTS, empty, PERIOD, catalogue_size=20)
    assert scores.hit_rate == pytest.approx(1 / 3)
    assert scores.ndcg == pytest.approx(USER_1 / 3)
    assert scores.coverage == pytest.approx(5 / 20)  # {10, 11, 12, 16, 17}
    assert scores.fallback_share == pytest.approx(1 / 3)
    no_lists = LISTS.slice(0, 0)
    everyone = score_served(no_lists, FALLBACK, PERIOD, catalogue_size=20)
    assert everyone.fallback_share == 1.0 and everyone.hit_rate == pytest.approx(1 / 3)
    assert everyone.coverage == pytest.approx(3 / 20)


def test_no_rating_in_the_period_gives_no_metrics() -> None:
    scores = score_served(LISTS, FALLBACK, actual([]), catalogue_size=20)
    assert scores.n_users == 0
    assert (scores.hit_rate, scores.ndcg, scores.coverage, scores.fallback_share) == (None, None, None, None)


def test_unusable_lists_are_refused() -> None:
    twice_at_rank_1 = pa.table({"user_id": [1, 1], "movie_id": [10, 11], "rank": [1, 1]})
    with pytest.raises(BadInput, match="same rank"):
        score_served(twice_at_rank_1, FALLBACK, PERIOD, catalogue_size=20)
    with pytest.raises(BadInput, match="same rank"):
        score_served(LISTS, pa.table({"movie_id": [1, 2], "rank": [1, 1]}), PERIOD, catalogue_size=20)
    with pytest.raises(BadInput, match="start at 1"):
        score_served(pa.table({"user_id": [1], "movie_id": [10], "rank": [0]}), FALLBACK, PERIOD, 20)
    with pytest.raises(BadInput, match="k must be"):
        score_served(LISTS, FALLBACK, PERIOD, catalogue_size=20, k=0)
    with pytest.raises(BadInput, match="catalogue_size"):
        score_served(LISTS, FALLBACK, PERIOD, catalogue_size=0)
    with pytest.raises(BadInput, match="no rank column"):
        score_served(LISTS.drop_columns(["rank"]), FALLBACK, PERIOD, catalogue_size=20)


@pytest.fixture(scope="module")
def tiny_model() -> ALSModel:
    rng = np.random.default_rng(11)
    users, movies = np.nonzero(rng.random((8, 6)) < 0.6)
    ratings = rng.integers(1, 11, len(users)) / 2
    return ALSModel.fit(users + 1, movies + 1, ratings, ALSParams(rank=2, iterations=5, seed=1), n_threads=1)


def test_score_ratings_is_the_rmse_over_known_pairs(tiny_model: ALSModel) -> None:
    model = tiny_model
    # known pairs (seen in training or not), plus an unknown user, an unknown movie, and both unknown
    users = np.array([1, 2, 3, 8, 5, 5, 99, 4, 99])
    movies = np.array([1, 6, 2, 3, 4, 4, 1, 77, 77])
    ratings = np.array([4.0, 3.5, 1.0, 5.0, 2.5, 3.0, 4.0, 2.0, 1.5])
    table = pa.table({"user_id": users, "movie_id": movies, "rating": ratings})
    scores = score_ratings(model.predict, table)

    # r^(u, i) = mu + b_u + c_i + p_u . q_i clipped to [0.5, 5], from the model's own arrays
    u = np.searchsorted(model.user_ids, users[:6])
    i = np.searchsorted(model.item_ids, movies[:6])
    assert (model.user_ids[u] == users[:6]).all() and (model.item_ids[i] == movies[:6]).all()
    raw = model.global_mean + model.user_bias[u] + model.item_bias[i]
    raw = raw + (model.user_factors[u].astype(np.float64) * model.item_factors[i]).sum(axis=1)
    expected = np.sqrt(np.mean((np.clip(raw, 0.5, 5.0) - ratings[:6]) ** 2))
    assert scores.n_known == 6 and scores.n_unknown == 3
    assert scores.rmse == pytest.approx(expected, rel=1e-6)
    assert dict(scores) == {"rmse": scores.rmse, "n_known": 6, "n_unknown": 3}


def test_score_ratings_without_known_pairs(tiny_model: ALSModel) -> None:
    unknown = pa.table({"user_id": [99, 98], "movie_id": [1, 2], "rating": [3.0, 4.0]})
    assert dict(score_ratings(tiny_model.predict, unknown)) == {"rmse": None, "n_known": 0, "n_unknown": 2}
    empty = unknown.slice(0, 0)
    assert dict(score_ratings(tiny_model.predict, empty)) == {"rmse": None, "n_known": 0, "n_unknown": 0}
