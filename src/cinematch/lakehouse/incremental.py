"""Incremental gold: rewrite only the rows of a gold model that a run's new ratings can change."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cinematch.core.log import get_logger
from cinematch.lakehouse.sql import gold as gold_sql
from cinematch.storage import sqlgen
from cinematch.storage.protocol import Warehouse
from cinematch.storage.warehouse import batch_table, table_exists

log = get_logger(__name__)


@dataclass(frozen=True)
class Scope:
    """How an incremental run rebuilds only the rows of a gold model that new ratings can change.

    ``affected`` selects the model's key values touched by the new silver rows (temp table ``_gold_new``);
    ``rewrite`` widens them to the keys whose rows change (temporal_trends: the next year's year-over-year
    change too); ``inputs`` filters silver.ratings to what those rows are computed from. The model's own SQL
    then runs on the filtered ratings, so there is still one definition of each table.
    """

    keys: tuple[str, ...]
    affected: str
    inputs: str
    rewrite: str | None = None
    # (first, end, contiguous) of the months the inputs span, as month numbers year * 12 + month - 1 (end
    # exclusive): constant bounds on rated_at let scans skip row groups, and when the keys are contiguous the
    # bounds alone are the filter (a range test per row instead of extracting and matching year and month)
    span: str | None = None


# A scoped rewrite reading more than this share of silver's ratings falls back to a whole rebuild.
_SCOPED_MAX_SHARE = 0.5
_YEAR = "cast(extract(year from rated_at) as integer)"
_MONTH = "cast(extract(month from rated_at) as integer)"

# The way back when a model cannot merge (MERGES below; no replaced rows kept, or genre_analytics without its
# state): its own SQL over the ratings of the touched keys. trending_movies is always rebuilt whole: its windows
# move with every batch.
SCOPES: dict[str, Scope] = {
    "genre_analytics": Scope(
        keys=("year", "month"),
        affected=f"select distinct {_YEAR} as year, {_MONTH} as month from _gold_new",
        inputs=f"({_YEAR}, {_MONTH}) in (select year, month from _gold_keys)",
        span="""select min(year * 12 + month - 1), max(year * 12 + month),
                       count(*) = max(year * 12 + month) - min(year * 12 + month) + 1 from _gold_keys""",
    ),
    "temporal_trends": Scope(
        keys=("year",),
        affected=f"select distinct {_YEAR} as year from _gold_new",
        rewrite="select year from _gold_affected union select year + 1 as year from _gold_affected",
        inputs=f"{_YEAR} in (select year from _gold_keys union select year - 1 as year from _gold_keys)",
        span="select (min(year) - 1) * 12, (max(year) + 1) * 12, count(*) = max(year) - min(year) + 1 from _gold_keys",
    ),
    "user_engagement": Scope(
        keys=("user_id",),
        affected="select distinct user_id from _gold_new",
        inputs="user_id in (select user_id from _gold_keys)",
    ),
}


# Models whose new rows are merged into their old rows by a SQL file of their own (``<model>_merge.sql`` beside
# the models): a weekly batch touches most of their keys (users, years) or all of them (every movie's rank and
# Bayesian rating), so a scoped rewrite would read most of silver. The value is the key whose rows the merge
# returns (None: it returns the whole table). A merge needs ``_silver_replaced``, the silver rows the batches
# replaced (silver.build_silver keeps them), and a test proves each merge equals the full build.
MERGES: dict[str, str | None] = {
    "genre_analytics": None,
    "temporal_trends": None,
    "user_engagement": "user_id",
    "movie_kpis": None,
}


# State a merge keeps beside its model, one row set per user: ``gold.<state>``, built from silver by
# ``<state>.sql`` whenever the model is rebuilt whole, and brought up to date before each merge.
STATES: dict[str, str] = {"user_engagement": "user_genre_masks", "genre_analytics": "user_month_genre_masks"}
# merges that count the bits a batch newly sets, so they need the state as it was before the batch
_NEEDS_OLD_BITS = {"genre_analytics"}


def rebuild_state(con: Warehouse, model: str, as_of: datetime | None) -> None:
    """Build the state of ``model`` (if it keeps one) from silver, as of ``as_of``."""
    if model in STATES:
        con.execute(
            f"create or replace table gold.{STATES[model]} as {sqlgen.substitute(gold_sql.read(STATES[model]), {'as_of': as_of})}"
        )


def drop_states(con: Warehouse) -> None:
    """Forget every state table (gold was built by other means: the next merge rebuilds them from silver)."""
    for state in STATES.values():
        con.execute(f"drop table if exists gold.{state}")


def _update_state(con: Warehouse, model: str, as_of: datetime) -> bool:
    """OR the new rows' bits into the state of ``model``; True when ``_gold_state`` then holds the touched users'
    rows with the bits they had before (``old_mask``), False when the state had to be rebuilt from silver."""
    state = STATES.get(model)
    if state is None:
        return False
    current = (
        table_exists(con, "gold", state)
        and con.execute(
            f"select (select max(as_of) from gold.{state}) = (select max(as_of) from gold.{model})"
        ).fetchall()[0][0]
    )
    if not current:  # missing, or not built with the gold it belongs to
        rebuild_state(con, model, as_of)
        return False
    keys = ", ".join(
        r[0] for r in (con.execute(f"select * from gold.{state} limit 0").description or ())[:-2]
    )  # … mask, as_of
    delta = sqlgen.substitute(gold_sql.read(state).replace("silver.ratings", "_gold_new"), {"as_of": as_of})
    con.execute(
        f"""create or replace temp table _gold_state as
            select {keys}, bit_or(mask) as mask, bit_or(old_mask) as old_mask from (
                select {keys}, mask, mask as old_mask from gold.{state}
                where user_id in (select user_id from _gold_new)
                union all
                select {keys}, mask, 0 as old_mask from ({delta}) as d
            ) as s
            group by {keys}"""
    )
    con.execute(f"delete from gold.{state} where user_id in (select user_id from _gold_state)")
    con.execute(f"update gold.{state} set as_of = ?", [as_of])
    con.execute(f"insert into gold.{state} ({keys}, mask, as_of) select {keys}, mask, ? from _gold_state", [as_of])
    return True


def prepare(con: Warehouse, new_batches: list[str]) -> bool:
    """Stage the new silver rows in ``_gold_new``; False when gold must be rebuilt whole."""
    models = list(dict.fromkeys([*SCOPES, *MERGES]))
    if any(not table_exists(con, "gold", name) for name in models):
        return False
    batch_table(con, "_gold_batches", new_batches)
    # gold must hold every older rating: not so after a backfill pinned to an earlier logical date
    built = [con.execute(f"select min(as_of), max(as_of) from gold.{name}").fetchall()[0] for name in models]
    older = con.execute(
        "select max(rated_at) from silver.ratings where batch_id not in (select batch_id from _gold_batches)"
    ).fetchall()[0][0]
    if older is not None and any(lo is None or lo != hi or lo < older for lo, hi in built):
        con.execute("drop table _gold_batches")
        return False
    con.execute(
        """create or replace temp table _gold_new as
           select user_id, movie_id, rating, rated_at, batch_id
           from silver.ratings where batch_id in (select batch_id from _gold_batches)"""
    )
    con.execute("drop table _gold_batches")
    return True


def finish(con: Warehouse) -> None:
    """Drop what :func:`prepare` and silver staged for this run."""
    for table in ("_gold_new", "_gold_state", "_silver_replaced"):
        con.execute(f"drop table if exists {table}")


def rebuild(con: Warehouse, name: str, sql: str, params: dict[str, Any], as_of: datetime, merge: bool) -> int | None:
    """Rewrite the rows of ``gold.<name>`` the new ratings change; None when the model must be rebuilt whole.

    ``merge``: whether ``_silver_replaced`` holds this run's replaced rows, so the models of MERGES can merge.
    """
    if merge and name in MERGES:
        written = _merge(con, name, MERGES[name], {**params, "as_of": as_of})
        if written is not None:
            return written
    if name in SCOPES:
        written = _rebuild_scoped(con, name, SCOPES[name], sql, params, as_of)
        if written is not None:
            rebuild_state(con, name, as_of)  # (a whole rebuild is followed by one in build_gold)
        return written
    return None


def _merge(con: Warehouse, name: str, key: str | None, params: dict[str, Any]) -> int | None:
    """Merge the new rows into ``gold.<name>``; None (nothing changed) when the merge lacks the old state."""
    tracked = _update_state(con, name, params["as_of"])
    if name in _NEEDS_OLD_BITS and not tracked:
        return None
    since = con.execute("select min(cast(rated_at as date)) from _gold_new").fetchall()[0][0]
    # literals, not parameters: a constant lower bound on rated_at lets the scan skip older row groups
    params["since"] = datetime.combine(since, datetime.min.time())
    params["since_month"] = datetime(since.year, since.month, 1)
    con.execute(
        f"create or replace temp table _gold_merged as {sqlgen.substitute(gold_sql.read(name + '_merge'), params)}"
    )
    columns = ", ".join(r[0] for r in con.execute("select * from _gold_merged limit 0").description or ())
    # insert into the table as it is: its column types stay those of the full build, and columns that other
    # sources add (lakehouse/extras.py) stay in place for them to fill
    con.execute(f"delete from gold.{name}" + (f" where {key} in (select {key} from _gold_merged)" if key else ""))
    con.execute(f"update gold.{name} set as_of = ?", [params["as_of"]])
    con.execute(f"insert into gold.{name} ({columns}) select {columns} from _gold_merged")
    written: int = con.execute("select count(*) from _gold_merged").fetchall()[0][0]
    con.execute("drop table _gold_merged")
    con.execute("drop table if exists _gold_state")
    return written


def _rebuild_scoped(
    con: Warehouse, name: str, scope: Scope, sql: str, params: dict[str, Any], as_of: datetime
) -> int | None:
    """Replace the rows of ``gold.<name>`` whose keys the new ratings touch; returns how many were written.

    Returns None, having changed nothing, when the keys' ratings are most of silver (a weekly batch from nearly
    every user): rebuilding whole is then cheaper than deleting and re-inserting.
    """
    keys = ", ".join(scope.keys)
    con.execute(f"create or replace temp table _gold_affected as {scope.affected}")
    con.execute(f"create or replace temp table _gold_keys as {scope.rewrite or 'select * from _gold_affected'}")
    inputs = scope.inputs
    if scope.span is not None:
        first, end, contiguous = con.execute(scope.span).fetchall()[0]
        if first is not None:
            bounds = f"rated_at >= {_month_start(first)} and rated_at < {_month_start(end)}"
            inputs = bounds if contiguous else f"{bounds} and {inputs}"
    con.execute(f"create or replace temp view _gold_ratings as select * from silver.ratings where {inputs}")
    needed, total = con.execute(
        "select (select count(*) from _gold_ratings), (select count(*) from silver.ratings)"
    ).fetchall()[0]
    if needed > _SCOPED_MAX_SHARE * total:
        _drop_scope(con)
        return None
    scoped_sql = sql.replace("silver.ratings", "_gold_ratings")
    # the model's own columns: a source may have added columns to this table (lakehouse/extras.py), and rebuilds them
    columns = ", ".join(
        r[0] for r in con.execute(f"select * from ({scoped_sql}) as q limit 0", params).description or ()
    )
    con.execute(f"delete from gold.{name} where ({keys}) in (select {keys} from _gold_keys)")
    con.execute(f"update gold.{name} set as_of = ?", [as_of])
    con.execute(
        f"""insert into gold.{name} ({columns})
            select {columns} from ({scoped_sql}) as scoped where ({keys}) in (select {keys} from _gold_keys)""",
        params,
    )
    written: int = con.execute(
        f"select count(*) from gold.{name} where ({keys}) in (select {keys} from _gold_keys)"
    ).fetchall()[0][0]
    _drop_scope(con)
    return written


def _month_start(month_number: int) -> str:
    return sqlgen.literal(datetime(month_number // 12, month_number % 12 + 1, 1))


def _drop_scope(con: Warehouse) -> None:
    for drop in ("view _gold_ratings", "table _gold_keys", "table _gold_affected"):
        con.execute(f"drop {drop}")
