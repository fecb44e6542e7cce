"""The Spark trainer: MLlib ALS for predicted ratings and MLlib implicit ALS for the ranking model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from cinematch.core.settings import Settings
from cinematch.engines.spark_als import fit_spark_als
from cinematch.engines.spark_ranker import fit_spark_ranker
from cinematch.recommender.als import ALSModel
from cinematch.recommender.als_params import ALSParams
from cinematch.recommender.ranker import Ranker
from cinematch.recommender.tuning import RankingConfig, Selection


@dataclass(frozen=True)
class SparkTrainer:
    """Fits both models on the configured Spark master; the ranking model is not searched (see docs/spark.md)."""

    settings: Settings
    engine: str = "spark"

    def fit_ratings(
        self,
        table: pa.Table,
        params: ALSParams,
        progress: Callable[[int, float], None] | None,
        warm: tuple[ALSModel, int] | None = None,
    ) -> ALSModel:
        """MLlib ALS takes no initial factors: ``warm`` is not used (see ``fit_ranking``)."""
        return fit_spark_als(table, params, progress, self.settings)

    def fit_ranking(
        self,
        train: pa.Table,
        config: RankingConfig,
        previous: dict[str, Any] | None,
        full: bool,
        progress: Callable[[str], None] | None,
        warm: Ranker | None = None,
    ) -> Selection:
        """MLlib ALS takes no initial factors: ``warm`` is not used, every fit starts from its seeded factors."""
        return fit_spark_ranker(train, self.settings, config)
