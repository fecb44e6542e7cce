"""Reading the serving views: the views file ``CURRENT`` names (Views), followed across publications (ViewStore)."""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from cinematch.core.log import get_logger, log_event
from cinematch.core.settings import Settings
from cinematch.serving.layout import CURRENT, VIEW_TABLES, current_views
from cinematch.storage.warehouse import query_rows

__all__ = ["RecommendationIndex", "UserData", "ViewStore", "Views"]

log = get_logger(__name__)


def _utc(value: Any) -> Any:
    # The warehouse stores naive UTC; say so on the wire.
    return value.replace(tzinfo=UTC) if isinstance(value, datetime) and value.tzinfo is None else value


def _rows(cur: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    return [{k: _utc(v) for k, v in row.items()} for row in query_rows(cur, sql, params)]


@dataclass
class RecommendationIndex:
    """Every user's top-N as columns sorted by (user, rank): a lookup is a binary search and a slice.

    The hot path of the API. Loaded once per views file with one query, so a request for a user never waits
    for DuckDB (a point query costs ~0.5 ms of planning and execution; this costs a few microseconds).
    """

    users: np.ndarray  # sorted distinct user ids
    starts: np.ndarray  # users[i]'s rows are starts[i]:starts[i + 1]
    movie_ids: np.ndarray
    scores: np.ndarray
    ranks: np.ndarray
    movies: dict[int, tuple[str, list[str]]]  # movie_id -> (title, genres)
    because: np.ndarray  # per row: up to two comma-separated movie ids of the user's history ('' for none)
    titles: dict[int, str]  # every movie's title, for the ``because`` items

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection) -> RecommendationIndex:
        has_because = "because" in [c[0] for c in con.execute("describe recommendations").fetchall()]
        because_col = "because" if has_because else "'' as because"
        cols = con.sql(f"select user_id, movie_id, score, rank, {because_col} from recommendations "
                       "order by user_id, rank").fetchnumpy()  # fmt: skip
        users, starts = np.unique(cols["user_id"], return_index=True)
        movies = {m: (t, list(g)) for m, t, g in con.sql(
            "select distinct movie_id, title, genres from recommendations").fetchall()}  # fmt: skip
        try:
            titles = dict(con.execute("select movie_id, title from movie_details").fetchall())
        except duckdb.CatalogException:  # views published before movie details existed
            titles = {m: t for m, (t, _) in movies.items()}
        because = np.asarray(cols["because"], dtype=object)
        return cls(users, np.append(starts, len(cols["user_id"])), cols["movie_id"], cols["score"], cols["rank"],
                   movies, because, titles)  # fmt: skip

    def _because(self, text: str) -> list[dict[str, Any]]:
        ids = [int(x) for x in (text or "").split(",") if x]
        return [{"movie_id": m, "title": self.titles.get(m) or f"Unknown movie {m}"} for m in ids]

    def lookup(self, user_id: int, k: int) -> list[dict[str, Any]]:
        """The top-k of ``user_id`` (empty when the model does not know the user)."""
        i = int(np.searchsorted(self.users, user_id))
        if i == len(self.users) or self.users[i] != user_id:
            return []
        lo = int(self.starts[i])
        hi = min(int(self.starts[i + 1]), lo + k)
        out = []
        for movie, score, rank, why in zip(self.movie_ids[lo:hi].tolist(), self.scores[lo:hi].tolist(),
                                           self.ranks[lo:hi].tolist(), self.because[lo:hi].tolist(), strict=True):  # fmt: skip
            title, genres = self.movies[movie]
            out.append({"movie_id": movie, "title": title, "genres": genres, "score": score, "rank": rank,
                        "because": self._because(why)})  # fmt: skip
        return out


@dataclass(frozen=True)
class UserData:
    """One user's rows of the user views: ``summary`` is None for a user the views do not know."""

    summary: dict[str, Any] | None
    recent: list[dict[str, Any]]  # newest first
    genres: list[dict[str, Any]]  # the user's genre mix, largest first
    population: list[dict[str, Any]]  # every user's genre mix, largest first


