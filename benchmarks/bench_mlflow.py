"""Benchmark: a warehouse training run on 1M generated ratings with MLflow off and on, in one process.

    python benchmarks/bench_mlflow.py [--ratings 1000000] [--pairs 2] [--quick] [--json FILE]

A real `mlflow server` (SQLite backend, file artifact store) is started on loopback. One home is built once
(ingest + ETL of the generated ratings) and a first model is trained untimed (the ranking search, and a
champion for the later runs to be compared with). Then the same training (`cinematch train`'s path:
pipelines.engine.train_warehouse, every batch again with force) runs in alternating pairs, MLflow off
(CINEMATCH_MLFLOW_TRACKING_URI unset) then on; `mlflow` is imported before any timing (the issue excludes
its import). The figure is the overhead ratio of the medians, target <= 1.10. On a shared machine the
trainings' own spread can exceed the mirror's cost, so the time spent in the mirror after each training
(mlflow_sync.after_training: the wait for the warm-up, logging, upload, registration, alias) is also reported,
with the ratio it gives against the median training without MLflow.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests.mlflow_server: the same server start as the tests
from _common import machine, write_json  # noqa: E402
from tests.mlflow_server import MlflowServer  # noqa: E402

from cinematch.core.settings import Settings  # noqa: E402


def build_home(home: Path, ratings: int) -> Settings:
    import pyarrow.parquet as pq

    from cinematch.datasets.generate import generate_tables
    from cinematch.datasets.generate_config import GenerateConfig
    from cinematch.ingest.bronze import ingest_file
    from cinematch.lakehouse.etl import run_etl
    from cinematch.storage.warehouse import write_session

    settings = Settings(home=home)
    users, movies = max(1000, ratings // 150), max(1000, ratings // 400)
    tables = generate_tables(GenerateConfig(users=users, movies=movies, ratings=ratings, weeks=1, batch_ratings=100))
    path = home.parent / "ratings.parquet"
    pq.write_table(tables["ratings"], path)
    with write_session(settings) as con:
        ingest_file(con, path)
        run_etl(con, settings, write_lake=False)
    return settings


def train_once(settings: Settings) -> tuple[float, str]:
    from cinematch.pipelines.engine import train_warehouse
    from cinematch.recommender.training import params_from_settings
    from cinematch.storage.warehouse import write_session

    with write_session(settings, "bench") as con:
        t0 = time.perf_counter()
        run = train_warehouse(con, settings, params_from_settings(settings))
        return time.perf_counter() - t0, run.version


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ratings", type=int, default=1_000_000)
    ap.add_argument("--pairs", type=int, default=3, help="off/on pairs timed after the untimed first model")
    ap.add_argument("--quick", action="store_true", help="100k ratings, one pair")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    ratings, pairs = (100_000, 1) if args.quick else (args.ratings, args.pairs)

    import mlflow
    import mlflow.pyfunc  # noqa: F401

    from cinematch.pipelines import mlflow_client, mlflow_sync
    from cinematch.pipelines.mlflow_log import registered_versions

    mirror_s: list[float] = []
    after_training = mlflow_sync.after_training

    def timed_mirror(*args: object, **kwargs: object) -> None:
        t0 = time.perf_counter()
        after_training(*args, **kwargs)
        if kwargs.get("warm") is not None:  # MLflow on (off: the hook returns at once)
            mirror_s.append(time.perf_counter() - t0)

    mlflow_sync.after_training = timed_mirror

    with tempfile.TemporaryDirectory(prefix="bench-mlflow-") as tmp:
        server = MlflowServer(Path(tmp) / "mlflow").start()
        try:
            t0 = time.perf_counter()
            off = build_home(Path(tmp) / "home", ratings)
            build_s = time.perf_counter() - t0
            on = Settings(home=off.home, mlflow_tracking_uri=server.uri)
            first_s, _ = train_once(off)
            print(f"{ratings:,} ratings: home built in {build_s:.1f} s; first model (ranking search) {first_s:.1f} s")
            times: dict[str, list[float]] = {"off": [], "on": []}
            for i in range(pairs):
                for mode, settings in (("off", off), ("on", on)):
                    seconds, version = train_once(settings)
                    times[mode].append(seconds)
                    mirror = f", of which mirror {mirror_s[-1]:.2f} s" if mode == "on" and mirror_s else ""
                    print(f"pair {i + 1} mlflow {mode:>3}: {seconds:.2f} s ({version}{mirror})")
            client = mlflow_client.connect(on)
            mirrored = len(registered_versions(client))
        finally:
            server.stop()
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["on"] / med["off"]
    mirror_med = statistics.median(mirror_s) if mirror_s else float("nan")
    mirror_ratio = (med["off"] + mirror_med) / med["off"]
    print(f"median training: mlflow off {med['off']:.2f} s, on {med['on']:.2f} s; overhead ratio {ratio:.3f} "
          f"(target <= 1.10); {mirrored} version(s) registered in MLflow")  # fmt: skip
    print(f"median mirror after training: {mirror_med:.2f} s; (off + mirror) / off = {mirror_ratio:.3f}")
    write_json(args.json, {"ratings": ratings, "pairs": pairs, "build_s": round(build_s, 2),
                           "first_model_s": round(first_s, 2), "off_s": times["off"], "on_s": times["on"],
                           "off_median_s": med["off"], "on_median_s": med["on"], "overhead_ratio": round(ratio, 4),
                           "mirror_s": mirror_s, "mirror_median_s": mirror_med, "mirror_ratio": round(mirror_ratio, 4),
                           "mirrored_versions": mirrored, "machine": machine()})  # fmt: skip


if __name__ == "__main__":
    main()
