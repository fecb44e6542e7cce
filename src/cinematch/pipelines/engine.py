"""The engine choice: the one place that reads ``settings.engine`` and hands ETL and training to DuckDB or Spark.

The CLI, the DAG tasks, ``simulate`` and the spark-submit jobs call these; the steps below them take the engine
they run on as an argument (a lakehouse compute, a trainer) and never ask which one is configured.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from cinematch.core.settings import Settings
from cinematch.lakehouse import etl
from cinematch.lakehouse.compute import InProcessCompute, LakehouseCompute
from cinematch.pipelines import mlflow_sync
from cinematch.recommender import comparison, training
from cinematch.recommender.als_params import ALSParams
from cinematch.recommender.fit_cache import CachedTrainer
from cinematch.recommender.trainer import LOCAL, Trainer
from cinematch.storage.protocol import Warehouse


def uses_spark(settings: Settings) -> bool:
    return settings.engine == "spark"


def trainer_for(settings: Settings) -> Trainer:
    """The in-process trainer, or the Spark trainer under CINEMATCH_ENGINE=spark (pyspark imported only then)."""
    if uses_spark(settings):
        from cinematch.engines.spark_trainer import SparkTrainer

        return SparkTrainer(settings)
    return LOCAL


def compute_for(settings: Settings) -> LakehouseCompute:
    """A fresh lakehouse compute for one ETL run: in process, or Spark under CINEMATCH_ENGINE=spark."""
    if uses_spark(settings):
        from cinematch.engines.spark import SparkCompute

        return SparkCompute()
    return InProcessCompute()


def run_etl(
    con: Warehouse,
    settings: Settings,
    full_refresh: bool = False,
    as_of: datetime | None = None,
    write_lake: bool = True,
) -> etl.EtlRun:
    """Bronze → silver → gold on the configured engine (see lakehouse/etl.py for the run's rules).

    ``write_lake=False`` has no effect on Spark: the lake is how Spark and the warehouse exchange data.
    """
    compute = compute_for(settings)
    return etl.run_etl(con, settings, full_refresh=full_refresh, as_of=as_of, write_lake=write_lake, compute=compute)


def train_warehouse(
    con: Warehouse,
    settings: Settings,
    params: ALSParams,
    merge: list[str] | None = None,
    progress: Callable[[int, float], None] | None = None,
    tune: bool = False,
    note: Callable[[str], None] | None = None,
    fits: CachedTrainer | None = None,
) -> training.TrainingRun:
    """Train, evaluate, register and maybe promote on the configured engine (recommender/training.py).

    ``fits``: a trainer that keeps and reuses fits (``cached_trainer``), as the policies of a replay share them.
    With MLflow on, the run, the registered version and the champion alias are mirrored (never fails the run).
    """
    warm = mlflow_sync.prepare(settings)
    run = training.train_warehouse(con, settings, params, merge, progress, tune, note, fits or trainer_for(settings))
    mlflow_sync.after_training(settings, run.version, registered=True, champion=run.champion_version, warm=warm)
    return run


def cached_trainer(settings: Settings, folder: Path) -> CachedTrainer:
    """The configured engine's trainer with its fits kept in ``folder`` (recommender/fit_cache.py)."""
    return CachedTrainer(trainer_for(settings), folder)


def train_files(
    settings: Settings,
    ratings_path: Path,
    test_path: Path | None,
    params: ALSParams,
    progress: Callable[[int, float], None] | None = None,
    lists_out: Path | None = None,
    min_rating: float | None = None,
    note: Callable[[str], None] | None = None,
) -> training.FileTrainingRun:
    """Train and evaluate on files, on the configured engine; the warehouse is not touched (MLflow: a run only)."""
    warm = mlflow_sync.prepare(settings)
    run = training.train_files(settings, ratings_path, test_path, params, progress, lists_out, min_rating, note,
                               trainer_for(settings))  # fmt: skip
    mlflow_sync.after_training(settings, run.version, registered=False, champion=None, warm=warm)
    return run


def evaluate_protocol(
    settings: Settings,
    ratings: Path | None,
    test_file: Path | None,
    protocol: str,
    min_rating: float | None,
    last_n: int = 1,
    note: Callable[[str], None] | None = None,
) -> comparison.ProtocolEvaluation:
    """`cinematch evaluate` on the configured engine (recommender/comparison.py)."""
    return comparison.evaluate_protocol(settings, ratings, test_file, protocol, min_rating, last_n, note,
                                        trainer_for(settings))  # fmt: skip
