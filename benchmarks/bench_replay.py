"""Replay (issue 18): a whole `cinematch replay ... --json` command, its wall time and the peak memory it used.

    .venv/bin/python benchmarks/bench_replay.py [--case ml|generated|all] [--quick] [--ratings N] [--weekly N]
                                                [--drift-week W] [--ml DIR] [--ml-start DATE] [--dry-run]
                                                [--json PATH]

Each case runs the CLI as a subprocess (``python -m cinematch replay ... --json``) in a fresh CINEMATCH_HOME under
a temporary folder of benchmarks/.data (removed afterwards), with the caller's other ``CINEMATCH_*`` variables
removed so that the defaults are measured (DuckDB warehouse, DuckDB engine). Wall seconds are the whole command,
interpreter start-up included. Peak memory: several policies play in parallel worker processes, so the process
tree is sampled with psutil every 0.2 s (RSS summed over the child and its descendants); with one policy the
replay runs in one process and ``wait4``'s ``ru_maxrss`` of the child is its peak; the larger is reported.
From the JSON document: the periods, the base size and ``base_seconds`` (the base home with its tuned first model),
per policy its retrains, mean NDCG@10, hit rate@10, RMSE and compute seconds (the periods' seconds: score, ingest,
ETL, drift check, retrain, publish; policies in parallel workers overlap, so they do not add up to the wall time).

* ml (T1, target <= 300 s): ../shared/data/ml-latest-small ratings.csv + movies.csv, ``--start 2016-01-01
  --every 1mo --compare`` (policies drift, always, never, every:4). Skipped with a message when the folder is
  absent (a clone has no ../shared/data). ``--quick`` keeps every 5th user (122 users, 20k ratings, written to
  the temporary folder) and starts at 2018-07-01 (3 monthly periods): a smoke test. For scale, the whole file from
  2018-05-01 (``--ml-start 2018-05-01``) still takes many minutes: the base's tuning and always-retrain dominate.
* generated (T2, targets <= 600 s and <= 12 GB): ``--ratings`` N ratings in all (default 25M) made by CineMatch's
  generator with MovieLens-25M proportions (N/154 users, N/400 movies): a base, then 12 weekly batches of
  ``--weekly`` ratings each (default N/50: 500k at 25M, so the base holds 19M). The generator spreads the base
  over 84 days from 2024-01-01 and each batch uniformly over its own week after it, so ``--start`` is the first
  week's first day (read from the data: 2024-03-25) and the replay has exactly 12 whole weekly periods (checked,
  with the base size). Drift starts in week 2 (``--drift-week``, the generator's default: half strength, ramping
  to full in week 12), so the drift policy retrains where its check asks (in a 300k run, same weekly share of the
  base: weeks 9-12); with drift from week 7 it never retrained there, and a T2 without retrains would leave out
  the policy's main cost. Base and batches are written once into the temporary folder as one Parquet file
  (history.parquet, which `cinematch replay --ratings` reads) beside movies.csv; generating them is timed apart,
  outside the wall time. ``--policy drift``. ``--quick``: 300k ratings.

--dry-run prints the commands without generating or running anything.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import MOVIELENS, SCRATCH, machine, write_json

WEEKS = 12
DRIFT_WEEK = 2  # the generator's default: see the module docstring
TARGETS = {"ml": {"wall_seconds": 300}, "generated": {"wall_seconds": 600, "peak_rss_gb": 12}}
ML_START, ML_QUICK_START = "2016-01-01", "2018-07-01"
QUICK_RATINGS = 300_000
QUICK_NTH_USER = 5  # T1 --quick keeps the users whose id is a multiple of this (122 users, 20k ratings)
SAMPLE_SECONDS = 0.2
POLICY_FIELDS = ("policy", "periods", "scored_periods", "retrains", "mean_ndcg_at_10", "mean_hit_rate_at_10",
                 "mean_rmse", "compute_seconds")  # fmt: skip
PERIOD_FIELDS = ("policy", "period", "n_ratings", "ndcg_at_10", "drift_score", "decision", "retrained", "seconds")


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}] {msg}", file=sys.stderr, flush=True)


def replay_command(ratings: Path, movies: Path | None, start: str, every: str, policy_args: list[str]) -> list[str]:
    """The CLI command a user would type (with this interpreter, so the checkout's cinematch runs)."""
    files = ["--ratings", str(ratings), *(["--movies", str(movies)] if movies else [])]
    return [sys.executable, "-m", "cinematch", "replay", *files, "--start", start, "--every", every,
            *policy_args, "--json"]  # fmt: skip


def shown(cmd: list[str]) -> str:
    return " ".join(["cinematch", *cmd[3:]])


# --------------------------------------------------------------------------------------------- measuring


def _tree_rss(pid: int) -> tuple[int, int]:
    """RSS in bytes summed over ``pid`` and its descendants, and how many processes that is (0 once it is gone)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, 0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):  # exited between listing and reading
            total += proc.memory_info().rss
    return total, len(procs)


def run_measured(cmd: list[str], home: Path, workdir: Path) -> dict[str, Any]:
    """Run ``cmd`` with CINEMATCH_HOME=``home``; its wall seconds, peak RSS, exit code, stdout and stderr tail."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("CINEMATCH_")}
    env["CINEMATCH_HOME"] = str(home)
    out_path, err_path = workdir / "stdout.json", workdir / "stderr.log"
    peak = {"tree": 0, "processes": 0}
    done = threading.Event()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=workdir)

        def sample() -> None:
            while not done.wait(SAMPLE_SECONDS):
                rss, n = _tree_rss(proc.pid)
                peak["tree"], peak["processes"] = max(peak["tree"], rss), max(peak["processes"], n)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # wait4 gives this child's own rusage: ru_maxrss is the largest RSS of it or any descendant it reaped (KiB)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        done.set()
        sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    max_process_gb = usage.ru_maxrss / 1024**2
    tree_gb = peak["tree"] / 1024**3
    return {
        "wall_seconds": round(wall, 1),
        "exit_code": proc.returncode,
        "peak_rss_gb": round(max(max_process_gb, tree_gb), 2),
        "peak_rss_max_process_gb": round(max_process_gb, 2),
        "peak_rss_tree_sampled_gb": round(tree_gb, 2),
        "processes_seen": peak["processes"],
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "stdout": out_path.read_text(),
        "stderr_tail": err_path.read_text(errors="replace").strip().splitlines()[-5:],
    }


