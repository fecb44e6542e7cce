"""Tests of the pure drift statistics: divergences, score, decision, reference snapshots, comparison."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from scipy import stats

from cinematch.core.errors import BadInput
from cinematch.core.settings import Settings
from cinematch.drift.genres import MovieGenres
from cinematch.drift.histograms import HALF_STAR_BINS, half_star_histogram
from cinematch.drift.reference import ReferenceStats
from cinematch.drift.stats import (
    compare,
    decide,
    drift_score,
    kl_divergence,
    ks_statistic,
    ks_test,
    psi,
    reference_stats,
)

# ML-25M's rating counts per half star (0.5 … 5.0): the shape real data has.
ML25M_COUNTS = np.array(
    [393068, 776815, 399490, 1640868, 1262797, 4896928, 3177318, 6639798, 2200539, 3612474], dtype=float
)
ML25M_P = ML25M_COUNTS / ML25M_COUNTS.sum()


@pytest.fixture
def cfg() -> Settings:
    # explicit values so CINEMATCH_* variables in the environment cannot change the expectations
    return Settings(
        drift_kl_threshold=0.1,
        drift_mean_threshold=0.2,
        drift_median_threshold=0.5,
        drift_kl_weight=0.5,
        drift_mean_weight=0.3,
        drift_median_weight=0.2,
        drift_retrain_score=1.0,
        drift_warning_score=0.5,
        drift_min_records=1000,
        model_drift_threshold=0.10,
    )


def sample(n: int, seed: int, p: np.ndarray = ML25M_P) -> np.ndarray:
    return np.random.default_rng(seed).choice(HALF_STAR_BINS, size=n, p=p)


# ---------------------------------------------------------------- divergences


def test_kl_finite_with_empty_bins_on_either_side() -> None:
    ref = [10, 0, 5, 5]
    cur = [0, 7, 5, 5]  # current uses a bin the reference never saw, and leaves one empty
    assert math.isfinite(kl_divergence(cur, ref)) and kl_divergence(cur, ref) > 0
    assert math.isfinite(kl_divergence(ref, cur)) and kl_divergence(ref, cur) > 0
    assert math.isfinite(psi(ref, cur))
    assert kl_divergence([0] * 10, [0] * 10) == 0.0


def test_identical_histograms_give_zero() -> None:
    h = [1, 2, 3, 0, 5, 8, 13, 0, 21, 34]
    assert kl_divergence(h, h) == 0.0
    assert psi(h, h) == 0.0
    assert ks_statistic(h, h) == 0.0
    # same proportions at a different sample size are not drift either
    assert kl_divergence([2 * c for c in h], h) == pytest.approx(0.0, abs=1e-2)


def test_known_values_on_hand_computed_histograms() -> None:
    # ref = [3, 1], cur = [1, 3], smoothing +0.5 per bin:
    #   ref → [3.5, 1.5] / 5 = [0.7, 0.3];  cur → [1.5, 3.5] / 5 = [0.3, 0.7]
    #   KL(cur‖ref) = 0.3·ln(0.3/0.7) + 0.7·ln(0.7/0.3) = 0.4·ln(7/3) = 0.338919...
    #   PSI = (0.3−0.7)·ln(0.3/0.7) + (0.7−0.3)·ln(0.7/0.3) = 0.8·ln(7/3) = 0.677839...
    #   KS on raw counts: CDF_ref = [0.75, 1], CDF_cur = [0.25, 1] → D = 0.5
    ref, cur = [3, 1], [1, 3]
    assert kl_divergence(cur, ref) == pytest.approx(0.4 * math.log(7 / 3), rel=1e-12)
    assert psi(ref, cur) == pytest.approx(0.8 * math.log(7 / 3), rel=1e-12)
    assert ks_statistic(ref, cur) == pytest.approx(0.5)


def test_kl_direction_is_current_given_reference() -> None:
    # Unsmoothed: cur p = [0.5, 0.5, 0], ref q = [0.25, 0.25, 0.5]
    #   KL(p‖q) = 0.5·ln 2 + 0.5·ln 2 + 0 = ln 2;  KL(q‖p) = inf (q has mass where p has none)
    assert kl_divergence([2, 2, 0], [1, 1, 2], eps=0) == pytest.approx(math.log(2))
    assert kl_divergence([1, 1, 2], [2, 2, 0], eps=0) == math.inf


def test_ks_matches_scipy_on_raw_half_star_data() -> None:
    a, b = sample(3000, 1), sample(2000, 2, p=np.roll(ML25M_P, 1))
    d, p = ks_test(half_star_histogram(a), half_star_histogram(b))
    ref = stats.ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(ref.statistic, abs=1e-12)
    assert 0.0 <= p <= 1.0 and p == pytest.approx(ref.pvalue, rel=0.1, abs=1e-12)


def test_bad_histograms_are_rejected() -> None:
    with pytest.raises(ValueError):
        kl_divergence([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        psi([1, -1], [1, 1])


counts_st = st.integers(min_value=1, max_value=12).flatmap(
    lambda k: st.tuples(
        st.lists(st.integers(min_value=0, max_value=10**12), min_size=k, max_size=k),
        st.lists(st.integers(min_value=0, max_value=10**12), min_size=k, max_size=k),
    )
)


@hsettings(max_examples=300, deadline=None)
@given(counts_st)
def test_divergences_are_finite_and_bounded(pair: tuple[list[int], list[int]]) -> None:
    ref, cur = pair
    kl, p, d = kl_divergence(cur, ref), psi(ref, cur), ks_statistic(ref, cur)
    assert math.isfinite(kl) and kl >= 0
    assert math.isfinite(p) and p >= 0
    assert 0.0 <= d <= 1.0


# ---------------------------------------------------------------- binning


def test_histogram_mean_median_match_numpy() -> None:
    r = sample(10_001, 3)
    h = half_star_histogram(r)
    assert h.tolist() == [int((r == v).sum()) for v in HALF_STAR_BINS]
    ref = reference_stats(r)
    assert ref.mean == pytest.approx(float(np.mean(r)), rel=1e-12)
    assert ref.median == float(np.median(r))
    even = reference_stats(np.array([1.0, 3.5, 4.0, 5.0]))  # even n: average of the two middle values
    assert even.median == 3.75


def test_off_grid_ratings_round_to_nearest_half_star() -> None:
    r = np.array([0.74, 0.76, 3.2, 4.9, 5.3, 0.1])
    assert half_star_histogram(r).tolist() == [2, 1, 0, 0, 0, 1, 0, 0, 0, 2]
    ref = reference_stats(r)  # raw values drive the moments once data is off the grid
    assert ref.mean == pytest.approx(r.mean()) and ref.median == pytest.approx(np.median(r))


def test_invalid_ratings_are_rejected() -> None:
    with pytest.raises(BadInput):
        reference_stats(np.array([1.0, np.nan]))
    with pytest.raises(BadInput):
        reference_stats(np.array([], dtype=float))
    with pytest.raises(BadInput):
        reference_stats(np.array([1.0, 2.0]), user_ids=np.array([1]))


# ---------------------------------------------------------------- score and decision


def test_drift_score_formula(cfg: Settings) -> None:
    assert drift_score(0.1, 0.2, 0.5, cfg) == pytest.approx(1.0)
    assert drift_score(0.1, -0.2, -0.5, cfg) == pytest.approx(1.0)  # shifts count by magnitude
    assert drift_score(0.2, 0.0, 0.0, cfg) == pytest.approx(1.0)
    assert drift_score(0.0, 0.1, 0.0, cfg) == pytest.approx(0.15)
    assert drift_score(0.0, 0.0, 0.0, cfg) == 0.0


@pytest.mark.parametrize(
    ("score", "n", "degradation", "expected"),
    [
        (5.0, 999, None, "insufficient_data"),  # min records wins over everything
        (5.0, 999, 0.5, "insufficient_data"),
        (0.0, 0, None, "insufficient_data"),
        (0.0, 1000, None, "no_drift"),  # exactly at min records is enough
        (0.5, 1000, None, "no_drift"),  # exactly at the warning score: not above it
        (0.5000001, 1000, None, "warning"),
        (1.0, 1000, None, "warning"),  # exactly at the retrain score: still only a warning
        (1.0000001, 1000, None, "retrain"),
        (0.0, 1000, 0.10, "no_drift"),  # exactly at the rmse threshold
        (0.0, 1000, 0.1000001, "retrain"),  # model degradation alone
        (0.7, 1000, -0.2, "warning"),  # a better model does not silence data drift
    ],
)
def test_decision_boundaries(cfg: Settings, score: float, n: int, degradation: float | None, expected: str) -> None:
    assert decide(score, n, cfg, degradation) == expected


# ---------------------------------------------------------------- compare


def test_clear_shift_triggers_retrain(cfg: Settings) -> None:
    ref = reference_stats(sample(20_000, 10))
    shifted = np.clip(sample(20_000, 11) - 0.5, 0.5, 5.0)
    res = compare(ref, shifted, settings=cfg)
    assert res.decision == "retrain" and res.should_retrain
    assert res.mean_shift == pytest.approx(-0.5, abs=0.05)
    assert res.median_shift < 0
    assert res.kl_divergence > cfg.drift_kl_threshold
    assert res.ks_statistic > 0.1 and res.ks_pvalue < 1e-6
    assert any(r.startswith("kl ") for r in res.reasons)
    assert any(r.startswith("|mean shift|") for r in res.reasons)


@pytest.mark.parametrize("seed", range(5))
def test_random_halves_of_one_distribution_stay_quiet(cfg: Settings, seed: int) -> None:
    r = sample(20_000, 100 + seed)
    perm = np.random.default_rng(seed).permutation(r.size)
    ref = reference_stats(r[perm[:10_000]])
    res = compare(ref, r[perm[10_000:]], settings=cfg)
    assert res.decision == "no_drift", res.reasons
    assert res.kl_divergence < 0.01 and abs(res.mean_shift) < 0.05 and res.psi < 0.01


def test_small_and_empty_current_data(cfg: Settings) -> None:
    ref = reference_stats(sample(5000, 1))
    small = compare(ref, np.clip(sample(500, 2) - 1.0, 0.5, 5.0), settings=cfg)
    assert small.decision == "insufficient_data" and not small.should_retrain
    assert small.n_current == 500 and small.kl_divergence > 0.1  # statistics are still reported
    assert "insufficient data" in small.reasons[0]

    empty = compare(ref, np.array([]), current_user_ids=np.array([], dtype=np.int64), settings=cfg)
    assert empty.decision == "insufficient_data" and empty.n_current == 0
    assert (empty.kl_divergence, empty.mean_shift, empty.median_shift, empty.score) == (0, 0, 0, 0)
    assert empty.psi == 0 and empty.ks_statistic == 0 and empty.current_histogram == [0] * 10
    assert empty.new_user_share is None  # the reference has no ids to compare against


def test_model_degradation_alone_triggers_retrain(cfg: Settings) -> None:
    r = sample(20_000, 5)
    ref = reference_stats(r[:10_000])
    res = compare(ref, r[10_000:], settings=cfg, model_rmse_reference=0.80, model_rmse_current=0.912)
    assert res.score < cfg.drift_warning_score
    assert res.decision == "retrain" and res.should_retrain
    assert res.model_degradation == pytest.approx(0.14)
    assert "rmse +14% > 10%" in res.reasons
    ok = compare(ref, r[10_000:], settings=cfg, model_rmse_reference=0.80, model_rmse_current=0.85)
    assert ok.decision == "no_drift" and ok.model_degradation == pytest.approx(0.0625)


def test_new_user_and_movie_shares(cfg: Settings) -> None:
    ratings = np.full(6, 4.0)
    ref = reference_stats(ratings, user_ids=[1, 2, 3, 3, 2, 1], movie_ids=[10, 20, 30, 40, 50, 60])
    assert ref.user_ids.tolist() == [1, 2, 3] and ref.movie_ids.tolist() == [10, 20, 30, 40, 50, 60]
    res = compare(
        ref,
        np.full(5, 4.0),
        current_user_ids=np.array([1, 4, 4, 5, 2]),  # distinct {1, 2, 4, 5}: 2 of 4 new; 3 of 5 ratings
        current_movie_ids=np.array([10, 20, 30, 10, 70]),  # distinct {10, 20, 30, 70}: 1 of 4 new
        settings=cfg,
    )
    assert res.new_user_share == pytest.approx(0.5)
    assert res.new_user_rating_share == pytest.approx(0.6)
    assert res.new_movie_share == pytest.approx(0.25)
    assert res.new_movie_rating_share == pytest.approx(0.2)
    # ids far outside a dense range take the sort path and agree
    big = reference_stats(np.full(3, 4.0), user_ids=[10**15, 7, 10**15])
    assert big.user_ids.tolist() == [7, 10**15]
    assert compare(big, np.full(2, 4.0), current_user_ids=[7, 8], settings=cfg).new_user_share == 0.5


def test_reference_stats_save_load_round_trip(tmp_path, cfg: Settings) -> None:
    rng = np.random.default_rng(0)
    n = 5000
    ref = reference_stats(
        sample(n, 0),
        user_ids=rng.integers(1, 500, n),
        movie_ids=rng.integers(1, 300, n),
        genres_per_rating=rng.choice(["Action|Comedy", "Drama", "Horror|Thriller"], n).tolist(),
    )
    path = ref.save(tmp_path / "v1")
    assert path.name == "reference.json" and (tmp_path / "v1" / "user_ids.npy").is_file()
    loaded = ReferenceStats.load(tmp_path / "v1")
    assert loaded == ref
    assert loaded.user_ids.dtype == np.int32  # compact on disk
    assert set(loaded.genre_histograms) == {"Action", "Comedy", "Drama", "Horror", "Thriller"}
    # and through plain JSON with the ids inline
    again = ReferenceStats.from_dict(json.loads(json.dumps(ref.to_dict(include_ids=True))))
    assert again == ref
    res = compare(loaded, sample(2000, 1), settings=cfg)
    assert res.decision == "no_drift"
    with pytest.raises(BadInput):
        ReferenceStats.load(tmp_path / "missing")


def test_genre_inputs_agree_and_genre_drift_is_local(cfg: Settings) -> None:
    rng = np.random.default_rng(7)
    catalog_ids = np.array([30, 10, 20])
    catalog_genres = ["Horror|Thriller", "Action|Comedy", "Drama"]
    genre_of = {10: "Action|Comedy", 20: "Drama", 30: "Horror|Thriller"}
    n = 30_000
    movies = rng.choice([10, 20, 30], n)
    ratings = sample(n, 8)
    strings = [genre_of[m] for m in movies.tolist()]
    catalog = MovieGenres.from_arrays(catalog_ids, catalog_genres)

    by_string = reference_stats(ratings, movie_ids=movies, genres_per_rating=strings)
    by_list = reference_stats(ratings, movie_ids=movies, genres_per_rating=[s.split("|") for s in strings])
    by_dict = reference_stats(ratings, movie_ids=movies, genres_per_rating=pa.array(strings).dictionary_encode())
    by_catalog = reference_stats(ratings, movie_ids=movies, movie_genres=catalog)
    assert by_string.genre_histograms == by_list.genre_histograms == by_dict.genre_histograms
    assert by_string.genre_histograms == by_catalog.genre_histograms
    drama = ratings[movies == 20]
    assert by_catalog.genre_histograms["Drama"] == half_star_histogram(drama).tolist()

    # new data: horror movies now rated 1.5 stars lower, everything else unchanged
    cur_movies = rng.choice([10, 20, 30], n)
    cur = sample(n, 9)
    horror = cur_movies == 30
    cur[horror] = np.clip(cur[horror] - 1.5, 0.5, 5.0)
    res = compare(by_catalog, cur, current_movie_ids=cur_movies, settings=cfg, movie_genres=catalog)
    assert set(res.genre_drift) == {"Action", "Comedy", "Drama", "Horror", "Thriller"}
    assert res.genre_drift["Horror"] > 0.3 and res.genre_drift["Thriller"] > 0.3
    assert max(res.genre_drift["Action"], res.genre_drift["Drama"]) < 0.01
    same = compare(
        by_catalog,
        cur,
        current_movie_ids=cur_movies,
        current_genres=[genre_of[m] for m in cur_movies],
        settings=cfg,
    )
    assert same.genre_drift == pytest.approx(res.genre_drift)


def test_genre_drift_skips_thin_genres(cfg: Settings) -> None:
    ref = reference_stats(sample(2000, 1), genres_per_rating=["Drama"] * 1990 + ["Western"] * 10)
    res = compare(ref, sample(2000, 2), current_genres=["Drama"] * 1960 + ["Western"] * 40, settings=cfg)
    assert set(res.genre_drift) == {"Drama"}


def test_result_is_json_serialisable(cfg: Settings) -> None:
    ref = reference_stats(sample(3000, 1), user_ids=np.arange(3000) % 100, genres_per_rating=["Drama"] * 3000)
    res = compare(
        ref,
        pa.chunked_array([pa.array(sample(1500, 2))]),
        current_user_ids=pa.array(np.arange(1500) % 150),
        current_genres=pa.chunked_array([pa.array(["Drama"] * 1500)]),
        settings=cfg,
        model_rmse_reference=0.8,
        model_rmse_current=0.81,
    )
    data = json.loads(json.dumps(res.to_dict()))
    assert data["decision"] == res.decision and data["new_user_share"] == pytest.approx(1 / 3)
    assert set(data["genre_drift"]) == {"Drama"} and len(data["reasons"]) >= 1


@pytest.mark.parametrize("catalog_ids", [[5, 7, 9], [5, 7, 10**15]])  # lookup-table and binary-search paths
def test_ratings_of_movies_missing_from_the_catalog_are_ignored(catalog_ids: list[int]) -> None:
    catalog = MovieGenres.from_arrays(np.array(catalog_ids), [["Drama"], ["Comedy", "Drama"], None])
    movies = np.array([5, 7, 6, 11, -3, 10**16, catalog_ids[2]])  # 6, 11, -3, 10**16 are unknown
    ref = reference_stats(np.array([1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 0.5]), movie_ids=movies, movie_genres=catalog)
    assert ref.genre_histograms == {
        "Comedy": [0, 0, 0, 1, 0, 0, 0, 0, 0, 0],
        "Drama": [0, 1, 0, 1, 0, 0, 0, 0, 0, 0],
    }
    with pytest.raises(BadInput):
        MovieGenres.from_arrays(np.array([1, 1]), ["Drama", "Drama"])


@pytest.mark.parametrize("off_grid", [False, True])
def test_counted_ratings_give_the_snapshot_of_the_ratings_one_by_one(off_grid: bool) -> None:
    """reference_stats(weights=...) on (movie, rating) counts and distinct users equals it on every rating."""
    rng = np.random.default_rng(11)
    n = 20_000
    movies, users, ratings = rng.integers(1, 60, n), rng.integers(1, 900, n), sample(n, 3)
    if off_grid:
        ratings[::7] = rng.uniform(-1.0, 6.0, len(ratings[::7])).round(2)  # off the grid, some out of range
    catalog = MovieGenres.from_arrays(np.arange(1, 50), ["Drama|Comedy" if m % 3 else "Horror" for m in range(1, 50)])
    one_by_one = reference_stats(ratings, users, movies, movie_genres=catalog)
    pairs, counts = np.unique(np.stack([movies, ratings]), axis=1, return_counts=True)
    counted = reference_stats(pairs[1], np.unique(users), pairs[0].astype(np.int64), movie_genres=catalog,
                              weights=counts)  # fmt: skip
    assert counted.histogram == one_by_one.histogram and counted.n == n
    assert counted.genre_histograms == one_by_one.genre_histograms
    np.testing.assert_array_equal(counted.user_ids, one_by_one.user_ids)
    np.testing.assert_array_equal(counted.movie_ids, one_by_one.movie_ids)
    assert counted.median == one_by_one.median
    assert counted.mean == (pytest.approx(one_by_one.mean, rel=1e-12) if off_grid else one_by_one.mean)
