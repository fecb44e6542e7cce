"""Rating columns as half-star histograms: bins, counts, mean and median, and the id sets of a snapshot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from cinematch.core.errors import BadInput

__all__ = [
    "HALF_STAR_BINS",
    "N_BINS",
    "ArrayLike",
    "Binned",
    "as_ids",
    "bin_ratings",
    "compact_ids",
    "half_star_histogram",
    "new_shares",
    "to_numpy",
    "unique_sorted",
]

HALF_STAR_BINS = np.arange(0.5, 5.01, 0.5)  # 0.5, 1.0, ..., 5.0: the 10 values MovieLens allows
N_BINS = len(HALF_STAR_BINS)
ArrayLike = np.ndarray | pa.Array | pa.ChunkedArray | Sequence[float] | Sequence[int]


def to_numpy(values: Any, what: str) -> np.ndarray:
    if isinstance(values, pa.ChunkedArray | pa.Array):
        if values.null_count:
            raise BadInput(f"{what} contains {values.null_count} null values; drop or fill them first")
        values = values.to_numpy(zero_copy_only=False)
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise BadInput(f"{what} must be one-dimensional, got shape {arr.shape}")
    return arr


@dataclass(frozen=True)
class Binned:
    counts: np.ndarray  # int64, one count per half-star bin
    idx: np.ndarray  # per-rating bin index 0..9 (kept for per-genre grouping); per value with ``weights``
    mean: float
    median: float
    weights: np.ndarray | None = None  # how many ratings each value stands for (None: one each)

    @property
    def n(self) -> int:
        return int(self.idx.size) if self.weights is None else int(self.counts.sum())


def _median_from_counts(counts: np.ndarray) -> float:
    # The sorted data is the bin values repeated counts times, so positions (n-1)//2 and n//2 are
    # found by a search on the cumulative counts: the same value np.median returns, without a sort.
    n = int(counts.sum())
    cum = np.cumsum(counts)
    lo = int(np.searchsorted(cum, (n - 1) // 2, side="right"))
    hi = int(np.searchsorted(cum, n // 2, side="right"))
    return float((HALF_STAR_BINS[lo] + HALF_STAR_BINS[hi]) / 2)


def bin_ratings(ratings: Any, weights: Any = None) -> Binned:
    """Half-star histogram, mean and median of a rating column.

    Ratings off the half-star grid are rounded to the nearest half star (np.rint on 2·rating, ties to
    even), and values outside [0.5, 5] fall into the end bins; mean and median then come from the raw
    values. On-grid data (the normal case) gets both from the histogram, which avoids an O(n log n)
    partition over 25M values.

    ``weights``: each value stands for that many ratings (a warehouse's ratings counted per distinct value by
    SQL, ``check.champion_reference``); the result is the one of the ratings repeated.
    """
    r = to_numpy(ratings, "ratings")
    if r.dtype.kind not in "fiu":
        raise BadInput(f"ratings must be numeric, got dtype {r.dtype}")
    w = None if weights is None else to_numpy(weights, "rating weights").astype(np.int64)
    if w is not None and (w.size != r.size or (w < 0).any()):
        raise BadInput("rating weights must be one non-negative count per rating value")
    if r.size == 0 or (w is not None and not w.sum()):
        return Binned(np.zeros(N_BINS, dtype=np.int64), np.zeros(0, dtype=np.intp), 0.0, 0.0)
    doubled = r * 2.0
    k = np.rint(doubled)
    lo, hi = float(k.min()), float(k.max())  # NaN propagates through min/max: one check covers NaN and inf
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise BadInput("ratings contain NaN or infinite values; the silver layer should have rejected them")
    exact = lo >= 1 and hi <= N_BINS and bool(np.array_equal(k, doubled))
    if lo < 1 or hi > N_BINS:
        np.clip(k, 1, N_BINS, out=k)
    idx = k.astype(np.intp)
    idx -= 1
    counts = np.bincount(idx, weights=w, minlength=N_BINS).astype(np.int64)
    n = int(counts.sum())
    if exact:
        mean = float(counts @ HALF_STAR_BINS / n)
        median = _median_from_counts(counts)
    elif w is None:
        mean = float(np.mean(r, dtype=np.float64))
        median = float(np.median(r))
    else:
        values = r.astype(np.float64)
        mean = float(np.dot(values, w) / n)
        median = _weighted_median(values, w)
    return Binned(counts, idx, mean, median, w)


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """np.median of ``values`` each repeated ``weights`` times: the mean of sorted positions (n−1)//2 and n//2."""
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    n = int(cum[-1])
    lo = order[np.searchsorted(cum, (n - 1) // 2, side="right")]
    hi = order[np.searchsorted(cum, n // 2, side="right")]
    return float((values[lo] + values[hi]) / 2)


def half_star_histogram(ratings: Any) -> np.ndarray:
    """Counts per half-star bin (0.5 … 5.0) of a rating column, off-grid values rounded to the nearest bin."""
    return bin_ratings(ratings).counts


def as_ids(ids: Any, n: int, what: str) -> np.ndarray | None:
    if ids is None:
        return None
    arr = to_numpy(ids, what)
    if arr.size != n:
        raise BadInput(f"{what} has {arr.size} values but there are {n} ratings")
    if arr.dtype == object:  # pandas-style string ids: a fixed-width unicode array can be np.save'd
        arr = arr.astype(str)
    return arr


def compact_ids(ids: np.ndarray) -> np.ndarray:
    if ids.dtype.kind in "iu" and ids.size:
        lo, hi = int(ids.min()), int(ids.max())
        if np.iinfo(np.int32).min <= lo and hi <= np.iinfo(np.int32).max:
            return ids.astype(np.int32, copy=False)
        return ids.astype(np.int64, copy=False)
    return ids


def unique_sorted(ids: np.ndarray) -> np.ndarray:
    """Sorted unique ids; dense non-negative integer ids (the usual case) via bincount, O(n), not a sort."""
    if ids.size == 0:
        return ids.astype(np.int32) if ids.dtype.kind in "iu" else ids
    if ids.dtype.kind in "iu":
        lo, hi = int(ids.min()), int(ids.max())
        if lo >= 0 and hi <= max(4 * ids.size, 1 << 22):
            return compact_ids(np.flatnonzero(np.bincount(ids.astype(np.intp, copy=False))))
    return compact_ids(np.unique(ids))


def new_shares(reference_ids: np.ndarray | None, current: np.ndarray | None) -> tuple[float | None, float | None]:
    """(share of distinct current ids unseen in the reference, share of current ratings that carry one)."""
    if reference_ids is None or current is None:
        return None, None
    if current.size == 0:
        return 0.0, 0.0
    # np.isin picks a lookup table for small-range integer ids: O(n + range) instead of a sort
    unseen = ~np.isin(current, reference_ids)
    n_unseen = int(np.count_nonzero(unseen))
    if n_unseen == 0:
        return 0.0, 0.0
    distinct_new = unique_sorted(current[unseen]).size
    distinct_all = unique_sorted(current).size
    return distinct_new / distinct_all, n_unseen / current.size
