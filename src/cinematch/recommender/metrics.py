"""Rating-error and top-k ranking metrics, vectorized over users, plus a most-popular baseline.

Conventions (shared by every ranking metric here):

* an item is *relevant* to a user when its test rating is >= ``threshold`` (default 4.0);
* metrics are averaged over the users that have at least one relevant test item; other users are
  still recommended to (they count for coverage) but are not scored;
* precision@k = hits / k (k, not the number of items returned, is the denominator);
* recall@k = hits / number of the user's relevant test items;
* nDCG@k uses binary gains and a log2(rank + 1) discount; the ideal DCG places min(k, #relevant) hits
  at the top;
* recommendation matrices use item id -1 for empty slots, which never counts as a hit.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from cinematch.errors import BadInput
from cinematch.recommender.als import _SCORE_ELEMENTS, _seen_positions, top_n_from_scores


class Recommender(Protocol):
    def recommend(
        self, user_ids: np.ndarray, n: int = 10, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]: ...


class RatingPredictor(Recommender, Protocol):
    def predict(self, user_ids: np.ndarray, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def _as_float(y: np.ndarray, yhat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(y, dtype=np.float64).ravel()
    b = np.asarray(yhat, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise BadInput(f"y and yhat differ in length: {a.size} vs {b.size}")
    if a.size == 0:
        raise BadInput("cannot compute an error metric on zero ratings")
    return a, b


def rmse(y: np.ndarray, yhat: np.ndarray) -> float:
    """Root mean squared error."""
    a, b = _as_float(y, yhat)
    return float(np.sqrt(np.mean((a - b) ** 2)))


def mae(y: np.ndarray, yhat: np.ndarray) -> float:
    """Mean absolute error."""
    a, b = _as_float(y, yhat)
    return float(np.mean(np.abs(a - b)))


def _hits(
    users: np.ndarray,
    recommended: np.ndarray,
    test_users: np.ndarray,
    test_items: np.ndarray,
    test_ratings: np.ndarray,
    k: int,
    threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(hits, n_relevant): hits[j, r] is True when row j's rank-r item is relevant to users[j]."""
    if k < 1:
        raise BadInput(f"k must be >= 1, got {k}")
    users = np.asarray(users, dtype=np.int64).ravel()
    rec = np.asarray(recommended, dtype=np.int64)
    if rec.ndim != 2 or rec.shape[0] != len(users):
        raise BadInput("recommended must have shape (len(users), n)")
    rec = rec[:, :k]
    if rec.shape[1] < k:  # fewer than k columns: pad with empty slots, precision still divides by k
        rec = np.hstack([rec, np.full((len(users), k - rec.shape[1]), -1, dtype=np.int64)])
    relevant = np.asarray(test_ratings, dtype=np.float64) >= threshold
    rel_users = np.asarray(test_users, dtype=np.int64)[relevant]
    rel_items = np.asarray(test_items, dtype=np.int64)[relevant]

    # Re-code ids densely so that user * n_items + item keys cannot overflow whatever the raw ids.
    user_codes, inv_u = np.unique(np.concatenate([rel_users, users]), return_inverse=True)
    item_codes, inv_i = np.unique(np.concatenate([rel_items, rec.ravel()]), return_inverse=True)
    n_codes = np.int64(len(item_codes))
    rel_keys = np.unique(inv_u[: len(rel_users)] * n_codes + inv_i[: len(rel_items)])
    row_codes = inv_u[len(rel_users) :]
    rec_keys = row_codes[:, None] * n_codes + inv_i[len(rel_items) :].reshape(rec.shape)
    hits = np.isin(rec_keys, rel_keys) & (rec != -1)
    n_rel = np.bincount(rel_keys // n_codes, minlength=len(user_codes))[row_codes]
    return hits, n_rel


def _mean_over_scored(values: np.ndarray, n_rel: np.ndarray) -> float:
    scored = n_rel > 0
    return float(np.mean(values[scored])) if scored.any() else float("nan")


def precision_at_k(
    users: np.ndarray,
    recommended: np.ndarray,
    test_users: np.ndarray,
    test_items: np.ndarray,
    test_ratings: np.ndarray,
    k: int = 10,
    threshold: float = 4.0,
) -> float:
    """Mean of hits/k over users with a relevant test item; row j of ``recommended`` is for users[j]."""
    hits, n_rel = _hits(users, recommended, test_users, test_items, test_ratings, k, threshold)
    return _mean_over_scored(hits.sum(axis=1) / k, n_rel)


def recall_at_k(
    users: np.ndarray,
    recommended: np.ndarray,
    test_users: np.ndarray,
    test_items: np.ndarray,
    test_ratings: np.ndarray,
    k: int = 10,
    threshold: float = 4.0,
) -> float:
    """Mean of hits / #relevant test items over users with a relevant test item."""
    hits, n_rel = _hits(users, recommended, test_users, test_items, test_ratings, k, threshold)
    return _mean_over_scored(hits.sum(axis=1) / np.maximum(n_rel, 1), n_rel)


def _ndcg(hits: np.ndarray, n_rel: np.ndarray) -> np.ndarray:
    k = hits.shape[1]
    discount = 1.0 / np.log2(np.arange(k) + 2.0)
    dcg = hits @ discount
    ideal = np.concatenate([[0.0], np.cumsum(discount)])[np.minimum(n_rel, k)]
    return np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)


def ndcg_at_k(
    users: np.ndarray,
    recommended: np.ndarray,
    test_users: np.ndarray,
    test_items: np.ndarray,
    test_ratings: np.ndarray,
    k: int = 10,
    threshold: float = 4.0,
) -> float:
    """Mean binary-gain nDCG@k (log2 discount) over users with a relevant test item."""
    hits, n_rel = _hits(users, recommended, test_users, test_items, test_ratings, k, threshold)
    return _mean_over_scored(_ndcg(hits, n_rel), n_rel)


