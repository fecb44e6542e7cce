"""Viewing sessions, users and content metadata: silver and gold tables and their checks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cinematch.core.log import get_logger, timed
from cinematch.lakehouse.quality import Check
from cinematch.storage.warehouse import batch_table

log = get_logger(__name__)

LAKE_TABLES: tuple[str, ...] = ("silver.users", "silver.sessions", "silver.content", "gold.content_performance")

# Engagement columns this source adds to gold.user_engagement (0 / null for users without sessions).
ENGAGEMENT_COLUMNS = ("n_sessions", "watch_hours", "avg_watch_minutes", "movies_watched", "avg_completion_rate",
                      "last_watched_at")  # fmt: skip
COMPLETED_SHARE = 0.9  # a view counts as completed from 90% of the runtime on

_LATEST = "row_number() over (partition by {key} order by ingested_at desc, batch_id desc) = 1"
_CONTENT_COLS = ("movie_id, title, runtime_minutes, release_date, genres, languages, production__studio, "
                 "production__country, production__budget_usd, cast__name, cast__character, extra")  # fmt: skip
_SESSION_COLS = "session_id, user_id, movie_id, started_at, watch_seconds, device, extra, batch_id, ingested_at"


def _dimension_sql(table: str, cols: str, key: str) -> str:
    """Latest ingestion per key; keys whose bronze batches retention removed keep their silver row."""
    return f"""
