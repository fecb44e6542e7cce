"""The warehouse on a real PostgreSQL 15 server: same results as DuckDB, COPY ingestion, concurrency, kills, secrets."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.conftest import make_ratings

from cinematch.core.settings import Settings
from cinematch.datasets.generate import generate_tables
from cinematch.datasets.generate_config import GenerateConfig
from cinematch.datasets.generate_files import write_tables

pytestmark = pytest.mark.postgres

GOLD = ("genre_analytics", "trending_movies", "temporal_trends", "user_engagement", "movie_kpis")
GOLD_KEYS = {
    "genre_analytics": ["genre", "year", "month"],
    "trending_movies": ["movie_id", "window_days"],
    "temporal_trends": ["year", "genre"],
    "user_engagement": ["user_id"],
    "movie_kpis": ["movie_id"],
}
COUNTED = (
    "bronze.ratings_buffer", "bronze.ingestion_metadata", "bronze.quarantine", "bronze.movies", "silver.ratings",
    "silver.movies", "silver.processed_batches", "ops.training_batches", "ops.model_registry", "ops.drift_reports",
    "serving.recommendations", *(f"gold.{g}" for g in GOLD),
)  # fmt: skip


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pgdata")
    write_tables(generate_tables(GenerateConfig(users=300, movies=200, ratings=8000, weeks=3, seed=3)), out)
    return out


def _settings(home: Path, url: str | None) -> Settings:
    # small ALS so the cycle is quick; a low drift minimum so the weekly batches reach the retrain decision
    return Settings(home=home, database_url=url, als_rank=8, als_iterations=4, drift_min_records=20,
                    retention_silver_days=30, retention_gold_days=30)  # fmt: skip


def _cycle(settings: Settings, data: Path) -> dict:
    """ingest → etl → train → (ingest → etl → drift/retrain) x3 → publish; everything worth comparing."""
    from cinematch.ingest.bronze import buffer_status, ingest_file
    from cinematch.lakehouse.etl import run_etl
    from cinematch.lakehouse.retention import apply_retention
    from cinematch.pipelines.retrain import drift_and_retrain
    from cinematch.recommender.training import params_from_settings, train_warehouse
    from cinematch.serving.publish import publish
    from cinematch.storage.warehouse import write_session

    out: dict = {"ingest": [], "drift": []}
    with write_session(settings, "test cycle") as con:
        out["ingest"].append(ingest_file(con, data / "movies.csv", kind="movies").inserted)
        out["ingest"].append(ingest_file(con, data / "ratings.parquet", batch_id="base").inserted)
        out["etl"] = run_etl(con, settings)["layers"]["gold"]["rows"]
        first = train_warehouse(con, settings, params_from_settings(settings))
        out["train"] = {k: first[k] for k in ("rmse", "mae", "precision_at_10", "ndcg_at_10")}
        for week in (1, 2, 3):
            out["ingest"].append(ingest_file(con, data / f"batch_w{week}.parquet").inserted)
            run_etl(con, settings)
            cycle = drift_and_retrain(con, settings)
            d = cycle["drift"]
            out["drift"].append({k: d[k] for k in ("kl_divergence", "mean_shift", "median_shift", "score",
                                                   "decision", "n_current")} | {"retrained": cycle["retrained"]})  # fmt: skip
        out["publish"] = publish(con, settings)["counts"]
        out["user_views"] = _user_views(settings)
        out["counts"] = {t: con.execute(f"select count(*) from {t}").fetchall()[0][0] for t in COUNTED}
        out["gold"] = {g: con.sql(f"select * from gold.{g}").to_arrow_table() for g in GOLD}
        out["status"] = buffer_status(con)
        out["retention"] = [(t["table"], t["rows"]) for t in apply_retention(con, settings, dry_run=False)["tables"]]
        out["after_retention"] = {t: con.execute(f"select count(*) from {t}").fetchall()[0][0] for t in COUNTED}
    return out


def _user_views(settings: Settings) -> dict[str, list[tuple]]:
    """The user page's views of the published file, floats rounded (PostgreSQL and DuckDB sum in other orders)."""
    from cinematch.serving.read import ViewStore

    views = ViewStore(settings).get()
    assert views is not None
    tables = ("user_summary", "user_ratings", "user_genres", "population_genres")
    return {t: [tuple(round(v, 9) if isinstance(v, float) else v for v in row.values())
                for row in views.query(f"select * from {t} order by all")] for t in tables}  # fmt: skip


