"""Generated users have tastes: a personalised model beats most-popular on generated data, and only thanks to taste."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from cinematch.core.errors import BadInput
from cinematch.datasets.generate import generate_tables
from cinematch.datasets.generate_config import GenerateConfig
from cinematch.datasets.generate_entities import GENRES
from cinematch.datasets.taste import _search, catalogue, draw_pairs, genre_component, n_components

# Small enough to generate and evaluate in well under a second, large enough that EASE's item-item weights are
# estimated from more than a handful of co-occurrences (20 ratings per user, 500 movies).
RANKING = GenerateConfig(users=1_000, movies=500, ratings=20_000, weeks=0)
# The stated margin (README, "Generated data"): EASE's NDCG@10 and precision@10 are at least 1.3x most-popular's.
# Measured: seeds 0-4 NDCG@10 1.49-1.62x, precision@10 1.74-1.89x; seeds 0-24 at least 1.49x and 1.71x.
# Without taste (taste=0), seeds 0-24: 0.98-1.00x for both.
MARGIN = 1.3
EASE_LAMBDA = 100.0
K = 10


def _interactions(config: GenerateConfig) -> tuple[np.ndarray, np.ndarray]:
    ratings = generate_tables(config)["ratings"]
    return ratings.column("user_id").to_numpy() - 1, ratings.column("movie_id").to_numpy() - 1


def _split(users: np.ndarray, items: np.ndarray, seed: int) -> np.ndarray:
    """Per-user seeded random 75/25 split: a boolean test mask (round(0.25 n) of each user's n ratings)."""
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(users.size), users))  # by user, shuffled within each user
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    sizes = np.diff(np.r_[starts, users.size])
    rank = np.arange(users.size) - np.repeat(starts, sizes)
    test = np.zeros(users.size, dtype=bool)
    test[order] = rank < np.round(0.25 * np.repeat(sizes, sizes))
    return test


def _ease(train: np.ndarray, lam: float) -> np.ndarray:
    """Closed-form EASE (Steck 2019) as an independent reference: B = I - P / diag(P), zero diagonal."""
    gram = train.T @ train
    gram[np.diag_indices_from(gram)] += lam
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    return train @ b


def _precision_ndcg(scores: np.ndarray, train: np.ndarray, test: np.ndarray) -> tuple[float, float]:
    """Mean precision@10 and NDCG@10 (binary gains, every test item relevant) over users with test items."""
    scores = np.where(train > 0, -np.inf, scores)  # never recommend what the user rated in train
    top = np.argsort(-scores, axis=1, kind="stable")[:, :K]
    hits = np.take_along_axis(test, top, axis=1)
    discount = 1.0 / np.log2(np.arange(2, K + 2))
    n_test = test.sum(axis=1)
    ideal = np.cumsum(discount)[np.minimum(n_test, K) - 1]
    has = n_test > 0
    precision = hits.sum(axis=1) / K
    ndcg = (hits * discount).sum(axis=1)[has] / ideal[has]
    return float(precision[has].mean()), float(ndcg.mean())


def _most_popular_vs_ease(config: GenerateConfig) -> dict[str, tuple[float, float]]:
    users, items = _interactions(config)
    is_test = _split(users, items, config.seed)
    train = np.zeros((config.users, config.movies))
    train[users[~is_test], items[~is_test]] = 1.0
    test = np.zeros((config.users, config.movies), dtype=bool)
    test[users[is_test], items[is_test]] = True
    popularity = np.broadcast_to(train.sum(axis=0), train.shape)
    return {
        "most_popular": _precision_ndcg(popularity, train, test),
        "ease": _precision_ndcg(_ease(train, EASE_LAMBDA), train, test),
    }


def test_metrics_match_hand_computed_values() -> None:
    # User 0: test items 1 and 4; the top-10 (by score, train item 0 excluded) holds item 1 at rank 1 and item 4
    # at rank 3. User 1 has no test item and does not count.
    train = np.zeros((2, 12))
    train[0, 0] = 1.0
    test = np.zeros((2, 12), dtype=bool)
    test[0, [1, 4]] = True
    scores = np.tile(-np.arange(12.0), (2, 1))
    scores[0, [3, 4]] = scores[0, [4, 3]]  # item 4 moves up to the third place (after items 1 and 2)
    precision, ndcg = _precision_ndcg(scores, train, test)
    assert precision == pytest.approx(2 / 10)
    assert ndcg == pytest.approx((1 + 1 / np.log2(4)) / (1 + 1 / np.log2(3)))


