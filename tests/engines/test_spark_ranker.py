"""The Spark engine's ranking model: MLlib implicit ALS stored as a registry iALS ranker, on real local[2] Spark."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from tests.conftest import make_ratings

from cinematch.core.settings import Settings
from cinematch.engines.spark_ranker import TRAINER, fit_mllib_implicit, fit_spark_ranker, mllib_params
from cinematch.pipelines.engine import trainer_for
from cinematch.recommender.ials import IALS, IALSParams
from cinematch.recommender.interactions import histories
from cinematch.recommender.ranker import Ranker
from cinematch.recommender.training import fit_ranker
from cinematch.recommender.tuning import RankingConfig, catalogue

pytestmark = [
    pytest.mark.spark,
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]

# Short-lived JVMs start faster on 2 cores with the C1 JIT and the serial GC (as in test_spark.py).
JAVA_OPTS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xss8m"
BLOCK_A = 12  # items of the first block (of 20)
SMALL = IALSParams(factors=4, regularization=1.0, alpha=4.0, iterations=6, seed=7)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """One local[2] session for the module; a missing pyspark or Java fails here (never skips)."""
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("cinematch-tests")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.extraJavaOptions", JAVA_OPTS)
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _blocks(rng: np.random.Generator) -> tuple[pa.Table, np.ndarray, np.ndarray, np.ndarray]:
    """Users 0-19 rate ~70% of items 0-11, users 20-39 ~70% of items 12-19; external ids far from 0..n-1.

    Blocks of unequal size: a mix-up of factor rows (say, reversed) cannot map one block onto the other.
    """
    users = np.arange(1000, 1040)
    items = np.arange(500, 520) * 7
    u, i = np.meshgrid(np.arange(40), np.arange(20), indexing="ij")
    rated = ((u < 20) == (i < BLOCK_A)) & (rng.random(u.shape) < 0.7)
    table = pa.table({"user_id": users[u[rated]], "movie_id": items[i[rated]],
                      "rating": rng.integers(1, 11, int(rated.sum())) / 2.0,
                      "rated_at": pa.array(np.arange(int(rated.sum())) * 1_000_000, pa.timestamp("us"))})  # fmt: skip
    return table, users, items, rated


def test_block_users_get_their_own_blocks_unrated_items(spark: Any, settings_spark: Settings) -> None:
    table, users, items, rated = _blocks(np.random.default_rng(5))
    config = RankingConfig(seed=7, ials=SMALL)
    selection = fit_spark_ranker(table, settings_spark, config, spark=spark)
    ranker = selection.ranker
    model = ranker.components[0].model
    assert isinstance(model, IALS) and model.trainer == TRAINER and model.params.reg_per_rating
    assert np.array_equal(ranker.item_ids, catalogue(table, config)[0])
    assert np.isfinite(model.item_factors).all() and np.abs(model.item_factors).max() > 0
    hist = histories(table, ranker.item_ids)
    for row in (0, 7, 25, 39):  # two users of each group
        own = ~rated[row] & ((np.arange(20) < BLOCK_A) == (row < 20))  # the user's own block, not yet rated
        ids, scores, _ = ranker.recommend(hist, users[[row]], n=int(own.sum()))
        assert set(ids[0]) == set(items[own]) and np.isfinite(scores[0]).all(), row


@pytest.mark.filterwarnings("ignore:OpenBLAS is configured:RuntimeWarning")  # implicit's solver, the wrong case
def test_fold_in_reproduces_mllib_user_factors(spark: Any) -> None:
    """IALS.user_factors (reg_per_rating) solves MLlib's last user half-step against MLlib's final item factors.

    MLlib solves in double from float32 factors and rounds to float32; the fold-in solves in float32 (LAPACK
    gesv, backward stable). The relative forward error is then about κ·k·ε₃₂, κ the condition number of a
    user's system (< 10 here, k = 4, ε₃₂ = 6e-8: ~2e-6; 2.5e-7 measured), so 1e-5 has a margin of 5 while
    either wrong convention (λ not scaled by the rating count, or confidence α instead of 1 + α) misses by more
    than 1e-2 (0.04 to 0.1 measured).
    """
    rng = np.random.default_rng(11)
    u, i = np.nonzero(rng.random((60, 40)) < 0.2)
    table = pa.table({"user_id": u, "movie_id": i, "rating": np.ones(len(u))})
    hist = histories(table)
    params = mllib_params(SMALL, hist.binary)
    mllib_users, item_factors = fit_mllib_implicit(hist.binary, params, spark)
    assert np.abs(mllib_users).max() > 0.05  # a fit that did not collapse to zero
    folded = IALS(params, hist.item_ids, item_factors, TRAINER).user_factors(hist.binary)
    scale = np.linalg.norm(mllib_users, axis=1)
    error = np.linalg.norm(folded - mllib_users, axis=1) / scale
    assert error.max() < 1e-5, error.max()
    # implicit's convention (one absolute λ, its own solver), and an off-by-one confidence: far outside it
    for wrong in (replace(params, reg_per_rating=False), replace(params, alpha=params.alpha - 1)):
        other = IALS(wrong, hist.item_ids, item_factors, TRAINER).user_factors(hist.binary)
        assert (np.linalg.norm(other - mllib_users, axis=1) / scale).max() > 1e-2, wrong


def test_ranker_saves_loads_and_scores_identically(spark: Any, settings_spark: Settings, tmp_path: Path) -> None:
    table, users, _, _ = _blocks(np.random.default_rng(6))
    ranker = fit_spark_ranker(table, settings_spark, RankingConfig(seed=3, ials=SMALL), spark=spark).ranker
    ranker.save(tmp_path / "ranker")
    loaded = Ranker.load(tmp_path / "ranker")
    model = loaded.components[0].model
    assert isinstance(model, IALS) and model.trainer == TRAINER and model.params == ranker.components[0].model.params
    assert loaded.info["trainer"] == TRAINER and loaded.info["tuned"] is False
    hist = histories(table, loaded.item_ids)
    x = hist.rows(users)
    assert np.array_equal(loaded.scores(x), ranker.scores(x))
    for got, want in zip(loaded.recommend(hist, users, n=5), ranker.recommend(hist, users, n=5), strict=True):
        assert np.array_equal(got, want, equal_nan=True)


def test_fit_ranker_under_the_spark_engine_trains_with_mllib(spark: Any, settings_spark: Settings) -> None:
    train = make_ratings(np.random.default_rng(8), n=400, users=30, movies=40)
    selection = fit_ranker(train, settings_spark, trainer=trainer_for(settings_spark))  # the engine's trainer
    (component,) = selection.ranker.components
    assert component.kind == "ials" and component.model.trainer == TRAINER
    assert component.model.params.reg_per_rating and component.model.params.seed == settings_spark.seed
    assert selection.candidates == [] and selection.choice.weights == {"ials": 1.0}
    assert selection.ranker.info["tuned"] is False and selection.ranker.info["mllib"]["implicitPrefs"] is True
    assert selection.catalogue["items"] == len(selection.ranker.item_ids) == len(np.unique(train["movie_id"]))
    assert np.isfinite(component.model.item_factors).all() and np.abs(component.model.item_factors).max() > 0


@pytest.fixture
def settings_spark(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", engine="spark", spark_master="local[2]", seed=13)
