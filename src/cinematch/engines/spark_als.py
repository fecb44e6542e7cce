"""Spark MLlib ALS saved in CineMatch's model format, so registry, serving and drift checks use it unchanged.

MLlib's explicit ALS learns r ≈ p_u·q_i with no bias terms, while CineMatch predicts μ + b_u + c_i + p_u·q_i.
The biases are therefore estimated first, as a regularised baseline predictor (item then user deviations from
the global mean, shrunk by ``bias_reg`` pseudo-ratings, a few alternating passes in vectorised NumPy), and MLlib
factorises what they leave: r − μ − b_u − c_i. The stored biases and factors then give ALSModel.predict exactly
the model that was fitted. MLlib's ``regParam`` is scaled by each user's/item's rating count, like ``reg`` here
(ALS-WR); ``reg_const`` has no MLlib counterpart and is not used. Duplicate (user, item) pairs are averaged first,
as ALSModel.fit does.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from cinematch.core.errors import BadInput
from cinematch.core.log import get_logger, log_event
from cinematch.recommender.als import ALSModel
from cinematch.recommender.als_params import ALSParams
from cinematch.recommender.als_solver import user_item_csr
from cinematch.recommender.top_n import popularity_scores

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from cinematch.core.settings import Settings

log = get_logger(__name__)

# Alternating passes of the baseline: the third changes the biases by < 1e-3 on MovieLens-shaped data.
BIAS_PASSES = 3


def baseline_biases(
    by_user: sp.csr_matrix, mu: float, reg: float, passes: int = BIAS_PASSES
) -> tuple[np.ndarray, np.ndarray]:
    """User and item biases of the baseline predictor μ + b_u + c_i (regularised means of the residuals).

    Each pass sets c_i = Σ_u (r − μ − b_u) / (reg + n_i), then b_u = Σ_i (r − μ − c_i) / (reg + n_u): coordinate
    descent on the ridge-regularised least-squares fit of the biases alone.
    """
    n_users, n_items = by_user.shape
    rows = np.repeat(np.arange(n_users), np.diff(by_user.indptr))
    cols = by_user.indices
    values = by_user.data.astype(np.float64) - mu
    n_u = np.bincount(rows, minlength=n_users).astype(np.float64)
    n_i = np.bincount(cols, minlength=n_items).astype(np.float64)
    user_bias = np.zeros(n_users)
    item_bias = np.zeros(n_items)
    for _ in range(passes):
        item_bias = np.bincount(cols, weights=values - user_bias[rows], minlength=n_items) / (reg + n_i)
        user_bias = np.bincount(rows, weights=values - item_bias[cols], minlength=n_users) / (reg + n_u)
    return user_bias, item_bias


def dense_factors(frame: pa.Table, n: int, rank: int) -> np.ndarray:
    """MLlib's (id, features) rows as an (n, rank) float32 matrix indexed by id (absent ids stay zero)."""
    out = np.zeros((n, rank), dtype=np.float32)
    if frame.num_rows:
        ids = frame.column("id").to_numpy()
        flat = pc.list_flatten(frame.column("features")).to_numpy(zero_copy_only=False)
        out[ids] = flat.astype(np.float32).reshape(-1, rank)
    return out


