"""Benchmark: ALS fit time per iteration, RMSE and peak RSS on synthetic low-rank data and ml-latest-small."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import MOVIELENS

from cinematch.recommender.als import ALSModel
from cinematch.recommender.als_params import ALSParams
from cinematch.recommender.metrics import evaluate, most_popular_baseline, rmse

# git-ignored cache of generated data (same override variable as the other benchmarks)
DATA_DIR = Path(os.environ.get("CINEMATCH_BENCH_DIR", Path(__file__).resolve().parent / ".data"))
TRUE_RANK = 10


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def make_synthetic(n_ratings: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded low-rank ratings shaped like ML-25M (≈154 ratings/user, ≈423/item), 10% extra held out.

    r = 3.5 + b_u + c_i + p_u·q_i (rank 10) + N(0, 0.7), rounded to half stars in [0.5, 5]; user activity
    is log-normal and item popularity Zipf-like; ids are sparse like MovieLens ids; pairs are unique.
    """
    rng = np.random.default_rng(seed)
    n_test = min(max(n_ratings // 10, 1), 1_000_000)
    total = n_ratings + n_test
    n_users = max(50, round(n_ratings / 154))
    # ML-25M's items-per-rating ratio, but at most ~3% density so that small runs stay sparse.
    n_items = max(50, round(n_ratings / 423), round(total / (0.03 * n_users)))
    activity = rng.lognormal(0.0, 1.0, n_users)
    activity /= activity.sum()
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.9
    popularity /= popularity.sum()

    # Oversample, then drop repeated (user, item) pairs; the popular heads repeat, so top up until enough.
    keys = np.empty(0, dtype=np.int64)
    for _ in range(8):
        draw = int((total - len(keys)) * 1.3) + 1000
        fresh = rng.choice(n_users, draw, p=activity).astype(np.int64) * n_items + rng.choice(
            n_items, draw, p=popularity
        )
        keys = np.unique(np.concatenate([keys, fresh]))
        if len(keys) >= total:
            break
    else:
        raise SystemExit(f"could only draw {len(keys):,} distinct pairs for {total:,} ratings")
    keys = keys[rng.permutation(len(keys))[:total]]
    users = (keys // n_items).astype(np.int32)
    items = (keys % n_items).astype(np.int32)
    del keys

    factor_sd = np.sqrt(0.6 / np.sqrt(TRUE_RANK))  # so that p_u·q_i has standard deviation 0.6
    p = rng.normal(0.0, factor_sd, (n_users, TRUE_RANK)).astype(np.float32)
    q = rng.normal(0.0, factor_sd, (n_items, TRUE_RANK)).astype(np.float32)
    b_user = rng.normal(0.0, 0.4, n_users).astype(np.float32)
    b_item = rng.normal(0.0, 0.5, n_items).astype(np.float32)
    ratings = np.empty(total, dtype=np.float32)
    step = 2_000_000
    for s in range(0, total, step):  # chunked so the (chunk x rank) gathers stay small
        u, i = users[s : s + step], items[s : s + step]
        ratings[s : s + step] = 3.5 + b_user[u] + b_item[i] + np.einsum("ij,ij->i", p[u], q[i])
    ratings += rng.normal(0.0, 0.7, total).astype(np.float32)
    ratings = np.clip(np.round(ratings * 2) / 2, 0.5, 5.0).astype(np.float32)

    # MovieLens-like sparse external ids exercise the id mapping.
    user_ids = np.sort(rng.choice(3 * n_users, n_users, replace=False)).astype(np.int64)[users]
    item_ids = np.sort(rng.choice(4 * n_items, n_items, replace=False)).astype(np.int64)[items]
    return {
        "train_user": user_ids[:n_ratings],
        "train_item": item_ids[:n_ratings],
        "train_rating": ratings[:n_ratings],
        "test_user": user_ids[n_ratings:],
        "test_item": item_ids[n_ratings:],
        "test_rating": ratings[n_ratings:],
    }


def load_movielens(path: Path, seed: int) -> dict[str, np.ndarray]:
    """ml-latest-small as arrays, with the project's seeded 80/20 random split."""
    import pandas as pd

    from cinematch.recommender.split import random_split

    df = pd.read_csv(path).rename(columns={"userId": "user_id", "movieId": "movie_id", "timestamp": "rated_at"})
    train, test = random_split(df, test_fraction=0.2, seed=seed)
    return {
        "train_user": train["user_id"].to_numpy(np.int64),
        "train_item": train["movie_id"].to_numpy(np.int64),
        "train_rating": train["rating"].to_numpy(np.float32),
        "test_user": test["user_id"].to_numpy(np.int64),
        "test_item": test["movie_id"].to_numpy(np.int64),
        "test_rating": test["rating"].to_numpy(np.float32),
    }


def cached(name: str, build: Any) -> Path:
    path = DATA_DIR / f"{name}.npz"
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        data = build()
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **data)
        tmp.rename(path)
        print(f"  generated {name} in {time.perf_counter() - t0:.1f} s -> {path}", flush=True)
    return path


def fit_once(data_path: Path, rank: int, iterations: int, seed: int, rank_metrics: bool) -> dict[str, Any]:
    """Runs in a fresh child process so that its peak RSS is this fit's alone."""
    with np.load(data_path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    params = ALSParams(rank=rank, iterations=iterations, seed=seed)
    stamps: list[float] = []
    t0 = time.perf_counter()
    model = ALSModel.fit(
        data["train_user"],
        data["train_item"],
        data["train_rating"],
        params,
        progress=lambda it, loss: stamps.append(time.perf_counter()),
    )
    fit_s = time.perf_counter() - t0
    per_iter = np.diff([t0, *stamps])
    pred, fallback = model.predict(data["test_user"], data["test_item"])
    out: dict[str, Any] = {
        "rank": rank,
        "iterations": iterations,
        "n_train": len(data["train_rating"]),
        "n_users": model.n_users,
        "n_items": model.n_items,
        "fit_s": fit_s,
        # The first "iteration" also includes id mapping and building the CSR/CSC matrices.
        "s_per_iter_median": float(statistics.median(per_iter)),
        "s_first_iter": float(per_iter[0]),
        "train_rmse": model.train_rmse[-1],
        "test_rmse": rmse(data["test_rating"], pred),
        "test_fallback_share": float(fallback.mean()),
        "peak_rss_mb": peak_rss_mb(),
    }
    if rank_metrics:
        import pandas as pd

        def frame(prefix: str) -> pd.DataFrame:
            return pd.DataFrame(
                {
                    "user_id": data[f"{prefix}_user"],
                    "movie_id": data[f"{prefix}_item"],
                    "rating": data[f"{prefix}_rating"],
                }
            )

        train, test = frame("train"), frame("test")
        out["evaluate"] = evaluate(model, train, test, k=10)
        out["most_popular"] = most_popular_baseline(train, test, k=10)
    return out


def run_child(data_path: Path, rank: int, iterations: int, seed: int, rank_metrics: bool) -> dict[str, Any]:
    spec = json.dumps(
        {"data": str(data_path), "rank": rank, "iterations": iterations, "seed": seed, "rank_metrics": rank_metrics}
    )
    proc = subprocess.run([sys.executable, __file__, "--child", spec], check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------------
# Spark comparison: pyspark.ml ALS with the same rank / λ / iterations / seed.
# ---------------------------------------------------------------------------------------------------
def run_spark_als(data_path: Path, rank: int, iterations: int, seed: int, reg: float) -> dict[str, Any] | None:
    """Train pyspark.ml ALS (local[2]) on the same split; None (with a printed note) without pyspark.

    Spark's ``regParam`` is also ALS-WR-scaled (λ·n_u, λ·n_i), but Spark has no bias terms and no
    unweighted ridge, so its RMSE is expected to be worse at the same λ.
    """
    if importlib.util.find_spec("pyspark") is None:
        return None
    import warnings

    import pandas as pd
    from pyspark.ml.evaluation import RegressionEvaluator
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import SparkSession

    with np.load(data_path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("cinematch-bench-als")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.driver.memory", "6g")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # pyspark's pandas-version notice
            train, test = (
                spark.createDataFrame(
                    pd.DataFrame(
                        {
                            "user_id": data[f"{prefix}_user"].astype(np.int32),
                            "movie_id": data[f"{prefix}_item"].astype(np.int32),
                            "rating": data[f"{prefix}_rating"],
                        }
                    )
                ).cache()
                for prefix in ("train", "test")
            )
        train.count()
        als = ALS(
            rank=rank,
            maxIter=iterations,
            regParam=reg,
            seed=seed,
            userCol="user_id",
            itemCol="movie_id",
            ratingCol="rating",
            coldStartStrategy="drop",  # Spark cannot score unknown ids; ours are scored with fallbacks
        )
        t0 = time.perf_counter()
        model = als.fit(train)
        fit_s = time.perf_counter() - t0
        evaluator = RegressionEvaluator(metricName="rmse", labelCol="rating", predictionCol="prediction")
        test_rmse = evaluator.evaluate(model.transform(test))
        return {"fit_s": fit_s, "s_per_iter": fit_s / iterations, "test_rmse": test_rmse}
    finally:
        spark.stop()


def report(label: str, r: dict[str, Any]) -> None:
    print(
        f"    {label} rank {r['rank']:>3}: {r['s_per_iter_median']:.3f} s/iter (first incl. setup {r['s_first_iter']:.3f}, "
        f"fit {r['fit_s']:.1f} s, {r['iterations']} iters)  train RMSE {r['train_rmse']:.4f}  "
        f"test RMSE {r['test_rmse']:.4f}  peak RSS {r['peak_rss_mb']:,.0f} MB",
        flush=True,
    )
    if "evaluate" in r:
        ev, mp = r["evaluate"], r["most_popular"]
        print(
            f"      ALS: P@10 {ev['precision_at_10']:.4f} R@10 {ev['recall_at_10']:.4f} "
            f"nDCG@10 {ev['ndcg_at_10']:.4f} coverage {ev['coverage']:.4f} MAE {ev['mae']:.4f}\n"
            f"      most popular: P@10 {mp['precision_at_10']:.4f} R@10 {mp['recall_at_10']:.4f} "
            f"nDCG@10 {mp['ndcg_at_10']:.4f} coverage {mp['coverage']:.4f}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="200k synthetic ratings (overrides --ratings)")
    ap.add_argument("--ratings", type=int, default=1_000_000, help="synthetic training ratings (default 1M)")
    ap.add_argument("--ranks", default="10,64", help="comma-separated ranks (default 10,64)")
    ap.add_argument("--iterations", type=int, default=ALSParams().iterations)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--movielens", type=Path, default=MOVIELENS, help="ml-latest-small ratings.csv, if present")
    ap.add_argument("--no-spark", action="store_true", help="skip the pyspark comparison (implied by --quick)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        spec = json.loads(args.child)
        print(
            json.dumps(
                fit_once(Path(spec["data"]), spec["rank"], spec["iterations"], spec["seed"], spec["rank_metrics"])
            )
        )
        return 0

    n_ratings = 200_000 if args.quick else args.ratings
    if args.quick and not args.no_spark:
        print("spark: skipped in --quick mode (a Spark session costs more than the whole quick run)")
        args.no_spark = True
    ranks = [int(r) for r in args.ranks.split(",") if r.strip()]
    datasets: list[tuple[str, Path, bool]] = []
    print(f"synthetic: {n_ratings:,} training ratings, true rank {TRUE_RANK}, seed {args.seed}", flush=True)
    datasets.append(
        ("synthetic", cached(f"synthetic_{n_ratings}_{args.seed}", lambda: make_synthetic(n_ratings, args.seed)), False)
    )
    if args.movielens.is_file():
        path = cached(f"ml-latest-small_{args.seed}", lambda: load_movielens(args.movielens, args.seed))
        datasets.append(("ml-latest-small", path, True))
    else:
        print(f"ml-latest-small: {args.movielens} not found; skipped")

    results: dict[str, Any] = {"params": {"iterations": args.iterations, "seed": args.seed}, "runs": []}
    if not args.no_spark and importlib.util.find_spec("pyspark") is None:
        print("spark: pyspark not installed; Spark ALS comparison skipped (pip install 'cinematch[spark]')")
    for name, path, rank_metrics in datasets:
        print(f"{name}:", flush=True)
        for rank in ranks:
            r = run_child(path, rank, args.iterations, args.seed, rank_metrics)
            report(name, r)
            r["dataset"] = name
            if not args.no_spark:
                r["spark"] = run_spark_als(path, rank, args.iterations, args.seed, ALSParams().reg)
                if r["spark"]:
                    s = r["spark"]
                    print(
                        f"    {name} spark ALS rank {rank:>3}: {s['s_per_iter']:.3f} s/iter (fit / iterations, "
                        f"fit {s['fit_s']:.1f} s)  test RMSE {s['test_rmse']:.4f}",
                        flush=True,
                    )
            results["runs"].append(r)

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