def test_split_is_per_user_75_25_and_seeded() -> None:
    users = np.repeat(np.arange(3), [4, 8, 1])
    items = np.arange(users.size)
    test = _split(users, items, 0)
    assert [int(test[users == u].sum()) for u in range(3)] == [1, 2, 0]
    assert np.array_equal(test, _split(users, items, 0))
    assert not all(np.array_equal(test, _split(users, items, s)) for s in range(1, 6))


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_personalised_model_beats_most_popular_by_the_stated_margin(seed: int) -> None:
    scores = _most_popular_vs_ease(GenerateConfig(**{**RANKING.__dict__, "seed": seed}))
    (pop_p, pop_ndcg), (ease_p, ease_ndcg) = scores["most_popular"], scores["ease"]
    assert pop_ndcg > 0.05 and pop_p > 0.03, "most-popular must be a real baseline, not a strawman"
    assert ease_ndcg >= MARGIN * pop_ndcg, scores
    assert ease_p >= MARGIN * pop_p, scores


@pytest.mark.parametrize("seed", [0, 1])
def test_without_taste_the_margin_disappears(seed: int) -> None:
    # The same generator with taste 0: users pick by popularity alone, and EASE has nothing to find beyond it.
    scores = _most_popular_vs_ease(GenerateConfig(**{**RANKING.__dict__, "seed": seed, "taste": 0.0}))
    assert scores["ease"][0] < 1.1 * scores["most_popular"][0], scores
    assert scores["ease"][1] < 1.1 * scores["most_popular"][1], scores


def _genre_counts(tables: dict[str, pa.Table], n_users: int) -> np.ndarray:
    """(2, users, genres) genre counts of the even-numbered and the odd-numbered ratings of each user."""
    movies = tables["movies"].to_pandas()
    member = np.array([[g in genres.split("|") for g in GENRES] for genres in movies.genres])
    ratings = tables["ratings"]  # sorted by user: alternate positions split each user's ratings in two
    users = ratings.column("user_id").to_numpy() - 1
    first = np.searchsorted(users, users)
    half = (np.arange(users.size) - first) % 2
    counts = np.zeros((2, n_users, len(GENRES)))
    rows, genres = np.nonzero(member[ratings.column("movie_id").to_numpy() - 1])
    np.add.at(counts, (half[rows], users[rows], genres), 1.0)
    return counts


def test_genre_mix_is_personal_but_realistic() -> None:
    # 100 ratings a user, so each half of a user's ratings shows their genre mix.
    config = GenerateConfig(users=400, movies=1_000, ratings=40_000, weeks=0, seed=3)
    reliability = {}
    for taste in (0.0, 1.0):
        tables = generate_tables(GenerateConfig(**{**config.__dict__, "taste": taste}))
        counts = _genre_counts(tables, config.users)
        overall = counts.sum(axis=(0, 1)) / counts.sum()
        # Realistic: Drama and Comedy stay the two biggest genres and no genre takes over the ratings.
        assert set(np.argsort(-overall)[:2]) == {GENRES.index("Drama"), GENRES.index("Comedy")}, taste
        assert overall.max() < 0.3, taste
        # Personal: a user's genre mix in one half of their ratings predicts the other half (split-half
        # correlation of the deviations from the overall mix). Without taste it is negative: drawing without
        # replacement from a finite catalogue makes the halves compete. MovieLens small: 0.63.
        shares = counts / np.maximum(counts.sum(axis=2, keepdims=True), 1.0) - overall
        reliability[taste] = float(np.corrcoef(shares[0].ravel(), shares[1].ravel())[0, 1])
    assert reliability[1.0] > 0.2 and reliability[0.0] < 0.0, reliability  # measured 0.32 and -0.17


