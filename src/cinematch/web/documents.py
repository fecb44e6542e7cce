"""Response documents built from one published views file: what each endpoint returns, before encoding."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from cinematch.core.settings import Settings
from cinematch.serving.read import Views
from cinematch.web.schemas import (
    ApiError,
    ContentPerformanceResponse,
    DriftReport,
    DriftResponse,
    GenreShare,
    GenresResponse,
    HealthResponse,
    ModelInfo,
    ModelsResponse,
    MovieDetails,
    MoviePerformanceResponse,
    RatedMovie,
    RecommendationResponse,
    TrendingResponse,
    UserProfileResponse,
)

PROFILE_K = 10


def encode(model: BaseModel) -> bytes:
    return model.model_dump_json().encode()


def recommendation_doc(views: Views, user_id: int, k: int, rows: list[dict[str, Any]]) -> RecommendationResponse:
    meta = views.meta
    fallback = not rows
    return RecommendationResponse(
        user_id=user_id,
        k=k,
        items=rows if rows else views.fallback[:k],  # type: ignore[arg-type]
        fallback=fallback,
        model_version=meta["model_version"],
        generated_at=meta["published_at"] if fallback else meta["generated_at"],
        batch_ids=meta["model_batch_ids"],
        views_version=views.version,
    )


def _explanation(user_id: int, doc: RecommendationResponse, n_ratings: int) -> str:
    fallback = "the fallback list of popular, recent movies, the same for every such user"
    if doc.model_version is None:
        return f"No champion model is published yet: user {user_id}, like everyone, gets {fallback}."
    if not doc.fallback:
        return (f"A personal list from model {doc.model_version}, trained on {len(doc.batch_ids)} ratings batches; "
                f"each movie names the user's rated movies that contributed most to its score (because).")  # fmt: skip
    if n_ratings == 0:
        return f"User {user_id} has no ratings yet (cold start), so they get {fallback}."
    return f"Model {doc.model_version} has no personal list for user {user_id}, so they get {fallback}."


def profile_doc(views: Views, user_id: int) -> UserProfileResponse:
    """The user page's document; 404 for a user with neither a rating, a viewing profile nor a list."""
    data = views.user_profile(user_id)
    rows = views.user_recommendations(user_id, PROFILE_K)
    if data.summary is None and not rows:
        raise ApiError(404, "not found", f"user {user_id} is not known: no ratings or profile in the published views")
    summary = data.summary or {"n_ratings": 0, "avg_rating": None, "first_rated_at": None, "last_rated_at": None}
    recs = recommendation_doc(views, user_id, PROFILE_K, rows)
    mine = {g["genre"]: g for g in data.genres}
    mix = [GenreShare(genre=p["genre"], n_ratings=mine.get(p["genre"], {}).get("n_ratings", 0),
                      avg_rating=mine.get(p["genre"], {}).get("avg_rating"),
                      share=mine.get(p["genre"], {}).get("share", 0.0), population_share=p["share"])
           for p in data.population]  # fmt: skip
    mix.sort(key=lambda g: (-g.share, -g.population_share, g.genre))
    return UserProfileResponse(
        user_id=user_id,
        n_ratings=summary["n_ratings"],
        avg_rating=summary["avg_rating"],
        first_rated_at=summary["first_rated_at"],
        last_rated_at=summary["last_rated_at"],
        recent_ratings=[RatedMovie(**r) for r in data.recent],
        genre_mix=mix,
        recommendations=recs,
        explanation=_explanation(user_id, recs, summary["n_ratings"]),
        views_version=views.version,
    )


def trending_doc(views: Views, window: str, limit: int) -> TrendingResponse:
    rows = views.trending(window, limit)
    as_of = rows[0]["as_of"] if rows else None
    return TrendingResponse(window=window, as_of=as_of, items=rows, views_version=views.version)  # type: ignore[arg-type]


def movie_details_doc(views: Views, movie_id: int) -> MovieDetails:
    row = views.movie_details(movie_id)
    if row is None:
        raise ApiError(404, "not found", f"movie {movie_id} is not in the published catalogue")
    return MovieDetails(**row, views_version=views.version)


def content_performance_doc(views: Views, limit: int) -> ContentPerformanceResponse:
    rows = views.content_performance(limit)
    return ContentPerformanceResponse(items=rows, views_version=views.version)  # type: ignore[arg-type]


def movie_performance_doc(views: Views, movie_id: int) -> MoviePerformanceResponse:
    rows = views.content_performance(1, movie_id)
    if not rows:
        raise ApiError(404, "not found", f"no viewing sessions for movie {movie_id} in the published views")
    return MoviePerformanceResponse(**rows[0], views_version=views.version)


def genres_doc(views: Views) -> GenresResponse:
    rows = views.table("genres")
    first = rows[0] if rows else {}
    return GenresResponse(as_of=first.get("as_of"), latest_month=first.get("latest_month"), genres=rows,  # type: ignore[arg-type]
                          views_version=views.version)  # fmt: skip


def models_doc(views: Views) -> ModelsResponse:
    models = []
    for row in views.table("models"):
        doc = {k: (json.loads(row[k]) if isinstance(row[k], str) else row[k]) or {}
               for k in ("params", "metrics", "promotion")}  # fmt: skip
        doc["metrics"] = {k: v for k, v in doc["metrics"].items() if isinstance(v, int | float) or v is None}
        models.append(ModelInfo(**{**row, **doc, "batch_ids": json.loads(row["batch_ids"] or "[]")}))
    champion = next((m.version for m in models if m.is_champion), None)
    return ModelsResponse(champion=champion, models=models, views_version=views.version)


def drift_doc(views: Views, settings: Settings) -> DriftResponse:
    reports = [DriftReport(**{**r, "batch_ids": json.loads(r["batch_ids"] or "[]")}) for r in views.table("drift")]
    return DriftResponse(retrain_threshold=settings.drift_retrain_score, warning_threshold=settings.drift_warning_score,
                         reports=reports, views_version=views.version)  # fmt: skip


def health_doc(views: Views) -> HealthResponse:
    meta = views.meta
    return HealthResponse(status="ok", ready=True, views_version=views.version, model_version=meta["model_version"],
                          published_at=meta["published_at"], generated_at=meta["generated_at"],
                          users=meta["n_users"], counts=meta["counts"])  # fmt: skip


# --------------------------------------------------------------------------------------------- the app
