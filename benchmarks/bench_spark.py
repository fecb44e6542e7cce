"""Benchmark: DuckDB vs Spark local[2] for the full-refresh ETL, and CineMatch's NumPy ALS vs Spark MLlib ALS.

    .venv/bin/python benchmarks/bench_spark.py [--quick] [--sizes 1m,25m] [--als-sizes 1m] [--json PATH]

ETL: the generated ``ratings`` (N buffered ratings) and movies are ingested into bronze once; copies of that home
then run ``run_etl(con, settings, full_refresh=True)`` with CINEMATCH_ENGINE=duckdb and =spark, each in a fresh
child process (Spark's session start is timed apart from the run). ALS: the same ratings, split 80/20 by the
platform's stable hash, fitted by ``ALSModel.fit`` and by Spark MLlib (``fit_spark_als``) with the same ALSParams;
seconds per iteration and held-out RMSE. Spark's per-iteration time is the slope between a 2-iteration fit and an
N-iteration fit, so session, data transfer and factor collection are not counted as iterations.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import SCRATCH, machine, write_json  # noqa: E402

SIZES = {"100k": "small", "1m": "medium", "25m": "large"}
DRIVER_MEMORY = "8g"  # Spark's local[2] driver is its executor too; NumPy ALS is held to the same 8 GB


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024


# --- data ------------------------------------------------------------------------------------------------------


def bronze_home(size: str) -> Path:
    """A home whose bronze holds the generated ratings and movies of ``size`` (built once, then reused)."""
    from cinematch.core.settings import Settings
    from cinematch.datasets.generate import generate_tables
    from cinematch.datasets.generate_config import scale_config
    from cinematch.datasets.generate_files import write_tables
    from cinematch.ingest.bronze import ingest_file
    from cinematch.storage.warehouse import write_session

    home = SCRATCH / f"spark-bronze-{size}"
    if (home / "READY").is_file():
        return home
    shutil.rmtree(home, ignore_errors=True)
    t0 = time.perf_counter()
    tables = generate_tables(scale_config(SIZES[size]))  # type: ignore[arg-type]
    files = write_tables({"ratings": tables["ratings"], "movies": tables["movies"]}, home / "files")
    del tables
    settings = Settings(home=home / "home")
    with write_session(settings) as con:
        ingest_file(con, Path(files["movies"]["path"]), kind="movies")
        ingest_file(con, Path(files["ratings"]["path"]))
    (home / "READY").write_text(f"{time.perf_counter() - t0:.1f}\n")
    print(f"  bronze {size}: {files['ratings']['rows']:,} ratings in {time.perf_counter() - t0:.1f} s", flush=True)
    return home


def als_data(size: str) -> Path:
    """Train/test arrays (stable 80/20 split) of the same generated ratings, cached as .npz."""
    import numpy as np
    import pyarrow.parquet as pq

    from cinematch.recommender.training_set import stable_split

    path = SCRATCH / f"spark-als-{size}.npz"
    if not path.is_file():
        ratings = pq.read_table(bronze_home(size) / "files" / "ratings.parquet")
        train, test = stable_split(ratings)
        cols = {"user": "user_id", "item": "movie_id", "rating": "rating"}
        arrays = {f"{side}_{k}": t.column(c).to_numpy() for side, t in (("train", train), ("test", test))
                  for k, c in cols.items()}  # fmt: skip
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.rename(path)
    return path


# --- child processes -------------------------------------------------------------------------------------------


def child_etl(spec: dict[str, Any]) -> dict[str, Any]:
    from cinematch.core.settings import Settings
    from cinematch.pipelines.engine import run_etl
    from cinematch.storage.warehouse import write_session

    settings = Settings(home=Path(spec["home"]), engine=spec["engine"], spark_master="local[2]")
    out: dict[str, Any] = {"engine": spec["engine"]}
    if spec["engine"] == "spark":
        from cinematch.engines.spark_session import spark_session

        t0 = time.perf_counter()
        spark = spark_session(settings)
        spark.sparkContext.setLogLevel("ERROR")
        out["session_s"] = time.perf_counter() - t0
    with write_session(settings) as con:
        t0 = time.perf_counter()
        run = run_etl(con, settings, full_refresh=True)
        out["etl_s"] = time.perf_counter() - t0
        if spec["engine"] == "spark":
            out["spark_s"] = run["spark_seconds"]  # staging + Spark jobs; the rest is load-back and gates in DuckDB
            out["spark_write_s"] = run["spark_write_seconds"]
        if spec.get("warm"):
            # the same refresh again in the same process: JIT-compiled JVM, warm caches (DuckDB: warm file cache)
            t0 = time.perf_counter()
            run = run_etl(con, settings, full_refresh=True)
            out["etl_warm_s"] = time.perf_counter() - t0
    out["rows"] = run["layers"]["silver"]["rows"]["ratings"]
    out["gold_rows"] = sum(run["layers"]["gold"]["rows"].values())
    out["failed_checks"] = [c["check"] for lay in run["layers"].values() for c in lay.get("checks", [])
                            if not c["passed"] and c["severity"] == "hard"]  # fmt: skip
    out["peak_rss_gb_python"] = _rss_gb()
    return out


def child_als(spec: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import pyarrow as pa

    from cinematch.recommender.als import ALSModel
    from cinematch.recommender.als_params import ALSParams
    from cinematch.recommender.metrics import rmse

    with np.load(spec["data"], allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    out: dict[str, Any] = {"engine": spec["engine"], "rank": spec["rank"], "reg": spec["reg"],
                           "n_train": len(data["train_rating"])}  # fmt: skip

    def params(iterations: int) -> ALSParams:
        return ALSParams(rank=spec["rank"], reg=spec["reg"], iterations=iterations, seed=42)

    if spec["engine"] == "numpy":
        stamps: list[float] = []
        t0 = time.perf_counter()
        model = ALSModel.fit(data["train_user"], data["train_item"], data["train_rating"], params(spec["iterations"]),
                             progress=lambda *_: stamps.append(time.perf_counter()))  # fmt: skip
        out["fit_s"] = time.perf_counter() - t0
        steps = np.diff([t0, *stamps])
        out["s_per_iter"] = float(np.median(steps[1:] if len(steps) > 1 else steps))  # 1st includes the CSR build
    else:
        from cinematch.core.settings import Settings
        from cinematch.engines.spark_als import fit_spark_als
        from cinematch.engines.spark_session import spark_session

        spark = spark_session(Settings(spark_master="local[2]"))
        spark.sparkContext.setLogLevel("ERROR")
        train = pa.table({"user_id": data["train_user"], "movie_id": data["train_item"],
                          "rating": data["train_rating"]})  # fmt: skip
        # warm-up on a slice: the first MLlib fit of a JVM pays for class loading and JIT compilation
        fit_spark_als(train.slice(0, 50_000), params(1), spark=spark)
        phases: dict[int, dict[str, float]] = {}
        for iterations in sorted({min(2, spec["iterations"]), spec["iterations"]}):
            phases[iterations] = {}
            t0 = time.perf_counter()
            model = fit_spark_als(train, params(iterations), spark=spark, timings=phases[iterations])
            phases[iterations]["total"] = time.perf_counter() - t0
        short, full = min(phases), max(phases)
        out["fit_s"] = phases[full]["total"]
        out["phases_s"] = phases[full]
        # iterations only: the slope of MLlib's fit time between a short and a full fit (blocking, transfer and
        # collection cost the same in both)
        fit_short, fit_full = phases[short]["mllib_fit"], phases[full]["mllib_fit"]
        out["s_per_iter"] = (fit_full - fit_short) / (full - short) if full > short else fit_full / full
        out["mllib_fit_s_per_iter"] = fit_full / full  # upper bound: includes MLlib's blocking of the ratings
    pred, _ = model.predict(data["test_user"], data["test_item"])
    out["iterations"] = spec["iterations"]
    out["test_rmse"] = rmse(data["test_rating"], pred)
    out["peak_rss_gb_python"] = _rss_gb()
    return out


def run_child(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    env = {**os.environ, "SPARK_DRIVER_MEMORY": DRIVER_MEMORY, "PYTHONWARNINGS": "ignore::FutureWarning"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True,
                          text=True, env=env, timeout=timeout)  # fmt: skip
    if proc.returncode != 0:
        return {
            **spec,
            "error": proc.stderr.strip().splitlines()[-1:] or ["failed"],
            "wall_s": time.perf_counter() - t0,
        }
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "wall_s": time.perf_counter() - t0}


# --- main ------------------------------------------------------------------------------------------------------


def bench_etl(size: str) -> dict[str, Any]:
    bronze = bronze_home(size) / "home"
    out: dict[str, Any] = {"size": size}
    for engine in ("duckdb", "spark"):
        home = SCRATCH / f"spark-etl-{size}-{engine}"
        shutil.rmtree(home, ignore_errors=True)
        shutil.copytree(bronze, home, symlinks=True)
        spec = {"task": "etl", "engine": engine, "home": str(home), "warm": size != "25m"}
        out[engine] = run_child(spec, timeout=7200)
        shutil.rmtree(home, ignore_errors=True)
        print(f"  etl {size} {engine}: {out[engine]}", flush=True)
    return out


def bench_als(size: str, ranks: list[int], iterations: int, reg: float) -> list[dict[str, Any]]:
    data = als_data(size)
    rows = []
    for rank in ranks:
        for engine in ("numpy", "spark"):
            spec = {"task": "als", "engine": engine, "data": str(data), "rank": rank, "iterations": iterations,
                    "reg": reg}  # fmt: skip
            row = {"size": size, **run_child(spec, timeout=14400)}
            print(f"  als {size} rank {rank} {engine}: {row}", flush=True)
            rows.append(row)
    return rows


def _fmt(value: Any, spec: str = ".2f") -> str:
    return format(value, spec) if isinstance(value, int | float) else "-"


def print_tables(doc: dict[str, Any]) -> None:
    print("\nfull-refresh ETL (silver + gold) from N buffered ratings; seconds")
    print(f"{'N':>6} {'duckdb':>9} {'spark':>9} {'spark/duck':>10} {'duck warm':>10} {'spark warm':>10} "
          f"{'session':>8} {'spark jobs':>10}")  # fmt: skip
    for r in doc["etl"]:
        d, s = r["duckdb"], r["spark"]
        ratio = s.get("etl_s", 0) / d["etl_s"] if d.get("etl_s") and s.get("etl_s") else None
        print(f"{r['size']:>6} {_fmt(d.get('etl_s')):>9} {_fmt(s.get('etl_s')):>9} {_fmt(ratio, '.1f'):>10} "
              f"{_fmt(d.get('etl_warm_s')):>10} {_fmt(s.get('etl_warm_s')):>10} {_fmt(s.get('session_s')):>8} "
              f"{_fmt(s.get('spark_s')):>10}")  # fmt: skip
    print("\nALS (same data, ALSParams, 80/20 stable split); seconds per iteration and held-out RMSE")
    print(f"{'N':>6} {'rank':>5} {'engine':>7} {'reg':>5} {'s/iter':>8} {'fit s':>8} {'RMSE':>7}")
    for r in doc["als"]:
        print(f"{r['size']:>6} {r['rank']:>5} {r['engine']:>7} {r['reg']:>5} {_fmt(r.get('s_per_iter')):>8} "
              f"{_fmt(r.get('fit_s'), '.1f'):>8} {_fmt(r.get('test_rmse'), '.4f'):>7}{'  ' + str(r['error']) if 'error' in r else ''}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100k ratings only (ETL and ALS)")
    ap.add_argument("--sizes", default="1m,25m", help="ETL sizes among 100k,1m,25m")
    ap.add_argument("--als-sizes", default="1m", help="ALS sizes among 100k,1m,25m ('' for none)")
    ap.add_argument("--ranks", default="10,64")
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--reg", type=float, default=0.05, help="ALS reg (MLlib regParam); CineMatch's default 0.05")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(child_etl(spec) if spec["task"] == "etl" else child_als(spec), default=str))
        return
    etl_sizes = ["100k"] if args.quick else [s for s in args.sizes.split(",") if s]
    als_sizes = ["100k"] if args.quick else [s for s in args.als_sizes.split(",") if s]
    iterations = 5 if args.quick else args.iterations
    ranks = [int(r) for r in args.ranks.split(",")]
    t0 = time.perf_counter()
    doc: dict[str, Any] = {"benchmark": "spark", "machine": machine(), "load_average_start": os.getloadavg(),
                           "driver_memory": DRIVER_MEMORY, "etl": [], "als": []}  # fmt: skip
    for size in etl_sizes:
        doc["etl"].append(bench_etl(size))
    for size in als_sizes:
        doc["als"].extend(bench_als(size, ranks, iterations, args.reg))
    doc["load_average_end"] = os.getloadavg()
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    print_tables(doc)
    write_json(args.json, doc)


if __name__ == "__main__":
    main()
