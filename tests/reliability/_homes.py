"""Small prepared homes for the reliability tests, and a snapshot of everything a crash could leave half done."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tests.conftest import make_ratings

from cinematch.core.settings import Settings
from cinematch.ingest.bronze import ingest_file
from cinematch.lakehouse.etl import run_etl
from cinematch.recommender.als import ALSModel
from cinematch.recommender.training import params_from_settings, train_warehouse
from cinematch.serving.layout import CURRENT, current_views
from cinematch.serving.publish import publish
from cinematch.serving.read import Views
from cinematch.storage.warehouse import write_session

GOLD = ("genre_analytics", "trending_movies", "temporal_trends", "user_engagement", "movie_kpis")
LAKE = ("silver/ratings", "silver/movies", *(f"gold/{t}" for t in GOLD))
GENRES = ("Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller")
N_MOVIES = 300
TRAIN_ARGS = ("--rank", "8", "--iterations", "5")
# a challenger is promoted even when slightly worse, so a train run always moves the champion
ENV = {
    "CINEMATCH_PROMOTION_TOLERANCE": "1.0",
    "CINEMATCH_PROMOTION_NDCG_TOLERANCE": "1.0",
    "CINEMATCH_LOCK_TIMEOUT_SECONDS": "30",
}


def settings_for(home: Path) -> Settings:
    return Settings(home=home, promotion_tolerance=1.0, promotion_ndcg_tolerance=1.0, lock_timeout_seconds=30,
                    api_key=None, database_url=None)  # fmt: skip


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CINEMATCH_")}
    return {**env, **ENV, "CINEMATCH_HOME": str(home), **extra}


def cinematch(home: Path, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """Run the real CLI as a subprocess (as users and schedulers do)."""
    return subprocess.run([sys.executable, "-m", "cinematch", *args], env=env_for(home, **env),
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def movies_csv(path: Path) -> Path:
    rows = "".join(f"{i},Movie {i} ({1970 + i % 50}),{GENRES[i % 7]}|{GENRES[(i * 3) % 7]}\n"
                   for i in range(1, N_MOVIES + 1))  # fmt: skip
    path.write_text("movieId,title,genres\n" + rows)
    return path


def ratings_file(path: Path, seed: int, n: int, start: str, bad_every: int = 0) -> Path:
    """A ratings Parquet batch; every ``bad_every``-th rating is 7.0 (quarantined) when set."""
    table = make_ratings(np.random.default_rng(seed), n=n, users=max(200, n // 40), movies=N_MOVIES, start=start)
    if bad_every:
        rating = table.column("rating").to_numpy().copy()
        rating[::bad_every] = 7.0
        table = table.set_column(2, "rating", pa.array(rating))
    pq.write_table(table, path)
    return path


@dataclass
class Prepared:
    """One home per command, ready for that command to run next."""

    data: Path
    ingest: Path  # base home; `ingest big.parquet` is next
    etl: Path  # batch_w2 ingested, not yet in silver/gold
    train: Path  # batch_w2 in silver and gold, not yet trained on
    publish: Path  # a new champion, views not yet published
    big: Path  # the file the ingest trials load


def prepare(root: Path, big_rows: int = 150_000) -> Prepared:
    """movies + w1 → etl → train → publish, then w2 ingested; each later stage is a copy moved one step on."""
    data = root / "data"
    data.mkdir()
    movies = movies_csv(data / "movies.csv")
    w1 = ratings_file(data / "batch_w1.parquet", 1, 6000, "2024-01-01")
    w2 = ratings_file(data / "batch_w2.parquet", 2, 6000, "2024-03-01")
    big = ratings_file(data / "batch_big.parquet", 3, big_rows, "2024-02-01", bad_every=97)
    base = root / "ingest"
    s = settings_for(base)
    params = params_from_settings(s, rank=8, iterations=5)
    with write_session(s, "test") as con:
        ingest_file(con, movies, kind="movies")
        ingest_file(con, w1)
        run_etl(con, s)
        train_warehouse(con, s, params)
        publish(con, s)
        ingest_file(con, w2)
    etl = copy_home(base, root / "etl")
    train = copy_home(etl, root / "train")
    with write_session(settings_for(train), "test") as con:
        run_etl(con, settings_for(train))
    pub = copy_home(train, root / "publish")
    with write_session(settings_for(pub), "test") as con:
        train_warehouse(con, settings_for(pub), params)
    return Prepared(data, base, etl, train, pub, big)


def copy_home(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def _count(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> Any:
    return con.execute(sql, params or []).fetchall()[0][0]


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute("select table_schema || '.' || table_name from information_schema.tables").fetchall()
    return {r[0] for r in rows}


def snapshot(home: Path) -> dict[str, Any]:
    """Everything a command may change, read like the next command would (the WAL is replayed)."""
    con = duckdb.connect(str(home / "warehouse.duckdb"))
    try:
        tables = _tables(con)
        snap: dict[str, Any] = {
            "buffer": dict(con.execute("select batch_id, count(*) from bronze.ratings_buffer group by 1").fetchall()),
            "quarantine": dict(con.execute("select batch_id, count(*) from bronze.quarantine group by 1").fetchall()),
            "audit": {b: (n, q, st, k) for b, n, q, st, k in con.execute(
                "select batch_id, record_count, quarantined_count, status, kind from bronze.ingestion_metadata"
            ).fetchall()},
            "silver": (_count(con, "select count(*) from silver.ratings"),
                       sorted(r[0] for r in con.execute("select batch_id from silver.processed_batches").fetchall()))
            if "silver.ratings" in tables else None,
            "gold": tuple(_count(con, f"select count(*) from gold.{t}") for t in GOLD)
            if "gold.movie_kpis" in tables else None,
        }  # fmt: skip
        if "ops.model_registry" in tables:
            snap["registry"] = sorted(
                con.execute("select version, is_champion, path from ops.model_registry").fetchall()
            )
            snap["training_batches"] = sorted(
                con.execute("select batch_id, model_version from ops.training_batches").fetchall()
            )
            snap["recommendations"] = con.execute(
                "select model_version, count(*) from serving.recommendations group by 1"
            ).fetchall()
        warehouse_rows = {
            name: _count(con, f"select count(*) from {name.replace('/', '.')}")
            for name in LAKE
            if name.replace("/", ".") in tables
        }
    finally:
        con.close()
    snap["lake"] = {name: lake_rows(home / "lake" / name) for name in LAKE}
    snap["lake_matches_warehouse"] = all(snap["lake"][n] == warehouse_rows.get(n) for n in LAKE)
    views = current_views(settings_for(home))
    snap["views"] = views_counts(views) if views else None
    alias = home / "models" / "CHAMPION"
    snap["alias"] = alias.read_text().strip() if alias.is_file() else None
    return snap


def lake_rows(link: Path) -> int | None:
    """Rows of one lake table (None when it was never written); a damaged file raises."""
    if not link.exists():
        return None
    con = duckdb.connect()
    try:
        return _count(con, "select count(*) from read_parquet(?, hive_partitioning=true)", [str(link / "**/*.parquet")])
    finally:
        con.close()


def views_counts(path: Path) -> tuple[str, int, int, int]:
    """(file name, recommendations, fallback, trending) of a views file, opened as the API opens it."""
    views = Views.open(path)
    try:
        counts = views.meta["counts"]
        real = views.query("select count(*) as n from recommendations")[0]["n"]
        assert real == counts["recommendations"], "views file disagrees with its own meta"
        return path.name, real, len(views.fallback), counts["trending"]
    finally:
        views.con.close()


def check_invariants(home: Path, snap: dict[str, Any]) -> None:
    """What must hold after ANY kill: whole batches, models behind every row, views never empty."""
    for batch, (n, q, status, kind) in snap["audit"].items():
        assert status == "completed", f"batch {batch} left with status {status}"
        if kind == "ratings":
            assert snap["buffer"].get(batch, 0) == n, f"partial batch {batch}: {snap['buffer'].get(batch)} != {n}"
        assert snap["quarantine"].get(batch, 0) == q, f"quarantine of {batch} does not match its audit row"
    orphans = (set(snap["buffer"]) | set(snap["quarantine"])) - set(snap["audit"])
    assert not orphans, f"rows of batches without an audit row: {orphans}"
    champions = [v for v, is_champ, _ in snap.get("registry", []) if is_champ]
    assert len(champions) <= 1
    for version, _, path in snap.get("registry", []):
        assert Path(path).is_dir(), f"registry row {version} without its model folder"
        assert (Path(path) / "metadata.json").is_file()
        ALSModel.load(Path(path))  # every file there and readable
    if champions:
        assert snap["alias"] in {v for v, _, _ in snap["registry"]}, f"CHAMPION alias {snap['alias']} not registered"
        assert {v for v, _ in snap["recommendations"]} == {champions[0]}, "recommendations of another model"
    assert snap["views"] is not None, "no views after a kill"
    _, recs, fallback, _ = snap["views"]
    assert recs > 0 and fallback > 0, f"empty serving views {snap['views']}"
    assert (home / "serving" / CURRENT).is_file()


# A real `cinematch` process whose imports are done before the clock starts: it prints "ready", waits for a
# line on stdin, then runs the CLI entry point. Kill moments then fall into the command's work, not its imports.
_WARM = """import sys
import cinematch.cli, cinematch.ingest.bronze, cinematch.lakehouse.etl, cinematch.recommender.training
import cinematch.serving.publish, cinematch.drift.check, cinematch.pipelines.report
print("ready", flush=True)
sys.stdin.readline()
cinematch.cli.main(sys.argv[1:])
"""


def start_warm(home: Path, *args: str, **env: str) -> subprocess.Popen:
    """Start a warmed-up `cinematch ARGS` and return once it is ready; call :func:`go` to let it run."""
    proc = subprocess.Popen([sys.executable, "-c", _WARM, *args], env=env_for(home, **env), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    line = proc.stdout.readline() if proc.stdout else ""
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"warm cinematch did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return proc


def go(proc: subprocess.Popen) -> float:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return time.perf_counter()


def measure(home: Path, *args: str) -> tuple[float, int, str]:
    """Seconds of work of one uninterrupted warm run (from "go" to exit), its exit code and stderr."""
    proc = start_warm(home, *args)
    t0 = go(proc)
    _, err = proc.communicate(timeout=300)
    return time.perf_counter() - t0, proc.returncode, err


def lake_meta(home: Path) -> dict[str, str]:
    """Where each lake table's link points (the version folder)."""
    return {n: os.readlink(home / "lake" / n) for n in LAKE if (home / "lake" / n).is_symlink()}


def dump(snap: dict[str, Any]) -> str:
    return json.dumps(snap, default=str, sort_keys=True)
