"""Ingestion throughput: `cinematch ingest` of one Parquet batch vs pandas `DataFrame.to_sql` (the original path).

.venv/bin/python benchmarks/bench_ingest.py [--quick] [--rows N] [--pandas-rows N] [--json out.json]
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _common import SCRATCH, machine, ratings_batch_file, timed, write_json

from cinematch.core.settings import Settings
from cinematch.ingest.bronze import ingest_file
from cinematch.storage.warehouse import write_session


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="500k rows, pandas on 100k")
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--pandas-rows", type=int, default=1_000_000, help="rows for the (slow) pandas to_sql path")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows, pandas_rows = (500_000, 100_000) if args.quick else (args.rows, args.pandas_rows)
    path = ratings_batch_file(rows)

    home = SCRATCH / "ingest-home"
    shutil.rmtree(home, ignore_errors=True)
    settings = Settings(home=home)
    with write_session(settings) as con:  # schema created outside the timing
        pass
    with write_session(settings) as con:
        seconds, res = timed(lambda: ingest_file(con, path))
    assert res.inserted == rows, res
    shutil.rmtree(home, ignore_errors=True)
    cli_seconds, _proc = timed(lambda: subprocess.run(
        [sys.executable, "-m", "cinematch", "ingest", str(path), "--json"],
        env={"CINEMATCH_HOME": str(home), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, check=True))  # fmt: skip
    shutil.rmtree(home, ignore_errors=True)

    df = pd.read_parquet(path).head(pandas_rows)
    db = SCRATCH / "pandas.sqlite"
    db.unlink(missing_ok=True)
    con = sqlite3.connect(db)
    pandas_seconds, _ = timed(lambda: (df.to_sql("ratings_buffer", con, if_exists="append", index=False,
                                                 chunksize=50_000), con.commit()))  # fmt: skip
    con.close()
    db.unlink(missing_ok=True)

    ours, theirs = rows / seconds, pandas_rows / pandas_seconds
    doc = {
        "benchmark": "ingest",
        "machine": machine(),
        "rows": rows,
        "cinematch_seconds": round(seconds, 3),
        "cinematch_rows_per_second": round(ours),
        "cli_seconds_including_startup": round(cli_seconds, 3),
        "pandas_rows": pandas_rows,
        "pandas_to_sql_seconds": round(pandas_seconds, 3),
        "pandas_rows_per_second": round(theirs),
        "speedup": round(ours / theirs, 1),
    }
    print(
        f"cinematch ingest  {rows:>10,} rows  {seconds:7.2f} s  {ours:>12,.0f} rows/s  (CLI incl. start-up "
        f"{cli_seconds:.2f} s)"
    )
    print(f"pandas to_sql     {pandas_rows:>10,} rows  {pandas_seconds:7.2f} s  {theirs:>12,.0f} rows/s  (SQLite)")
    print(f"speed-up {ours / theirs:.1f}x")
    write_json(args.json, doc)


if __name__ == "__main__":
    main()
