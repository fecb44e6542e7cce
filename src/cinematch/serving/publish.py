"""Publishing the serving views: every view into a new read-only DuckDB file, then ``CURRENT`` names it.

Publishing without a champion still publishes: ``recommendations`` is empty, every user gets ``fallback`` and
``model_version`` is null, so the API can serve cold-start lists from the first ETL on.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import UTC

import duckdb

from cinematch.core.errors import CineMatchError
from cinematch.core.log import get_logger, log_event, timed
from cinematch.core.results import Result
from cinematch.core.settings import Settings
from cinematch.recommender import registry
from cinematch.recommender.recommendations import write_recommendations
from cinematch.serving.early_views import UserViews
from cinematch.serving.layout import (
    PREFIX,
    attach_views,
    current_views,
    drop_views_file,
    new_views_path,
    point_current,
)
from cinematch.serving.view_sql import ALIAS, view_sql
from cinematch.storage.audit import utcnow
from cinematch.storage.protocol import Warehouse
from cinematch.storage.warehouse import batch_table, table_exists

__all__ = ["publish"]

log = get_logger(__name__)


@dataclass(eq=False)
class Publication(Result):
    """One `cinematch publish`: the new views file, the champion it serves, per-view row counts, files removed."""

    path: str
    views_version: str
    model_version: str | None
    model_batch_ids: list[str]
    published_at: str
    previous: str | None
    counts: dict[str, int]
    users: int
    removed: list[str]


def _latest_batch(con: Warehouse) -> str | None:
    rows = con.execute(
        """select p.batch_id from silver.processed_batches p join bronze.ingestion_metadata m using (batch_id)
           where p.kind = 'ratings' order by m.ingestion_date desc, p.batch_id desc limit 1"""
    ).fetchall()
    return rows[0][0] if rows else None


def _reference_batches(con: Warehouse, champ: registry.ModelRecord | None, latest: str | None) -> list[str]:
    if champ is not None:
        return list(champ.batch_ids)
    rows = con.execute("select batch_id from silver.processed_batches where kind = 'ratings' order by batch_id")
    return [b for (b,) in rows.fetchall() if b != latest]


def _require_lakehouse(con: Warehouse) -> None:
    needed = [("silver", "ratings"), ("silver", "movies"), ("silver", "processed_batches"),
              ("gold", "movie_kpis"), ("gold", "trending_movies"), ("gold", "genre_analytics")]  # fmt: skip
    missing = [f"{s}.{t}" for s, t in needed if not table_exists(con, s, t)]
    if missing:
        raise CineMatchError(
            f"nothing to publish yet ({', '.join(missing)} missing): ingest a batch and run `cinematch etl` first"
        )


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


def publish(
    con: Warehouse, settings: Settings, lists_current: bool = False, early: UserViews | None = None
) -> Publication:
    """Materialize every serving view into a new DuckDB file and point ``HOME/serving/CURRENT`` at it.

    Args:
        con: a read-write warehouse connection (``write_session(settings, "publish")``).
        settings: the home to publish into.
        lists_current: the caller has just written the champion's lists from the current silver ratings (a
            training that promoted, with nothing ingested since), so they are not rebuilt (at 25M ratings that
            re-check cost 7 s); ignored unless ``serving.recommendations`` holds the champion's lists.
        early: the user views already being written into the new views file since ETL
            (serving/early_views.py); this publish writes the other views into that file and waits for them.

    Returns:
        ``path``, ``views_version``, ``model_version`` (None without a champion), ``previous`` views file,
        per-table ``counts`` and the ``removed`` older files.
    """
    _require_lakehouse(con)
    champ = registry.champion(con)
    version = champ["version"] if champ else None
    if lists_current and version is not None:
        held = con.execute("select count(*) from serving.recommendations where model_version = ?", [version])
        lists_current = held.fetchall()[0][0] > 0
    if version is not None and not lists_current:
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
    path = early.path if early is not None else new_views_path(settings, published_at)
    previous = current_views(settings)

    counts: dict[str, int] = {}
    with timed(log, "publish", path=path.name, model_version=version) as info:
        if early is not None:
            early.consumed = True  # attached already; removed below if this publish fails
        else:
            attach_views(con, path, ALIAS)
        try:
            batch_table(con, f"{ALIAS}_reference", reference)  # empty before the first training run
            performance = table_exists(con, "gold", "content_performance")
            users = early.has_users if early is not None else table_exists(con, "silver", "users")  # viewing users
            native = isinstance(con, duckdb.DuckDBPyConnection)  # PostgreSQL reads the same views in its own SQL
            for name, (sql, params) in view_sql(version, latest, performance, users, duckdb=native).items():
                if early is not None and name in early.tables:
                    continue
                con.execute(f"create table {ALIAS}.{name} as {sql}", params)
                counts[name] = con.execute(f"select count(*) from {ALIAS}.{name}").fetchall()[0][0]
            if early is not None:
                counts.update(early.wait())
            generated = con.execute(f"select max(generated_at) from {ALIAS}.recommendations").fetchall()[0][0]
            n_users = con.execute(f"select count(distinct user_id) from {ALIAS}.recommendations").fetchall()[0][0]
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
                f"""create table {ALIAS}.meta (views_version varchar, published_at timestamp, model_version varchar,
                    model_batch_ids varchar, generated_at timestamp, latest_batch varchar, reference_batches varchar,
                    n_users bigint, counts varchar)"""
            )
            con.execute(f"insert into {ALIAS}.meta values (?, ?, ?, ?, ?, ?, ?, ?, ?)", list(meta.values()))
            counts["meta"] = 1
            con.execute(f"checkpoint {ALIAS}")
        except BaseException:
            if early is not None:
                early.stop()
            drop_views_file(con, path, ALIAS)
            raise
        finally:
            with contextlib.suppress(duckdb.Error):
                con.execute(f"drop table if exists {ALIAS}_reference")
        con.execute(f"detach {ALIAS}")
        # The file is complete and closed: only now may readers see it.
        point_current(settings, path)
        keep = {path.name} | ({previous.name} if previous else set())
        removed = _remove_old(settings, keep)
        info.update(users=n_users, removed=len(removed))
    log_event(log, "views_published", path=str(path), model_version=version, users=n_users)
    return Publication(
        path=str(path),
        views_version=path.stem,
        model_version=version,
        model_batch_ids=champ["batch_ids"] if champ else [],
        published_at=published_at.replace(tzinfo=UTC).isoformat(),
        previous=str(previous) if previous else None,
        counts=counts,
        users=n_users,
        removed=removed,
    )