def run_case(name: str, cmd: list[str], tmp: Path) -> dict[str, Any]:
    """One replay command in a fresh home under ``tmp``; the measurements and the figures of its JSON document."""
    home, workdir = tmp / "home", tmp / "run"
    workdir.mkdir()
    say(f"{name}: {shown(cmd)}")
    before = os.getloadavg()
    run = run_measured(cmd, home, workdir)
    result: dict[str, Any] = {"command": shown(cmd), "targets": TARGETS[name],
                              "load_before": [round(x, 2) for x in before],
                              "load_after": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip
    result.update({k: v for k, v in run.items() if k not in ("stdout", "stderr_tail")})
    if run["exit_code"] != 0:
        result["error"] = " | ".join(run["stderr_tail"]) or f"exit code {run['exit_code']}"
        return result
    doc = json.loads(run["stdout"])
    summary = [{k: s.get(k) for k in POLICY_FIELDS} for s in doc["summary"]]
    result.update({
        "replay_seconds": doc["seconds"],
        "base_seconds": doc["base_seconds"],
        "n_base": doc["n_base"],
        "n_invalid": doc["n_invalid"],
        "start": doc["start"],
        "every": doc["every"],
        "periods": summary[0]["periods"] if summary else 0,
        "policies": summary,
        "verdict": doc["verdict"],
        "period_rows": [{k: p.get(k) for k in PERIOD_FIELDS} for p in doc["periods"]],
    })  # fmt: skip
    return result


# --------------------------------------------------------------------------------------------- cases


def ml_subset(ratings: Path, folder: Path, nth: int) -> Path:
    """Every ``nth`` user's ratings of ``ratings`` (MovieLens CSV, bare header) as ``folder``/ratings.csv."""
    import duckdb

    out = folder / "ratings.csv"
    duckdb.sql(f"copy (select * from read_csv('{ratings}') where userId % {nth} = 0 order by userId, movieId) "
               f"to '{out}' (header)")  # fmt: skip
    return out


def ml_case(ml_dir: Path, start: str, quick: bool, dry_run: bool) -> dict[str, Any]:
    ratings, movies = ml_dir / "ratings.csv", ml_dir / "movies.csv"
    cmd = replay_command(ratings, movies, start, "1mo", ["--compare"])
    if not ratings.is_file():
        return {"skipped": f"{ratings} is absent (it is read from ../shared/data beside the repository)",
                "command": shown(cmd), "targets": TARGETS["ml"]}  # fmt: skip
    if dry_run:
        return {"command": shown(cmd), "targets": TARGETS["ml"]}
    SCRATCH.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="replay-ml-", dir=SCRATCH) as tmp:
        if quick:  # a smoke test: the whole file takes minutes even from a late start (the base's tuning)
            cmd = replay_command(ml_subset(ratings, Path(tmp), QUICK_NTH_USER), movies, start, "1mo", ["--compare"])
        result = run_case("ml", cmd, Path(tmp))
    return {**result, "ratings_file": f"every {QUICK_NTH_USER}th user's ratings" if quick else "whole"}


