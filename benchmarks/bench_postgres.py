"""PostgreSQL ingestion: `ingest_file` (COPY path) vs pandas `DataFrame.to_sql` into the same local server.

    .venv/bin/python benchmarks/bench_postgres.py [--quick] [--rows N] [--pandas-rows N] [--repeat 3] [--fast-server]
                                                  [--no-staged] [--json out.json]

The script starts its own PostgreSQL (cinematch.storage.pgserver; durable settings unless --fast-server), loads one
Parquet batch with CineMatch (one transaction: DuckDB validates the batch chunk by chunk while the good rows
stream into a binary COPY, ingest/postgres.py) and the same rows, with the same columns, with pandas `to_sql`
(SQLAlchemy + psycopg, the original project's way; on a smaller slice, it is slow). For reference it also runs
the previous design, "staged first" (the whole batch validated in DuckDB, then the COPY; `--no-staged` skips it),
and times the server copying the loaded rows into a fresh table with `insert ... select`: the most this server
writes rows of that shape, whoever sends them. Each side runs ``--repeat`` times, interleaved, each run in a fresh
database; the figures are medians.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _common import SCRATCH, machine, ratings_batch_file, timed, write_json

from cinematch.core.settings import Settings
from cinematch.ingest import bronze as ingest
from cinematch.ingest import postgres as ingest_pg
from cinematch.storage import postgres
from cinematch.storage.pgserver import create_database, start_local_server
from cinematch.storage.warehouse import write_session

SERVER_DURABLE = "PostgreSQL 15, local, default durability settings"
SERVER_FAST = "PostgreSQL 15, local, fsync/full_page_writes/synchronous_commit off"


def _timing(owner: object, name: str, seconds: list[float]) -> Callable[[], None]:
    """Wrap ``owner.name`` to add its wall time to ``seconds``; returns the undo."""
    original = getattr(owner, name)

    def timed_call(*a, **kw):
        t0 = time.perf_counter()
        try:
            return original(*a, **kw)
        finally:
            seconds.append(time.perf_counter() - t0)

    setattr(owner, name, timed_call)
    return lambda: setattr(owner, name, original)


def _cinematch_run(url: str, name: str, path: Path, warmup: Path, rows: int, staged: bool) -> tuple[float, ...]:
    """One measurement in a fresh database: (ingest seconds, COPY-phase seconds, server insert-select seconds).

    The COPY phase is the COPY statements (good and quarantined rows); in the streamed design the validation of
    later chunks runs during it, in the staged one it ran before.
    """
    home = SCRATCH / "pg-home"
    shutil.rmtree(home, ignore_errors=True)
    settings = Settings(home=home, database_url=create_database(url, name))
    copy_seconds: list[float] = []
    if staged:  # the previous design: normalize_ratings over the whole batch, then PgConnection.copy_arrow
        ratings_stream = ingest.ratings_stream
        ingest.ratings_stream = lambda con: None  # validate first, as on DuckDB
        undo = [_timing(postgres.PgConnection, "copy_arrow", copy_seconds),
                lambda: setattr(ingest, "ratings_stream", ratings_stream)]  # fmt: skip
    else:
        undo = [_timing(ingest_pg, "load_ratings", copy_seconds)]
    try:
        with write_session(settings, "ingest") as con:
            ingest.ingest_file(con, warmup, batch_id="warmup")  # imports, connection, schema: outside the timing
            copy_seconds.clear()
            seconds, res = timed(lambda: ingest.ingest_file(con, path, batch_id="bench"))
            assert res.inserted == rows, res
            pg = con.raw()
            pg.execute("create table public.ceiling (like bronze.ratings_buffer)")
            ceiling, _ = timed(lambda: pg.execute("insert into public.ceiling select * from bronze.ratings_buffer"
                                                  " where batch_id = 'bench'"))  # fmt: skip
            pg.execute("drop table public.ceiling")
    finally:
        for u in reversed(undo):
            u()
        shutil.rmtree(home, ignore_errors=True)
    return seconds, sum(copy_seconds), ceiling


def _pandas_run(url: str, df: pd.DataFrame, i: int) -> float:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.begin() as conn:
            # pandas' defaults (no chunksize: one executemany, measured 1-2% faster here than chunksize=10_000)
            seconds, _ = timed(lambda: df.to_sql(f"ratings_buffer_pandas_{i}", conn, if_exists="append", index=False))
    finally:
        engine.dispose()
    return seconds


def _cpu(pid: int | str) -> float:
    """CPU seconds of a process and of its children it has reaped (Linux /proc); 0 once it has exited."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


