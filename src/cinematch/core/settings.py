"""One settings object for the whole platform, read from ``CINEMATCH_*`` environment variables."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every tunable of CineMatch. Environment variables use the ``CINEMATCH_`` prefix."""

    model_config = SettingsConfigDict(env_prefix="CINEMATCH_", extra="ignore")

    home: Path = Field(default=Path("./cinematch-home"), description="where all local state lives")
    database_url: SecretStr | None = Field(default=None, description="postgresql://... for the warehouse")
    engine: Literal["duckdb", "spark"] = "duckdb"
    spark_master: str = "local[*]"
    # s3://bucket/prefix (or any Hadoop URI) for the Spark engine's lake; unset: HOME/lake. See docs/spark.md.
    lake_uri: str | None = Field(default=None, description="object-store URI of the Spark engine's lake")
    tmdb_api_key: SecretStr | None = None
    tmdb_base_url: str = "https://api.themoviedb.org/3"
    # TMDB client (cinematch.ingest.tmdb): requests per second (never more in any 1 s window), retries, timeouts
    tmdb_rate_limit: float = Field(default=4.0, gt=0)
    tmdb_max_attempts: int = Field(default=5, ge=1)
    tmdb_timeout_seconds: float = Field(default=10.0, gt=0)
    tmdb_backoff_seconds: float = Field(default=0.5, ge=0)
    tmdb_workers: int = Field(default=4, ge=1)
    tmdb_commit_every: int = Field(default=10, ge=1)
    api_key: SecretStr | None = None
    # CINEMATCH_ALERT_WEBHOOK (the documented name) or CINEMATCH_ALERT_WEBHOOK_URL (older); see cinematch.pipelines.alerts.
    # The aliases are whole variable names (no prefix added); as a keyword, pass CINEMATCH_ALERT_WEBHOOK=...
    alert_webhook_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("CINEMATCH_ALERT_WEBHOOK", "CINEMATCH_ALERT_WEBHOOK_URL"),
        description="URL that failures, retrain decisions and promotions are posted to",
    )
    # MLflow tracking server (the `mlflow` extra): unset, MLflow is off and never imported. May hold credentials
    # (http://user:pass@host), hence a secret; shown only redacted. See docs/mlflow.md.
    mlflow_tracking_uri: SecretStr | None = Field(default=None, description="MLflow tracking server URI")
    # how long a training waits for an unreachable MLflow before it warns and carries on (catch up: sync-mlflow)
    mlflow_timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    # OpenLineage for CLI runs (cinematch.pipelines.lineage_emit; Airflow runs use the provider's own transport):
    # http(s)://host:port (a Marquez-style endpoint) or file:///path/events.jsonl; unset: OPENLINEAGE_CONFIG if
    # set, else no lineage (and the openlineage package is never imported). See docs/lineage.md.
    openlineage_url: str | None = Field(default=None, description="where CLI runs send OpenLineage events")
    openlineage_namespace: str = "cinematch"  # the job namespace of CLI runs
    openlineage_timeout_seconds: float = Field(default=2.0, gt=0)  # per event; a down endpoint costs this once

    # ingestion
    lock_timeout_seconds: float = 120.0
    # a batch whose quarantined rows are a larger share of its records than this is refused whole
    max_bad_row_share: float = Field(default=0.05, ge=0, le=1)

    # quality gates
    soft_check_tolerance: float = 0.01

    # retention, in days (applied only by `cinematch retention`)
    retention_bronze_days: int = 90
    retention_silver_days: int = 730
    retention_gold_days: int = 1825

    # recommender
    als_rank: int = 32
    als_reg: float = 0.05
    als_iterations: int = 12
    # weight of log(1 + ratings of the movie) in top-n ranking only (ALSParams.rank_popularity); 0 = by rating
    als_rank_popularity: float = 0.8
    seed: int = 42
    top_n: int = 10
    relevance_threshold: float = 4.0
    promotion_tolerance: float = 0.0  # RMSE: the challenger's may be at most (1 + this) x the champion's
    # top-10 NDCG: the 95% lower bound of (challenger - champion) over users must be >= -this
    promotion_ndcg_tolerance: float = Field(default=0.01, ge=0)
    # ranking models: EASE is a candidate while the catalogue (movies with >= ease_min_support ratings) fits.
    # Support 2 leaves out movies rated once (on ml-latest-small a third of them; see README "Ranking models")
    ease_max_items: int = Field(default=20_000, ge=2)
    ease_min_support: int = Field(default=2, ge=1)
    ease_keep_per_item: int = Field(default=1024, ge=1)  # largest weights kept per movie in a stored model
    # the ranking search fits its candidates on a seeded sample of whole users above this many training ratings
    ranking_search_max_ratings: int = Field(default=1_000_000, ge=1_000)
    # a version's top-N is evaluated on a seeded sample of this many test users when there are more (RMSE: every row)
    eval_max_users: int = Field(default=20_000, ge=100)
    # a retrain at or above this many training ratings starts ALS and iALS from the champion's factors and runs
    # warm_start_iterations of each (0: always from scratch); below it every fit starts from seeded factors
    warm_start_min_ratings: int = Field(default=2_000_000, ge=0)
    warm_start_iterations: int = Field(default=2, ge=0)
    # ranking candidates projected to cost more than this to fit and fold in on the training data are not searched
    ranking_fit_budget_seconds: float = Field(default=120.0, gt=0)
    # model versions whose large files are kept besides the champion and the previous champion
    model_keep_versions: int = Field(default=5, ge=0)

    # drift (the original's thresholds and weights)
    drift_kl_threshold: float = 0.1
    drift_mean_threshold: float = 0.2
    drift_median_threshold: float = 0.5
    drift_kl_weight: float = 0.5
    drift_mean_weight: float = 0.3
    drift_median_weight: float = 0.2
    drift_retrain_score: float = 1.0
    drift_warning_score: float = 0.5
    drift_min_records: int = 1000
    model_drift_threshold: float = 0.25

    @cached_property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def duckdb_path(self) -> Path:
        return self.home_dir / "warehouse.duckdb"

    @property
    def lake_dir(self) -> Path:
        return self.home_dir / "lake"

    @property
    def landing_dir(self) -> Path:
        return self.home_dir / "landing"

    @property
    def models_dir(self) -> Path:
        return self.home_dir / "models"

    @property
    def reports_dir(self) -> Path:
        return self.home_dir / "reports"

    @property
    def serving_dir(self) -> Path:
        return self.home_dir / "serving"


def get_settings(**overrides: object) -> Settings:
    """A fresh settings object (environment read at call time, never at import time)."""
    return Settings(**overrides)  # type: ignore[arg-type]
