"""ETL throughput: full refresh bronze → silver → gold (+ Parquet lake) and one incremental weekly batch.

.venv/bin/python benchmarks/bench_etl.py [--quick] [--ratings N] [--weekly N] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import SCRATCH, machine, peak_rss_gb, timed, write_json

from cinematch.core.settings import Settings
from cinematch.datasets.generate import generate_dataset
from cinematch.datasets.generate_config import scale_config
from cinematch.ingest.bronze import ingest_file
from cinematch.pipelines.engine import run_etl
from cinematch.storage.warehouse import write_session


def dataset(ratings: int, weekly: int) -> Path:
    folder = SCRATCH / f"etl_{ratings}_{weekly}"
    if not (folder / "batch_w1.parquet").exists():
        base = scale_config("large" if ratings > 5_000_000 else "medium", 42)
        config = dataclasses.replace(base, ratings=ratings, weeks=1, batch_ratings=weekly, drift_week=2)
        generate_dataset(folder, config)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="1M base ratings, 100k weekly batch")
    ap.add_argument("--ratings", type=int, default=25_000_000)
    ap.add_argument("--weekly", type=int, default=500_000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    ratings, weekly = (1_000_000, 100_000) if args.quick else (args.ratings, args.weekly)
    data = dataset(ratings, weekly)
    home = SCRATCH / "etl-home"
    shutil.rmtree(home, ignore_errors=True)
    settings = Settings(home=home)
    with write_session(settings) as con:
        ingest_file(con, data / "movies.csv", kind="movies")
        ingest_seconds, _ = timed(lambda: ingest_file(con, data / "ratings.parquet", batch_id="base"))
        full_seconds, full = timed(lambda: run_etl(con, settings, full_refresh=True))
        ingest_file(con, data / "batch_w1.parquet")
        inc_seconds, inc = timed(lambda: run_etl(con, settings))
    shutil.rmtree(home, ignore_errors=True)
    doc = {
        "benchmark": "etl",
        "machine": machine(),
        "ratings": ratings,
        "weekly_batch": weekly,
        "ingest_seconds": round(ingest_seconds, 2),
        "full_refresh_seconds": round(full_seconds, 2),
        "full_refresh_rows_per_second": round(ratings / full_seconds),
        "full_refresh_layers": {k: full["layers"][k].get("seconds") for k in ("silver", "gold")},
        "full_refresh_lake_seconds": full.get("lake_seconds"),
        "incremental_seconds": round(inc_seconds, 2),
        "incremental_layers": {k: inc["layers"][k].get("seconds") for k in ("silver", "gold")},
        "incremental_lake_seconds": inc.get("lake_seconds"),
        "gold_rows": full["layers"]["gold"]["rows"],
        "peak_rss_gb": round(peak_rss_gb(), 2),
    }
    print(f"ingest base        {ratings:>11,} ratings  {ingest_seconds:7.2f} s")
    print(
        f"etl full refresh   {ratings:>11,} ratings  {full_seconds:7.2f} s  ({ratings / full_seconds:,.0f} rows/s; "
        f"silver {doc['full_refresh_layers']['silver']} s, gold {doc['full_refresh_layers']['gold']} s, "
        f"lake {doc['full_refresh_lake_seconds']} s)"
    )
    print(
        f"etl incremental    {weekly:>11,} new      {inc_seconds:7.2f} s  (silver {doc['incremental_layers']['silver']} s, "
        f"gold {doc['incremental_layers']['gold']} s, lake {doc['incremental_lake_seconds']} s)"
    )
    print(f"peak RSS {doc['peak_rss_gb']} GB")
    write_json(args.json, doc)


if __name__ == "__main__":
    main()