@dataclass
class Views:
    """One open, read-only views file; queries go through a fresh cursor each (DuckDB cursors are per thread)."""

    path: Path
    con: duckdb.DuckDBPyConnection
    meta: dict[str, Any]
    fallback: list[dict[str, Any]]
    recommendations: RecommendationIndex
    # Responses derived from this file, keyed by the caller; a new file starts with an empty cache.
    cache: OrderedDict[Any, Any] = field(default_factory=OrderedDict)
    cache_size: int = 32_768

    @classmethod
    def open(cls, path: Path) -> Views:
        con = duckdb.connect(str(path), read_only=True)
        try:
            meta = _rows(con, "select * from meta")[0]
            for key in ("model_batch_ids", "reference_batches", "counts"):
                meta[key] = json.loads(meta[key])
            fallback = _rows(con, "select rank, movie_id, title, genres, score from fallback order by rank")
            index = RecommendationIndex.load(con)
        except BaseException:
            con.close()
            raise
        return cls(path, con, meta, fallback, index)

    @property
    def version(self) -> str:
        return str(self.meta["views_version"])

    def query(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        cur = self.con.cursor()
        try:
            return _rows(cur, sql, params)
        finally:
            cur.close()

    def cached(self, key: Any) -> Any:
        """The cached value for ``key`` (None when absent); a hit counts as recent use."""
        value = self.cache.get(key)
        if value is not None:
            self.cache.move_to_end(key)
        return value

    def remember(self, key: Any, value: Any) -> Any:
        self.cache[key] = value
        if len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return value

    def user_recommendations(self, user_id: int, k: int) -> list[dict[str, Any]]:
        """The champion's top-k for a known user; empty for a user the champion does not know."""
        return self.recommendations.lookup(user_id, k)

    def trending(self, window: str, limit: int) -> list[dict[str, Any]]:
        # a parameterized LIMIT costs DuckDB a full sort; the table holds at most 100 rows per window
        rows = self.query(
            """select rank, movie_id, title, genres, trending_score, n_ratings, avg_rating, velocity, as_of
               from trending where window_label = ? order by rank""",
            [window],
        )
        return rows[:limit]

    def movie_details(self, movie_id: int) -> dict[str, Any] | None:
        """One movie's details (TMDB fields null when not enriched); None for an unknown movie or old views."""
        try:
            rows = self.query("select * from movie_details where movie_id = ?", [movie_id])
        except duckdb.CatalogException:  # a views file published before movie details existed
            return None
        return rows[0] if rows else None

    def content_performance(self, limit: int, movie_id: int | None = None) -> list[dict[str, Any]]:
        """Movies by views (rank 1 = most viewed), or one movie's row; empty in views published before sessions."""
        try:
            if movie_id is not None:
                return self.query("select * from content_performance where movie_id = ?", [movie_id])
            return self.query("select * from content_performance order by views_rank")[:limit]
        except duckdb.CatalogException:  # a views file published before content performance existed
            return []

    def user_profile(self, user_id: int) -> UserData:
        """What the published views hold about one user (all empty for an unknown user or views from before them)."""
        try:
            summary = self.query("select * from user_summary where user_id = ?", [user_id])
            if not summary:
                return UserData(None, [], [], self._population())
            recent = self.query(
                """select r.position, r.movie_id, coalesce(m.title, 'Unknown movie ' || r.movie_id) as title,
                          coalesce(m.genres, cast([] as varchar[])) as genres, r.rating, r.rated_at, r.batch_id
                   from user_ratings r left join movie_details m using (movie_id)
                   where r.user_id = ? order by r.position""",
                [user_id],
            )
            genres = self.query("select * exclude (user_id) from user_genres where user_id = ? "
                                "order by n_ratings desc, genre", [user_id])  # fmt: skip
        except duckdb.CatalogException:  # a views file published before the user views existed
            return UserData(None, [], [], [])
        return UserData(summary[0], recent, genres, self._population())

    def _population(self) -> list[dict[str, Any]]:
        # one row per genre: cheap to read; the caller caches the whole profile document
        return self.query("select * from population_genres order by n_ratings desc, genre")

    def table(self, name: str) -> list[dict[str, Any]]:
        if name not in VIEW_TABLES:
            raise ValueError(f"unknown view {name}")
        order = {"models": "version", "drift": "checked_at, report_id", "buffer": "ingestion_date, batch_id",
                 "rating_distribution": "rating", "genres": "n_ratings desc, genre"}.get(name, "1")  # fmt: skip
        return self.query(f"select * from {name} order by {order}")


class ViewStore:
    """Follows ``HOME/serving/CURRENT``: at most one stat per ``interval`` seconds, swapping in new files.

    In-flight requests keep the :class:`Views` object they started with; the old connection closes when the
    last reference to it goes away, so a swap never breaks a running query. :meth:`poll` (the API's path) loads a
    new file in a background thread, so the event loop never waits for a large views file to load.
    """

    def __init__(self, settings: Settings, interval: float = 1.0) -> None:
        self.settings = settings
        self.interval = interval
        self._views: Views | None = None
        self._signature: tuple[int, int, int] | None = None
        self._checked = -float("inf")
        self._lock = threading.Lock()
        self._loading = False

    @property
    def views(self) -> Views | None:
        """The views loaded now, without checking CURRENT."""
        return self._views

    def _due(self) -> bool:
        return time.monotonic() - self._checked >= self.interval

    def get(self) -> Views | None:
        """The current views (None before the first publish); rechecks CURRENT at most once per interval."""
        if self._due():
            self.refresh()
        return self._views

    def poll(self) -> Views | None:
        """Like :meth:`get`, but a changed CURRENT is loaded in a background thread (never blocks the caller)."""
        if self._due() and not self._loading:
            self._checked = time.monotonic()
            if self._pointer_changed():
                self._loading = True
                threading.Thread(target=self._background_refresh, name="views-reload", daemon=True).start()
        return self._views

    def _background_refresh(self) -> None:
        try:
            self.refresh()
        finally:
            self._loading = False

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = (self.settings.serving_dir / CURRENT).stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _pointer_changed(self) -> bool:
        signature = self._stat()
        return signature is not None and signature != self._signature

    def refresh(self, force: bool = False) -> bool:
        """Reread CURRENT now; returns True when a different views file was swapped in."""
        with self._lock:
            self._checked = time.monotonic()
            signature = self._stat()
            if signature is None or (signature == self._signature and not force):
                return False
            path = current_views(self.settings)
            if path is None:
                return False
            if self._views is not None and path == self._views.path:
                self._signature = signature
                return False
            try:
                views = Views.open(path)
            except (duckdb.Error, OSError, IndexError, KeyError, ValueError) as exc:
                # e.g. a newer publish already removed it: keep serving the old file, retry next interval
                log_event(log, "views_open_failed", path=path.name, error=type(exc).__name__)
                return False
            previous, self._views, self._signature = self._views, views, signature
        log_event(log, "views_loaded", path=path.name, model_version=views.meta["model_version"],
                  users=len(views.recommendations.users), previous=previous.path.name if previous else None)  # fmt: skip
        return True