def ensure_checkpoint_dir(spark: SparkSession) -> None:
    """Give a local session a checkpoint folder, so ALS cuts its lineage every 10 iterations.

    Without one MLlib never checkpoints, and the lineage of a long fit ends in a StackOverflowError when tasks
    are serialized. A cluster needs shared storage for this: set it with SparkContext.setCheckpointDir.
    """
    context = spark.sparkContext
    master = context.master
    assert master is not None  # a running context has its master
    if context.getCheckpointDir() is None and master.startswith("local"):
        folder = tempfile.mkdtemp(prefix="cinematch-spark-checkpoints-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        context.setCheckpointDir(folder)


def fit_spark_als(
    table: pa.Table,
    params: ALSParams,
    progress: Callable[[int, float], None] | None = None,
    settings: Settings | None = None,
    spark: SparkSession | None = None,
    timings: dict[str, float] | None = None,
) -> ALSModel:
    """Fit MLlib ALS on a ratings table (user_id, movie_id, rating) and return it as an ALSModel.

    ``timings``, when given, receives the seconds of each phase: ``baseline`` (ids, CSR, biases), ``transfer``
    (residuals to Spark), ``mllib_fit`` (blocking and iterations), ``collect`` (factors back) and ``finish``.
    """
    from pyspark.ml.recommendation import ALS

    from cinematch.engines.spark_session import spark_session

    params.validate()
    if table.num_rows == 0:
        raise BadInput("cannot fit ALS on zero ratings")
    if spark is None:
        if settings is None:
            raise BadInput("fit_spark_als needs settings (for the Spark master) or a Spark session")
        spark = spark_session(settings)
    start = time.perf_counter()
    users = table.column("user_id").to_numpy().astype(np.int64)
    items = table.column("movie_id").to_numpy().astype(np.int64)
    values = table.column("rating").to_numpy().astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise BadInput("ratings contain NaN or infinite values")
    uniq_users, uidx = np.unique(users, return_inverse=True)
    uniq_items, iidx = np.unique(items, return_inverse=True)
    n_users, n_items = len(uniq_users), len(uniq_items)
    by_user = user_item_csr(uidx, iidx, values, n_users, n_items)
    mu = float(by_user.data.astype(np.float64).mean())
    user_bias, item_bias = baseline_biases(by_user, mu, params.bias_reg)

    rows = np.repeat(np.arange(n_users, dtype=np.int32), np.diff(by_user.indptr))
    cols = by_user.indices.astype(np.int32)
    residual = by_user.data.astype(np.float64) - mu - user_bias[rows] - item_bias[cols]
    phases = {"baseline": time.perf_counter() - start}
    t0 = time.perf_counter()
    # Dense 0..n-1 indices as MLlib ids: external ids may exceed MLlib's int range, and factors map back by index.
    frame = spark.createDataFrame(pa.table({"u": rows, "i": cols, "r": residual.astype(np.float32)}))
    phases["transfer"] = time.perf_counter() - t0
    blocks = max(2, spark.sparkContext.defaultParallelism)
    als = ALS(
        rank=params.rank, maxIter=params.iterations, regParam=params.reg, seed=params.seed, implicitPrefs=False,
        nonnegative=False, coldStartStrategy="nan", userCol="u", itemCol="i", ratingCol="r",
        numUserBlocks=blocks, numItemBlocks=blocks,
    )  # fmt: skip
    ensure_checkpoint_dir(spark)
    t0 = time.perf_counter()
    fitted = als.fit(frame)
    phases["mllib_fit"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    user_factors = dense_factors(fitted.userFactors.toArrow(), n_users, params.rank)
    item_factors = dense_factors(fitted.itemFactors.toArrow(), n_items, params.rank)
    phases["collect"] = time.perf_counter() - t0
    t0 = time.perf_counter()

    by_item = by_user.tocsc()
    item_counts = np.diff(by_item.indptr)
    item_sums = np.bincount(cols, weights=by_user.data.astype(np.float64), minlength=n_items)
    # Unclipped training RMSE of the whole model, as ALSModel.fit reports per iteration; chunked, since the
    # (ratings x rank) gathers of 20M ratings at rank 64 would take 10 GB at once.
    sse = 0.0
    step = max(1, 4_000_000 // params.rank)
    for s in range(0, len(residual), step):
        u, i = rows[s : s + step], cols[s : s + step]
        dots = np.einsum("ij,ij->i", user_factors[u], item_factors[i], dtype=np.float64)
        sse += float(np.sum((residual[s : s + step] - dots) ** 2))
    train_rmse = float(np.sqrt(sse / len(residual)))
    if progress is not None:
        progress(params.iterations, train_rmse)
    model = ALSModel(
        params=params,
        global_mean=mu,
        user_ids=uniq_users,
        item_ids=uniq_items,
        user_factors=user_factors,
        item_factors=item_factors,
        user_bias=user_bias.astype(np.float32),
        item_bias=item_bias.astype(np.float32),
        item_popularity=popularity_scores(item_counts, item_sums, mu),
        seen_indptr=by_user.indptr.astype(np.int64),
        seen_indices=by_user.indices.astype(np.int32),
        train_rmse=[train_rmse],
    )
    phases["finish"] = time.perf_counter() - t0
    if timings is not None:
        timings.update(phases)
    log_event(log, "spark_als_fit", users=n_users, items=n_items, ratings=by_user.nnz, rank=params.rank,
              iterations=params.iterations, train_rmse=round(train_rmse, 6),
              mllib_seconds=round(phases["mllib_fit"], 3), seconds=round(time.perf_counter() - start, 3),
              master=spark.sparkContext.master)  # fmt: skip
    return model
