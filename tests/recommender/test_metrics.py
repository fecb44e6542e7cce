"""Metrics against hand-computed values on tiny fixtures."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from cinematch.core.errors import BadInput
from cinematch.recommender.metrics import (
    MostPopular,
    average_recommendation_popularity,
    catalog_coverage,
    evaluate,
    mae,
    map_at_k,
    mean_average_precision,
    most_popular_baseline,
    ndcg_at_k,
    per_user_ndcg,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
    rmse,
)

# Test ratings of 3 users over items 1..5 (relevance: rating >= 4.0, inclusive):
#   user 1: item 1 (5.0), item 2 (4.0), item 3 (2.0)  -> relevant {1, 2}
#   user 2: item 4 (4.5), item 2 (4.0), item 5 (1.0)  -> relevant {4, 2}
#   user 3: item 1 (3.0)                              -> nothing relevant: not scored
TEST_USERS = np.array([1, 1, 1, 2, 2, 2, 3])
TEST_ITEMS = np.array([1, 2, 3, 4, 2, 5, 1])
TEST_RATINGS = np.array([5.0, 4.0, 2.0, 4.5, 4.0, 1.0, 3.0])
USERS = np.array([1, 2, 3])
# Top-3 lists: user 1 hits at ranks 1 and 3, user 2 hits at rank 3 only.
RECOMMENDED = np.array([[1, 3, 2], [5, 1, 4], [2, 4, 5]])
ARGS = (USERS, RECOMMENDED, TEST_USERS, TEST_ITEMS, TEST_RATINGS)


def test_rmse_and_mae_by_hand() -> None:
    y = [1.0, 2.0, 3.0, 4.0]
    yhat = [1.0, 3.0, 3.0, 2.0]  # errors 0, 1, 0, 2
    assert rmse(y, yhat) == pytest.approx(math.sqrt(5 / 4))
    assert mae(y, yhat) == pytest.approx(3 / 4)


def test_error_metrics_reject_bad_input() -> None:
    with pytest.raises(BadInput):
        rmse([1.0, 2.0], [1.0])
    with pytest.raises(BadInput):
        mae([], [])


def test_precision_at_k_by_hand() -> None:
    # user 1: 2 hits / 3, user 2: 1 hit / 3; user 3 has no relevant item and is not averaged
    assert precision_at_k(*ARGS, k=3) == pytest.approx((2 / 3 + 1 / 3) / 2)
    # at k=2: user 1 has 1 hit (item 1), user 2 none
    assert precision_at_k(*ARGS, k=2) == pytest.approx((1 / 2 + 0 / 2) / 2)


def test_recall_at_k_by_hand() -> None:
    # user 1 finds both relevant items, user 2 one of two
    assert recall_at_k(*ARGS, k=3) == pytest.approx((2 / 2 + 1 / 2) / 2)
    assert recall_at_k(*ARGS, k=1) == pytest.approx((1 / 2 + 0 / 2) / 2)


def test_ndcg_at_k_by_hand() -> None:
    ideal = 1 + 1 / math.log2(3)  # two relevant items at ranks 1 and 2
    user1 = (1 / math.log2(2) + 1 / math.log2(4)) / ideal  # hits at ranks 1 and 3
    user2 = (1 / math.log2(4)) / ideal  # hit at rank 3
    assert ndcg_at_k(*ARGS, k=3) == pytest.approx((user1 + user2) / 2)
    # a perfect list scores 1
    perfect = np.array([[1, 2, 3], [4, 2, 5], [2, 4, 5]])
    assert ndcg_at_k(USERS, perfect, TEST_USERS, TEST_ITEMS, TEST_RATINGS, k=3) == pytest.approx(1.0)


def test_map_at_k_by_hand() -> None:
    # user 1, list [1, 3, 2], relevant {1, 2}: hits at ranks 1 and 3, precisions 1/1 and 2/3;
    #   AP = (1 + 2/3) / min(k=3, 2 relevant) = 5/6
    # user 2, list [5, 1, 4], relevant {4, 2}: one hit at rank 3, precision 1/3; AP = (1/3) / 2 = 1/6
    assert map_at_k(*ARGS, k=3) == pytest.approx((5 / 6 + 1 / 6) / 2)
    # k=1: user 1 hits at rank 1, AP = 1 / min(1, 2) = 1; user 2 misses: MAP@1 = 1/2
    assert map_at_k(*ARGS, k=1) == pytest.approx(0.5)
    # with #relevant <= k, Recommenders' map and map_at_k coincide
    assert mean_average_precision(*ARGS, k=3) == pytest.approx(0.5)


def test_map_denominators_differ_past_k() -> None:
    # one user with 4 relevant test items and a perfect top-2 list: precisions 1/1 and 2/2 sum to 2
    users, rec = np.array([7]), np.array([[10, 20]])
    truth = (np.array([7, 7, 7, 7]), np.array([10, 20, 30, 40]), np.array([5.0, 5.0, 5.0, 5.0]))
    assert map_at_k(users, rec, *truth, k=2) == pytest.approx(2 / 2)  # divided by min(k, 4) = 2
    assert mean_average_precision(users, rec, *truth, k=2) == pytest.approx(2 / 4)  # divided by 4 relevant


def test_average_recommendation_popularity_by_hand() -> None:
    # train counts: item 1 -> 10, 2 -> 4, 3 -> 1, 5 -> 7; item 4 is not in train and counts 0
    item_ids, counts = np.array([5, 1, 3, 2]), np.array([7, 10, 1, 4])  # unsorted on purpose
    # lists [1, 3, 2] -> (10 + 1 + 4)/3 = 5; [5, 1, 4] -> (7 + 10 + 0)/3 = 17/3; [2, 4, 5] -> (4 + 0 + 7)/3 = 11/3
    arp = average_recommendation_popularity(RECOMMENDED, item_ids, counts)
    assert arp == pytest.approx((5 + 17 / 3 + 11 / 3) / 3)
    # -1 slots are ignored ([1, -1, -1] -> 10; [2, 3, -1] -> 5/2), and an all -1 list is left out of the mean
    padded = np.array([[1, -1, -1], [-1, -1, -1], [2, 3, -1]])
    assert average_recommendation_popularity(padded, item_ids, counts) == pytest.approx((10 + 5 / 2) / 2)
    assert math.isnan(average_recommendation_popularity(np.full((2, 3), -1), item_ids, counts))
    with pytest.raises(BadInput):
        average_recommendation_popularity(RECOMMENDED, item_ids, counts[:2])


def test_ranking_metrics_in_one_pass_by_hand() -> None:
    counts = (np.array([1, 2, 3, 5]), np.array([10, 4, 1, 7]))
    out = ranking_metrics(*ARGS, k=3, threshold=4.0, catalog_size=10, item_ids=counts[0], item_counts=counts[1])
    assert out == pytest.approx(
        {
            "precision_at_3": (2 / 3 + 1 / 3) / 2,
            "recall_at_3": (2 / 2 + 1 / 2) / 2,
            "ndcg_at_3": ndcg_at_k(*ARGS, k=3),  # checked by hand in test_ndcg_at_k_by_hand
            "map_at_3": (5 / 6 + 1 / 6) / 2,
            "coverage": 5 / 10,  # items 1..5 listed
            "avg_rec_popularity": (5 + 17 / 3 + 11 / 3) / 3,
            "n_users_evaluated": 2,
        }
    )
    # k below the list length: every metric reads only the first k columns (lists [1], [5], [2] at k=1)
    short = ranking_metrics(*ARGS, k=1, threshold=4.0, catalog_size=10)
    assert "avg_rec_popularity" not in short
    assert short["coverage"] == pytest.approx(3 / 10)  # items 1, 5, 2
    assert short["map_at_1"] == pytest.approx((1 / 1 + 0) / 2)  # user 1: hit at rank 1 / min(1, 2); user 2 misses


def test_per_user_ndcg_sorted_by_user_and_paired() -> None:
    ideal = 1 + 1 / math.log2(3)
    # the same lists as RECOMMENDED, for users given in the order 3, 2, 1
    ids, values = per_user_ndcg(USERS[::-1], RECOMMENDED[::-1], TEST_USERS, TEST_ITEMS, TEST_RATINGS, k=3)
    assert ids.tolist() == [1, 2]  # user 3 has nothing relevant
    assert values == pytest.approx([(1 + 1 / math.log2(4)) / ideal, (1 / math.log2(4)) / ideal])
    assert values.mean() == pytest.approx(ndcg_at_k(*ARGS, k=3))


def test_threshold_changes_relevance() -> None:
    # with threshold 4.5 only user 1's item 1 and user 2's item 4 are relevant
    assert precision_at_k(*ARGS, k=3, threshold=4.5) == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert recall_at_k(*ARGS, k=3, threshold=4.5) == pytest.approx(1.0)


def test_empty_slots_never_hit_and_precision_divides_by_k() -> None:
    padded = np.array([[1, -1, -1], [-1, -1, -1], [-1, -1, -1]])
    assert precision_at_k(USERS, padded, TEST_USERS, TEST_ITEMS, TEST_RATINGS, k=3) == pytest.approx((1 / 3) / 2)
    # fewer columns than k: the missing slots count as misses
    assert precision_at_k(USERS, padded[:, :1], TEST_USERS, TEST_ITEMS, TEST_RATINGS, k=3) == pytest.approx(1 / 6)


def test_no_relevant_items_gives_nan() -> None:
    assert math.isnan(precision_at_k(*ARGS, k=3, threshold=6.0))


def test_catalog_coverage_by_hand() -> None:
    assert catalog_coverage(RECOMMENDED, 10) == pytest.approx(5 / 10)
    assert catalog_coverage(np.array([[7, -1], [7, 8]]), 4) == pytest.approx(2 / 4)
    with pytest.raises(BadInput):
        catalog_coverage(RECOMMENDED, 0)


class StubModel:
    """Fixed predictions and lists, to check evaluate()'s wiring."""

    def predict(self, user_ids: np.ndarray, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.full(len(user_ids), 4.0), np.zeros(len(user_ids), dtype=bool)

    def recommend(self, user_ids: np.ndarray, n: int = 10, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        assert exclude_seen
        table = {1: [1, 3, 2], 2: [5, 1, 4], 3: [2, 4, 5]}
        ids = np.array([table[int(u)][:n] for u in user_ids])
        return ids, np.zeros(ids.shape)


@pytest.mark.parametrize("kind", ["pandas", "arrow"])
def test_evaluate_wires_metrics(kind: str) -> None:
    test = pd.DataFrame({"user_id": TEST_USERS, "movie_id": TEST_ITEMS, "rating": TEST_RATINGS})
    # train counts: movie 1 -> 3, 2 -> 2, 3, 6, 7, 8, 9 -> 1 each; movies 4 and 5 are not in train
    train = pd.DataFrame({"user_id": [1, 2, 3, 1, 2, 1, 2, 3, 1, 2], "movie_id": [1, 1, 1, 2, 2, 3, 6, 7, 8, 9],
                          "rating": [3.0] * 10})  # fmt: skip
    if kind == "arrow":
        test, train = pa.Table.from_pandas(test), pa.Table.from_pandas(train)
    out = evaluate(StubModel(), train, test, k=3)
    errors = TEST_RATINGS - 4.0
    assert out["rmse"] == pytest.approx(math.sqrt(np.mean(errors**2)))
    assert out["mae"] == pytest.approx(np.mean(np.abs(errors)))
    assert out["precision_at_3"] == pytest.approx(0.5)
    assert out["recall_at_3"] == pytest.approx(0.75)
    assert out["n_test"] == 7 and out["n_users_evaluated"] == 2
    assert out["map_at_3"] == pytest.approx(0.5)  # see test_map_at_k_by_hand
    assert out["coverage"] == pytest.approx(5 / 7)  # 5 distinct recommended items, 7 distinct train movies
    # lists [1, 3, 2] -> (3 + 1 + 2)/3 = 2, [5, 1, 4] -> (0 + 3 + 0)/3 = 1, [2, 4, 5] -> (2 + 0 + 0)/3 = 2/3
    assert out["avg_rec_popularity"] == pytest.approx((2 + 1 + 2 / 3) / 3)
    assert set(out) == {"rmse", "mae", "precision_at_3", "recall_at_3", "ndcg_at_3", "map_at_3", "coverage",
                        "avg_rec_popularity", "n_test", "n_users_evaluated"}  # fmt: skip


def test_most_popular_excludes_seen_items() -> None:
    # item 10 rated 3 times, item 20 twice, item 30 once; user 1 has already rated item 10
    train = pd.DataFrame({"user_id": [1, 2, 3, 2, 3, 3], "movie_id": [10, 10, 10, 20, 20, 30], "rating": [4.0] * 6})
    model = MostPopular(train)
    assert model.item_ids.tolist() == [10, 20, 30] and model.item_counts.tolist() == [3, 2, 1]
    ids, _ = model.recommend(np.array([1, 3, 99]), n=3)
    assert ids[0].tolist() == [20, 30, -1]  # only two unseen items left
    assert ids[1].tolist() == [-1, -1, -1]  # user 3 has rated everything
    assert ids[2].tolist() == [10, 20, 30]  # unknown user: plain popularity
    test = pd.DataFrame({"user_id": [1, 99], "movie_id": [30, 20], "rating": [5.0, 4.0]})
    out = most_popular_baseline(train, test, k=2)
    # user 1: [20, 30] hits item 30 at rank 2; user 99: [10, 20] hits item 20 at rank 2
    assert out["precision_at_2"] == pytest.approx(0.5)
    assert out["recall_at_2"] == pytest.approx(1.0)
    assert out["ndcg_at_2"] == pytest.approx(1 / math.log2(3))
    assert out["map_at_2"] == pytest.approx(0.5)  # each: precision 1/2 at rank 2, divided by min(2, 1 relevant)
    assert out["coverage"] == pytest.approx(3 / 3)
    assert out["avg_rec_popularity"] == pytest.approx(((2 + 1) / 2 + (3 + 2) / 2) / 2)  # [20, 30] and [10, 20]
    assert out["n_users_evaluated"] == 2


@pytest.mark.parametrize(("budget", "rows"), [(16_000_000, 900), (40, 900), (16_000_000, 30_000)])
def test_most_popular_lists_are_the_first_unseen_items_of_the_popularity_order(
    monkeypatch, budget: int, rows: int
) -> None:
    """Against a per-user sort of every unseen item by (−count, id); 40: many small blocks of users; 30,000
    ratings: ids counted and located through dense tables (interactions.unique_ids, lookup). Pairs repeat."""
    from cinematch.recommender import metrics as m

    monkeypatch.setattr(m, "SCORE_ELEMENTS", budget)
    rng = np.random.default_rng(4)
    users, items = rng.integers(0, rows // 15, rows), rng.integers(0, 25, rows) * 3 + 1
    model = m.MostPopular(pa.table({"user_id": users, "movie_id": items, "rating": np.full(rows, 4.0)}))
    counts = dict(zip(model.item_ids.tolist(), model.item_counts.tolist(), strict=True))
    asked = np.array([*np.unique(users)[::-1], -7])  # unordered, and one user without history
    for n in (1, 10, 30):
        ids, scores = model.recommend(asked, n)
        for row, user in enumerate(asked):
            seen = set(items[users == user].tolist())
            want = sorted((i for i in counts if i not in seen), key=lambda i: (-counts[i], i))[:n]
            assert ids[row][ids[row] >= 0].tolist() == want, (user, n)
            assert scores[row][: len(want)].tolist() == [float(counts[i]) for i in want]
            assert (ids[row][len(want) :] == -1).all() and np.isnan(scores[row][len(want) :]).all()
        everyone, _ = model.recommend(asked, n, exclude_seen=False)
        assert (everyone == everyone[0]).all()
    # built for some users only (their seen items indexed, the counts from everyone): the same lists for them
    some = np.unique(users)[::3]
    partial = m.MostPopular(pa.table({"user_id": users, "movie_id": items, "rating": np.full(rows, 4.0)}), users=some)
    assert np.array_equal(partial.item_counts, model.item_counts)
    for n in (1, 10):
        assert np.array_equal(partial.recommend(some[::-1], n)[0], model.recommend(some[::-1], n)[0])
