"""Retention only runs when asked, deletes only what is past each layer's limit, and never unprocessed bronze."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cinematch.core.settings import Settings
from cinematch.ingest.bronze import ingest_file
from cinematch.lakehouse.etl import run_etl
from cinematch.lakehouse.retention import apply_retention
from cinematch.storage.audit import utcnow
from cinematch.storage.warehouse import write_session


def _batch(path: Path, years: list[int]) -> Path:
    ts = pa.array([int(pa.scalar(f"{y}-06-01T00:00:00").cast(pa.timestamp("s")).value) for y in years], pa.int64())
    pq.write_table(pa.table({"user_id": list(range(1, len(years) + 1)), "movie_id": [1] * len(years),
                             "rating": [4.0] * len(years), "rated_at": ts}), path)  # fmt: skip
    return path


def count(con, table: str) -> int:
    return con.execute(f"select count(*) from {table}").fetchall()[0][0]


def test_retention_is_explicit_and_bounded(home: Settings, tmp_path: Path) -> None:
    with write_session(home) as con:
        ingest_file(con, _batch(tmp_path / "old.parquet", [2010, 2016, 2023, 2024]))
        run_etl(con, home, write_lake=False)
        ingest_file(con, _batch(tmp_path / "new.parquet", [2024, 2024]))  # not processed into silver yet
        con.execute("update bronze.ratings_buffer set ingested_at = ?", [utcnow() - timedelta(days=200)])
        dry = apply_retention(con, home)
        rows = {r["table"]: r["rows"] for r in dry["tables"]}
        # bronze: only the processed batch's 4 rows are old enough AND safe to drop; silver: 2010 and 2016
        assert rows["bronze.ratings_buffer"] == 4 and rows["silver.ratings"] == 2
        assert count(con, "bronze.ratings_buffer") == 6 and count(con, "silver.ratings") == 4  # dry run: unchanged
        done = apply_retention(con, home, dry_run=False)
        assert done["deleted"] == sum(rows.values())
        assert count(con, "bronze.ratings_buffer") == 2 and count(con, "silver.ratings") == 2
        assert con.execute("select min(year(rated_at)) from silver.ratings").fetchall()[0][0] == 2023
        assert con.execute("select count(*) from ops.pipeline_runs where pipeline = 'retention'").fetchall()[0][0] == 1
        # a later full refresh keeps silver rows whose bronze batch retention removed
        run_etl(con, home, full_refresh=True, write_lake=False)
        assert count(con, "silver.ratings") == 4  # 2023, 2024 from the pruned batch + the 2 new ones


def test_gold_is_rebuilt_whole_after_retention_deleted_silver_rows(home: Settings, tmp_path: Path) -> None:
    with write_session(home) as con:
        ingest_file(con, _batch(tmp_path / "old.parquet", [2010, 2016, 2023, 2024]))
        run_etl(con, home, write_lake=False)
        apply_retention(con, home, dry_run=False)  # silver loses 2010 and 2016
        ingest_file(con, _batch(tmp_path / "new.parquet", [2024, 2024]))
        # gold's stored sums still count the deleted ratings: merging into them would fail the reconciliation
        doc = run_etl(con, home, write_lake=False)
        assert all(c["passed"] for c in doc["layers"]["gold"]["checks"])
        assert count(con, "silver.ratings") == 4
        assert con.execute("select sum(n_ratings) from gold.movie_kpis").fetchall()[0][0] == 4
        assert con.execute("select sum(n_ratings) from gold.user_engagement").fetchall()[0][0] == 4
