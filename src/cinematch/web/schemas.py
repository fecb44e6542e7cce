"""The API's typed request values and response models (pydantic): the JSON the endpoints return."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field

NOT_READY = "no published views: run `cinematch publish`"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_DECIMAL = re.compile(r"-?[0-9]{1,19}")


def _plain_decimal(value: Any) -> Any:
    """Ids and counts are written as plain decimal integers: pydantic's lax parsing would also take ``1_000``,
    ``+5``, `` 5`` and ``1.0``, each a different spelling of a value a cache key or log then disagrees about."""
    if isinstance(value, str) and not _DECIMAL.fullmatch(value):
        raise ValueError("must be a plain decimal integer (digits, optionally a leading '-')")
    return value


PlainInt = Annotated[int, BeforeValidator(_plain_decimal)]
Window = Literal["7d", "30d", "90d"]


# --------------------------------------------------------------------------------------------- response models


class ErrorBody(BaseModel):
    """Every non-2xx response: a short error name and what to do about it."""

    error: str = Field(examples=["not ready"])
    detail: str | None = Field(default=None, examples=[NOT_READY])


class BecauseMovie(BaseModel):
    movie_id: int
    title: str


class RecommendedMovie(BaseModel):
    movie_id: int
    title: str
    genres: list[str]
    score: float | None = Field(
        description="ranking score of the served model (comparable within one list only; 0 for a new movie or a "
        "cold-start item in a personal list), or the bayesian rating (fallback list)"
    )
    rank: int
    because: list[BecauseMovie] = Field(
        default_factory=list,
        description="up to two movies of the user's history that contributed most; empty for fallback items",
    )


class RecommendationResponse(BaseModel):
    user_id: int
    k: int = Field(description="requested list length; items may be shorter when fewer are published")
    items: list[RecommendedMovie]
    fallback: bool = Field(description="true when the champion does not know the user: popular, well-rated movies")
    model_version: str | None = Field(description="champion version these views were published for")
    generated_at: datetime | None
    batch_ids: list[str] = Field(description="ratings batches the model was trained on")
    views_version: str


class RatedMovie(BaseModel):
    """One of the user's own ratings."""

    movie_id: int
    title: str
    genres: list[str]
    rating: float
    rated_at: datetime
    batch_id: str = Field(description="the ratings batch it arrived in")


class GenreShare(BaseModel):
    genre: str
    n_ratings: int = Field(description="the user's ratings of movies with this genre")
    avg_rating: float | None = Field(description="the user's mean rating in this genre")
    share: float = Field(description="the genre's part of the user's genre-tagged ratings (sums to 1 over genres)")
    population_share: float = Field(description="the same share over every user's ratings")


class UserProfileResponse(BaseModel):
    """One user: recent ratings, genre mix against the population, and the top-10 with its lineage."""

    user_id: int
    n_ratings: int
    avg_rating: float | None
    first_rated_at: datetime | None
    last_rated_at: datetime | None
    recent_ratings: list[RatedMovie] = Field(description="the newest ratings first (at most 20)")
    genre_mix: list[GenreShare] = Field(description="every genre, the user's largest share first")
    recommendations: RecommendationResponse = Field(
        description="the top-10 as `/recommendations/{user_id}` serves it: items with `because` and score, "
        "`fallback`, and the model version and training batches behind the list"
    )
    explanation: str = Field(description="why the user gets this list, in one sentence")
    views_version: str


class TrendingMovie(BaseModel):
    rank: int
    movie_id: int
    title: str
    genres: list[str]
    trending_score: float | None
    n_ratings: int
    avg_rating: float | None
    velocity: float | None


class TrendingResponse(BaseModel):
    window: Window
    as_of: datetime | None
    items: list[TrendingMovie]
    views_version: str


class MovieDetails(BaseModel):
    """One movie: catalogue fields, rating KPIs, and TMDB fields where the movie was enriched (else null)."""

    movie_id: int
    title: str | None
    genres: list[str]
    release_year: int | None
    n_ratings: int | None
    avg_rating: float | None
    bayesian_rating: float | None
    tmdb_id: int | None = Field(description="null when TMDB enrichment has not covered this movie")
    budget: int | None
    revenue: int | None
    runtime: int | None = Field(description="minutes, from TMDB")
    popularity: float | None
    vote_average: float | None
    vote_count: int | None
    release_date: date | None
    director: str | None
    top_cast: list[str] | None
    views_version: str


class ContentPerformance(BaseModel):
    """One movie's viewing KPIs from gold.content_performance."""

    movie_id: int
    title: str | None
    genres: list[str]
    views: int = Field(description="viewing sessions up to as_of")
    unique_viewers: int
    total_watch_hours: float
    avg_watch_minutes: float
    runtime_minutes: float | None
    completion_rate: float | None = Field(description="mean of min(watch time / runtime, 1); null without a runtime")
    completed_views: int = Field(description="sessions that reached 90% of the runtime")
    first_viewed_at: datetime | None
    last_viewed_at: datetime | None
    views_rank: int
    as_of: datetime | None


class ContentPerformanceResponse(BaseModel):
    items: list[ContentPerformance]
    views_version: str


class MoviePerformanceResponse(ContentPerformance):
    views_version: str


class GenreStats(BaseModel):
    genre: str
    n_ratings: int
    avg_rating: float | None
    n_months: int
    latest_month: date | None
    latest_n_ratings: int
    latest_avg_rating: float | None
    latest_share: float | None


class GenresResponse(BaseModel):
    as_of: datetime | None
    latest_month: date | None
    genres: list[GenreStats]
    views_version: str


class ModelInfo(BaseModel):
    version: str
    created_at: datetime
    status: str
    is_champion: bool
    metrics: dict[str, float | None]
    params: dict[str, Any]
    batch_ids: list[str]
    n_train: int | None
    n_test: int | None
    promotion: dict[str, Any]


class ModelsResponse(BaseModel):
    champion: str | None
    models: list[ModelInfo]
    views_version: str


class DriftReport(BaseModel):
    report_id: str
    checked_at: datetime
    model_version: str | None
    batch_ids: list[str]
    n_reference: int | None
    n_current: int | None
    kl_divergence: float | None
    mean_shift: float | None
    median_shift: float | None
    psi: float | None
    ks_statistic: float | None
    score: float | None
    model_rmse_reference: float | None
    model_rmse_current: float | None
    model_degradation: float | None
    decision: str
    should_retrain: bool


class DriftResponse(BaseModel):
    retrain_threshold: float = Field(description="score at which a retrain is triggered (drift_retrain_score)")
    warning_threshold: float
    reports: list[DriftReport]
    views_version: str


class HealthResponse(BaseModel):
    status: Literal["ok"]
    ready: bool
    views_version: str
    model_version: str | None
    published_at: datetime
    generated_at: datetime | None
    users: int
    counts: dict[str, int]


class ReloadResponse(BaseModel):
    reloaded: bool = Field(description="true when a different views file was swapped in")
    ready: bool
    views_version: str | None
    model_version: str | None


# --------------------------------------------------------------------------------------------- errors


class ApiError(Exception):
    def __init__(
        self, status: int, error: str, detail: str | None = None, headers: dict[str, Any] | None = None
    ) -> None:
        super().__init__(error)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers
