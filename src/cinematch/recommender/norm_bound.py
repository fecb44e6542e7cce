"""Exact top-n of inner products u·y over a large catalogue, reading only the items that can still enter the list.

By Cauchy–Schwarz no item scores above ‖u‖·‖y‖. With the items sorted by the norm of their factors (largest
first), a user's list is final as soon as its n-th best unseen score exceeds ‖u‖ times the largest norm not yet
scored: every later item is bounded below it. Catalogues with a popularity skew concentrate the norm in few
items (iALS on the 25M generated history: a user needs 2,244 of 62,499 items on average), so most users are done
after the first stage of a few thousand items and a few go on to the larger stages. The lists are the ones a
full scoring gives (``top_n_from_scores``), up to the order of exactly equal scores.

Rounding: a float32 dot product of k terms differs from the exact one by at most about k·2⁻²⁴·‖u‖·‖y‖; the bound
is widened by more than that, so an item is skipped only when even its rounded score could not enter the list.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from cinematch.recommender.top_n import CHUNK, SCORE_ELEMENTS, top_n_chunked

FIRST_STAGE = 2048  # items scored for every user; each later stage is GROWTH times wider
GROWTH = 2
NARROW_CHUNK = 32  # columns per chunk maximum in the top-n of a stage narrower than 4·n·CHUNK


@dataclass(frozen=True)
class NormIndex:
    """Item factors reordered by norm, largest first, with the way back to catalogue columns."""

    order: np.ndarray  # catalogue column of each position
    rank: np.ndarray  # position of each catalogue column
    factors: np.ndarray  # (items, k) float32, in ``order``
    norms: np.ndarray  # (items + 1,) float64, descending, with a trailing 0
    slack: float  # relative widening of the bound, above float32 rounding of k-term dot products

    @classmethod
    def build(cls, item_factors: np.ndarray) -> NormIndex:
        y = np.asarray(item_factors, np.float32)
        norms = np.linalg.norm(y.astype(np.float64), axis=1)
        order = np.argsort(-norms, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        slack = 4.0 * (y.shape[1] + 2) * float(np.finfo(np.float32).eps)
        return cls(order, rank, np.ascontiguousarray(y[order]), np.append(norms[order], 0.0), slack)

    @property
    def n_items(self) -> int:
        return len(self.order)

    def stages(self, n: int) -> list[tuple[int, int]]:
        """Item ranges scored in turn: the first covers at least 4·n items, then each GROWTH times wider."""
        bounds, hi = [0], min(self.n_items, max(FIRST_STAGE, 4 * n))
        while True:
            bounds.append(hi)
            if hi >= self.n_items:
                return list(itertools.pairwise(bounds))
            hi = min(self.n_items, hi * GROWTH)


def top_n_inner(index: NormIndex, users: np.ndarray, seen: sp.csr_matrix, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-n catalogue columns and scores of ``users @ factors.T`` per row, excluding ``seen`` (rows x catalogue).

    Same shapes and conventions as ``top_n_from_scores``: best first, (-1, NaN) where fewer than n items are left.
    """
    users = np.asarray(users, np.float32)
    rows = users.shape[0]
    best_vals = np.full((rows, n), -np.inf, np.float32)
    best_cols = np.full((rows, n), -1, np.int64)
    reach = np.linalg.norm(users.astype(np.float64), axis=1) * (1.0 + index.slack)
    seen_row = np.repeat(np.arange(rows), np.diff(seen.indptr))
    seen_pos = index.rank[seen.indices]
    active = np.arange(rows)
    for lo, hi in index.stages(n):
        width = hi - lo
        in_stage = (seen_pos >= lo) & (seen_pos < hi)
        stage_rows, stage_pos = seen_row[in_stage], seen_pos[in_stage]
        for group in np.array_split(active, -(-len(active) * width // SCORE_ELEMENTS) or 1):
            if len(group):
                _score_stage(index, users, group, lo, hi, stage_rows, stage_pos, best_vals, best_cols)
        if hi >= index.n_items:
            break
        threshold = best_vals[active, n - 1].astype(np.float64)
        active = active[~(threshold > reach[active] * index.norms[hi])]
        if not len(active):
            break
    vals = best_vals.astype(np.float64)
    ok = np.isfinite(vals)
    return np.where(ok, best_cols, -1), np.where(ok, vals, np.nan)


def _score_stage(
    index: NormIndex,
    users: np.ndarray,
    group: np.ndarray,
    lo: int,
    hi: int,
    seen_row: np.ndarray,
    seen_pos: np.ndarray,
    best_vals: np.ndarray,
    best_cols: np.ndarray,
) -> None:
    """Scores of the users ``group`` on positions [lo, hi), merged into their running lists (in place)."""
    n = best_vals.shape[1]
    scores = users[group] @ index.factors[lo:hi].T
    where = np.full(users.shape[0], -1, np.int64)
    where[group] = np.arange(len(group))
    mask = where[seen_row] >= 0
    scores[where[seen_row[mask]], seen_pos[mask] - lo] = -np.inf
    pos, _ = top_n_chunked(scores, n, CHUNK if hi - lo > 4 * n * CHUNK else NARROW_CHUNK)
    cols = np.where(pos >= 0, index.order[lo + np.maximum(pos, 0)], -1)
    vals = np.where(pos >= 0, np.take_along_axis(scores, np.maximum(pos, 0), axis=1), -np.inf)
    merged_vals = np.concatenate([best_vals[group], vals], axis=1)
    merged_cols = np.concatenate([best_cols[group], cols], axis=1)
    # best first, ties by the lower catalogue column; empty slots (-inf, column -1) last
    order = np.lexsort((np.where(merged_cols >= 0, merged_cols, np.iinfo(np.int64).max), -merged_vals), axis=1)[:, :n]
    best_vals[group] = np.take_along_axis(merged_vals, order, axis=1)
    best_cols[group] = np.take_along_axis(merged_cols, order, axis=1)