def write_history(folder: Path, ratings: int, weekly: int, drift_week: int) -> dict[str, Any]:
    """Generate the T2 history (see the module docstring) into ``folder``: history.parquet and movies.csv."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from cinematch.datasets.generate import generate_tables
    from cinematch.datasets.generate_config import GenerateConfig
    from cinematch.datasets.generate_files import write_movies_csv

    base = ratings - WEEKS * weekly
    if base < weekly:
        raise SystemExit(f"--ratings {ratings:,} leaves a base of {base:,} for 12 weeks of {weekly:,}: too small")
    users, movies = max(2_000, ratings // 154), max(1_500, ratings // 400)
    config = GenerateConfig(users=users, movies=movies, ratings=base, weeks=WEEKS, batch_ratings=weekly,
                            drift_week=drift_week, seed=42)  # fmt: skip
    t0 = time.perf_counter()
    tables = generate_tables(config)
    weeks = [tables[f"batch_w{w}"] for w in range(1, WEEKS + 1)]
    # the first week's first day: the generator starts each week at the midnight its base period ends on
    first = pc.min(weeks[0].column("rated_at")).as_py()
    start = datetime.combine(first.date(), datetime.min.time(), tzinfo=UTC)
    base_last = pc.max(tables["ratings"].column("rated_at")).as_py().replace(tzinfo=UTC)
    last = pc.max(weeks[-1].column("rated_at")).as_py().replace(tzinfo=UTC)
    if not (base_last < start and start + timedelta(days=7 * (WEEKS - 1)) <= last < start + timedelta(weeks=WEEKS)):
        raise SystemExit(f"the generated history does not have a base before {start:%Y-%m-%d} and {WEEKS} weeks after")
    history = pa.concat_tables([tables["ratings"], *weeks])
    pq.write_table(history, folder / "history.parquet", compression="zstd")
    write_movies_csv(tables["movies"], folder / "movies.csv")
    return {"history_rows": history.num_rows, "base_rows": tables["ratings"].num_rows, "weekly_rows": weekly,
            "weeks": WEEKS, "drift_week": drift_week, "users": users, "movies": movies,
            "replay_start": f"{start:%Y-%m-%d}", "generate_seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip


def generated_case(ratings: int, weekly: int, drift_week: int, dry_run: bool) -> dict[str, Any]:
    import pyarrow as pa

    policy = ["--policy", "drift"]
    if dry_run:
        cmd = replay_command(Path("<tmp>/history.parquet"), Path("<tmp>/movies.csv"), "<week 1>", "7d", policy)
        return {"command": shown(cmd), "targets": TARGETS["generated"], "history_rows": ratings, "weekly_rows": weekly}
    SCRATCH.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="replay-gen-", dir=SCRATCH) as tmp:
        folder = Path(tmp)
        say(f"generated: {ratings:,} ratings, {WEEKS} weeks of {weekly:,}")
        data = write_history(folder, ratings, weekly, drift_week)
        pa.default_memory_pool().release_unused()  # the generated tables are gone: give their memory back
        say(f"generated in {data['generate_seconds']} s; replay from {data['replay_start']}")
        cmd = replay_command(folder / "history.parquet", folder / "movies.csv", data["replay_start"], "7d", policy)
        result = {**run_case("generated", cmd, folder), **data}
    if "error" not in result and (result["periods"] != WEEKS or result["n_base"] != data["base_rows"]):
        result["error"] = (f"expected {WEEKS} periods after a base of {data['base_rows']:,}, the replay had "
                           f"{result['periods']} after {result['n_base']:,}")  # fmt: skip
    return result


# --------------------------------------------------------------------------------------------- output


def report(name: str, r: dict[str, Any]) -> None:
    label = {"ml": "T1 ml-latest-small", "generated": "T2 generated"}[name]
    print(f"{label}: {r['command']}")
    if "skipped" in r:
        print(f"  skipped: {r['skipped']}")
        return
    if "wall_seconds" not in r:
        print("  (dry run)")
        return
    targets = ", ".join(f"{k} <= {v}" for k, v in r["targets"].items())
    print(f"  wall {r['wall_seconds']:.1f} s, peak RSS {r['peak_rss_gb']:.2f} GB ({r['processes_seen']} process(es) "
          f"seen), cpu {r['cpu_seconds']:.0f} s, load {r['load_before'][0]} -> {r['load_after'][0]}  "
          f"[targets: {targets}]")  # fmt: skip
    if "history_rows" in r:
        print(f"  history {r['history_rows']:,} ratings ({r['users']:,} users, {r['movies']:,} movies): base "
              f"{r['base_rows']:,} + {r['weeks']} weeks x {r['weekly_rows']:,}, drift from week {r['drift_week']}; "
              f"generated in {r['generate_seconds']} s (not in the wall time)")  # fmt: skip
    if "error" in r:
        print(f"  FAILED: {r['error']}")
        return
    print(f"  {r['periods']} periods of {r['every']} from {r['start']}, base {r['n_base']:,} ratings; replay "
          f"{r['replay_seconds']:.1f} s of which the base home with its tuned model {r['base_seconds']:.1f} s")  # fmt: skip
    for p in r["policies"]:
        ndcg = "n/a" if p["mean_ndcg_at_10"] is None else f"{p['mean_ndcg_at_10']:.4f}"
        print(f"    {p['policy']:<10} retrains {p['retrains']:>3}  mean ndcg@10 {ndcg}  "
              f"compute {p['compute_seconds']:8.1f} s")  # fmt: skip
        rows = [row for row in r["period_rows"] if row["policy"] == p["policy"]]
        if p["policy"].startswith("drift"):  # the score per period, * where the policy retrained
            marks = [("-" if row["drift_score"] is None else f"{row['drift_score']:.2f}") + ("*" if row["retrained"] else "")
                     for row in rows]  # fmt: skip
            print("      drift score per period: " + " ".join(marks))
    print(f"  {r['verdict']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", choices=("ml", "generated", "all"), default="all")
    ap.add_argument(
        "--quick",
        action="store_true",
        help=f"T1: every {QUICK_NTH_USER}th user from {ML_QUICK_START}; T2: {QUICK_RATINGS:,} ratings",
    )
    ap.add_argument("--ratings", type=int, default=25_000_000, help="T2: ratings in the whole history")
    ap.add_argument("--weekly", type=int, help="T2: ratings per weekly batch (default: ratings / 50)")
    ap.add_argument("--drift-week", type=int, default=DRIFT_WEEK, help="T2: the first drifting week")
    ap.add_argument("--ml", type=Path, default=MOVIELENS.parent, help="T1: the ml-latest-small folder")
    ap.add_argument("--ml-start", help=f"T1: replay start (default {ML_START}; {ML_QUICK_START} with --quick)")
    ap.add_argument("--dry-run", action="store_true", help="print the commands only")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    ratings = QUICK_RATINGS if args.quick else args.ratings
    weekly = args.weekly or ratings // 50
    doc: dict[str, Any] = {"benchmark": "replay", "machine": machine(), "quick": args.quick}
    if args.case in ("ml", "all"):
        start = args.ml_start or (ML_QUICK_START if args.quick else ML_START)
        doc["ml"] = ml_case(args.ml, start, args.quick, args.dry_run)
        report("ml", doc["ml"])
    if args.case in ("generated", "all"):
        doc["generated"] = generated_case(ratings, weekly, args.drift_week, args.dry_run)
        report("generated", doc["generated"])
    write_json(args.json, doc)
    return 1 if any("error" in doc.get(case, {}) for case in ("ml", "generated")) else 0


if __name__ == "__main__":
    sys.exit(main())