def catalog_coverage(recommended: np.ndarray, catalog_size: int) -> float:
    """Distinct recommended item ids (ignoring -1 slots) / catalogue size."""
    if catalog_size < 1:
        raise BadInput(f"catalog_size must be >= 1, got {catalog_size}")
    rec = np.asarray(recommended, dtype=np.int64).ravel()
    return float(len(np.unique(rec[rec != -1])) / catalog_size)


def _columns(table: pa.Table | pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """user_id, movie_id, rating of a pyarrow Table or pandas DataFrame as numpy arrays."""
    try:
        if isinstance(table, pa.Table):
            cols = [table.column(c).to_numpy() for c in ("user_id", "movie_id", "rating")]
        elif isinstance(table, pd.DataFrame):
            cols = [table[c].to_numpy() for c in ("user_id", "movie_id", "rating")]
        else:
            raise BadInput(f"expected a pyarrow Table or pandas DataFrame, got {type(table).__name__}")
    except KeyError as exc:
        raise BadInput(f"ratings table lacks column {exc}") from exc
    return cols[0].astype(np.int64), cols[1].astype(np.int64), cols[2].astype(np.float64)


def _ranking(
    model: Recommender,
    test: tuple[np.ndarray, np.ndarray, np.ndarray],
    catalog_size: int,
    k: int,
    threshold: float,
) -> dict[str, float | int]:
    users, items, ratings = test
    eval_users = np.unique(users)
    recommended, _ = model.recommend(eval_users, k, exclude_seen=True)
    hits, n_rel = _hits(eval_users, recommended, users, items, ratings, k, threshold)
    found = hits.sum(axis=1)
    return {
        f"precision_at_{k}": _mean_over_scored(found / k, n_rel),
        f"recall_at_{k}": _mean_over_scored(found / np.maximum(n_rel, 1), n_rel),
        f"ndcg_at_{k}": _mean_over_scored(_ndcg(hits, n_rel), n_rel),
        "coverage": catalog_coverage(recommended, catalog_size),
        "n_users_evaluated": int(np.count_nonzero(n_rel)),
    }


def evaluate(
    model: RatingPredictor,
    train: pa.Table | pd.DataFrame,
    test: pa.Table | pd.DataFrame,
    k: int = 10,
    threshold: float = 4.0,
) -> dict[str, float | int]:
    """RMSE/MAE on every test rating and ranking metrics of ``model.recommend(test users, k)``.

    Keys: rmse, mae, precision_at_{k}, recall_at_{k}, ndcg_at_{k}, coverage, n_test, n_users_evaluated.
    Coverage is over the lists of all test users, against the catalogue of distinct train movies.
    Unknown users/items are scored with the model's fallbacks, so they count against it.
    """
    users, items, ratings = _columns(test)
    predicted, _ = model.predict(users, items)
    catalog = len(np.unique(_columns(train)[1]))
    ranking = _ranking(model, (users, items, ratings), max(catalog, 1), k, threshold)
    return {
        "rmse": rmse(ratings, predicted),
        "mae": mae(ratings, predicted),
        **{key: ranking[key] for key in (f"precision_at_{k}", f"recall_at_{k}", f"ndcg_at_{k}", "coverage")},
        "n_test": len(ratings),
        "n_users_evaluated": ranking["n_users_evaluated"],
    }


class MostPopular:
    """Recommends the most-rated train items a user has not rated yet (same interface as ALSModel)."""

    def __init__(self, train: pa.Table | pd.DataFrame) -> None:
        users, items, _ = _columns(train)
        if len(users) == 0:
            raise BadInput("cannot build a most-popular recommender from zero train ratings")
        self.item_ids, item_idx, counts = np.unique(items, return_inverse=True, return_counts=True)
        self.scores = counts.astype(np.float32)
        self.user_ids, user_idx = np.unique(users, return_inverse=True)
        order = np.lexsort((item_idx, user_idx))
        self.seen_indices = item_idx[order]
        self.seen_indptr = np.concatenate([[0], np.cumsum(np.bincount(user_idx, minlength=len(self.user_ids)))])

    def recommend(self, user_ids: np.ndarray, n: int = 10, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        users = np.asarray(user_ids, dtype=np.int64).ravel()
        pos = np.searchsorted(self.user_ids, users)
        pos_c = np.minimum(pos, len(self.user_ids) - 1)
        known = self.user_ids[pos_c] == users
        out_ids = np.full((len(users), n), -1, dtype=np.int64)
        out_scores = np.full((len(users), n), np.nan, dtype=np.float64)
        block = max(1, _SCORE_ELEMENTS // max(1, len(self.item_ids)))
        for s in range(0, len(users), block):
            scores = np.repeat(self.scores[None, :], len(users[s : s + block]), axis=0)
            rows = np.flatnonzero(known[s : s + block])
            if exclude_seen and len(rows):
                r, p = _seen_positions(self.seen_indptr, pos_c[s : s + block][rows])
                scores[rows[r], self.seen_indices[p]] = -np.inf
            idx, vals = top_n_from_scores(scores, n)
            out_ids[s : s + block] = np.where(idx >= 0, self.item_ids[np.maximum(idx, 0)], -1)
            out_scores[s : s + block] = vals
        return out_ids, out_scores


def most_popular_baseline(
    train: pa.Table | pd.DataFrame, test: pa.Table | pd.DataFrame, k: int = 10, threshold: float = 4.0
) -> dict[str, float | int]:
    """Ranking metrics (same keys and conventions as :func:`evaluate`) of a most-popular recommender."""
    model = MostPopular(train)
    return _ranking(model, _columns(test), len(model.item_ids), k, threshold)
