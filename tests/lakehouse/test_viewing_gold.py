"""Viewing silver and gold: hand-computed KPIs, each gate tripped, idempotent reruns, incremental = full refresh."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cinematch.core.errors import QualityGateFailed
from cinematch.core.settings import Settings
from cinematch.ingest.bronze import ingest_file
from cinematch.lakehouse import viewing
from cinematch.lakehouse.etl import run_etl
from cinematch.lakehouse.quality import failures, run_checks
from cinematch.storage.warehouse import write_session

JAN = 1704067200  # 2024-01-01T00:00:00Z
MOVIES = "movieId,title,genres\n1,Heat (1995),Action|Crime\n2,Quiet (2001),Drama\n3,Storm (2010),Horror\n"
# the newest rating (user 5, Jan 10) fixes gold's as_of
RATINGS = "userId,movieId,rating,timestamp\n" + "".join(
    f"{u},{m},{r},{JAN + d * 86400}\n"
    for u, m, r, d in ((1, 1, 4.0, 3), (2, 1, 3.0, 4), (3, 3, 5.0, 5), (5, 2, 2.0, 9))
)
USERS = "user_id,signup_date,country,age_group,subscription\n1,2023-01-01,US,25-34,premium\n2,2023-02-01,GB,18-24,free\n" \
        "3,2023-03-01,DE,35-44,basic\n4,2023-04-01,FR,55+,basic\n"  # fmt: skip
CONTENT = [{"movie_id": 1, "title": "Heat", "runtime_minutes": 100}, {"movie_id": 2, "title": "Quiet",
           "runtime_minutes": 50}, {"movie_id": 3, "title": "Storm"}]  # fmt: skip
# watched share of the runtime: a 0.5, b 1.1 (capped to 1), c 1.0, d 0.5, e unknown (no runtime); f after as_of
SESSIONS = """session_id,user_id,movie_id,started_at,watch_seconds,device
a,1,1,2024-01-05T10:00:00Z,3000,tv
b,2,1,2024-01-06T10:00:00Z,6600,web
c,1,1,2024-01-07T10:00:00Z,6000,tv
d,1,2,2024-01-08T10:00:00Z,1500,mobile
e,3,3,2024-01-09T10:00:00Z,600,tv
f,2,2,2024-02-01T10:00:00Z,3000,tv
"""


def _load(con, tmp_path: Path, sessions: str = SESSIONS, name: str = "sessions.csv") -> None:
    files = {"movies.csv": MOVIES, "ratings.csv": RATINGS, "users.csv": USERS, "content.json": json.dumps(CONTENT)}
    for file, text in files.items():
        (tmp_path / file).write_text(text)
    ingest_file(con, tmp_path / "movies.csv", kind="movies")
    ingest_file(con, tmp_path / "ratings.csv")
    ingest_file(con, tmp_path / "users.csv", kind="users")
    ingest_file(con, tmp_path / "content.json", kind="content")
    (tmp_path / name).write_text(sessions)
    ingest_file(con, tmp_path / name, kind="sessions")


def _rows(con, sql: str) -> list[tuple]:
    return [tuple(round(v, 9) if isinstance(v, float) else v for v in r) for r in con.execute(sql).fetchall()]


def test_kpis_match_hand_computed_values(home: Settings, tmp_path: Path) -> None:
    with write_session(home) as con:
        _load(con, tmp_path)
        run = run_etl(con, home)
        assert run["layers"]["silver"]["rows"]["sessions"] == 6
        assert run["layers"]["gold"]["rows"]["content_performance"] == 3
        perf = _rows(
            con,
            """select movie_id, title, views, unique_viewers, total_watch_hours, avg_watch_minutes,
                                    runtime_minutes, completion_rate, completed_views, views_rank, as_of
                             from gold.content_performance order by movie_id""",
        )
        as_of = datetime(2024, 1, 10)
        assert perf == [
            # movie 1: a, b, c -> 15600 s; completion (0.5 + 1 + 1) / 3; b and c reach 90%
            (1, "Heat", 3, 2, round(15600 / 3600, 9), round(15600 / 3 / 60, 9), 100.0, round(2.5 / 3, 9), 2, 1, as_of),
            (2, "Quiet", 1, 1, round(1500 / 3600, 9), 25.0, 50.0, 0.5, 0, 2, as_of),  # f is after as_of
            (3, "Storm", 1, 1, round(600 / 3600, 9), 10.0, None, None, 0, 3, as_of),  # no runtime: no completion
        ]
        engagement = _rows(
            con,
            """select user_id, n_ratings, n_sessions, watch_hours, avg_watch_minutes,
                                          movies_watched, avg_completion_rate
                                   from gold.user_engagement order by user_id""",
        )
        assert engagement == [
            (1, 1, 3, round(10500 / 3600, 9), round(10500 / 3 / 60, 9), 2, round(2 / 3, 9)),
            (2, 1, 1, round(6600 / 3600, 9), 110.0, 1, 1.0),
            (3, 1, 1, round(600 / 3600, 9), 10.0, 1, None),
            (5, 1, 0, 0.0, None, 0, None),  # rated, never watched; user 4 watched and rated nothing: no row
        ]
        assert _rows(con, "select user_id, country from silver.users order by user_id")[0] == (1, "US")
    lake = home.lake_dir / "gold" / "content_performance"
    assert pq.read_table(lake).num_rows == 3


def test_rerun_is_idempotent_and_incremental_equals_full_refresh(home: Settings, tmp_path: Path) -> None:
    tables = ("silver.sessions", "silver.users", "silver.content", "gold.content_performance")
    order = {"silver.sessions": "session_id", "silver.users": "user_id"}

    def snap(con):
        return {
            t: _rows(con, f"select * exclude (ingested_at) from {t} order by {order.get(t, 'movie_id')}")
            if t.startswith("silver")
            else _rows(con, f"select * from {t} order by movie_id")
            for t in tables
        }

    with write_session(home) as con:
        _load(con, tmp_path, SESSIONS.split("\nd,")[0] + "\n")  # a, b, c first
        run_etl(con, home, write_lake=False)
        # a second batch re-delivers c with a new duration (the newer ingestion wins) and adds d, e, f
        later = "session_id,user_id,movie_id,started_at,watch_seconds,device\nc,1,1,2024-01-07T10:00:00Z,4500,tv\n" \
                + "\n".join(SESSIONS.splitlines()[4:]) + "\n"  # fmt: skip
        (tmp_path / "later.csv").write_text(later)
        assert ingest_file(con, tmp_path / "later.csv", kind="sessions").inserted == 4
        run_etl(con, home, write_lake=False)
        incremental = snap(con)
        assert _rows(con, "select watch_seconds from silver.sessions where session_id = 'c'") == [(4500.0,)]
        assert ingest_file(con, tmp_path / "later.csv", kind="sessions").skipped
        again = run_etl(con, home, write_lake=False)
        assert again["up_to_date"] and snap(con) == incremental
        run_etl(con, home, full_refresh=True, write_lake=False)
        assert snap(con) == incremental
        assert _rows(con, "select views, completed_views from gold.content_performance where movie_id = 1") == [(3, 1)]


def _gate_fails(con, home: Settings, check: str, full_refresh: bool = False) -> None:
    with pytest.raises(QualityGateFailed, match=check):
        run_etl(con, home, full_refresh=full_refresh, write_lake=False)


def test_relationship_gates_stop_silver(home: Settings, tmp_path: Path) -> None:
    with write_session(home) as con:
        _load(con, tmp_path, SESSIONS + "g,99,1,2024-01-09T11:00:00Z,60,tv\n")
        _gate_fails(con, home, "sessions.user_exists")
        assert con.execute("select count(*) from silver.sessions").fetchall() == [(0,)]  # rolled back
    with write_session(home) as con:
        con.execute("delete from bronze.sessions where user_id = 99")
        (tmp_path / "m.csv").write_text("session_id,user_id,movie_id,started_at,watch_seconds\nh,1,999,2024-01-09,60\n")
        ingest_file(con, tmp_path / "m.csv", kind="sessions")
        _gate_fails(con, home, "sessions.movie_exists", full_refresh=True)


def test_negative_duration_gate(home: Settings, tmp_path: Path) -> None:
    with write_session(home) as con:
        _load(con, tmp_path)
        # ingestion quarantines negative durations, so the crafted row goes straight into bronze
        con.execute("""insert into bronze.sessions values ('neg', 1, 1, timestamp '2024-01-09 12:00:00', -5, 'tv',
                       null, 'sessions', null, timestamp '2024-01-09 12:00:00')""")
        _gate_fails(con, home, "sessions.no_negative_durations", full_refresh=True)


def test_unique_and_not_null_checks_catch_corrupt_silver(home: Settings, tmp_path: Path) -> None:
    with write_session(home) as con:
        _load(con, tmp_path)
        run_etl(con, home, write_lake=False)
        assert failures(run_checks(con, viewing.SILVER_CHECKS)) == []
        con.execute("insert into silver.sessions select * from silver.sessions where session_id = 'a'")
        con.execute("insert into silver.users select * from silver.users where user_id = 1")
        con.execute("insert into silver.content select * from silver.content where movie_id = 2")
        failed = {r.check.name for r in failures(run_checks(con, viewing.SILVER_CHECKS))}
        assert failed == {"sessions.unique_key", "users.unique_key", "content.unique_key"}


def test_gold_gates(home: Settings, tmp_path: Path) -> None:
    with write_session(home) as con:
        _load(con, tmp_path)
        run_etl(con, home, write_lake=False)
        assert failures(run_checks(con, viewing.GOLD_CHECKS)) == []
        # a corrupt runtime (ingestion refuses it) makes a completion rate negative: the 0-1 gate trips
        con.execute("update silver.content set runtime_minutes = -100 where movie_id = 1")
        viewing.build_gold(con, None)
        failed = {r.check.name for r in failures(run_checks(con, viewing.GOLD_CHECKS))}
        assert failed == {"content_performance.completion_rate_in_unit_interval", "user_engagement.viewing_valid"}
        assert {r.check.name for r in failures(run_checks(con, viewing.SILVER_CHECKS))} == {"content.runtime_positive"}
        con.execute("update silver.content set runtime_minutes = 100 where movie_id = 1")
        viewing.build_gold(con, None)
        con.execute("delete from gold.content_performance where movie_id = 3")
        con.execute("update gold.content_performance set unique_viewers = 9 where movie_id = 1")
        failed = {r.check.name for r in failures(run_checks(con, viewing.GOLD_CHECKS))}
        assert failed == {"content_performance.counts_valid", "content_performance.reconciles_with_silver"}
