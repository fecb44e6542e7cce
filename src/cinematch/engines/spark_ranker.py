"""The ranking model under CINEMATCH_ENGINE=spark: MLlib implicit ALS, stored as a registry iALS ranker.

MLlib's implicit ALS (``implicitPrefs=True``) fits the binary who-rated-what matrix of the catalogue with
preference 1 and confidence 1 + α_mllib for every rated item and solves each user's factors from

    (YᵀY + α_mllib·Σ y_i y_iᵀ + λ·n_u·I) p_u = (1 + α_mllib)·Σ y_i

(λ scaled by the user's number of ratings, ALS-WR). Those are the normal equations of
:meth:`cinematch.recommender.ials.IALS.user_factors` with ``reg_per_rating=True``, regularization λ and
confidence α = 1 + α_mllib, so only MLlib's item factors are kept and users are folded in from their current
history by NumPy, exactly as for models trained by ``implicit``.

No search runs on Spark: the configured iALS parameters (``RankingConfig.ials``) are translated once. α is
passed as MLlib's α (a rated item's confidence is 1 + α, stored as the model's α). ``implicit``'s λ is one
absolute ridge per solve while MLlib multiplies its λ by each row's rating count, so λ_mllib = λ / (mean
ratings per user): the same ridge for the average user's fold-in, which is what serves the lists. Passed
unchanged, λ = 10 per rating shrinks the factors several-fold at every half-step and the fit collapses to
zero (factors ~1e-16 and validation NDCG@10 0.02 instead of 0.49 on generated data of 800 users).
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from cinematch.core.errors import BadInput
from cinematch.core.log import get_logger, log_event
from cinematch.engines.spark_als import dense_factors, ensure_checkpoint_dir
from cinematch.recommender.ials import IALS, IALSParams
from cinematch.recommender.interactions import histories
from cinematch.recommender.ranker import Component, Ranker
from cinematch.recommender.tuning import Choice, RankingConfig, Selection, catalogue

if TYPE_CHECKING:
    import scipy.sparse as sp
    from pyspark.sql import SparkSession

    from cinematch.core.settings import Settings

log = get_logger(__name__)

TRAINER = "spark-mllib"


def mllib_params(params: IALSParams, binary: sp.csr_matrix) -> IALSParams:
    """The registry parameters of the MLlib fit of ``params`` on ``binary``: per-rating λ, confidence 1 + α."""
    params.validate()
    users = int(np.count_nonzero(np.diff(binary.indptr)))
    mean_ratings = binary.nnz / max(1, users)
    return replace(params, regularization=params.regularization / max(1.0, mean_ratings),
                   alpha=1.0 + params.alpha, reg_per_rating=True)  # fmt: skip


def fit_mllib_implicit(binary: sp.csr_matrix, params: IALSParams, spark: SparkSession) -> tuple[np.ndarray, np.ndarray]:
    """MLlib implicit ALS on a binary user x item matrix: (user factors, item factors).

    Factors come back as float32 matrices indexed like ``binary``'s rows and columns (zero where MLlib saw no
    rating). ``params`` are registry parameters (``reg_per_rating``, α the confidence of a rated item).
    """
    from pyspark.ml.recommendation import ALS

    if not params.reg_per_rating:
        raise BadInput("MLlib scales λ by the rating count: pass parameters from mllib_params")
    n_users, n_items = binary.shape
    # Dense 0..n-1 indices as MLlib ids: external ids may exceed MLlib's int range, factors map back by index.
    rows = np.repeat(np.arange(n_users, dtype=np.int32), np.diff(binary.indptr))
    frame = spark.createDataFrame(pa.table({"u": rows, "i": binary.indices.astype(np.int32),
                                            "r": np.ones(binary.nnz, np.float32)}))  # fmt: skip
    blocks = max(2, spark.sparkContext.defaultParallelism)
    als = ALS(
        rank=params.factors, maxIter=params.iterations, regParam=params.regularization, alpha=params.alpha - 1.0,
        implicitPrefs=True, nonnegative=False, seed=params.seed, userCol="u", itemCol="i", ratingCol="r",
        numUserBlocks=blocks, numItemBlocks=blocks,
    )  # fmt: skip
    ensure_checkpoint_dir(spark)
    fitted = als.fit(frame)
    users = dense_factors(fitted.userFactors.toArrow(), n_users, params.factors)
    items = dense_factors(fitted.itemFactors.toArrow(), n_items, params.factors)
    return users, items


def fit_spark_ranker(
    train: pa.Table, settings: Settings, config: RankingConfig, spark: SparkSession | None = None
) -> Selection:
    """The served ranking model of a Spark-engine version: one iALS component whose items MLlib factorised.

    The catalogue is :func:`cinematch.recommender.tuning.catalogue`'s, in its order; MLlib sees only
    ratings of catalogue items (as ``implicit`` does on the DuckDB engine), and catalogue items it never saw
    keep zero factors. Seeded from ``config.seed`` (CINEMATCH_SEED).
    """
    from cinematch.engines.spark_session import spark_session

    if train.num_rows == 0:
        raise BadInput("no ratings to train on: ingest a batch and run `cinematch etl` first")
    start = time.perf_counter()
    item_ids, _, info = catalogue(train, config)
    hist = histories(train, item_ids)
    if hist.binary.nnz == 0:
        raise BadInput("no ratings of catalogue movies to train the ranking model on")
    requested = replace(config.ials, seed=config.seed)
    params = mllib_params(requested, hist.binary)
    spark = spark if spark is not None else spark_session(settings)
    t0 = time.perf_counter()
    _, item_factors = fit_mllib_implicit(hist.binary, params, spark)
    mllib_seconds = time.perf_counter() - t0
    model = IALS(params, item_ids, item_factors, trainer=TRAINER)
    mllib = {"rank": params.factors, "maxIter": params.iterations, "regParam": params.regularization,
             "alpha": params.alpha - 1.0, "implicitPrefs": True, "seed": params.seed}  # fmt: skip
    # no validation search runs on Spark: the configured parameters, translated
    ranker_info = {
        "catalogue": info,
        "trainer": TRAINER,
        "tuned": False,
        "requested": asdict(requested),
        "mllib": mllib,
    }
    ranker = Ranker([Component("ials", model, 1.0)], info=ranker_info)
    seconds = time.perf_counter() - start
    log_event(log, "spark_ranker_fit", users=hist.n_users, items=len(item_ids), interactions=hist.binary.nnz,
              factors=params.factors, iterations=params.iterations, reg_param=round(params.regularization, 6),
              alpha=params.alpha - 1.0, mllib_seconds=round(mllib_seconds, 3), seconds=round(seconds, 3),
              master=spark.sparkContext.master)  # fmt: skip
    # The choice keeps the requested (``implicit``-convention) parameters: a later DuckDB-engine refit of this
    # choice must not inherit MLlib's per-rating λ; the stored model's ials.json holds the MLlib values.
    choice = Choice({"ials": 1.0}, {"ials": asdict(requested)})
    return Selection(ranker, choice, [], info, seconds)
