"""Rating-error and top-k ranking metrics, vectorized over users, plus a most-popular baseline.

The ranking metrics follow Microsoft Recommenders, ``recommenders/evaluation/python_evaluation.py`` (repository
recommenders-team/recommenders, read at commit b02c95e, September 2025; unchanged since release 1.2.1):
``precision_at_k``, ``recall_at_k``, ``ndcg_at_k`` (``score_type="binary"``), ``map_at_k`` and ``map``, which all
read the top-k of each list through ``merge_ranking_true_pred``. Conventions shared by every ranking metric here:

* a test row is *relevant* when its rating is >= ``threshold`` (default 4.0; threshold 0 makes every test
  interaction relevant, which is exactly Recommenders, where every row of ``rating_true`` is relevant);
* metrics are averaged over the users that have a list and at least one relevant test item (Recommenders'
  "common users"); other users still count for coverage and popularity;
* precision@k = hits / k (k, not the list length, is the denominator, as Recommenders and Spark do);
* recall@k = hits / number of the user's relevant test items;
* nDCG@k uses binary gains; the ideal DCG places min(k, #relevant) hits at the top. Recommenders' default
  discount is ln(1 + rank), ours log2(1 + rank): the base cancels in DCG / IDCG, so the values are identical;
* MAP@k (``map_at_k``) sums precision@rank over the ranks of the hits within the top k and divides by
  min(k, #relevant), as Recommenders' ``map_at_k`` and Spark's ``meanAveragePrecisionAt`` do;
  :func:`mean_average_precision` is Recommenders' ``map``: the same sum divided by #relevant;
* recommendation matrices use item id -1 for empty slots, which never counts as a hit. A user whose list is
  all -1 is scored 0, where Recommenders would drop the user (it has no rows in ``rating_pred``).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from cinematch.core.errors import BadInput
from cinematch.recommender.als_solver import index_ids
from cinematch.recommender.interactions import lookup, present, unique_ids
from cinematch.recommender.top_n import SCORE_ELEMENTS, seen_positions


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
    user_codes, inv_u = index_ids(np.concatenate([rel_users, users]))  # np.unique's inverse, by a dense table
    item_codes, inv_i = index_ids(np.concatenate([rel_items, rec.ravel()]))
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
    ndcg: np.ndarray = np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)
    return ndcg


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


def _precision_sums(hits: np.ndarray) -> np.ndarray:
    """Per row, the sum of precision@rank over the ranks that hold a hit (Recommenders' ``rr`` column)."""
    ranks = np.arange(1, hits.shape[1] + 1)
    sums: np.ndarray = (np.cumsum(hits, axis=1) / ranks * hits).sum(axis=1)
    return sums


def map_at_k(
    users: np.ndarray,
    recommended: np.ndarray,
    test_users: np.ndarray,
    test_items: np.ndarray,
    test_ratings: np.ndarray,
    k: int = 10,
    threshold: float = 4.0,
) -> float:
    """Mean over scored users of (sum of precision@rank at the hits in the top k) / min(k, #relevant)."""
    hits, n_rel = _hits(users, recommended, test_users, test_items, test_ratings, k, threshold)
    return _mean_over_scored(_precision_sums(hits) / np.maximum(np.minimum(n_rel, k), 1), n_rel)


def mean_average_precision(
    users: np.ndarray,
    recommended: np.ndarray,
    test_users: np.ndarray,
    test_items: np.ndarray,
    test_ratings: np.ndarray,
    k: int = 10,
    threshold: float = 4.0,
) -> float:
    """Recommenders' ``map``: like :func:`map_at_k` but divided by #relevant, so it is below 1 past k relevant."""
    hits, n_rel = _hits(users, recommended, test_users, test_items, test_ratings, k, threshold)
    return _mean_over_scored(_precision_sums(hits) / np.maximum(n_rel, 1), n_rel)


def average_recommendation_popularity(recommended: np.ndarray, item_ids: np.ndarray, item_counts: np.ndarray) -> float:
    """ARP (Abdollahpouri et al. 2019): mean over lists of the mean train count of the listed items.

    ``item_counts[j]`` is the number of train interactions of ``item_ids[j]``; an item absent from ``item_ids``
    counts 0. Slots holding -1 are ignored, and so are lists that are all -1 (nan when every list is).
    """
    rec = np.asarray(recommended, dtype=np.int64)
    if rec.ndim != 2:
        raise BadInput("recommended must be a 2-D array of item ids")
    ids = np.asarray(item_ids, dtype=np.int64).ravel()
    counts = np.asarray(item_counts, dtype=np.float64).ravel()
    if ids.shape != counts.shape:
        raise BadInput(f"item_ids and item_counts differ in length: {ids.size} vs {counts.size}")
    filled = rec != -1
    popularity = np.zeros(rec.shape)
    if ids.size:
        order = np.argsort(ids, kind="stable")
        ids, counts = ids[order], counts[order]
        pos = np.minimum(np.searchsorted(ids, rec), ids.size - 1)
        known = filled & (ids[pos] == rec)
        popularity[known] = counts[pos[known]]
    n_filled = filled.sum(axis=1)
    listed = n_filled > 0
    if not listed.any():
        return float("nan")
    return float(np.mean(popularity[listed].sum(axis=1) / n_filled[listed]))


def ranking_metrics(
    users: np.ndarray,
    recommended: np.ndarray,
    test_users: np.ndarray,
    test_items: np.ndarray,
    test_ratings: np.ndarray,
    k: int,
    threshold: float,
    catalog_size: int,
    item_ids: np.ndarray | None = None,
    item_counts: np.ndarray | None = None,
) -> dict[str, float | int]:
    """Every ranking metric of the top-k lists in one pass over the hits matrix.

    Keys: precision_at_{k}, recall_at_{k}, ndcg_at_{k}, map_at_{k}, coverage (distinct listed items /
    ``catalog_size``), avg_rec_popularity (only when ``item_ids`` and ``item_counts`` are given) and
    n_users_evaluated. Coverage and popularity are over every row's top-k list, scored user or not.
    """
    hits, n_rel = _hits(users, recommended, test_users, test_items, test_ratings, k, threshold)
    top_k = np.asarray(recommended, dtype=np.int64)[:, :k]
    found = hits.sum(axis=1)
    out: dict[str, float | int] = {
        f"precision_at_{k}": _mean_over_scored(found / k, n_rel),
        f"recall_at_{k}": _mean_over_scored(found / np.maximum(n_rel, 1), n_rel),
        f"ndcg_at_{k}": _mean_over_scored(_ndcg(hits, n_rel), n_rel),
        f"map_at_{k}": _mean_over_scored(_precision_sums(hits) / np.maximum(np.minimum(n_rel, k), 1), n_rel),
        "coverage": catalog_coverage(top_k, catalog_size),
    }
    if item_ids is not None and item_counts is not None:
        out["avg_rec_popularity"] = average_recommendation_popularity(top_k, item_ids, item_counts)
    out["n_users_evaluated"] = int(np.count_nonzero(n_rel))
    return out


def per_user_ndcg(
    users: np.ndarray,
    recommended: np.ndarray,
    test_users: np.ndarray,
    test_items: np.ndarray,
    test_ratings: np.ndarray,
    k: int = 10,
    threshold: float = 4.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(user ids, nDCG@k) of the users with a relevant test item, sorted by user id, for paired comparisons."""
    hits, n_rel = _hits(users, recommended, test_users, test_items, test_ratings, k, threshold)
    ids = np.asarray(users, dtype=np.int64).ravel()
    scored = np.flatnonzero(n_rel > 0)
    order = scored[np.argsort(ids[scored], kind="stable")]
    return ids[order], _ndcg(hits[order], n_rel[order])


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
    popularity: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, float | int]:
    users, items, ratings = test
    eval_users = np.unique(users)
    recommended, _ = model.recommend(eval_users, k, exclude_seen=True)
    item_ids, item_counts = popularity if popularity is not None else (None, None)
    return ranking_metrics(eval_users, recommended, users, items, ratings, k, threshold, catalog_size,
                           item_ids, item_counts)  # fmt: skip


def evaluate(
    model: RatingPredictor,
    train: pa.Table | pd.DataFrame,
    test: pa.Table | pd.DataFrame,
    k: int = 10,
    threshold: float = 4.0,
) -> dict[str, float | int]:
    """RMSE/MAE on every test rating and ranking metrics of ``model.recommend(test users, k)``.

    Keys: rmse, mae, precision_at_{k}, recall_at_{k}, ndcg_at_{k}, map_at_{k}, coverage, avg_rec_popularity,
    n_test, n_users_evaluated. Coverage is over the lists of all test users, against the catalogue of distinct
    train movies; avg_rec_popularity is the mean train count of the listed movies (see ranking_metrics).
    Unknown users/items are scored with the model's fallbacks, so they count against it.
    """
    users, items, ratings = _columns(test)
    predicted, _ = model.predict(users, items)
    train_items, train_counts = unique_ids(_columns(train)[1])
    popularity = (train_items, train_counts)
    ranking = _ranking(model, (users, items, ratings), max(len(train_items), 1), k, threshold, popularity)
    n_users_evaluated = ranking.pop("n_users_evaluated")
    return {"rmse": rmse(ratings, predicted), "mae": mae(ratings, predicted), **ranking, "n_test": len(ratings),
            "n_users_evaluated": n_users_evaluated}  # fmt: skip


class MostPopular:
    """Recommends the most-rated train items a user has not rated yet (same interface as ALSModel). ``item_ids``
    (sorted) and ``item_counts`` give every train item's number of train ratings."""

    def __init__(self, train: pa.Table | pd.DataFrame, users: np.ndarray | None = None) -> None:
        raters, items, _ = _columns(train)
        if len(raters) == 0:
            raise BadInput("cannot build a most-popular recommender from zero train ratings")
        self.item_ids, counts = unique_ids(items)
        self.item_counts, self.scores = counts.astype(np.int64), counts.astype(np.float32)
        if users is not None:  # (sorted) the only users that will be asked for: only their seen items are indexed
            mine = present(np.asarray(users, np.int64), raters)
            raters, items = raters[mine], items[mine]
        self.user_ids, _ = unique_ids(raters)
        # who rated what: a user x item CSR by a counting pass (a sort of 15M pairs took seconds); pairs merged
        rows, cols = lookup(self.user_ids, raters)[0].astype(np.int32), lookup(self.item_ids, items)[0].astype(np.int32)
        seen = sp.coo_matrix((np.ones(len(rows), np.float32), (rows, cols)), (len(self.user_ids), len(counts))).tocsr()
        self.seen_indices, self.seen_indptr = seen.indices.astype(np.int64), seen.indptr.astype(np.int64)

    def recommend(self, user_ids: np.ndarray, n: int = 10, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Per user, the first ``n`` items of the popularity order (most rated first, ties: lower id) that the user
        has not rated: the top-n of the counts with seen items at −inf, without scoring every item for every user.

        A block of users only looks at the first ``n`` + (its longest history) items of the order, the most any of
        its users can need; users are taken in order of history length, so long histories share blocks.
        """
        users = np.asarray(user_ids, dtype=np.int64).ravel()
        pos = np.minimum(np.searchsorted(self.user_ids, users), len(self.user_ids) - 1)
        known = (self.user_ids[pos] == users) & exclude_seen
        order = np.lexsort((np.arange(len(self.item_ids)), -self.item_counts))  # popularity order
        rank = np.empty(len(order), np.int64)
        rank[order] = np.arange(len(order))
        seen = np.where(known, np.diff(self.seen_indptr)[pos], 0)
        out_ids = np.full((len(users), n), -1, dtype=np.int64)
        out_scores = np.full((len(users), n), np.nan, dtype=np.float64)
        by_history = np.argsort(seen, kind="stable")
        widths = np.minimum(len(order), n + seen[by_history])  # ascending: a block's last user sets its width
        start = 0
        while start < len(users):
            cost = (np.arange(start, len(users)) - start + 1) * widths[start:]
            stop = start + max(1, int(np.searchsorted(cost, SCORE_ELEMENTS, side="right")))
            rows, width = by_history[start:stop], int(widths[stop - 1])
            free = np.ones((len(rows), width), dtype=bool)
            mine = np.flatnonzero(known[rows])
            if len(mine):
                r, p = seen_positions(self.seen_indptr, pos[rows][mine])
                at = rank[self.seen_indices[p]]
                inside = at < width
                free[mine[r[inside]], at[inside]] = False
            take = free & (np.cumsum(free, axis=1) <= n)
            r, c = np.nonzero(take)
            slot = np.cumsum(take, axis=1)[r, c] - 1
            out_ids[rows[r], slot] = self.item_ids[order[c]]
            out_scores[rows[r], slot] = self.scores[order[c]]
            start = stop
        return out_ids, out_scores


def most_popular_baseline(
    train: pa.Table | pd.DataFrame, test: pa.Table | pd.DataFrame, k: int = 10, threshold: float = 4.0
) -> dict[str, float | int]:
    """Ranking metrics (the ranking keys of :func:`evaluate`, same conventions) of a most-popular recommender."""
    model = MostPopular(train)
    return _ranking(model, _columns(test), len(model.item_ids), k, threshold, (model.item_ids, model.item_counts))
