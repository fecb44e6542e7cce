"""ALS: known answers, accuracy floor, determinism, fallbacks, persistence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cinematch.core.errors import BadInput
from cinematch.recommender.als import ALSModel
from cinematch.recommender.als_params import ALSParams
from cinematch.recommender.metrics import rmse

SMALL = ALSParams(rank=8, iterations=10, seed=3)


def low_rank_ratings(
    n_users: int = 300, n_items: int = 200, rank: int = 3, density: float = 0.3, noise: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ratings = 3.5 + low-rank signal + small noise on a random subset of (user, item) cells."""
    rng = np.random.default_rng(seed)
    p = rng.normal(0, 0.7, (n_users, rank))
    q = rng.normal(0, 0.7, (n_items, rank))
    full = 3.5 + p @ q.T + rng.normal(0, noise, (n_users, n_items))
    mask = rng.random((n_users, n_items)) < density
    users, items = np.nonzero(mask)
    # sparse, unordered external ids exercise the id mapping
    return users * 7 + 100, items * 3 + 5, np.clip(full[mask], 0.5, 5.0)


@pytest.fixture(scope="module")
def fitted() -> tuple[ALSModel, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    data = low_rank_ratings()
    return ALSModel.fit(*data, SMALL), data


def block_ratings() -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, set[int]]]:
    """Users 0-19 love items 100-109 and hate 200-209; users 20-39 the reverse.

    Each user leaves 3 of their loved items unrated; those are the obvious right answers.
    """
    rng = np.random.default_rng(5)
    users, items, ratings = [], [], []
    held_out: dict[int, set[int]] = {}
    for u in range(40):
        loved, hated = (
            (np.arange(100, 110), np.arange(200, 210)) if u < 20 else (np.arange(200, 210), np.arange(100, 110))
        )
        hidden = set(rng.choice(loved, 3, replace=False).tolist())
        held_out[u] = hidden
        for i in loved:
            if i not in hidden:
                users.append(u), items.append(i), ratings.append(rng.choice([4.5, 5.0]))
        for i in rng.choice(hated, 7, replace=False):
            users.append(u), items.append(i), ratings.append(rng.choice([1.0, 1.5]))
    return np.array(users), np.array(items), np.array(ratings), held_out


def test_known_answer_block_structure() -> None:
    users, items, ratings, held_out = block_ratings()
    model = ALSModel.fit(users, items, ratings, ALSParams(rank=4, iterations=10, seed=1))
    ids, scores = model.recommend(np.arange(40), n=3)
    for u in range(40):
        # the top 3 are exactly the user's 3 unrated loved items, and they score high
        assert set(ids[u].tolist()) == held_out[u], u
        assert np.all(scores[u] > 4.0)
    # predictions follow the blocks: loved items high, the other group's items low
    pred, fallback = model.predict(np.array([0, 0, 30, 30]), np.array([105, 205, 105, 205]))
    assert not fallback.any()
    assert pred[0] > 4.0 and pred[1] < 2.0 and pred[2] < 2.0 and pred[3] > 4.0


def test_rmse_floor_on_low_rank_data() -> None:
    users, items, ratings = low_rank_ratings(seed=1)
    rng = np.random.default_rng(2)
    test = rng.random(len(ratings)) < 0.2
    # light ridge: the defaults are tuned for MovieLens' sparsity and shrink this dense toy signal
    params = ALSParams(rank=8, reg=0.02, reg_const=1.0, bias_reg=1.0, iterations=10)
    model = ALSModel.fit(users[~test], items[~test], ratings[~test], params)
    pred, fallback = model.predict(users[test], items[test])
    assert not fallback.any()
    baseline = rmse(ratings[test], np.full(test.sum(), ratings[~test].mean()))
    # the noise is 0.2 (≈0.25 reached); predicting the global mean gives ≈0.83
    assert rmse(ratings[test], pred) < 0.3
    assert baseline > 0.8


def test_progress_reports_exact_train_rmse(fitted) -> None:
    _, (users, items, ratings) = fitted
    seen: list[tuple[int, float]] = []
    again = ALSModel.fit(users, items, ratings, SMALL, progress=lambda it, loss: seen.append((it, loss)))
    assert [it for it, _ in seen] == list(range(1, SMALL.iterations + 1))
    assert seen[-1][1] < seen[0][1]
    assert again.train_rmse == [loss for _, loss in seen]
    # the SSE shortcut matches the RMSE recomputed from the factors (unclipped)
    u = np.searchsorted(again.user_ids, users)
    i = np.searchsorted(again.item_ids, items)
    direct = (
        again.global_mean
        + again.user_bias[u]
        + again.item_bias[i]
        + np.einsum("ij,ij->i", again.user_factors[u], again.item_factors[i])
    )
    assert seen[-1][1] == pytest.approx(rmse(ratings, direct), rel=1e-3)