def _assert_same_table(name: str, a: pa.Table, b: pa.Table) -> None:
    keys = [(k, "ascending") for k in GOLD_KEYS[name]]
    a, b = a.sort_by(keys), b.sort_by(keys)
    assert a.column_names == b.column_names, name
    assert a.num_rows == b.num_rows, name
    for col in a.column_names:
        x, y = a.column(col), b.column(col)
        if pa.types.is_floating(x.type) or pa.types.is_floating(y.type):
            xs = x.to_numpy(zero_copy_only=False).astype(float)
            ys = y.to_numpy(zero_copy_only=False).astype(float)
            np.testing.assert_allclose(ys, xs, rtol=1e-9, atol=0, equal_nan=True, err_msg=f"gold.{name}.{col}")
        else:
            assert _plain(x.to_pylist()) == _plain(y.to_pylist()), f"gold.{name}.{col}"


def _plain(values: list) -> list:
    # DuckDB's sum of integers is a HUGEINT (Arrow decimal128(38, 0)); PostgreSQL's comes back as int64
    return [int(v) if isinstance(v, Decimal) else v for v in values]


def test_full_cycle_matches_duckdb(pg_url: str, dataset: Path, tmp_path: Path) -> None:
    duck = _cycle(_settings(tmp_path / "duck", None), dataset)
    pg = _cycle(_settings(tmp_path / "pg", pg_url), dataset)
    assert pg["ingest"] == duck["ingest"]
    assert pg["counts"] == duck["counts"]
    assert pg["etl"] == duck["etl"]
    assert pg["publish"] == duck["publish"]
    assert pg["user_views"] == duck["user_views"] and all(duck["user_views"].values())
    for key, value in duck["train"].items():
        assert pg["train"][key] == pytest.approx(value, rel=1e-9), key
    assert [d["decision"] for d in pg["drift"]] == [d["decision"] for d in duck["drift"]]
    for a, b in zip(pg["drift"], duck["drift"], strict=True):
        assert a.pop("decision") == b.pop("decision") and a.pop("retrained") == b.pop("retrained")
        assert a == pytest.approx(b, rel=1e-9)
    for g in GOLD:
        _assert_same_table(g, duck["gold"][g], pg["gold"][g])
    assert pg["retention"] == duck["retention"] and sum(n for _, n in pg["retention"]) > 0
    assert pg["after_retention"] == duck["after_retention"]
    assert pg["status"]["total_records"] == duck["status"]["total_records"]
    assert [b["batch_id"] for b in pg["status"]["batches"]] == [b["batch_id"] for b in duck["status"]["batches"]]
    # the Parquet lake is written from PostgreSQL too, in the same layout
    lake = tmp_path / "pg" / "lake" / "silver" / "ratings"
    assert pq.read_table(lake).num_rows == pg["counts"]["silver.ratings"]


def test_migrations_are_versioned_idempotent_and_match_duckdb(pg_url: str, tmp_path: Path) -> None:
    import duckdb

    from cinematch.storage.pg_migrations import all_migrations
    from cinematch.storage.postgres import PgConnection, schema_version
    from cinematch.storage.warehouse import init_schema

    con = PgConnection(pg_url)
    try:
        assert schema_version(con) is None
        versions = [m[0] for m in all_migrations()]  # the warehouse's, then the extra sources' (sessions, TMDB)
        assert versions[:2] == [1, 2] and con.migrate() == versions
        assert con.migrate() == []
        assert schema_version(con) == versions[-1]
        pg_cols = con.execute(
            """select table_schema || '.' || table_name, column_name, data_type from information_schema.columns
               where table_schema in ('bronze', 'silver', 'gold', 'ops', 'serving') and table_name <> 'schema_migrations'
               order by 1, ordinal_position"""
        ).fetchall()
    finally:
        con.close()
    duck = duckdb.connect()
    init_schema(duck)  # the table catalogue (storage/catalogue.py), nothing else
    duck_cols = duck.execute(
        """select table_schema || '.' || table_name, column_name, data_type from information_schema.columns
           where table_schema in ('bronze', 'silver', 'gold', 'ops', 'serving') order by 1, ordinal_position"""
    ).fetchall()
    duck.close()
    same = {"BIGINT": "bigint", "DOUBLE": "double precision", "TIMESTAMP": "timestamp without time zone",
            "VARCHAR": "text", "INTEGER": "integer", "BOOLEAN": "boolean", "JSON": "json", "VARCHAR[]": "ARRAY",
            "INTEGER[]": "ARRAY", "DATE": "date"}  # fmt: skip
    assert [(t, c, same.get(d, d)) for t, c, d in duck_cols] == pg_cols