class _OtherLoad:
    """CPU seconds used by everything but this script and its PostgreSQL server while it runs: other jobs' load."""

    def __init__(self, url: str) -> None:
        import psycopg

        with psycopg.connect(url) as pg:  # the postmaster is the parent of every backend
            backend = pg.execute("select pg_backend_pid()").fetchone()[0]
        self.postmaster = int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])
        self.start = self._split()
        self.t0 = time.perf_counter()

    def _split(self) -> tuple[float, float]:
        busy = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        total = (sum(busy) - busy[3] - busy[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
        kids = [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and self._parent(p.name) == self.postmaster]
        ours = _cpu("self") + _cpu(self.postmaster) + sum(_cpu(k) for k in kids)
        return total, ours

    def _parent(self, pid: str) -> int | None:
        try:
            return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return None

    def share(self) -> float:
        """Other processes' CPU seconds over the CPU seconds the machine had in the meantime."""
        (total1, ours1), (total0, ours0) = self._split(), self.start
        return max(0.0, (total1 - total0) - (ours1 - ours0)) / ((time.perf_counter() - self.t0) * (os.cpu_count() or 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="500k rows, pandas on 50k")
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--pandas-rows", type=int, default=200_000, help="rows for the (slow) pandas to_sql path")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each side, each in a fresh database; medians")
    ap.add_argument("--fast-server", action="store_true", help="fsync, full_page_writes, synchronous_commit off")
    ap.add_argument("--no-staged", action="store_true", help="skip the previous design (stage first, then COPY)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows, pandas_rows = (500_000, 50_000) if args.quick else (args.rows, args.pandas_rows)
    path, warmup = ratings_batch_file(rows), ratings_batch_file(10_000)

    load_before = os.getloadavg()[0]
    url, stop = start_local_server(durable=not args.fast_server)
    try:
        others = _OtherLoad(url)
        # interleaved, so a burst of load from other jobs on a shared machine hits both sides alike
        runs, staged_runs, pandas_seconds = [], [], []
        df = pd.read_parquet(path).head(pandas_rows)
        df["batch_id"], df["source_file"], df["ingested_at"] = "pandas", str(path), pd.Timestamp.now()
        for i in range(args.repeat):
            runs.append(_cinematch_run(url, f"bench{i}", path, warmup, rows, staged=False))
            pandas_seconds.append(_pandas_run(create_database(url, f"pandas{i}"), df, i))
            if not args.no_staged:
                staged_runs.append(_cinematch_run(url, f"staged{i}", path, warmup, rows, staged=True))
        other_share = others.share()
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
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # before and after the runs
        "other_jobs_cpu_share": round(other_share, 3),  # of the machine's CPU time, while the runs went on
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
    if staged_runs:
        staged_s = statistics.median(r[0] for r in staged_runs)
        doc |= {"staged_seconds": round(staged_s, 3), "staged_rows_per_second": round(rows / staged_s),
                "staged_copy_rows_per_second": round(rows / statistics.median(r[1] for r in staged_runs)),
                "staged_speedup": round(rows / staged_s / theirs, 1),
                "staged_runs": [{"ingest_s": round(a, 3), "copy_s": round(b, 3)} for a, b, _ in staged_runs]}  # fmt: skip
    print(f"server            {doc['server']}  (median of {args.repeat} runs, each in a fresh database)")
    print(f"load average      {doc['load_average_1min'][0]} before, {doc['load_average_1min'][1]} after (1 min);"
          f" other jobs used {other_share:.0%} of the CPUs during the runs")  # fmt: skip
    for n, ((a, b, c), p) in enumerate(zip(runs, pandas_seconds, strict=True), 1):
        staged = f"  staged {rows / staged_runs[n - 1][0]:>10,.0f}" if staged_runs else ""
        print(f"  run {n}: ingest {rows / a:>10,.0f}  COPY {rows / b:>10,.0f}  insert-select {rows / c:>10,.0f}"
              f"  pandas {pandas_rows / p:>8,.0f}{staged} rows/s")  # fmt: skip
    print(f"cinematch ingest  {rows:>10,} rows  {seconds:7.2f} s  {ours:>12,.0f} rows/s"
          "  (streamed validation + COPY)")  # fmt: skip
    print(f"  COPY phase      {rows:>10,} rows  {copy_s:7.2f} s  {load:>12,.0f} rows/s"
          "  (validation of later chunks inside)")  # fmt: skip
    if staged_runs:
        print(f"staged first      {rows:>10,} rows  {doc['staged_seconds']:7.2f} s  {doc['staged_rows_per_second']:>12,}"
              " rows/s  (previous design: validate the whole batch, then COPY)")  # fmt: skip
    print(f"server ceiling    {rows:>10,} rows  {ceiling_seconds:7.2f} s  {rows / ceiling_seconds:>12,.0f} rows/s"
          "  (insert ... select inside the server)")  # fmt: skip
    print(f"pandas to_sql     {pandas_rows:>10,} rows  {theirs_s:7.2f} s  {theirs:>12,.0f} rows/s")
    print(f"speed-up {ours / theirs:.1f}x end to end, {load / theirs:.1f}x COPY phase"
          + (f"; staged first {doc['staged_speedup']}x" if staged_runs else ""))  # fmt: skip
    write_json(args.json, doc)


if __name__ == "__main__":
    main()