with buffer as (select {cols}, batch_id, ingested_at from bronze.{table}),
pruned as (
    select {cols}, batch_id, ingested_at from silver.{table}
    where batch_id not in (select distinct batch_id from bronze.{table})
),
unioned as (select * from buffer union all select * from pruned),
final as (select * from unioned qualify {_LATEST.format(key=key)})
select * from final
"""


def build_silver(con: Any, batches: list[dict[str, Any]], full_refresh: bool) -> dict[str, int]:
    """Build silver.users/content (small: rebuilt) and merge new sessions batches (inside the caller's transaction).

    Sessions: the newest ingestion of a ``session_id`` wins, incrementally exactly as in a full refresh.
    """
    session_batches = [b["batch_id"] for b in batches if b["kind"] == "sessions"]
    with timed(log, "silver_viewing", full_refresh=full_refresh, session_batches=len(session_batches)) as info:
        for table, cols, key in (("users", "user_id, signup_date, country, age_group, subscription, extra", "user_id"),
                                 ("content", _CONTENT_COLS, "movie_id")):  # fmt: skip
            con.execute(f"create or replace temp table _cm_dim as {_dimension_sql(table, cols, key)}")
            con.execute(f"delete from silver.{table}")
            con.execute(f"insert into silver.{table} select * from _cm_dim")
            con.execute("drop table _cm_dim")
        if full_refresh:
            full = _dimension_sql("sessions", _SESSION_COLS.rsplit(", batch_id", 1)[0], "session_id")
            con.execute(f"create or replace temp table _cm_sessions as {full}")
            con.execute("delete from silver.sessions")
            con.execute("insert into silver.sessions select * from _cm_sessions")
            con.execute("drop table _cm_sessions")
        elif session_batches:
            batch_table(con, "_cm_wanted", session_batches)
            con.execute(
                f"""create or replace temp table _cm_sessions as
                    select {_SESSION_COLS} from bronze.sessions
                    where batch_id in (select batch_id from _cm_wanted)
                    qualify {_LATEST.format(key="session_id")}"""
            )
            con.execute("delete from silver.sessions where session_id in (select session_id from _cm_sessions)")
            con.execute("insert into silver.sessions select * from _cm_sessions")
            con.execute("drop table _cm_sessions")
            con.execute("drop table _cm_wanted")
        counts = dict(zip(("users", "sessions", "content"), con.execute(
            """select (select count(*) from silver.users), (select count(*) from silver.sessions),
                      (select count(*) from silver.content)""").fetchall()[0], strict=True))  # fmt: skip
        info.update(counts)
    return counts


_PERFORMANCE_SQL = f"""
with
sessions as (select * from silver.sessions where started_at <= $as_of),
runtimes as (
    -- content metadata's runtime; completion is unknown (null) for a movie without one
    select movie_id, title, runtime_minutes from silver.content
),
scored as (
    select s.movie_id, s.user_id, s.watch_seconds, s.started_at, r.runtime_minutes,
           -- least() skips nulls (DuckDB and PostgreSQL alike): an unknown runtime must stay unknown
           case when r.runtime_minutes is not null
                then least(s.watch_seconds / (r.runtime_minutes * 60), 1.0) end as completion
    from sessions as s left join runtimes as r on s.movie_id = r.movie_id
),
per_movie as (
    select movie_id, count(*) as views, count(distinct user_id) as unique_viewers,
           sum(watch_seconds) / 3600.0 as total_watch_hours, avg(watch_seconds) / 60.0 as avg_watch_minutes,
           max(runtime_minutes) as runtime_minutes, avg(completion) as completion_rate,
           sum(case when completion >= {COMPLETED_SHARE} then 1 else 0 end) as completed_views,
           min(started_at) as first_viewed_at, max(started_at) as last_viewed_at
    from scored group by movie_id
),
final as (
    select p.movie_id, coalesce(r.title, m.title) as title, p.views, p.unique_viewers,
           cast(p.total_watch_hours as double) as total_watch_hours,
           cast(p.avg_watch_minutes as double) as avg_watch_minutes, p.runtime_minutes,
           cast(p.completion_rate as double) as completion_rate, cast(p.completed_views as bigint) as completed_views,
           p.first_viewed_at, p.last_viewed_at,
           row_number() over (order by p.views desc, p.movie_id) as views_rank, cast($as_of as timestamp) as as_of
    from per_movie as p
    left join runtimes as r on p.movie_id = r.movie_id
    left join silver.movies as m on p.movie_id = m.movie_id
)
select * from final
"""

_ENGAGEMENT_SQL = """
select s.user_id, count(*) as n_sessions, sum(s.watch_seconds) / 3600.0 as watch_hours,
       avg(s.watch_seconds) / 60.0 as avg_watch_minutes, count(distinct s.movie_id) as movies_watched,
       avg(case when c.runtime_minutes is not null
                then least(s.watch_seconds / (c.runtime_minutes * 60), 1.0) end) as avg_completion_rate,
       max(s.started_at) as last_watched_at
from silver.sessions as s left join silver.content as c on s.movie_id = c.movie_id
where s.started_at <= $as_of
group by s.user_id
"""


def _resolve_as_of(con: Any, as_of: datetime | None) -> datetime | None:
    if as_of is not None:
        return as_of.astimezone(UTC).replace(tzinfo=None) if as_of.tzinfo else as_of
    # the ratings gold's as_of (newest rating), so both halves of user_engagement agree; else the newest session
    newest: datetime | None = con.execute(
        """select coalesce((select max(as_of) from gold.movie_kpis), (select max(rated_at) from silver.ratings),
                           (select max(started_at) from silver.sessions))"""
    ).fetchall()[0][0]
    return newest


def build_gold(con: Any, as_of: datetime | None) -> dict[str, int]:
    """gold.content_performance, and viewing columns joined onto gold.user_engagement (caller's transaction)."""
    as_of = _resolve_as_of(con, as_of) or datetime(1970, 1, 1)
    with timed(log, "gold_viewing", as_of=as_of) as info:
        con.execute("delete from gold.content_performance")
        con.execute("insert into gold.content_performance " + _PERFORMANCE_SQL, {"as_of": as_of})
        n = con.execute("select count(*) from gold.content_performance").fetchall()[0][0]
        base = [r[0] for r in con.execute(
            """select column_name from information_schema.columns
               where table_schema = 'gold' and table_name = 'user_engagement' order by ordinal_position""").fetchall()
                if r[0] not in ENGAGEMENT_COLUMNS]  # fmt: skip
        if base:
            keep = ", ".join(f"u.{c}" for c in base)
            con.execute(
                f"""create or replace temp table _cm_engagement as
                    with v as ({_ENGAGEMENT_SQL})
                    select {keep}, coalesce(v.n_sessions, 0) as n_sessions,
                           cast(coalesce(v.watch_hours, 0.0) as double) as watch_hours,
                           cast(v.avg_watch_minutes as double) as avg_watch_minutes,
                           coalesce(v.movies_watched, 0) as movies_watched,
                           cast(v.avg_completion_rate as double) as avg_completion_rate, v.last_watched_at
                    from gold.user_engagement as u left join v on u.user_id = v.user_id""",
                {"as_of": as_of},
            )
            con.execute("create or replace table gold.user_engagement as select * from _cm_engagement")
            con.execute("drop table _cm_engagement")
        info["rows"] = n
    return {"content_performance": n}


# --- checks -------------------------------------------------------------------------------------------------


def _unique(table: str, key: str) -> Check:
    return Check(f"{table.split('.')[1]}.unique_key", table,
                 f"select {key}, count(*) as n from {table} group by {key} having count(*) > 1 or {key} is null",
                 description=f"one row per {key}, never null")  # fmt: skip


SILVER_CHECKS: tuple[Check, ...] = (
    _unique("silver.users", "user_id"),
    _unique("silver.sessions", "session_id"),
    _unique("silver.content", "movie_id"),
    Check(
        "sessions.not_null",
        "silver.sessions",
        """select * from silver.sessions where user_id is null or movie_id is null or started_at is null
           or watch_seconds is null or batch_id is null""",
    ),
    Check(
        "sessions.no_negative_durations",
        "silver.sessions",
        "select session_id, watch_seconds from silver.sessions where watch_seconds < 0",
        description="watch_seconds >= 0",
    ),
    Check(
        "sessions.user_exists",
        "silver.sessions",
        "select s.session_id, s.user_id from silver.sessions s anti join silver.users u using (user_id)",
        description="relationship: every session's user is in silver.users (ingest the users file)",
    ),
    Check(
        "sessions.movie_exists",
        "silver.sessions",
        """select s.session_id, s.movie_id from silver.sessions s
           where s.movie_id not in (select movie_id from silver.movies)
             and s.movie_id not in (select movie_id from silver.content)""",
        description="relationship: every session's movie is in silver.movies or silver.content",
    ),
    Check(
        "content.runtime_positive",
        "silver.content",
        "select movie_id, runtime_minutes from silver.content where runtime_minutes <= 0",
        description="runtime_minutes > 0 where known (completion rates divide by it)",
    ),
)

GOLD_CHECKS: tuple[Check, ...] = (
    _unique("gold.content_performance", "movie_id"),
    Check(
        "content_performance.completion_rate_in_unit_interval",
        "gold.content_performance",
        "select movie_id, completion_rate from gold.content_performance where completion_rate < 0 or completion_rate > 1",
        description="completion rate within 0-1 (per session capped at 1, null without a runtime)",
    ),
    Check(
        "content_performance.counts_valid",
        "gold.content_performance",
        """select * from gold.content_performance where views is null or views < 1 or unique_viewers < 1
           or unique_viewers > views or completed_views < 0 or completed_views > views or total_watch_hours < 0
           or avg_watch_minutes < 0""",
        description="views >= unique viewers >= 1, completed views <= views, no negative watch time",
    ),
    Check(
        "content_performance.reconciles_with_silver",
        "gold.content_performance",
        """with expected as (
               select count(*) as n from silver.sessions
               where started_at <= (select max(as_of) from gold.content_performance)),
           actual as (select coalesce(sum(views), 0) as n from gold.content_performance)
           select e.n as expected, a.n as actual from expected e cross join actual a where e.n <> a.n""",
        description="sum of views == silver sessions up to as_of",
    ),
    Check(
        "user_engagement.viewing_valid",
        "gold.user_engagement",
        """select user_id, n_sessions, watch_hours from gold.user_engagement
           where n_sessions is null or n_sessions < 0 or watch_hours is null or watch_hours < 0
           or (n_sessions = 0 and (watch_hours <> 0 or avg_watch_minutes is not null))
           or avg_completion_rate < 0 or avg_completion_rate > 1""",
        description="viewing columns: 0 without sessions, no negative watch time, completion within 0-1",
    ),
)
