"""Who fits the models: the trainer protocol, and the in-process trainer (NumPy ALS, EASE/iALS search).

Training steps take a trainer as an argument; the pipelines choose it from the settings (the Spark trainer is
engines/spark_trainer.py), so nothing below the pipelines asks which engine is configured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa

from cinematch.recommender.als import ALSModel
from cinematch.recommender.als_params import ALSParams
from cinematch.recommender.ranker import Ranker
from cinematch.recommender.tuning import RankingConfig, Selection, select


class Trainer(Protocol):
    """Fits the rating model and the ranking model of one version."""

    @property
    def engine(self) -> str:
        """The engine name stored in the version's metadata."""
        ...

    def fit_ratings(
        self,
        table: pa.Table,
        params: ALSParams,
        progress: Callable[[int, float], None] | None,
        warm: tuple[ALSModel, int] | None = None,
    ) -> ALSModel: ...

    def fit_ranking(
        self,
        train: pa.Table,
        config: RankingConfig,
        previous: dict[str, Any] | None,
        full: bool,
        progress: Callable[[str], None] | None,
        warm: Ranker | None = None,
    ) -> Selection: ...


@dataclass(frozen=True)
class LocalTrainer:
    """This process: explicit ALS in NumPy, the ranking model searched (or refitted) on validation data."""

    engine: str = "duckdb"

    def fit_ratings(
        self,
        table: pa.Table,
        params: ALSParams,
        progress: Callable[[int, float], None] | None,
        warm: tuple[ALSModel, int] | None = None,
    ) -> ALSModel:
        return ALSModel.fit(
            table.column("user_id").to_numpy(),
            table.column("movie_id").to_numpy(),
            table.column("rating").to_numpy(),
            params,
            progress=progress,
            warm=warm,
        )

    def fit_ranking(
        self,
        train: pa.Table,
        config: RankingConfig,
        previous: dict[str, Any] | None,
        full: bool,
        progress: Callable[[str], None] | None,
        warm: Ranker | None = None,
    ) -> Selection:
        return select(train, config, previous, full=full, progress=progress, warm=warm)


LOCAL = LocalTrainer()