def test_search_agrees_with_searchsorted() -> None:
    rng = np.random.default_rng(0)
    member = rng.random((300, 6)) < 0.3
    member[:, 0] = True
    member[:, 5] = False  # an empty component keeps width 0
    cat = catalogue(member, 1.0 / rng.permutation(np.arange(1.0, 301.0)))
    assert cat.width[5] == 0.0 and (cat.width[:5] > 0).all()
    q = rng.random(50_000) * cat.before[-1]  # up to the total weight
    assert np.array_equal(_search(cat, q), np.searchsorted(cat.cdf, q, side="right"))


def _toy_catalogue() -> tuple[np.ndarray, np.ndarray]:
    """18 genres + 2 niches over 360 movies: movie m is in genre m % 18 and niche m % 2; popularity 1 / (m + 1)."""
    n_movies, k = 360, n_components(len(GENRES), 2)
    member = np.zeros((n_movies, k), dtype=bool)
    member[:, 0] = True
    member[np.arange(n_movies), genre_component(np.arange(n_movies) % len(GENRES))] = True
    member[np.arange(n_movies), 1 + len(GENRES) + np.arange(n_movies) % 2] = True
    return member, 1.0 / (1.0 + np.arange(n_movies))


def test_draws_follow_the_users_tastes_without_repeats() -> None:
    member, popularity = _toy_catalogue()
    k = member.shape[1]
    # Users 0-99 like only genre 3 (20 movies), users 100-199 only niche 1, users 200-299 only popularity.
    comps = np.tile(np.arange(k, dtype=np.int8), (300, 1))
    weights = np.zeros((300, k))
    weights[:100, genre_component(3)] = weights[100:200, k - 1] = weights[200:, 0] = 1.0
    users, movies = draw_pairs(
        np.random.default_rng(1), 3_000, np.ones(300), (comps, weights), catalogue(member, popularity)
    )
    assert np.all(np.diff(users) >= 0), "draws come sorted by user"
    assert np.all(movies[users < 100] % len(GENRES) == 3)
    assert np.all(movies[(users >= 100) & (users < 200)] % 2 == 1)
    # A user's draws from one component never repeat a movie while the component has movies left.
    keys = users * 1_000 + movies
    assert np.unique(keys).size == keys.size
    # The popularity users follow popularity: draws per movie fall from band to band of popularity.
    counts = np.bincount(movies[users >= 200], minlength=member.shape[0])
    bands = [counts[lo:hi].mean() for lo, hi in [(0, 5), (5, 20), (20, 60), (60, 360)]]
    assert bands == sorted(bands, reverse=True) and bands[0] > 10 * bands[-1], bands


def test_inclusion_probabilities_are_those_of_sampling_without_replacement() -> None:
    # One user drawing 10 movies from niche 0 (the 180 even movies), 3,000 times: movie i must be included with
    # probability min(1, lam * w_i), lam such that the probabilities sum to 10 (PPS without replacement).
    member, popularity = _toy_catalogue()
    cat = catalogue(member, popularity)
    niche = 1 + len(GENRES)
    comps = np.array([[niche]], dtype=np.int8)
    rng = np.random.default_rng(2)
    counts = np.zeros(member.shape[0])
    for _ in range(3_000):
        _, movies = draw_pairs(rng, 10, np.ones(1), (comps, np.ones((1, 1))), cat)
        assert np.unique(movies).size == 10 and np.all(movies % 2 == 0)
        counts[movies] += 1
    weight = popularity[::2]  # the niche's movies 0, 2, 4, ...
    lo, hi = 0.0, 1e6
    for _ in range(200):  # bisection for lam
        lam = (lo + hi) / 2
        lo, hi = (lam, hi) if np.minimum(1.0, lam * weight).sum() < 10 else (lo, lam)
    expected = np.minimum(1.0, lam * weight)
    assert expected[0] == 1.0 and expected[2] < 1.0  # movie 0 is certain, the others are drawn
    assert np.abs(counts[::2] / 3_000 - expected)[:20].max() < 0.03  # binomial sd at most 0.009


def test_taste_outside_0_1_is_bad_input() -> None:
    with pytest.raises(BadInput, match="taste"):
        GenerateConfig(taste=1.5)
    with pytest.raises(BadInput, match="taste"):
        GenerateConfig(taste=-0.1)