def test_deterministic_for_a_seed(fitted) -> None:
    model, data = fitted
    same = ALSModel.fit(*data, SMALL)
    for name in ("user_factors", "item_factors", "user_bias", "item_bias"):
        assert np.array_equal(getattr(model, name), getattr(same, name)), name
    single = ALSModel.fit(*data, SMALL, n_threads=1)  # thread count does not change the bits
    assert np.array_equal(model.item_factors, single.item_factors)
    other = ALSModel.fit(*data, ALSParams(rank=8, iterations=10, seed=4))
    assert not np.array_equal(model.item_factors, other.item_factors)


def test_recommend_excludes_seen_items(fitted) -> None:
    model, (users, items, _) = fitted
    who = np.unique(users)[:50]
    ids, scores = model.recommend(who, n=10)
    assert ids.shape == scores.shape == (50, 10)
    rated = set(zip(users.tolist(), items.tolist(), strict=True))
    assert not any((u, i) in rated for u, row in zip(who.tolist(), ids.tolist(), strict=True) for i in row)
    assert np.all(np.diff(scores, axis=1) <= 0)  # best first
    assert all(len(set(row)) == 10 for row in ids.tolist())
    # without exclusion, the top item of someone can be an item they rated
    ids_all, _ = model.recommend(who, n=10, exclude_seen=False)
    assert any((u, i) in rated for u, row in zip(who.tolist(), ids_all.tolist(), strict=True) for i in row)


def test_unknown_users_get_popularity_fallback(fitted) -> None:
    model, (users, _, _) = fitted
    known = users[0]
    ids, scores = model.recommend(np.array([-5, known, 10**9]), n=5)
    assert ids[0].tolist() == ids[2].tolist()
    expected = model.item_ids[np.argsort(-model.item_popularity, kind="stable")[:5]]
    assert ids[0].tolist() == expected.tolist()
    assert np.all(np.diff(scores[0]) <= 0)
    assert ids[1].tolist() != ids[0].tolist() or not np.allclose(scores[1], scores[0])


def test_popularity_fallback_prefers_popular_and_well_rated() -> None:
    # item 1: 30 ratings of 4.5; item 2: a single 5.0; item 3: 30 ratings of 2.0
    users = np.concatenate([np.arange(30), [100], np.arange(30)])
    items = np.array([1] * 30 + [2] + [3] * 30)
    ratings = np.array([4.5] * 30 + [5.0] + [2.0] * 30)
    model = ALSModel.fit(users, items, ratings, ALSParams(rank=2, iterations=2))
    ids, _ = model.recommend(np.array([999]), n=3)
    assert ids[0, 0] == 1


def test_recommend_pads_when_catalogue_is_small(fitted) -> None:
    model, (users, _, _) = fitted
    u = users[0]
    n_unseen = model.n_items - np.count_nonzero(users == u)
    ids, scores = model.recommend(np.array([u]), n=model.n_items + 5)
    assert np.count_nonzero(ids[0] >= 0) == n_unseen
    assert np.all(ids[0, n_unseen:] == -1) and np.all(np.isnan(scores[0, n_unseen:]))


def test_predict_flags_unknown_ids_and_clips(fitted) -> None:
    model, (users, items, _) = fitted
    u, i = users[0], items[0]
    pred, fallback = model.predict(np.array([u, u, -1, -1]), np.array([i, -7, i, -7]))
    assert fallback.tolist() == [False, True, True, True]
    u_idx = np.searchsorted(model.user_ids, u)
    i_idx = np.searchsorted(model.item_ids, i)
    assert pred[1] == pytest.approx(np.clip(model.global_mean + model.user_bias[u_idx], 0.5, 5.0))
    assert pred[2] == pytest.approx(np.clip(model.global_mean + model.item_bias[i_idx], 0.5, 5.0))
    assert pred[3] == pytest.approx(model.global_mean)
    all_pred, _ = model.predict(users, items)
    assert all_pred.min() >= 0.5 and all_pred.max() <= 5.0


