"""Biased ALS matrix factorization (ALS-WR) for explicit ratings: the fitted model, its predictions, top-n and files."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from cinematch.core.errors import BadInput
from cinematch.core.log import get_logger, log_event
from cinematch.recommender.als_params import ALSParams
from cinematch.recommender.als_solver import WarmStart, alternate, index_ids, user_item_csr
from cinematch.recommender.interactions import lookup
from cinematch.recommender.model_files import read_meta
from cinematch.recommender.top_n import SCORE_ELEMENTS, popularity_scores, seen_positions, top_n_from_scores

logger = get_logger(__name__)

RATING_MIN = 0.5
RATING_MAX = 5.0
FORMAT_VERSION = 1
META_FILE = "als_model.json"
_ARRAYS = (
    "user_ids",
    "item_ids",
    "user_factors",
    "item_factors",
    "user_bias",
    "item_bias",
    "item_popularity",
    "seen_indptr",
    "seen_indices",
)


class ALSModel:
    """A fitted biased ALS model: r̂(u, i) = μ + b_u + c_i + p_u·q_i, clipped to [0.5, 5]."""

    def __init__(
        self,
        *,
        params: ALSParams,
        global_mean: float,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        user_factors: np.ndarray,
        item_factors: np.ndarray,
        user_bias: np.ndarray,
        item_bias: np.ndarray,
        item_popularity: np.ndarray,
        seen_indptr: np.ndarray,
        seen_indices: np.ndarray,
        train_rmse: list[float] | None = None,
    ) -> None:
        self.params = params
        self.global_mean = float(global_mean)
        self.user_ids = user_ids
        self.item_ids = item_ids
        self.user_factors = user_factors
        self.item_factors = item_factors
        self.user_bias = user_bias
        self.item_bias = item_bias
        self.item_popularity = item_popularity
        self.seen_indptr = seen_indptr
        self.seen_indices = seen_indices
        self.train_rmse = list(train_rmse or [])
        self._popular_order = np.lexsort((np.arange(len(item_ids)), -item_popularity))
        self._rank_bias_cache: np.ndarray | None = None

    @property
    def rank_bias(self) -> np.ndarray:
        """The ranking-only item term c_i + w·log(1 + n_i), n_i = training ratings of item i (see ALSParams); made on
        first use: counting every training rating cost 0.3 s of each load at 20M ratings, and most loads (drift
        checks, scoring, predictions) never rank."""
        if self._rank_bias_cache is None:
            counts = np.bincount(self.seen_indices, minlength=len(self.item_ids)).astype(np.float32)
            bias = self.item_bias + np.float32(self.params.rank_popularity) * np.log1p(counts)
            self._rank_bias_cache = bias.astype(np.float32)
        return self._rank_bias_cache

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def warm_start(self, users: np.ndarray, items: np.ndarray, params: ALSParams, iterations: int) -> WarmStart | None:
        """This model's factors with the bias last for the sorted ``users`` and ``items`` of a refit (NaN rows for
        those it does not know), or None when the rank differs or ``iterations`` is 0."""
        if params.rank != self.params.rank or iterations < 1:
            return None

        def rows(ids: np.ndarray, known_ids: np.ndarray, factors: np.ndarray, bias: np.ndarray) -> np.ndarray:
            out = np.full((len(ids), params.rank + 1), np.nan, np.float32)
            pos, ok = lookup(known_ids, ids)
            out[ok, : params.rank], out[ok, params.rank] = factors[pos[ok]], bias[pos[ok]]
            return out

        return WarmStart(rows(users, self.user_ids, self.user_factors, self.user_bias),
                         rows(items, self.item_ids, self.item_factors, self.item_bias), iterations)  # fmt: skip

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    # ------------------------------------------------------------------ fit
    @classmethod
    def fit(
        cls,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        ratings: np.ndarray,
        params: ALSParams,
        progress: Callable[[int, float], None] | None = None,
        *,
        n_threads: int | None = None,
        warm: tuple[ALSModel, int] | None = None,
    ) -> ALSModel:
        """Fit on parallel arrays of external user ids, item ids and ratings.

        ``warm``: (a previous model of the same rank, iterations): start from its factors and biases for the users
        and movies it knows (the others as a cold fit starts) and run that many iterations instead of
        ``params.iterations`` (a retrain on grown data: ``warm_start``).

        Duplicate (user, item) pairs are averaged. ``progress(iteration, train_rmse)`` is called after
        every iteration (1-based) with the unclipped training RMSE. ``n_threads`` defaults to the CPUs
        available; BLAS is pinned to one thread per worker so results are bit-reproducible.

        Each half-step groups rows (users, then items) of similar rating counts into blocks, gathers the
        other side's augmented factors into a zero-padded (B, L, k) stack, forms all Gram matrices with
        one batched GEMM, adds the ridge, and runs _CG_STEPS (als_solver.py) warm-started conjugate-gradient
        steps on the whole (B, k, k) batch. Cost per iteration is O(nnz·k²) BLAS work + O(n·k²) for CG; memory is
        the ratings (CSR + CSC) plus ≈8 MB per block in flight.
        """
        params.validate()
        users = np.asarray(user_ids)
        items = np.asarray(item_ids)
        values = np.asarray(ratings, dtype=np.float32)
        if not (users.ndim == items.ndim == values.ndim == 1) or not (len(users) == len(items) == len(values)):
            raise BadInput("user_ids, item_ids and ratings must be 1-D arrays of equal length")
        if len(values) == 0:
            raise BadInput("cannot fit ALS on zero ratings")
        if not (np.issubdtype(users.dtype, np.integer) and np.issubdtype(items.dtype, np.integer)):
            raise BadInput(f"user and item ids must be integers, got {users.dtype} and {items.dtype}")
        if not np.all(np.isfinite(values)):
            raise BadInput("ratings contain NaN or infinite values")

        start = time.perf_counter()
        uniq_users, uidx = index_ids(users)
        uniq_items, iidx = index_ids(items)
        n_users, n_items = len(uniq_users), len(uniq_items)
        by_user = user_item_csr(uidx, iidx, values, n_users, n_items)
        by_item = by_user.tocsc()
        by_item = sp.csr_matrix((by_item.data, by_item.indices, by_item.indptr), shape=(n_items, n_users))
        del uidx, iidx
        mu = float(by_user.data.mean(dtype=np.float64))
        nnz = by_user.nnz

        rank = params.rank
        init = warm[0].warm_start(uniq_users, uniq_items, params, warm[1]) if warm is not None else None
        user_aug, item_aug, user_bias, item_bias, history = alternate(
            by_user, by_item, mu, params, progress, n_threads, init
        )

        item_counts = np.diff(by_item.indptr)
        item_sums = np.add.reduceat(by_item.data.astype(np.float64), by_item.indptr[:-1]) if nnz else None
        assert item_sums is not None  # zero ratings are refused above, so nnz > 0
        model = cls(
            params=params,
            global_mean=mu,
            user_ids=uniq_users,
            item_ids=uniq_items,
            user_factors=np.ascontiguousarray(user_aug[:n_users, :rank]),
            item_factors=np.ascontiguousarray(item_aug[:n_items, :rank]),
            user_bias=user_bias[:n_users].copy(),
            item_bias=item_bias[:n_items].copy(),
            item_popularity=popularity_scores(item_counts, item_sums, mu),
            seen_indptr=by_user.indptr.astype(np.int64),
            seen_indices=by_user.indices.astype(np.int32),
            train_rmse=history,
        )
        log_event(
            logger,
            "als_fit",
            users=n_users,
            items=n_items,
            ratings=nnz,
            rank=rank,
            train_rmse=round(history[-1], 6),
            seconds=round(time.perf_counter() - start, 3),
        )
        return model

    # ------------------------------------------------------------- predict
    def _index(self, ids: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Position of each id in the sorted ``known`` and whether it is there (a dense table for many ids)."""
        return lookup(known, np.asarray(ids, dtype=np.int64).ravel())

    def predict(self, user_ids: np.ndarray, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted ratings clipped to [0.5, 5.0] and a boolean 'fallback' mask (unknown user or item).

        Fallback rows use the parts of the model that are known: μ + c_i for an unknown user,
        μ + b_u for an unknown item, μ when both are unknown.
        """
        users = np.asarray(user_ids)
        items = np.asarray(item_ids)
        if users.shape != items.shape:
            raise BadInput("user_ids and item_ids must have the same shape")
        u, u_ok = self._index(users, self.user_ids)
        i, i_ok = self._index(items, self.item_ids)
        pred = np.full(len(u), self.global_mean, dtype=np.float64)
        pred += np.where(u_ok, self.user_bias[u], 0.0)
        pred += np.where(i_ok, self.item_bias[i], 0.0)
        both = u_ok & i_ok
        uu, ii = u[both], i[both]
        # Chunked row-wise dot products bound the temporary (m x rank) gathers.
        dots = np.empty(len(uu), dtype=np.float64)
        step = max(1, 4_000_000 // max(1, self.params.rank))
        for s in range(0, len(uu), step):
            dots[s : s + step] = np.einsum(
                "ij,ij->i", self.user_factors[uu[s : s + step]], self.item_factors[ii[s : s + step]]
            )
        pred[both] += dots
        np.clip(pred, RATING_MIN, RATING_MAX, out=pred)
        return pred.reshape(users.shape), (~both).reshape(users.shape)

    # ----------------------------------------------------------- recommend
    def recommend(self, user_ids: np.ndarray, n: int = 10, exclude_seen: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Top-n item ids and scores per user, shape (len(user_ids), n), best first.

        Known users are ranked by their unclipped predicted rating μ + b_u + c_i + p_u·q_i plus the
        popularity term w·log(1 + n_i) of ``params.rank_popularity``, with items
        they rated in training excluded when ``exclude_seen``; their scores are that ranking key (best first),
        not ratings: ``predict`` gives the predicted rating of a pair. Unknown users get the popularity
        fallback (see :func:`popularity_scores`); their scores are popularity scores, not ratings.
        Slots that cannot be filled (n larger than the unseen catalogue) hold item id -1 and NaN.
        """
        if n < 1:
            raise BadInput(f"n must be >= 1, got {n}")
        users = np.asarray(user_ids, dtype=np.int64).ravel()
        out_ids = np.full((len(users), n), -1, dtype=np.int64)
        out_scores = np.full((len(users), n), np.nan, dtype=np.float64)
        u, ok = self._index(users, self.user_ids)

        take = min(n, self.n_items)
        if (~ok).any() and take:
            top = self._popular_order[:take]
            out_ids[~ok, :take] = self.item_ids[top]
            out_scores[~ok, :take] = self.item_popularity[top]

        rows_known = np.flatnonzero(ok)
        block = max(1, SCORE_ELEMENTS // max(1, self.n_items))
        item_t = np.ascontiguousarray(self.item_factors.T)
        for s in range(0, len(rows_known), block):
            rows = rows_known[s : s + block]
            uidx = u[rows]
            scores = self.user_factors[uidx] @ item_t
            scores += self.rank_bias[None, :]
            scores += (self.user_bias[uidx] + np.float32(self.global_mean))[:, None]
            if exclude_seen:
                r, pos = seen_positions(self.seen_indptr, uidx)
                scores[r, self.seen_indices[pos]] = -np.inf
            idx, vals = top_n_from_scores(scores, n)
            out_ids[rows] = np.where(idx >= 0, self.item_ids[np.maximum(idx, 0)], -1)
            out_scores[rows] = vals
        return out_ids, out_scores

    # ---------------------------------------------------------- save/load
    def save(self, directory: Path) -> None:
        """Write one ``.npy`` per array plus ``als_model.json`` (params, μ, counts); no pickle."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name in _ARRAYS:
            np.save(directory / f"{name}.npy", getattr(self, name), allow_pickle=False)
        meta = {
            "format_version": FORMAT_VERSION,
            "params": asdict(self.params),
            "global_mean": self.global_mean,
            "n_users": self.n_users,
            "n_items": self.n_items,
            "n_ratings": int(self.seen_indptr[-1]),
            "train_rmse": self.train_rmse,
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, directory: Path) -> ALSModel:
        directory = Path(directory)
        meta = read_meta(
            directory,
            META_FILE,
            FORMAT_VERSION,
            missing=f"{directory} is not a saved ALS model: {META_FILE} is missing",
            unsupported="unsupported ALS model format",
        )
        arrays = {}
        for name in _ARRAYS:
            path = directory / f"{name}.npy"
            if not path.is_file():
                raise BadInput(f"{directory} is an incomplete ALS model: {path.name} is missing")
            arrays[name] = np.load(path, allow_pickle=False)
        n_users, n_items = meta["n_users"], meta["n_items"]
        if arrays["user_factors"].shape[0] != n_users or arrays["item_factors"].shape[0] != n_items:
            raise BadInput(f"{directory}: factor shapes do not match {META_FILE}")
        return cls(
            params=ALSParams(**meta["params"]),
            global_mean=meta["global_mean"],
            train_rmse=meta.get("train_rmse"),
            **arrays,
        )
