"""PostgreSQL ingestion: `ingest_file` (COPY path) vs pandas `DataFrame.to_sql` into the same local server.

    .venv/bin/python benchmarks/bench_postgres.py [--quick] [--rows N] [--pandas-rows N] [--repeat 3] [--fast-server]
                                                  [--json out.json]

The script starts its own PostgreSQL (cinematch.engines.pgserver; durable settings unless --fast-server), loads one
Parquet batch with CineMatch (staging + validation in DuckDB, then COPY in one transaction) and the same rows,
with the same columns, with pandas `to_sql` (SQLAlchemy + psycopg, the original project's way; on a smaller
slice, it is slow). For scale it also times the server copying the loaded rows into a fresh table with
`insert ... select`: the most this server writes rows of that shape, whoever sends them. Each side runs
``--repeat`` times, interleaved, each run in a fresh database; the figures are medians.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _common import SCRATCH, machine, ratings_batch_file, timed, write_json

from cinematch.engines import postgres
from cinematch.engines.pgserver import create_database, start_local_server
from cinematch.ingest import ingest_file
from cinematch.settings import Settings
from cinematch.warehouse import write_session

SERVER_DURABLE = "PostgreSQL 15, local, default durability settings"
SERVER_FAST = "PostgreSQL 15, local, fsync/full_page_writes/synchronous_commit off"


def _cinematch_run(url: str, i: int, path: Path, warmup: Path, rows: int) -> tuple[float, float, float]:
    """One measurement in a fresh database: (ingest seconds, COPY-phase seconds, server insert-select seconds)."""
    home = SCRATCH / "pg-home"
    shutil.rmtree(home, ignore_errors=True)
    settings = Settings(home=home, database_url=create_database(url, f"bench{i}"))
    copy_seconds: list[float] = []
    original = postgres.PgConnection.copy_arrow

    def timed_copy(self, *a, **kw):  # the load phase alone: COPY of good and quarantined rows
        t0 = time.perf_counter()
        try:
            return original(self, *a, **kw)
        finally:
            copy_seconds.append(time.perf_counter() - t0)

    postgres.PgConnection.copy_arrow = timed_copy  # type: ignore[method-assign]
    try:
        with write_session(settings, "ingest") as con:
            ingest_file(con, warmup, batch_id="warmup")  # imports, connection, schema: outside the timing
            copy_seconds.clear()
            seconds, res = timed(lambda: ingest_file(con, path, batch_id="bench"))
            assert res.inserted == rows, res
            pg = con.raw()
            pg.execute("create table public.ceiling (like bronze.ratings_buffer)")
            ceiling, _ = timed(lambda: pg.execute("insert into public.ceiling select * from bronze.ratings_buffer"
                                                  " where batch_id = 'bench'"))  # fmt: skip
            pg.execute("drop table public.ceiling")
    finally:
        postgres.PgConnection.copy_arrow = original  # type: ignore[method-assign]
        shutil.rmtree(home, ignore_errors=True)
    return seconds, sum(copy_seconds), ceiling


def _pandas_run(url: str, df: pd.DataFrame, i: int) -> float:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.begin() as conn:
            seconds, _ = timed(lambda: df.to_sql(f"ratings_buffer_pandas_{i}", conn, if_exists="append",
                                                 index=False, chunksize=10_000))  # fmt: skip
    finally:
        engine.dispose()
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="500k rows, pandas on 50k")
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--pandas-rows", type=int, default=200_000, help="rows for the (slow) pandas to_sql path")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each side, each in a fresh database; medians")
    ap.add_argument("--fast-server", action="store_true", help="fsync, full_page_writes, synchronous_commit off")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows, pandas_rows = (500_000, 50_000) if args.quick else (args.rows, args.pandas_rows)
    path, warmup = ratings_batch_file(rows), ratings_batch_file(10_000)

    url, stop = start_local_server(durable=not args.fast_server)
    try:
        # interleaved, so a burst of load from other jobs on a shared machine hits both sides alike
        runs, pandas_seconds = [], []
        df = pd.read_parquet(path).head(pandas_rows)
        df["batch_id"], df["source_file"], df["ingested_at"] = "pandas", str(path), pd.Timestamp.now()
        for i in range(args.repeat):
            runs.append(_cinematch_run(url, i, path, warmup, rows))
            pandas_seconds.append(_pandas_run(create_database(url, f"pandas{i}"), df, i))
    finally:
        stop()

    seconds, copy_s, ceiling_seconds = (statistics.median(r[k] for r in runs) for k in range(3))
    theirs_s = statistics.median(pandas_seconds)
    ours, load, theirs = rows / seconds, rows / copy_s, pandas_rows / theirs_s
    doc = {
        "benchmark": "postgres_ingest",
        "machine": machine(),
        "server": SERVER_FAST if args.fast_server else SERVER_DURABLE,
        "rows": rows,
        "repeat": args.repeat,
        "cinematch_seconds": round(seconds, 3),
        "cinematch_rows_per_second": round(ours),
        "cinematch_rows_per_second_best": round(rows / min(r[0] for r in runs)),
        "copy_seconds": round(copy_s, 3),
        "copy_rows_per_second": round(load),
        "server_insert_select_rows_per_second": round(rows / ceiling_seconds),
        "pandas_rows": pandas_rows,
        "pandas_to_sql_seconds": round(theirs_s, 3),
        "pandas_rows_per_second": round(theirs),
        "speedup": round(ours / theirs, 1),
        "copy_speedup": round(load / theirs, 1),
        "runs": [
            {"ingest_s": round(a, 3), "copy_s": round(b, 3), "insert_select_s": round(c, 3), "pandas_s": round(p, 3)}
            for (a, b, c), p in zip(runs, pandas_seconds, strict=True)
        ],
    }
    print(f"server            {doc['server']}  (median of {args.repeat} runs, each in a fresh database)")
    for n, ((a, b, c), p) in enumerate(zip(runs, pandas_seconds, strict=True), 1):
        print(f"  run {n}: ingest {rows / a:>10,.0f}  COPY {rows / b:>10,.0f}  insert-select {rows / c:>10,.0f}"
              f"  pandas {pandas_rows / p:>8,.0f} rows/s")  # fmt: skip
    print(f"cinematch ingest  {rows:>10,} rows  {seconds:7.2f} s  {ours:>12,.0f} rows/s  (stage + validate + COPY)")
    print(f"  COPY phase      {rows:>10,} rows  {copy_s:7.2f} s  {load:>12,.0f} rows/s")
    print(f"server ceiling    {rows:>10,} rows  {ceiling_seconds:7.2f} s  {rows / ceiling_seconds:>12,.0f} rows/s"
          "  (insert ... select inside the server)")  # fmt: skip
    print(f"pandas to_sql     {pandas_rows:>10,} rows  {theirs_s:7.2f} s  {theirs:>12,.0f} rows/s")
    print(f"speed-up {ours / theirs:.1f}x end to end, {load / theirs:.1f}x COPY phase")
    write_json(args.json, doc)


if __name__ == "__main__":
    main()
