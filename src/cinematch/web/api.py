"""The HTTP API over the published views: typed FastAPI endpoints, JSON errors, reload without restart."""

from __future__ import annotations

import hmac
import json
import logging
import time
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import FastAPI, Header, Path, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cinematch import __version__
from cinematch.core.log import get_logger, kv, log_event
from cinematch.core.settings import Settings
from cinematch.serving.read import Views, ViewStore
from cinematch.web import dashboard, user_page
from cinematch.web.documents import (
    content_performance_doc,
    drift_doc,
    encode,
    genres_doc,
    health_doc,
    models_doc,
    movie_details_doc,
    movie_performance_doc,
    profile_doc,
    recommendation_doc,
    trending_doc,
)
from cinematch.web.schemas import (
    INT64_MAX,
    INT64_MIN,
    NOT_READY,
    ApiError,
    ContentPerformanceResponse,
    DriftResponse,
    ErrorBody,
    GenresResponse,
    HealthResponse,
    ModelsResponse,
    MovieDetails,
    MoviePerformanceResponse,
    PlainInt,
    RecommendationResponse,
    ReloadResponse,
    TrendingResponse,
    UserProfileResponse,
    Window,
)

log = get_logger(__name__)
access_log = get_logger("cinematch.serving.access")


def error_response(
    status: int, error: str, detail: str | None = None, headers: dict[str, Any] | None = None
) -> Response:
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


# --------------------------------------------------------------------------------------------- app


class JSONBytes(Response):
    media_type = "application/json"


def create_app(settings: Settings, store: ViewStore | None = None) -> FastAPI:
    """The FastAPI app serving the views ``HOME/serving/CURRENT`` names (reloaded when CURRENT changes)."""

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

    async def cached(views: Views, key: tuple[Any, ...], build: Any, *args: Any) -> Response:
        """The encoded response for ``key`` from this views file's cache, built in a worker thread on a miss."""
        body = views.cached(key)
        if body is None:
            body = views.remember(key, encode(await run_in_threadpool(build, views, *args)))
        return JSONBytes(body)

    @app.get("/health", response_model=HealthResponse, responses=_errors(503), tags=["ops"])
    async def health() -> Response:
        """Ready (200) once views are published; 503 before the first `cinematch publish`."""
        views = current()
        return JSONBytes(views.cached(("health",)) or views.remember(("health",), encode(health_doc(views))))

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
            body = views.remember(key, encode(doc))
        return JSONBytes(body)

    @app.get("/users/{user_id}/profile", response_model=UserProfileResponse, responses=_errors(404, 422, 503),
             tags=["users"])  # fmt: skip
    async def user_profile(user_id: Annotated[PlainInt, Path(ge=INT64_MIN, le=INT64_MAX)]) -> Response:
        """The user page as JSON: recent ratings, genre mix against every user, the top-10 with `because`, scores,
        model version and training batches; 404 for a user the published views do not know."""
        return await cached(current(), ("profile", user_id), profile_doc, user_id)

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
        return JSONBytes(encode(doc))

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

    def _user_html(views: Views, user_id: int) -> tuple[int, bytes]:
        try:
            return 200, user_page.render(profile_doc(views, user_id)).encode()
        except ApiError as exc:
            if exc.status != 404:
                raise
            message = f"User {user_id} is not known: the published views hold no rating or profile of this id."
            return 404, user_page.message_page(f"user {user_id}", message, str(user_id)).encode()

    @app.get("/users", response_class=RedirectResponse, status_code=303, responses=_errors(422), tags=["dashboard"])
    async def find_user(
        user_id: Annotated[PlainInt, Query(ge=INT64_MIN, le=INT64_MAX, description="the id typed into the search box")],
    ) -> Response:
        """The dashboard's search box submits here: a redirect (303) to the user page `/users/{user_id}`."""
        return RedirectResponse(f"/users/{user_id}", status_code=303)

    @app.get("/users/{user_id}", response_class=HTMLResponse, tags=["dashboard"],
             responses={404: {"description": "unknown user (an HTML page saying so)"}, 422: _errors(422)[422],
                        503: {"description": NOT_READY}})  # fmt: skip
    async def user_html(user_id: Annotated[PlainInt, Path(ge=INT64_MIN, le=INT64_MAX)]) -> Response:
        """The user page: recent ratings, top-10 with `because` and scores, genre mix plot, model and batches."""
        views = store.poll()
        if views is None:
            return HTMLResponse(user_page.message_page("not ready", NOT_READY), status_code=503,
                                headers=dashboard.HEADERS)  # fmt: skip
        key = ("user_page", user_id)
        hit = views.cached(key)
        if hit is None:
            hit = await run_in_threadpool(_user_html, views, user_id)
            if hit[0] == 200:  # unknown ids are not cached: fuzzing must not evict the pages people open
                views.remember(key, hit)
        return HTMLResponse(hit[1], status_code=hit[0], headers=dashboard.HEADERS)

    return app
