"""Pure statistics of rating drift: reference snapshots, KL/PSI/KS on half-star bins, score, decision."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

import numpy as np
from scipy import special

from cinematch.core.errors import BadInput
from cinematch.drift.genres import GenresLike, MovieGenres, genre_histograms
from cinematch.drift.histograms import ArrayLike, as_ids, bin_ratings, new_shares, to_numpy, unique_sorted
from cinematch.drift.reference import ReferenceStats

__all__ = [
    "GENRE_MIN_RATINGS",
    "SMOOTHING",
    "DriftResult",
    "DriftThresholds",
    "compare",
    "decide",
    "drift_score",
    "kl_divergence",
    "ks_pvalue",
    "ks_statistic",
    "ks_test",
    "psi",
    "reference_stats",
]

# Pseudo-count added to every bin of both histograms before KL/PSI (Jeffreys / Krichevsky–Trofimov prior).
# 0.5 keeps empty bins finite while moving a 1000-rating histogram by at most 5 pseudo-ratings in total,
# far below what the 0.1 KL threshold can see.
SMOOTHING = 0.5
# A genre's KL is reported only when both sides hold at least this many ratings: below that the
# sampling noise of a 10-bin KL (about 9 / (2n) nats) is no longer small against the 0.1 threshold.
GENRE_MIN_RATINGS = 50

Decision = Literal["insufficient_data", "no_drift", "warning", "retrain"]


class DriftThresholds(Protocol):
    """The thresholds and weights a drift decision reads; ``Settings`` provides them."""

    drift_kl_threshold: float
    drift_mean_threshold: float
    drift_median_threshold: float
    drift_kl_weight: float
    drift_mean_weight: float
    drift_median_weight: float
    drift_retrain_score: float
    drift_warning_score: float
    drift_min_records: int
    model_drift_threshold: float


# --------------------------------------------------------------------------------------------------
# divergences on histograms
# --------------------------------------------------------------------------------------------------


def _counts_pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or x.size == 0:
        raise ValueError(f"histograms must be 1-D, non-empty and of equal length, got {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()) or (x < 0).any() or (y < 0).any():
        raise ValueError("histogram counts must be finite and non-negative")
    return x, y


def _smoothed_proportions(counts: np.ndarray, eps: float) -> np.ndarray:
    smoothed = counts + eps
    total = smoothed.sum()
    if total <= 0:  # only with eps == 0 and an empty histogram: treat as uniform (no information)
        return np.full(counts.size, 1.0 / counts.size)
    shares: np.ndarray = smoothed / total
    return shares


def kl_divergence(p_counts: Any, q_counts: Any, eps: float = SMOOTHING) -> float:
    """KL(p ‖ q) in nats, with ``p`` = the CURRENT histogram and ``q`` = the REFERENCE histogram.

    Direction: the expectation is taken under the current data, so bins the current data uses heavily
    and the reference rarely saw dominate. Smoothing: ``eps`` pseudo-counts are added to every bin of
    both histograms (additive / Jeffreys smoothing, 0.5 by default) before normalising, so an empty bin
    on either side never yields ``inf``. With ``eps=0`` the raw KL is returned (possibly ``inf``).
    """
    p, q = _counts_pair(p_counts, q_counts)
    pp = _smoothed_proportions(p, eps)
    qq = _smoothed_proportions(q, eps)
    # rel_entr defines 0·log(0/q) = 0; clamp because rounding can give -1e-17 for identical inputs
    return max(0.0, float(special.rel_entr(pp, qq).sum()))


def psi(ref_counts: Any, cur_counts: Any, eps: float = SMOOTHING) -> float:
    """Population stability index Σ (c − r)·ln(c / r) on proportions, with the same additive smoothing.

    Symmetric (it equals KL(c‖r) + KL(r‖c)); usual reading: < 0.1 stable, 0.1–0.25 moderate, > 0.25 large.
    """
    r, c = _counts_pair(ref_counts, cur_counts)
    rr = _smoothed_proportions(r, eps)
    cc = _smoothed_proportions(c, eps)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = (cc - rr) * np.log(cc / rr)
    return max(0.0, float(np.nansum(terms)))


def ks_statistic(ref_counts: Any, cur_counts: Any) -> float:
    """Two-sample Kolmogorov–Smirnov D: the largest gap between the two binned CDFs (no smoothing).

    For half-star data this is exactly the D of ``scipy.stats.ks_2samp`` on the raw ratings, because
    both empirical CDFs only step at the bin values. 0.0 when either histogram is empty (no evidence).
    """
    r, c = _counts_pair(ref_counts, cur_counts)
    rt, ct = r.sum(), c.sum()
    if rt <= 0 or ct <= 0:
        return 0.0
    gap = np.abs(np.cumsum(r) / rt - np.cumsum(c) / ct).max()
    return float(min(1.0, max(0.0, gap)))


def ks_pvalue(d: float, n_reference: int, n_current: int) -> float:
    """Asymptotic two-sample KS p-value, Kolmogorov's limit at sqrt(n·m/(n+m))·D.

    Conservative (too large) for discrete data with ties such as half stars, and vanishingly small for
    any visible shift at millions of ratings: informational only, the decision never uses it.
    """
    if n_reference <= 0 or n_current <= 0:
        return 1.0
    en = n_reference * n_current / (n_reference + n_current)
    return float(min(1.0, max(0.0, special.kolmogorov(math.sqrt(en) * d))))


def ks_test(ref_counts: Any, cur_counts: Any) -> tuple[float, float]:
    """(D, asymptotic p-value) of the two-sample KS test on two histograms."""
    d = ks_statistic(ref_counts, cur_counts)
    return d, ks_pvalue(d, int(np.sum(ref_counts)), int(np.sum(cur_counts)))


# --------------------------------------------------------------------------------------------------
# score and decision
# --------------------------------------------------------------------------------------------------


def drift_score(kl: float, mean_shift: float, median_shift: float, settings: DriftThresholds) -> float:
    """Weighted sum of each signal over its threshold: (kl/0.1)·0.5 + (|Δmean|/0.2)·0.3 + (|Δmedian|/0.5)·0.2.

    1.0 means "on average, as bad as every signal sitting exactly at its threshold".
    """
    s = settings
    return float(
        (kl / s.drift_kl_threshold) * s.drift_kl_weight
        + (abs(mean_shift) / s.drift_mean_threshold) * s.drift_mean_weight
        + (abs(median_shift) / s.drift_median_threshold) * s.drift_median_weight
    )


def decide(
    score: float,
    n_current: int,
    settings: DriftThresholds,
    model_degradation: float | None = None,
) -> Decision:
    """insufficient_data | retrain | warning | no_drift, in that order of precedence; comparisons strict."""
    s = settings
    if n_current < s.drift_min_records:
        return "insufficient_data"
    if score > s.drift_retrain_score:
        return "retrain"
    if model_degradation is not None and model_degradation > s.model_drift_threshold:
        return "retrain"
    if score > s.drift_warning_score:
        return "warning"
    return "no_drift"


# --------------------------------------------------------------------------------------------------
# reference snapshot of the training ratings
# --------------------------------------------------------------------------------------------------


def reference_stats(
    ratings: ArrayLike,
    user_ids: ArrayLike | None = None,
    movie_ids: ArrayLike | None = None,
    genres_per_rating: GenresLike | None = None,
    *,
    movie_genres: MovieGenres | None = None,
    weights: ArrayLike | None = None,
) -> ReferenceStats:
    """Snapshot of the training ratings. Genres come either per rating ('A|B' strings or lists, aligned with
    ``ratings``) or, cheaper, as a ``MovieGenres`` catalog looked up through ``movie_ids``.

    ``weights``: the ratings come counted, one row per distinct (movie, rating) standing for that many ratings
    (``ratings``, ``movie_ids`` and ``weights`` aligned), and ``user_ids`` lists each user once: the same
    snapshot as the ratings one by one, from a GROUP BY instead of every row."""
    binned = bin_ratings(ratings, weights)
    if binned.n == 0:
        raise BadInput("cannot build drift reference stats from 0 ratings")
    if weights is None:
        users = as_ids(user_ids, binned.n, "user_ids")
    else:
        users = None if user_ids is None else to_numpy(user_ids, "user_ids")
    movies = as_ids(movie_ids, binned.idx.size, "movie_ids")
    genres = genre_histograms(binned, genres_per_rating, movies, movie_genres)
    return ReferenceStats(
        n=binned.n,
        histogram=binned.counts.tolist(),
        mean=binned.mean,
        median=binned.median,
        user_ids=None if users is None else unique_sorted(users),
        movie_ids=None if movies is None else unique_sorted(movies),
        genre_histograms={g: h.tolist() for g, h in sorted(genres.items())},
    )


# --------------------------------------------------------------------------------------------------
# comparison
# --------------------------------------------------------------------------------------------------


@dataclass
class DriftResult:
    """Every statistic of one drift check, the decision, and the reasons for it."""

    kl_divergence: float  # KL(current ‖ reference), nats, smoothed
    mean_shift: float  # current − reference
    median_shift: float  # current − reference
    score: float
    should_retrain: bool
    decision: Decision
    psi: float
    ks_statistic: float
    ks_pvalue: float
    n_reference: int
    n_current: int
    new_user_share: float | None  # distinct current users unseen in the reference / distinct current users
    new_movie_share: float | None
    genre_drift: dict[str, float]  # KL per genre with ≥ GENRE_MIN_RATINGS ratings on both sides
    reference_histogram: list[int]
    current_histogram: list[int]
    model_rmse_reference: float | None
    model_rmse_current: float | None
    model_degradation: float | None  # rmse_current / rmse_reference − 1
    reasons: list[str]
    new_user_rating_share: float | None = None  # share of current ratings made by unseen users
    new_movie_rating_share: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_rmse(value: float | None, what: str) -> float | None:
    if value is None:
        return None
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise BadInput(f"{what} must be a finite non-negative number, got {value!r}")
    return v


def _reasons(r: DriftResult, s: DriftThresholds) -> list[str]:
    out: list[str] = []
    if r.n_current < s.drift_min_records:
        out.append(f"{r.n_current} current ratings < {s.drift_min_records} required (insufficient data)")
    if r.kl_divergence > s.drift_kl_threshold:
        out.append(f"kl {r.kl_divergence:.3g} > {s.drift_kl_threshold:g}")
    if abs(r.mean_shift) > s.drift_mean_threshold:
        out.append(f"|mean shift| {abs(r.mean_shift):.3g} > {s.drift_mean_threshold:g} ({r.mean_shift:+.3g})")
    if abs(r.median_shift) > s.drift_median_threshold:
        out.append(f"|median shift| {abs(r.median_shift):.3g} > {s.drift_median_threshold:g} ({r.median_shift:+.3g})")
    if r.score > s.drift_retrain_score:
        out.append(f"score {r.score:.3g} > {s.drift_retrain_score:g} (retrain)")
    elif r.score > s.drift_warning_score:
        out.append(f"score {r.score:.3g} > {s.drift_warning_score:g} (warning)")
    else:
        out.append(f"score {r.score:.3g} ≤ {s.drift_warning_score:g}")
    if r.model_degradation is not None and r.model_degradation > s.model_drift_threshold:
        out.append(f"rmse {r.model_degradation:+.0%} > {s.model_drift_threshold:.0%}")
    return out


def compare(
    reference: ReferenceStats,
    current_ratings: ArrayLike,
    current_user_ids: ArrayLike | None = None,
    current_movie_ids: ArrayLike | None = None,
    current_genres: GenresLike | None = None,
    *,
    settings: DriftThresholds,
    model_rmse_reference: float | None = None,
    model_rmse_current: float | None = None,
    movie_genres: MovieGenres | None = None,
) -> DriftResult:
    """Compare new ratings with a stored reference: all statistics, the score, and the decision.

    Reads only the new data (the reference is a snapshot). With fewer than ``drift_min_records`` ratings the
    decision is ``insufficient_data`` but every statistic is still reported; with 0 ratings all are zero
    (KS p-value 1.0, i.e. no evidence).
    """
    s = settings
    binned = bin_ratings(current_ratings)
    users = as_ids(current_user_ids, binned.n, "current_user_ids")
    movies = as_ids(current_movie_ids, binned.n, "current_movie_ids")
    rmse_ref = _check_rmse(model_rmse_reference, "model_rmse_reference")
    rmse_cur = _check_rmse(model_rmse_current, "model_rmse_current")
    degradation = None
    if rmse_ref is not None and rmse_cur is not None and rmse_ref > 0:
        degradation = rmse_cur / rmse_ref - 1.0

    ref_hist = np.asarray(reference.histogram, dtype=np.int64)
    cur_hist = binned.counts
    n = binned.n
    if n > 0:
        kl = kl_divergence(cur_hist, ref_hist)
        mean_shift = binned.mean - reference.mean
        median_shift = binned.median - reference.median
        psi_value = psi(ref_hist, cur_hist)
        ks_d, ks_p = ks_test(ref_hist, cur_hist)
    else:
        kl = mean_shift = median_shift = psi_value = ks_d = 0.0
        ks_p = 1.0
    score = drift_score(kl, mean_shift, median_shift, s)
    decision = decide(score, n, s, degradation)

    new_users, new_user_ratings = new_shares(reference.user_ids, users)
    new_movies, new_movie_ratings = new_shares(reference.movie_ids, movies)

    genre_drift: dict[str, float] = {}
    if reference.genre_histograms and (current_genres is not None or movie_genres is not None):
        current_by_genre = genre_histograms(binned, current_genres, movies, movie_genres)
        for genre, cur in sorted(current_by_genre.items()):  # ~20 genres
            ref = reference.genre_histograms.get(genre)
            if ref is not None and cur.sum() >= GENRE_MIN_RATINGS and sum(ref) >= GENRE_MIN_RATINGS:
                genre_drift[genre] = kl_divergence(cur, ref)

    result = DriftResult(
        kl_divergence=kl,
        mean_shift=float(mean_shift),
        median_shift=float(median_shift),
        score=score,
        should_retrain=decision == "retrain",
        decision=decision,
        psi=psi_value,
        ks_statistic=ks_d,
        ks_pvalue=ks_p,
        n_reference=int(reference.n),
        n_current=n,
        new_user_share=new_users,
        new_movie_share=new_movies,
        genre_drift=genre_drift,
        reference_histogram=ref_hist.tolist(),
        current_histogram=cur_hist.tolist(),
        model_rmse_reference=rmse_ref,
        model_rmse_current=rmse_cur,
        model_degradation=degradation,
        reasons=[],
        new_user_rating_share=new_user_ratings,
        new_movie_rating_share=new_movie_ratings,
    )
    result.reasons = _reasons(result, s)
    return result
