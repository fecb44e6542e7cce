"""Gold layer: business tables built from silver by the SQL models of cinematch/lakehouse/sql/gold."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

from cinematch.core.errors import BadInput, CineMatchError
from cinematch.core.log import get_logger, log_event, timed
from cinematch.lakehouse import incremental
from cinematch.lakehouse.sql import gold as gold_sql
from cinematch.storage.audit import naive_utc
from cinematch.storage.protocol import Warehouse

log = get_logger(__name__)

# Build order is irrelevant (every model reads only silver); the tuple fixes the order of the returned counts.
GOLD_MODELS: tuple[str, ...] = (
    "genre_analytics",
    "trending_movies",
    "temporal_trends",
    "user_engagement",
    "movie_kpis",
)
DEFAULT_PRIOR_WEIGHT = 25.0

# Columns a model gained after warehouses were built with it. Incremental runs insert into the stored table, so a
# table that lacks one is dropped first and rebuilt whole (a merge cannot fill what was never stored).
_ADDED_COLUMNS: dict[str, tuple[str, ...]] = {
    "trending_movies": ("is_new", "window_complete"),
    "temporal_trends": ("prev_period_end", "n_ratings_prev_period", "avg_rating_prev_period"),
}

_PARAM_RE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_LINE_COMMENT_RE = re.compile(r"--[^\n]*")


def load_sql(name: str) -> str:
    """Return the text of the gold model ``name`` (a member of GOLD_MODELS)."""
    if name not in GOLD_MODELS:
        raise BadInput(f"unknown gold model {name!r}; expected one of {', '.join(GOLD_MODELS)}")
    return gold_sql.read(name)


def _sql_params(sql: str) -> set[str]:
    # DuckDB rejects values for parameters a statement does not use, so pass only the ones the model names.
    return set(_PARAM_RE.findall(_LINE_COMMENT_RE.sub("", sql)))


def _require_silver(con: Warehouse) -> None:
    found = {
        row[0]
        for row in con.execute(
            "select table_name from information_schema.tables where table_schema = 'silver' "
            "and table_name in ('ratings', 'movies')"
        ).fetchall()
    }
    missing = sorted({"ratings", "movies"} - found)
    if missing:
        raise CineMatchError(f"missing {', '.join('silver.' + m for m in missing)}; build the silver layer first")


def outdated_tables(con: Warehouse) -> list[str]:
    """The gold tables an older version built without a column their model has now (they need a whole rebuild)."""
    outdated = []
    for name, added in _ADDED_COLUMNS.items():
        have = {r[0] for r in con.execute(
            "select column_name from information_schema.columns where table_schema = 'gold' and table_name = ?",
            [name]).fetchall()}  # fmt: skip
        if have and not set(added) <= have:
            outdated.append(name)
    return outdated


def _drop_outdated(con: Warehouse) -> list[str]:
    """Drop the :func:`outdated_tables`; returns their names."""
    dropped = outdated_tables(con)
    for name in dropped:
        con.execute(f"drop table gold.{name}")
    if dropped:
        log_event(log, "gold_outdated_dropped", tables=",".join(dropped), reason="built before their new columns")
    return dropped


def build_gold(
    con: Warehouse,
    as_of: datetime | None = None,
    prior_weight: float = DEFAULT_PRIOR_WEIGHT,
    new_batches: list[str] | None = None,
    replaced: bool = False,
) -> dict[str, int]:
    """(Re)create every gold table with CREATE OR REPLACE TABLE gold.<name> AS <sql>; returns row counts.

    ``as_of`` is the run's logical date (default: newest silver rated_at); every model ignores ratings after
    it. Runs inside the caller's transaction (no BEGIN/COMMIT here), so a failed check can roll it all back.

    ``new_batches``: the ratings batches merged into silver since gold was last built. When given, the models of
    ``incremental.SCOPES`` rewrite only the keys those ratings touch (the caller guarantees gold is otherwise
    current: same movies, no logical date, nothing else changed); the result equals a full rebuild.
    ``replaced``: silver kept the rows those batches replaced in ``_silver_replaced``, so the models of
    ``incremental.MERGES`` merge the new rows into their old ones instead.
    """
    if not math.isfinite(prior_weight) or prior_weight < 0:
        raise BadInput(f"prior_weight must be a finite number >= 0, got {prior_weight!r}")
    _require_silver(con)
    as_of = naive_utc(as_of)  # silver timestamps are naive UTC
    if as_of is None:
        # Resolved once here so every model and the log agree; the SQL's own default covers direct use.
        as_of = con.execute("select max(rated_at) from silver.ratings").fetchall()[0][0]
    params: dict[str, Any] = {"as_of": as_of, "prior_weight": float(prior_weight)}
    con.execute("create schema if not exists gold")
    _drop_outdated(con)  # (then incremental.prepare finds a table missing and gold is rebuilt whole)
    scoped = new_batches is not None and incremental.prepare(con, new_batches)
    counts: dict[str, int] = {}
    with timed(log, "gold_build", as_of=as_of, prior_weight=prior_weight, scoped=bool(scoped)) as info:
        for name in GOLD_MODELS:
            sql = load_sql(name)
            used = {k: v for k, v in params.items() if k in _sql_params(sql)}
            with timed(log, "gold_model", model=name) as model_info:
                written = incremental.rebuild(con, name, sql, used, as_of, replaced) if scoped else None
                if written is None:
                    con.execute(f"create or replace table gold.{name} as\n{sql}", used)
                    incremental.rebuild_state(con, name, as_of)
                else:
                    model_info["rewritten"] = written
                counts[name] = con.execute(f"select count(*) from gold.{name}").fetchall()[0][0]
                model_info["rows"] = counts[name]
        info["tables"] = len(counts)
    incremental.finish(con)
    return counts
