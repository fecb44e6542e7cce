"""The HTTP API over the published views: typed FastAPI endpoints, JSON errors, reload without restart."""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
from datetime import date, datetime
from http import HTTPStatus
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Header, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, BeforeValidator, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cinematch import __version__
from cinematch.core.log import get_logger, kv, log_event
from cinematch.core.settings import Settings
from cinematch.serving.read import Views, ViewStore

log = get_logger(__name__)
access_log = get_logger("cinematch.serving.access")

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
    def __init__(self, status: int, error: str, detail: str | None = None, headers: dict | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers


def error_response(status: int, error: str, detail: str | None = None, headers: dict | None = None) -> Response:
    body = json.dumps({"error": error, "detail": detail}).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {401: "missing or wrong X-API-Key", 422: "invalid parameters", 503: NOT_READY}
    return {c: {"model": ErrorBody, "description": text.get(c, HTTPStatus(c).phrase)} for c in codes}


class _Guard:
    """Outermost ASGI layer: one access-log line per request and a JSON 500 (never a traceback) on a crash."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        state = {"status": 500, "started": False}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"], state["started"] = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            log.error(kv("request_failed", method=scope["method"], path=scope["path"], error=type(exc).__name__),
                      exc_info=log.isEnabledFor(logging.DEBUG))  # fmt: skip
            if state["started"]:
                raise  # headers are out: the server can only drop the connection
            state["status"] = 500
            await error_response(500, "internal error", "unexpected server error; see the server log")(
                scope, receive, send
            )
        finally:
            if access_log.isEnabledFor(logging.INFO):
                log_event(access_log, "request", method=scope["method"], path=scope["path"], status=state["status"],
                          duration_ms=round((time.perf_counter() - start) * 1000, 2))  # fmt: skip


# --------------------------------------------------------------------------------------------- documents


class JSONBytes(Response):
    media_type = "application/json"


def _encode(model: BaseModel) -> bytes:
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


def create_app(settings: Settings, store: ViewStore | None = None) -> FastAPI:
    """The FastAPI app serving the views ``HOME/serving/CURRENT`` names (reloaded when CURRENT changes)."""
    from cinematch.web import dashboard

    store = store or ViewStore(settings)
    store.get()  # load what is published now, before the first request
    app = FastAPI(
        title="CineMatch",
        version=__version__,
        description="Movie recommendations, trending movies, genre statistics, model registry and drift reports, "
        "served from the views `cinematch publish` materializes.",
        # the interactive docs pages load their scripts from a CDN; the server must work offline
        docs_url=None,
        redoc_url=None,
    )
    app.state.store = store
    app.add_middleware(_Guard)

    @app.exception_handler(ApiError)
    async def _api_error(_request: Any, exc: ApiError) -> Response:
        return error_response(exc.status, exc.error, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Any, exc: RequestValidationError) -> Response:
        detail = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', 'invalid')}" for e in exc.errors())
        return error_response(422, "invalid request", detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Any, exc: StarletteHTTPException) -> Response:
        phrase = (
            HTTPStatus(exc.status_code).phrase.lower() if exc.status_code in HTTPStatus._value2member_map_ else "error"
        )
        detail = exc.detail if isinstance(exc.detail, str) else None
        return error_response(exc.status_code, phrase, detail, getattr(exc, "headers", None))

    def current() -> Views:
        views = store.poll()
        if views is None:
            raise ApiError(503, "not ready", NOT_READY)
        return views

    async def cached(views: Views, key: tuple, build: Any, *args: Any) -> Response:
        """The encoded response for ``key`` from this views file's cache, built in a worker thread on a miss."""
        body = views.cached(key)
        if body is None:
            body = views.remember(key, _encode(await run_in_threadpool(build, views, *args)))
        return JSONBytes(body)

    @app.get("/health", response_model=HealthResponse, responses=_errors(503), tags=["ops"])
    async def health() -> Response:
        """Ready (200) once views are published; 503 before the first `cinematch publish`."""
        views = current()
        return JSONBytes(views.cached(("health",)) or views.remember(("health",), _encode(health_doc(views))))

    @app.get("/recommendations/{user_id}", response_model=RecommendationResponse, responses=_errors(422, 503),
             tags=["recommendations"])  # fmt: skip
    async def recommendations(
        user_id: Annotated[PlainInt, Path(ge=INT64_MIN, le=INT64_MAX)],
        k: Annotated[PlainInt, Query(ge=1, le=100, description="number of movies")] = 10,
    ) -> Response:
        """The champion's top-k for the user; unknown users get the popular fallback with `fallback: true`."""
        views = current()
        key = ("rec", user_id, k)
        body = views.cached(key)
        if body is None:  # in-memory lookup and encoding take microseconds: no worker thread needed
            doc = recommendation_doc(views, user_id, k, views.user_recommendations(user_id, k))
            body = views.remember(key, _encode(doc))
        return JSONBytes(body)

    @app.get("/movies/trending", response_model=TrendingResponse, responses=_errors(422, 503), tags=["movies"])
    async def trending(
        window: Annotated[Window, Query(description="trending window")] = "7d",
        limit: Annotated[PlainInt, Query(ge=1, le=100)] = 10,
    ) -> Response:
        """Top movies by trending score (ratings per day x quality x momentum) in the window."""
        return await cached(current(), ("trending", window, limit), trending_doc, window, limit)

    @app.get("/content/performance", response_model=ContentPerformanceResponse, responses=_errors(422, 503),
             tags=["movies"])  # fmt: skip
    async def content_performance(limit: Annotated[PlainInt, Query(ge=1, le=1000)] = 10) -> Response:
        """Movies by views from viewing sessions: unique viewers, watch time, completion rate."""
        return await cached(current(), ("content_performance", limit), content_performance_doc, limit)

    @app.get("/movies/{movie_id}/performance", response_model=MoviePerformanceResponse,
             responses=_errors(404, 422, 503), tags=["movies"])  # fmt: skip
    async def movie_performance(movie_id: Annotated[PlainInt, Path(ge=INT64_MIN, le=INT64_MAX)]) -> Response:
        """One movie's viewing KPIs; 404 when no session of it is published."""
        return await cached(current(), ("movie_performance", movie_id), movie_performance_doc, movie_id)

    @app.get("/movies/{movie_id}", response_model=MovieDetails, responses=_errors(404, 422, 503), tags=["movies"])
    async def movie_details(movie_id: Annotated[PlainInt, Path(ge=INT64_MIN, le=INT64_MAX)]) -> Response:
        """Title, genres, release year, rating KPIs and, when enriched, TMDB budget, runtime, popularity, votes."""
        return await cached(current(), ("movie_details", movie_id), movie_details_doc, movie_id)

    @app.get("/genres", response_model=GenresResponse, responses=_errors(503), tags=["movies"])
    async def genres() -> Response:
        """Per genre: all-time ratings and mean, and the latest month's ratings, mean and share."""
        return await cached(current(), ("genres",), genres_doc)

    @app.get("/models", response_model=ModelsResponse, responses=_errors(503), tags=["ops"])
    async def models() -> Response:
        """Every registered model version with its metrics; `champion` names the serving one."""
        return await cached(current(), ("models",), models_doc)

    @app.get("/drift", response_model=DriftResponse, responses=_errors(503), tags=["ops"])
    async def drift() -> Response:
        """Drift report history with the retrain threshold (empty before the first drift check)."""
        return await cached(current(), ("drift",), drift_doc, settings)

    @app.post("/admin/reload", response_model=ReloadResponse, responses=_errors(401, 503), tags=["admin"])
    async def admin_reload(x_api_key: Annotated[str | None, Header(alias="X-API-Key")] = None) -> Response:
        """Reread `CURRENT` now (it is also checked automatically once per second). Needs `X-API-Key`."""
        expected = settings.api_key.get_secret_value() if settings.api_key else ""
        if not expected:
            raise ApiError(503, "admin disabled", "set CINEMATCH_API_KEY on the server to enable admin endpoints")
        if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), expected.encode()):
            raise ApiError(401, "unauthorized", "missing or wrong X-API-Key header", {"WWW-Authenticate": "ApiKey"})
        changed = await run_in_threadpool(store.refresh, True)
        views = store.views
        log_event(log, "admin_reload", changed=changed, views=views.version if views else None)
        doc = ReloadResponse(reloaded=changed, ready=views is not None, views_version=views.version if views else None,
                             model_version=views.meta["model_version"] if views else None)  # fmt: skip
        return JSONBytes(_encode(doc))

    def _dashboard(views: Views) -> str:
        return dashboard.render(
            meta=views.meta,
            distribution=views.table("rating_distribution"),
            drift=drift_doc(views, settings),
            models=models_doc(views),
            buffer=views.table("buffer"),
            trending=[trending_doc(views, w, 10) for w in ("7d", "30d", "90d")],
            genres=genres_doc(views),
        )

    @app.get("/", response_class=HTMLResponse, responses={503: {"description": NOT_READY}}, tags=["dashboard"])
    async def index() -> Response:
        """The dashboard: one self-contained HTML page with inline SVG plots."""
        views = store.poll()
        if views is None:
            return HTMLResponse(dashboard.not_ready(NOT_READY), status_code=503, headers=dashboard.HEADERS)
        page = views.cached(("dashboard",))
        if page is None:
            page = views.remember(("dashboard",), (await run_in_threadpool(_dashboard, views)).encode())
        return HTMLResponse(page, headers=dashboard.HEADERS)

    return app