def test_translation_of_duckdb_only_sql() -> None:
    from cinematch.storage.pg_dialect import translate

    anti = translate("select r.* from silver.ratings r anti join silver.movies m using (movie_id)").statements[0]
    assert "NOT EXISTS" in anti and "ANTI" not in anti
    star = translate("select * from t qualify row_number() over (partition by k order by v desc) = 1").statements[0]
    assert "QUALIFY" not in star and "(_cm_q._cm_row).*" in star
    replace = translate("create or replace table gold.x as select 1 as a").statements
    assert replace == ("drop table if exists gold.x", "CREATE TABLE gold.x AS SELECT 1 AS a")
    params = translate("select * from t where a = ? and b like '%x' and c = $name")
    assert params.params == ("_p0", "name") and "'%%x'" in params.statements[0]
    nested = translate("with w as (select ? as a) select ?, (select ?) from w where a like '?'")
    assert nested.positional == 3 and nested.statements[0].index("%(_p0)s") < nested.statements[0].index("%(_p2)s")
    assert "MAKE_DATE(Y, M, 1)" in translate("select make_date(y, m, 1)").statements[0].upper()
    assert translate("begin transaction").statements == ("begin isolation level repeatable read",)


def test_copy_round_trip_keeps_values(pg_url: str, tmp_path: Path) -> None:
    from cinematch.storage.postgres import PgConnection

    con = PgConnection(pg_url)
    try:
        con.migrate()
        rng = np.random.default_rng(0)
        data = make_ratings(rng, n=3000)
        con.register("_r", data)
        con.execute("create or replace temp table back as select * from _r")
        back = con.sql("select * from back order by user_id, movie_id").to_arrow_table()
        assert back.equals(data.sort_by([("user_id", "ascending"), ("movie_id", "ascending")]))
        odd = pa.table({"movie_id": [1, 2, 3], "title": ['a "quoted", title', "", None],
                        "genres": [["Drama", 'Sci"Fi', "a,b"], [], None], "release_year": [1999, None, 2001],
                        "batch_id": ["b"] * 3, "source_file": ["f"] * 3,
                        "ingested_at": pa.array([0, 1, 2], pa.timestamp("us"))})  # fmt: skip
        con.copy_arrow("bronze.movies", odd)
        got = con.sql("select movie_id, title, genres, release_year from bronze.movies order by movie_id").fetchall()
        assert got == [
            (1, 'a "quoted", title', ["Drama", 'Sci"Fi', "a,b"], 1999),
            (2, "", [], None),
            (3, None, None, 2001),
        ]
        out = tmp_path / "pairs.csv"  # COPY ... TO a file: the query runs in PostgreSQL, DuckDB writes the file
        con.execute(
            f"copy (select user_id, movie_id from back order by 1, 2 limit 3) to '{out}' (header, delimiter ',')"
        )
        assert out.read_text().splitlines()[0] == "user_id,movie_id" and len(out.read_text().splitlines()) == 4
    finally:
        con.close()