def test_save_load_round_trip(fitted, tmp_path: Path) -> None:
    model, (users, items, _) = fitted
    model.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "als_model.json").read_text())
    assert meta["params"]["rank"] == SMALL.rank and meta["n_users"] == model.n_users
    assert not list((tmp_path / "m").glob("*.pkl"))
    loaded = ALSModel.load(tmp_path / "m")
    assert loaded.params == model.params and loaded.global_mean == model.global_mean
    who = np.unique(users)[:20]
    assert np.array_equal(loaded.recommend(who, n=7)[0], model.recommend(who, n=7)[0])
    assert np.array_equal(loaded.predict(users[:100], items[:100])[0], model.predict(users[:100], items[:100])[0])
    (tmp_path / "m" / "item_bias.npy").unlink()
    with pytest.raises(BadInput):
        ALSModel.load(tmp_path / "m")
    with pytest.raises(BadInput):
        ALSModel.load(tmp_path / "nothing-here")


def test_duplicate_pairs_are_averaged() -> None:
    users = np.array([1, 1, 2, 2, 3])
    items = np.array([10, 10, 10, 20, 20])
    ratings = np.array([2.0, 4.0, 3.0, 3.0, 3.0])
    model = ALSModel.fit(users, items, ratings, ALSParams(rank=2, iterations=3))
    assert int(model.seen_indptr[-1]) == 4
    assert model.global_mean == pytest.approx(3.0)


def test_fit_rejects_bad_input() -> None:
    with pytest.raises(BadInput):
        ALSModel.fit(np.array([1, 2]), np.array([1]), np.array([3.0, 4.0]), SMALL)
    with pytest.raises(BadInput):
        ALSModel.fit(np.array([], dtype=np.int64), np.array([], dtype=np.int64), np.array([]), SMALL)
    with pytest.raises(BadInput):
        ALSModel.fit(np.array([1]), np.array([1]), np.array([np.nan]), SMALL)
    with pytest.raises(BadInput):
        ALSModel.fit(np.array([1.5]), np.array([1]), np.array([3.0]), SMALL)
    with pytest.raises(BadInput):
        ALSModel.fit(np.array([1]), np.array([1]), np.array([3.0]), ALSParams(rank=0))


@pytest.mark.parametrize("weight", [0.0, 2.0])
def test_ranking_adds_the_popularity_term(weight: float) -> None:
    users, items, ratings = low_rank_ratings(n_users=60, n_items=80, density=0.25, seed=4)
    model = ALSModel.fit(users, items, ratings, ALSParams(rank=4, iterations=5, rank_popularity=weight))
    ids, _ = model.recommend(model.user_ids[:10], n=5)
    counts = np.bincount(model.seen_indices, minlength=model.n_items)
    for row, u in enumerate(range(10)):
        # by hand: unclipped r̂(u, i) + w·log(1 + n_i) over the items u did not rate, best first
        score = model.global_mean + model.user_bias[u] + model.item_bias + model.item_factors @ model.user_factors[u]
        score = score + weight * np.log1p(counts)
        seen = model.seen_indices[model.seen_indptr[u] : model.seen_indptr[u + 1]]
        score[seen] = -np.inf
        expected = model.item_ids[np.argsort(-score, kind="stable")[:5]]
        assert ids[row].tolist() == expected.tolist()
    # predicted ratings do not depend on the ranking weight
    plain = ALSModel.fit(users, items, ratings, ALSParams(rank=4, iterations=5, rank_popularity=0.0))
    np.testing.assert_array_equal(model.predict(users, items)[0], plain.predict(users, items)[0])


def test_rank_popularity_must_be_non_negative() -> None:
    with pytest.raises(BadInput, match="rank_popularity"):
        ALSModel.fit(np.array([1]), np.array([2]), np.array([4.0]), ALSParams(rank_popularity=-1.0))


def test_ridge_fade_leaves_dense_rows_to_als_wr() -> None:
    # dense toy data (~60 ratings per user, 90 per item): a constant floor of 10 over-shrinks, the faded one less
    users, items, ratings = low_rank_ratings(seed=6)
    rng = np.random.default_rng(7)
    test = rng.random(len(ratings)) < 0.2
    errors = {}
    for fade in (0.0, 40.0):
        params = ALSParams(rank=8, iterations=8, reg_const=10.0, ridge_fade=fade)
        model = ALSModel.fit(users[~test], items[~test], ratings[~test], params)
        errors[fade] = rmse(ratings[test], model.predict(users[test], items[test])[0])
    assert errors[40.0] < errors[0.0] - 0.01
    with pytest.raises(BadInput, match="ridge_fade"):
        ALSModel.fit(users, items, ratings, ALSParams(ridge_fade=-1.0))
