"""A replay whose user's warehouse is PostgreSQL: the scratch homes stay DuckDB, the period rows land in
PostgreSQL's ops.replay_periods exactly as the JSON reports them, and a second run replaces them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cinematch.datasets.generate import generate_dataset
from cinematch.datasets.generate_config import GenerateConfig

COLUMNS = ["user_id", "movie_id", "rating", "rated_at"]


def test_replay_rows_land_in_a_postgresql_warehouse(pg_url: str, tmp_path: Path) -> None:
    import psycopg

    config = GenerateConfig(users=300, movies=200, ratings=8_000, weeks=2, batch_ratings=600, seed=11)
    summary = generate_dataset(tmp_path / "gen", config)
    files = ["ratings.parquet", "batch_w1.parquet", "batch_w2.parquet"]
    pq.write_table(pa.concat_tables([pq.read_table(tmp_path / "gen" / f, columns=COLUMNS) for f in files]),
                   tmp_path / "history.parquet")  # fmt: skip
    first = datetime.fromisoformat(summary["files"]["batch_w1"]["min_rated_at"])
    env = {**os.environ, "CINEMATCH_HOME": str(tmp_path / "home"), "CINEMATCH_DATABASE_URL": pg_url}
    args = [sys.executable, "-m", "cinematch", "replay", "--ratings", str(tmp_path / "history.parquet"),
            "--movies", str(tmp_path / "gen" / "movies.csv"), "--start", f"{first:%Y-%m-%d}", "--every", "7d",
            "--policy", "never", "--policy", "every:2", "--json"]  # fmt: skip
    runs = [subprocess.run(args, capture_output=True, text=True, env=env, timeout=900) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    doc = json.loads(runs[1].stdout)
    assert not (tmp_path / "home" / "warehouse.duckdb").exists()  # the user's warehouse is PostgreSQL only
    assert (Path(doc["folder"]) / "never" / "warehouse.duckdb").exists()  # scratch homes are DuckDB

    with psycopg.connect(pg_url) as con:
        stored = con.execute(
            "select policy, period, n_ratings, ndcg_at_10, retrained, status from ops.replay_periods "
            "where replay_id = %s order by policy, period",
            [doc["replay_id"]],
        ).fetchall()
    reported = sorted(
        (p["policy"], p["period"], p["n_ratings"], p["ndcg_at_10"], p["retrained"]) for p in doc["periods"]
    )
    assert len(stored) == len(reported) == len(doc["periods"]) >= 4  # two policies; the rerun replaced its rows
    for row, want in zip(stored, reported, strict=True):
        assert row[:3] == want[:3] and row[4] == want[4] and row[5] == "done"
        assert (row[3] is None and want[3] is None) or abs(row[3] - want[3]) < 1e-12
    assert any(p["retrained"] for p in doc["periods"] if p["policy"] == "every:2")
    assert not any(p["retrained"] for p in doc["periods"] if p["policy"] == "never")