def test_quarantine_and_movies_match_duckdb(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cinematch.ingest.bronze import ingest_file
    from cinematch.storage.warehouse import write_session

    monkeypatch.setenv("CINEMATCH_MAX_BAD_ROW_SHARE", "1")  # files made mostly of bad rows, on purpose
    ratings = tmp_path / "mixed.csv"
    ratings.write_text(
        "userId,movieId,rating,timestamp\n1,10,4.0,1700000000\n2,20,7.0,1700000000\n,30,3.0,1700000000\n"
        '4,40,x,1700000000\n5,"5,0",2.5,not-a-time\n1,10,4.0,1700000000\n6,60,0.5,1700000001\n'
    )
    movies = tmp_path / "movies.csv"
    movies.write_text(
        'movieId,title,genres\n10,"Heat, The (1995)",Action|Crime\n20,Toy "Story" (1995),(no genres listed)\n'
        "x,Bad id,Drama\n30,,Drama\n10,Heat (1995),Action|Crime|Drama\n"
    )
    tables = {
        "bronze.ratings_buffer": "user_id, movie_id, rating, rated_at, batch_id",
        "bronze.quarantine": "batch_id, reason, row_number, user_id, movie_id, rating, rated_at, raw",
        "bronze.movies": "movie_id, title, genres, release_year, batch_id",
        "bronze.ingestion_metadata": "batch_id, record_count, quarantined_count, status, checksum, kind",
    }
    seen = []
    for url in (None, pg_url):
        with write_session(Settings(home=tmp_path / ("pg" if url else "duck"), database_url=url)) as con:
            ingest_file(con, ratings)
            ingest_file(con, movies, kind="movies")
            seen.append({t: con.execute(f"select {c} from {t} order by all").fetchall() for t, c in tables.items()})
    assert seen[0]["bronze.quarantine"], "the file should have quarantined rows"
    assert seen[1] == seen[0]


def test_concurrent_duplicate_ingestion_loads_once(pg_url: str, tmp_path: Path) -> None:
    from cinematch.ingest.bronze import ingest_file
    from cinematch.storage.postgres import PgConnection

    batch = tmp_path / "batch_dup.parquet"
    pq.write_table(make_ratings(np.random.default_rng(9), n=60_000, users=2000, movies=400), batch)
    copy = tmp_path / "batch_dup_copy.parquet"
    copy.write_bytes(batch.read_bytes())
    setup = PgConnection(pg_url)
    setup.migrate()
    start = threading.Barrier(4)
    results: list = []
    errors: list = []

    def ingest(path: Path, batch_id: str) -> None:
        con = PgConnection(pg_url)  # one session per "machine": no file lock in between, only PostgreSQL
        try:
            start.wait()
            results.append(ingest_file(con, path, batch_id=batch_id))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            con.close()

    threads = [threading.Thread(target=ingest, args=a) for a in
               [(batch, "dup"), (batch, "dup"), (copy, "dup"), (copy, "dup_other_id")]]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    loaded = [r for r in results if not r.skipped]
    assert len(loaded) == 1 and loaded[0].inserted == 60_000
    assert sum(r.skipped for r in results) == 3
    rows, batches = setup.execute(
        "select (select count(*) from bronze.ratings_buffer), (select count(*) from bronze.ingestion_metadata)"
    ).fetchall()[0]
    setup.close()
    assert (rows, batches) == (60_000, 1)


def _wait_for_copy(admin, app_prefix: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = admin.execute(
            "select 1 from pg_stat_activity where application_name like %s and query ilike 'copy %%'",
            [app_prefix + "%"],
        ).fetchall()
        if rows:
            return True
        time.sleep(0.01)
    return False


def test_killed_ingestion_leaves_no_partial_batch(pg_url: str, tmp_path: Path) -> None:
    import psycopg

    n = 400_000
    batch = tmp_path / "batch_kill.parquet"
    pq.write_table(make_ratings(np.random.default_rng(11), n=n, users=20_000, movies=2_000), batch)
    env = {**os.environ, "CINEMATCH_HOME": str(tmp_path / "home"), "CINEMATCH_DATABASE_URL": pg_url}
    cmd = [sys.executable, "-m", "cinematch", "ingest", str(batch), "--json"]
    admin = psycopg.connect(pg_url, autocommit=True)
    subprocess.run([sys.executable, "-m", "cinematch", "init"], env=env, check=True, capture_output=True)
    rng = random.Random(2024)
    # seeded moments: some once the COPY is on the wire, some anywhere from start-up to commit
    plan = [("copy", rng.uniform(0.0, 0.2)) for _ in range(3)] + [("at", rng.uniform(0.3, 3.0)) for _ in range(3)]
    killed_during_copy = 0
    for mode, delay in plan:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if mode == "copy":
            in_copy = _wait_for_copy(admin, "cinematch ingest", 30)
            time.sleep(delay)
            killed_during_copy += in_copy and proc.poll() is None
        else:
            time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for _ in range(200):  # the server notices the dead client and aborts its transaction
            if not admin.execute("select 1 from pg_stat_activity where application_name like 'cinematch ingest%'"
                                 ).fetchall():  # fmt: skip
                break
            time.sleep(0.05)
        rows, meta = admin.execute(
            "select (select count(*) from bronze.ratings_buffer), (select count(*) from bronze.ingestion_metadata)"
        ).fetchall()[0]
        assert (rows, meta) in ((0, 0), (n, 1)), f"partial batch after SIGKILL ({mode} {delay:.2f}s): {rows} rows"
        if meta:  # the run committed before the kill landed: start over so the next kill tests a load again
            admin.execute("truncate bronze.ratings_buffer, bronze.ingestion_metadata")
    assert killed_during_copy >= 1, "no kill landed during the COPY"
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    rows, meta = admin.execute(
        "select (select count(*) from bronze.ratings_buffer), (select count(*) from bronze.ingestion_metadata)"
    ).fetchall()[0]
    admin.close()
    assert (rows, meta) == (n, 1)


def test_cli_end_to_end_never_prints_the_password(pg_url: str, dataset: Path, tmp_path: Path) -> None:
    password = pg_url.split(":")[2].split("@")[0]
    assert len(password) >= 12
    home = tmp_path / "home"
    env = {**os.environ, "CINEMATCH_HOME": str(home), "CINEMATCH_DATABASE_URL": pg_url, "CINEMATCH_ALS_RANK": "8",
           "CINEMATCH_ALS_ITERATIONS": "3", "CINEMATCH_LOG_LEVEL": "INFO"}  # fmt: skip
    seen: list[str] = []

    def run(*args: str, code: int = 0, environ: dict | None = None) -> dict | list | None:
        proc = subprocess.run([sys.executable, "-m", "cinematch", *args], env=environ or env, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        seen.extend([proc.stdout, proc.stderr])
        assert proc.returncode == code, (args, proc.stderr[-2000:])
        return json.loads(proc.stdout) if code == 0 and "--json" in args else None

    doc = run("init", "--json")
    assert doc["warehouse"].startswith("postgresql://") and "***" in doc["warehouse"]
    assert run("status", "--json")["total_records"] == 0
    assert run("ingest", str(dataset / "movies.csv"), "--kind", "movies", "--json")["inserted"] > 0
    assert run("ingest", str(dataset / "ratings.parquet"), "--batch-id", "base", "--json")["inserted"] == 8000
    assert run("ingest", str(dataset / "ratings.parquet"), "--batch-id", "base", "--json")["skipped"] is True
    status = run("status", "--json")
    assert status["total_records"] == 8000 and [b["batch_id"] for b in status["batches"]] == ["movies", "base"]
    assert run("etl", "--json")["status"] == "completed"
    rows = run("sql", "select count(*) as n from silver.ratings", "--json")
    assert rows == [{"n": 8000}]
    run("sql", "delete from silver.ratings", "--json", code=2)
    trained = run("train", "--json")
    assert trained["version"].startswith("version_") and trained["rmse"] > 0
    assert run("ingest", str(dataset / "batch_w1.parquet"), "--json")["inserted"] > 0
    run("etl", "--json")
    assert run("drift", "--json")["decision"] in ("insufficient_data", "no_drift", "warning", "retrain")
    assert run("publish", "--json")["counts"]["recommendations"] > 0
    run("sql", "select nonsense from nowhere", "--json", code=2)
    run("sql", "select 1 from", "--json", "--debug", code=2)
    # a server that refuses the connection: the error names the URL without its password
    dead = pg_url.rsplit(":", 1)[0] + ":1/postgres"
    run("status", "--json", "--debug", code=1, environ={**env, "CINEMATCH_DATABASE_URL": dead})
    wrong = password[::-1]  # a wrong password is a secret too
    run("etl", "--json", code=1, environ={**env, "CINEMATCH_DATABASE_URL": pg_url.replace(password, wrong)})
    assert any("***" in s for s in seen)
    leaks = [s for s in seen if password in s or wrong in s]
    assert not leaks, "password printed"
    for path in home.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".html", ".txt", ".log", ""):
            assert password.encode() not in path.read_bytes(), f"password written to {path}"


def test_writers_on_two_machines_queue_on_the_advisory_lock(pg_url: str, tmp_path: Path) -> None:
    from cinematch.core.errors import LockBusy
    from cinematch.storage.warehouse import write_session

    first = Settings(home=tmp_path / "machine_a", database_url=pg_url)
    second = Settings(home=tmp_path / "machine_b", database_url=pg_url, lock_timeout_seconds=0.5)
    with write_session(first, "etl"):
        with pytest.raises(LockBusy, match="cinematch etl"), write_session(second, "train"):
            pass
        with write_session(second, "ingest") as con:  # ingestion does not wait: the batch key protects it
            assert con.execute("select 1").fetchall() == [(1,)]
    with write_session(second, "train") as con:
        assert con.execute("select 1").fetchall() == [(1,)]


def test_viewing_sources_match_duckdb(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """users/sessions CSV and content JSON through ingestion, silver and gold on PostgreSQL, as on DuckDB."""
    monkeypatch.setenv("CINEMATCH_MAX_BAD_ROW_SHARE", "1")  # bad_sessions.csv is mostly bad on purpose
    from cinematch.datasets.generate import generate_dataset
    from cinematch.ingest.bronze import ingest_file
    from cinematch.lakehouse.etl import run_etl
    from cinematch.storage.warehouse import write_session

    data = tmp_path / "data"
    generate_dataset(data, GenerateConfig(users=300, movies=200, ratings=8000, weeks=1, seed=3))
    (data / "bad_sessions.csv").write_text(
        "session_id,user_id,movie_id,started_at,watch_seconds,device,cdn\n"
        "z1,1,1,2024-01-02T00:00:00Z,-5,tv,a\nz2,1,1,never,60,tv,b\nz3,1,1,2024-01-02T00:00:00Z,60,tv,c\n"
    )
    results = {}
    for name, url in (("duck", None), ("pg", pg_url)):
        settings = _settings(tmp_path / name, url)
        with write_session(settings, "test viewing") as con:
            loaded = [ingest_file(con, data / "movies.csv", kind="movies").inserted,
                      ingest_file(con, data / "ratings.parquet", batch_id="base").inserted]  # fmt: skip
            for file, kind in (("users.csv", "users"), ("content.json", "content"), ("sessions.csv", "sessions"),
                               ("bad_sessions.csv", "sessions")):  # fmt: skip
                res = ingest_file(con, data / file, kind=kind)
                loaded.append((res.inserted, res.quarantined))
            run = run_etl(con, settings)
            again = run_etl(con, settings, full_refresh=True)
            results[name] = {
                "loaded": loaded,
                "silver": {k: run["layers"]["silver"]["rows"][k] for k in ("users", "sessions", "content")},
                "gold": again["layers"]["gold"]["rows"]["content_performance"],
                "quarantine": con.execute("select reason, raw from bronze.quarantine order by row_number").fetchall(),
                "performance": con.sql("select * from gold.content_performance").to_arrow_table(),
                "engagement": con.sql(
                    "select user_id, n_sessions, watch_hours, avg_watch_minutes, movies_watched, avg_completion_rate,"
                    " last_watched_at from gold.user_engagement"
                ).to_arrow_table(),
                "content": con.execute(
                    "select movie_id, genres, cast__name, production__budget_usd, cast(extra as varchar)"
                    " from silver.content order by movie_id limit 3"
                ).fetchall(),
            }
    duck, pg = results["duck"], results["pg"]
    assert pg["loaded"] == duck["loaded"] and pg["loaded"][-1] == (1, 2)
    assert pg["silver"] == duck["silver"] and pg["silver"]["sessions"] == 2400 + 1
    assert pg["gold"] == duck["gold"] > 0
    assert [r[0] for r in pg["quarantine"]] == [r[0] for r in duck["quarantine"]] == [
        "negative watch_seconds", "unparsable started_at"]  # fmt: skip
    assert [json.loads(r[1])["cdn"] for r in pg["quarantine"]] == ["a", "b"]
    assert [r[:4] for r in pg["content"]] == [r[:4] for r in duck["content"]]
    assert [json.loads(r[4]) for r in pg["content"]] == [json.loads(r[4]) for r in duck["content"]]
    GOLD_KEYS.setdefault("content_performance", ["movie_id"])
    _assert_same_table("content_performance", duck["performance"], pg["performance"])
    GOLD_KEYS.setdefault("engagement", ["user_id"])
    _assert_same_table("engagement", duck["engagement"], pg["engagement"])
