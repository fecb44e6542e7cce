"""Top-n lists from score matrices: the block budget, seen items masked, deterministic top-n, popularity fallback."""

from __future__ import annotations

import numpy as np

# Scores budget for recommend(): users x items float32 elements per block (64 MB; argpartition adds int64).
SCORE_ELEMENTS = 16_000_000
CHUNK = 256  # columns per chunk when the top-n is preselected by chunk maxima (large catalogues)


def seen_positions(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flattened (block_row, csr_position) pairs of the given CSR rows, without a Python loop."""
    starts = indptr[rows]
    counts = indptr[rows + 1] - starts
    total = int(counts.sum())
    block_row = np.repeat(np.arange(len(rows)), counts)
    # Position within each row = global running index minus the row's first running index.
    first = np.cumsum(counts) - counts
    pos = np.arange(total, dtype=np.int64) - np.repeat(first, counts) + np.repeat(starts, counts)
    return block_row, pos


def top_n_from_scores(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-n column indices and scores per row, best first; ``-inf`` entries come back as (-1, nan).

    Ties are broken by lower column index so that results are deterministic.
    """
    n_rows, n_cols = scores.shape
    take = min(n, n_cols)
    if take < n_cols:
        part = np.argpartition(-scores, take - 1, axis=1)[:, :take]
    else:
        part = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols))
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    out_idx = np.full((n_rows, n), -1, dtype=np.int64)
    out_val = np.full((n_rows, n), np.nan, dtype=np.float64)
    ok = np.isfinite(vals)
    out_idx[:, :take] = np.where(ok, idx, -1)
    out_val[:, :take] = np.where(ok, vals, np.nan)
    return out_idx, out_val


def top_n_chunked(scores: np.ndarray, n: int, chunk: int = CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """``top_n_from_scores`` of each row, reading only the row's ``n`` best chunks of ``chunk`` columns.

    Every one of a row's n best scores lies in a chunk whose maximum is among the n largest chunk maxima, so
    one vectorized maximum per chunk and a top-n over n·chunk gathered scores (kept in column order) give the
    same lists as a partition of the whole row (~10 ns a score), up to the order of exactly equal scores.
    """
    rows, cols = scores.shape
    if cols <= 4 * n * chunk:
        return top_n_from_scores(scores, n)
    full = cols - cols % chunk
    maxima = scores[:, :full].reshape(rows, -1, chunk).max(axis=2)  # (rows, chunks)
    if full < cols:
        maxima = np.concatenate([maxima, scores[:, full:].max(axis=1, keepdims=True)], axis=1)
    chunks, _ = top_n_from_scores(maxima, n)  # -1 where a chunk holds only -inf
    chunks = np.sort(np.where(chunks >= 0, chunks, maxima.shape[1]), axis=1)  # ascending: columns stay ordered
    columns = (chunks[:, :, None] * chunk + np.arange(chunk)).reshape(rows, -1)
    inside = columns < cols
    gathered = np.where(inside, np.take_along_axis(scores, np.minimum(columns, cols - 1), axis=1), -np.inf)
    pos, vals = top_n_from_scores(gathered, n)
    idx = np.where(pos >= 0, np.take_along_axis(columns, np.maximum(pos, 0), axis=1), -1)
    return idx, vals


def popularity_scores(item_counts: np.ndarray, item_sums: np.ndarray, global_mean: float) -> np.ndarray:
    """Fallback score: Bayesian-weighted mean rating × log(1 + number of ratings).

    The Bayesian mean shrinks an item's mean rating towards the global mean with a prior of
    m = median ratings-per-item pseudo-ratings, so one 5-star rating does not top the chart; the
    log factor then favours items that many people rated.
    """
    counts = item_counts.astype(np.float64)
    prior = max(1.0, float(np.median(counts))) if len(counts) else 1.0
    bayes = (item_sums + prior * global_mean) / (counts + prior)
    return bayes * np.log1p(counts)
