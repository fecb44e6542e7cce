"""Serving views: `publish` materializes a read-only DuckDB file per publication; readers follow ``CURRENT``.

The API never opens the warehouse: DuckDB allows one read-write process per file and read-only opens
conflict with a writer elsewhere. Each publication is therefore a NEW file ``HOME/serving/views_<stamp>.duckdb``,
written and closed completely before ``HOME/serving/CURRENT`` (a one-line file naming it) is replaced atomically.
A reader that stats ``CURRENT`` sees either the old or the new publication, never a half-written one.

Tables of a views file:

- ``recommendations``  the champion's top-N per user with titles, genres and ``because`` (up to two movie ids of the
                       user's history that contributed most), recomputed from every user's current history at each
                       publish (``serving.recommendations``), so users and ratings that arrived since training count.
- ``fallback``         the cold-start list, popular and recent: movies by their ratings in the last 90 days of
                       activity (the ``score``), then by ``bayesian_rating``, among non-placeholder movies with at least
                       ``min_ratings`` ratings, where ``min_ratings`` = the 75th percentile of ``n_ratings`` over rated
                       movies, capped at 50 and at least 1 (so a small catalogue still has a list, and a large one
                       is not filtered down to blockbusters only). Ties go to the more popular movie.
- ``trending``         ``gold.trending_movies`` (top 100 per window) with genres.
- ``genres``           per genre: all-time ratings and mean, and the latest month's ratings, mean and share.
- ``models``           ``ops.model_registry`` rows with the headline metrics as columns.
- ``drift``            ``ops.drift_reports`` history (empty until the first drift check).
- ``buffer``           ``bronze.ingestion_metadata`` history with the cumulative ratings count.
- ``rating_distribution``  half-star histogram of the reference (the champion's training batches; without a champion,
                       every ratings batch but the latest) against the latest ratings batch, from ``silver.ratings``.
- ``content_performance``  ``gold.content_performance`` (per movie: views, unique viewers, watch time, completion
                       rate from viewing sessions) with genres; empty before any sessions are loaded.
- ``meta``             one row: published_at, model_version, the model's batch_ids, counts.

Publishing without a champion still publishes: ``recommendations`` is empty, every user gets ``fallback`` and
``model_version`` is null, so the API can serve cold-start lists from the first ETL on.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from cinematch.core.errors import CineMatchError
from cinematch.core.log import get_logger, log_event, timed
from cinematch.core.settings import Settings
from cinematch.recommender import registry
from cinematch.recommender.batch import RECENT_DAYS
from cinematch.recommender.recommendations import write_recommendations
from cinematch.storage.audit import utcnow
from cinematch.storage.warehouse import batch_table, query_rows, table_exists

log = get_logger(__name__)

CURRENT = "CURRENT"
PREFIX = "views_"
FALLBACK_SIZE = 100  # the API's k is bounded to 100
TRENDING_SIZE = 100
VIEW_TABLES = ("recommendations", "fallback", "trending", "genres", "models", "drift", "buffer",
               "rating_distribution", "content_performance", "movie_details", "meta")  # fmt: skip
_ALIAS = "cm_views"


def _latest_batch(con: duckdb.DuckDBPyConnection) -> str | None:
    rows = con.execute(
        """select p.batch_id from silver.processed_batches p join bronze.ingestion_metadata m using (batch_id)
           where p.kind = 'ratings' order by m.ingestion_date desc, p.batch_id desc limit 1"""
    ).fetchall()
    return rows[0][0] if rows else None


def _reference_batches(con: duckdb.DuckDBPyConnection, champ: dict | None, latest: str | None) -> list[str]:
    if champ is not None:
        return list(champ["batch_ids"])
    rows = con.execute("select batch_id from silver.processed_batches where kind = 'ratings' order by batch_id")
    return [b for (b,) in rows.fetchall() if b != latest]


_PERFORMANCE_COLUMNS = (
    "movie_id, title, views, unique_viewers, total_watch_hours, avg_watch_minutes, runtime_minutes, "
    "completion_rate, completed_views, first_viewed_at, last_viewed_at, views_rank, as_of"
)


def _view_sql(
    version: str | None, latest: str | None, has_performance: bool = True
) -> dict[str, tuple[str, list[Any]]]:
    """One ``select`` per view table (run against the warehouse, written into the attached views file)."""
    v = _ALIAS
    recs_filter = "r.model_version = ?" if version else "false"
    return {
        "recommendations": (
            f"""select r.user_id, r.rank, r.movie_id, coalesce(m.title, 'Unknown movie ' || r.movie_id) as title,
                       coalesce(m.genres, cast([] as varchar[])) as genres, r.score, r.model_version, r.generated_at,
                       coalesce(r.because, '') as because
                from serving.recommendations r left join silver.movies m using (movie_id)
                where {recs_filter}
                order by r.user_id, r.rank""",
            [version] if version else [],
        ),
        "fallback": (
            f"""with rated as (select * from gold.movie_kpis where n_ratings > 0 and not is_placeholder),
                threshold as (
                    select greatest(1, least(50, cast(ceil(quantile_cont(n_ratings, 0.75)) as bigint))) as min_ratings
                    from rated),
                latest as (select max(rated_at) as last_rated from silver.ratings),
                recent as (
                    select s.movie_id, count(*) as n_recent
                    from silver.ratings s cross join latest l
                    where s.rated_at >= l.last_rated - interval {RECENT_DAYS} day
                    group by s.movie_id)
                select cast(row_number() over (order by coalesce(r.n_recent, 0) desc, k.bayesian_rating desc,
                                                        k.popularity_rank) as integer) as rank,
                       k.movie_id, k.title, coalesce(m.genres, cast([] as varchar[])) as genres,
                       cast(coalesce(r.n_recent, 0) as double) as score, k.bayesian_rating, k.n_ratings,
                       k.avg_rating, t.min_ratings,
                       coalesce(r.n_recent, 0) as n_recent
                from rated k cross join threshold t left join silver.movies m using (movie_id)
                     left join recent r using (movie_id)
                where k.n_ratings >= t.min_ratings
                order by rank limit {FALLBACK_SIZE}""",
            [],
        ),
        "trending": (
            f"""select t."window" as window_label, t.window_days, cast(t.trending_rank as integer) as rank, t.movie_id,
                       coalesce(t.title, 'Unknown movie ' || t.movie_id) as title,
                       coalesce(m.genres, cast([] as varchar[])) as genres, t.trending_score, t.n_ratings,
                       t.avg_rating, t.velocity, t.is_new, t.bayesian_rating, t.window_start, t.window_end,
                       t.window_complete, t.as_of
                from gold.trending_movies t left join silver.movies m using (movie_id)
                where t.trending_rank <= {TRENDING_SIZE}
                order by t.window_days, t.trending_rank""",
            [],
        ),
        "genres": (
            """with g as (select * from gold.genre_analytics),
                latest as (select max(month_start) as month_start, max(as_of) as as_of from g),
                alltime as (
                    select genre, sum(n_ratings) as n_ratings, sum(avg_rating * n_ratings) / sum(n_ratings) as avg_rating,
                           count(*) as n_months
                    from g group by genre),
                latest_month as (
                    select g.genre, g.n_ratings, g.avg_rating, g.share_of_ratings
                    from g join latest l on g.month_start = l.month_start)
                select a.genre, a.n_ratings, a.avg_rating, a.n_months, l.month_start as latest_month,
                       coalesce(lm.n_ratings, 0) as latest_n_ratings, lm.avg_rating as latest_avg_rating,
                       coalesce(lm.share_of_ratings, 0.0) as latest_share, l.as_of
                from alltime a cross join latest l left join latest_month lm using (genre)
                order by a.n_ratings desc, a.genre""",
            [],
        ),
        "models": (
            """select version, created_at, status, is_champion, cast(params as varchar) as params,
                      cast(metrics as varchar) as metrics, cast(batch_ids as varchar) as batch_ids, n_train, n_test,
                      cast(promotion as varchar) as promotion,
                      try_cast(metrics->>'rmse' as double) as rmse, try_cast(metrics->>'mae' as double) as mae,
                      try_cast(metrics->>'precision_at_10' as double) as precision_at_10,
                      try_cast(metrics->>'recall_at_10' as double) as recall_at_10,
                      try_cast(metrics->>'ndcg_at_10' as double) as ndcg_at_10
               from ops.model_registry order by version""",
            [],
        ),
        "drift": (
            """select report_id, checked_at, model_version, cast(batch_ids as varchar) as batch_ids, n_reference,
                      n_current, kl_divergence, mean_shift, median_shift, psi, ks_statistic, score,
                      model_rmse_reference, model_rmse_current, model_degradation, decision, should_retrain
               from ops.drift_reports order by checked_at, report_id""",
            [],
        ),
        "buffer": (
            """select batch_id, ingestion_date, kind, record_count, quarantined_count, status,
                      sum(case when kind = 'ratings' and status = 'completed' then record_count else 0 end)
                          over (order by ingestion_date, batch_id rows unbounded preceding) as cumulative_records
               from bronze.ingestion_metadata order by ingestion_date, batch_id""",
            [],
        ),
        "rating_distribution": (
            f"""with bins as (select cast(i as double) / 2 as rating from range(1, 11) t(i)),
                binned as (
                    select least(5.0, greatest(0.5, round(rating * 2) / 2)) as rating,
                           batch_id in (select batch_id from {v}_reference) as in_reference,
                           batch_id = ? as in_latest
                    from silver.ratings
                    where batch_id in (select batch_id from {v}_reference) or batch_id = ?),
                counts as (
                    select rating, count(*) filter (where in_reference) as reference_count,
                           count(*) filter (where in_latest) as latest_count
                    from binned group by rating)
                select b.rating, coalesce(c.reference_count, 0) as reference_count,
                       coalesce(c.latest_count, 0) as latest_count,
                       coalesce(c.reference_count, 0) / greatest(sum(coalesce(c.reference_count, 0)) over (), 1)
                           as reference_share,
                       coalesce(c.latest_count, 0) / greatest(sum(coalesce(c.latest_count, 0)) over (), 1)
                           as latest_share
                from bins b left join counts c using (rating)
                order by b.rating""",
            [latest, latest],
        ),
        # one row per movie: silver.movies, its rating KPIs and the latest TMDB fetch (nulls when not enriched)
        "movie_details": (
            """with tmdb as (
                    select * from (
                        select movie_id, tmdb_id, budget, revenue, runtime, popularity, vote_average, vote_count,
                               release_date, director, top_cast,
                               row_number() over (partition by movie_id order by fetched_at desc, tmdb_id) as pick
                        from silver.tmdb_movies where movie_id is not null) as t
                    where pick = 1)
                select m.movie_id, m.title, m.genres, m.release_year, m.is_placeholder, k.n_ratings, k.avg_rating,
                       k.bayesian_rating, t.tmdb_id, t.budget, t.revenue, t.runtime, t.popularity, t.vote_average,
                       t.vote_count, t.release_date, t.director, t.top_cast
                from silver.movies m left join gold.movie_kpis k using (movie_id) left join tmdb t using (movie_id)
                order by m.movie_id""",
            [],
        ),
        "content_performance": (
            f"""select p.*, coalesce(m.genres, cast([] as varchar[])) as genres
                from (select {_PERFORMANCE_COLUMNS} from gold.content_performance) p
                left join silver.movies m using (movie_id)
                order by p.views_rank"""
            if has_performance
            else """select cast(null as bigint) as movie_id, cast(null as varchar) as title,
                         cast(null as bigint) as views, cast(null as bigint) as unique_viewers,
                         cast(null as double) as total_watch_hours, cast(null as double) as avg_watch_minutes,
                         cast(null as double) as runtime_minutes, cast(null as double) as completion_rate,
                         cast(null as bigint) as completed_views, cast(null as timestamp) as first_viewed_at,
                         cast(null as timestamp) as last_viewed_at, cast(null as bigint) as views_rank,
                         cast(null as timestamp) as as_of, cast([] as varchar[]) as genres
                  from silver.movies where false""",
            [],
        ),
    }


def _require_lakehouse(con: duckdb.DuckDBPyConnection) -> None:
    needed = [("silver", "ratings"), ("silver", "movies"), ("silver", "processed_batches"),
              ("gold", "movie_kpis"), ("gold", "trending_movies"), ("gold", "genre_analytics")]  # fmt: skip
    missing = [f"{s}.{t}" for s, t in needed if not table_exists(con, s, t)]
    if missing:
        raise CineMatchError(
            f"nothing to publish yet ({', '.join(missing)} missing): ingest a batch and run `cinematch etl` first"
        )


def new_views_path(settings: Settings, now: datetime | None = None) -> Path:
    """``views_<UTC stamp>_<random>.duckdb``: sortable by name, unique even within one microsecond."""
    return settings.serving_dir / f"{PREFIX}{(now or utcnow()):%Y%m%dT%H%M%S_%f}Z_{secrets.token_hex(3)}.duckdb"


def current_views(settings: Settings) -> Path | None:
    """The views file ``CURRENT`` names, or None before the first publish (or if it names something odd)."""
    pointer = settings.serving_dir / CURRENT
    try:
        name = pointer.read_text().strip()
    except FileNotFoundError:
        return None
    # CURRENT holds a bare file name; anything else (a path, ..) is ignored rather than followed.
    if not name.startswith(PREFIX) or "/" in name or name != Path(name).name:
        return None
    return settings.serving_dir / name


def _point_current(settings: Settings, path: Path) -> None:
    tmp = settings.serving_dir / f".{CURRENT}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        fh.write(path.name + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, settings.serving_dir / CURRENT)


def _remove_old(settings: Settings, keep: set[str]) -> list[str]:
    """Delete views files except ``keep``; a server still reading one keeps its open handle (POSIX unlink)."""
    removed = []
    for path in sorted(settings.serving_dir.glob(f"{PREFIX}*.duckdb*")):
        if path.name.split(".duckdb")[0] + ".duckdb" in keep:
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path.name)
    return removed


def publish(con: duckdb.DuckDBPyConnection, settings: Settings) -> dict[str, Any]:
    """Materialize every serving view into a new DuckDB file and point ``HOME/serving/CURRENT`` at it.

    Args:
        con: a read-write warehouse connection (``write_session(settings, "publish")``).
        settings: the home to publish into.

    Returns:
        ``path``, ``views_version``, ``model_version`` (None without a champion), ``previous`` views file,
        per-table ``counts`` and the ``removed`` older files.
    """
    _require_lakehouse(con)
    champ = registry.champion(con)
    version = champ["version"] if champ else None
    if version is not None:
        # lists from every user's current history: users and ratings that arrived since training are served
        with timed(log, "publish_recommendations", model_version=version):
            model = registry.load_model(settings, version)
            con.execute("begin transaction")
            try:
                write_recommendations(con, settings, model, version)
                con.execute("commit")
            except BaseException:
                con.execute("rollback")
                raise
    latest = _latest_batch(con)
    reference = _reference_batches(con, champ, latest)
    published_at = utcnow()
    settings.serving_dir.mkdir(parents=True, exist_ok=True)
    path = new_views_path(settings, published_at)
    previous = current_views(settings)

    counts: dict[str, int] = {}
    with timed(log, "publish", path=path.name, model_version=version) as info:
        con.execute(f"attach '{str(path).replace(chr(39), chr(39) * 2)}' as {_ALIAS}")
        try:
            batch_table(con, f"{_ALIAS}_reference", reference)  # empty before the first training run
            performance = table_exists(con, "gold", "content_performance")
            for name, (sql, params) in _view_sql(version, latest, performance).items():
                con.execute(f"create table {_ALIAS}.{name} as {sql}", params)
                counts[name] = con.execute(f"select count(*) from {_ALIAS}.{name}").fetchall()[0][0]
            generated = con.execute(f"select max(generated_at) from {_ALIAS}.recommendations").fetchall()[0][0]
            n_users = con.execute(f"select count(distinct user_id) from {_ALIAS}.recommendations").fetchall()[0][0]
            meta = {
                "views_version": path.stem,
                "published_at": published_at,
                "model_version": version,
                "model_batch_ids": json.dumps(champ["batch_ids"] if champ else []),
                "generated_at": generated,
                "latest_batch": latest,
                "reference_batches": json.dumps(reference),
                "n_users": n_users,
                "counts": json.dumps(counts),
            }
            con.execute(
                f"""create table {_ALIAS}.meta (views_version varchar, published_at timestamp, model_version varchar,
                    model_batch_ids varchar, generated_at timestamp, latest_batch varchar, reference_batches varchar,
                    n_users bigint, counts varchar)"""
            )
            con.execute(f"insert into {_ALIAS}.meta values (?, ?, ?, ?, ?, ?, ?, ?, ?)", list(meta.values()))
            counts["meta"] = 1
            con.execute(f"checkpoint {_ALIAS}")
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.execute(f"detach {_ALIAS}")
            for leftover in (path, path.with_name(path.name + ".wal")):
                leftover.unlink(missing_ok=True)
            raise
        finally:
            with contextlib.suppress(duckdb.Error):
                con.execute(f"drop table if exists {_ALIAS}_reference")
        con.execute(f"detach {_ALIAS}")
        # The file is complete and closed: only now may readers see it.
        _point_current(settings, path)
        keep = {path.name} | ({previous.name} if previous else set())
        removed = _remove_old(settings, keep)
        info.update(users=n_users, removed=len(removed))
    log_event(log, "views_published", path=str(path), model_version=version, users=n_users)
    return {
        "path": str(path),
        "views_version": path.stem,
        "model_version": version,
        "model_batch_ids": champ["batch_ids"] if champ else [],
        "published_at": published_at.replace(tzinfo=UTC).isoformat(),
        "previous": str(previous) if previous else None,
        "counts": counts,
        "users": n_users,
        "removed": removed,
    }


# --------------------------------------------------------------------------------------------- reading side


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
