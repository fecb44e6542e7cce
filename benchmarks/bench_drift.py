"""Benchmark: reference stats of 25M ratings, then load + compare of 1M new ones, vs scipy baselines."""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from cinematch.core.settings import Settings
from cinematch.drift.genres import MovieGenres
from cinematch.drift.histograms import HALF_STAR_BINS
from cinematch.drift.reference import ReferenceStats
from cinematch.drift.stats import compare, reference_stats

# ML-25M's rating counts per half star, so the synthetic data has the real shape
ML25M_COUNTS = np.array([393068, 776815, 399490, 1640868, 1262797, 4896928, 3177318, 6639798, 2200539, 3612474])
GENRES = [
    *("Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama", "Fantasy"),
    *("Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"),
]


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[Any, list[float]]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, times


def make_data(n_ref: int, n_cur: int, n_users: int, n_movies: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    p = ML25M_COUNTS / ML25M_COUNTS.sum()
    # sparse movie ids (ML-25M: 59k movies with ids up to 209k) and Zipf-like popularity
    catalog_ids = np.sort(rng.choice(np.arange(1, 3 * n_movies + 1), n_movies, replace=False)).astype(np.int32)
    popularity = 1.0 / np.arange(1, n_movies + 1) ** 0.9
    popularity /= popularity.sum()
    n_genres = rng.integers(1, 4, n_movies)
    catalog_genres = ["|".join(rng.choice(GENRES, k, replace=False)) for k in n_genres]

    ref = {
        "ratings": rng.choice(HALF_STAR_BINS, n_ref, p=p).astype(np.float32),
        "users": rng.integers(1, n_users + 1, n_ref, dtype=np.int32),
        "movies": rng.choice(catalog_ids, n_ref, p=popularity),
    }
    # new data: the same taste for half the ratings, the other half shifted down half a star, 10% more users
    cur_ratings = rng.choice(HALF_STAR_BINS, n_cur, p=p).astype(np.float32)
    shifted = rng.random(n_cur) < 0.5
    cur_ratings[shifted] = np.maximum(cur_ratings[shifted] - 0.5, 0.5)
    cur = {
        "ratings": cur_ratings,
        "users": rng.integers(1, int(n_users * 1.1) + 1, n_cur, dtype=np.int32),
        "movies": rng.choice(catalog_ids, n_cur, p=popularity),
    }
    return {"ref": ref, "cur": cur, "catalog": MovieGenres.from_arrays(catalog_ids, catalog_genres)}


def fmt(times: list[float]) -> str:
    if len(times) == 1:
        return f"{times[0]:.3f} s"
    return f"median {statistics.median(times):.3f} s (min {min(times):.3f}, n={len(times)})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="200k reference / 20k current ratings")
    ap.add_argument("--repeat", type=int, default=5, help="repetitions of the load + compare timing")
    ap.add_argument("--ref-repeat", type=int, default=3, help="repetitions of the reference_stats timing")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)

    n_ref, n_cur = (200_000, 20_000) if args.quick else (25_000_000, 1_000_000)
    n_users, n_movies = (2_000, 5_000) if args.quick else (162_541, 59_047)
    settings = Settings()
    results: dict[str, Any] = {"n_reference": n_ref, "n_current": n_cur}

    t0 = time.perf_counter()
    data = make_data(n_ref, n_cur, n_users, n_movies, args.seed)
    elapsed = time.perf_counter() - t0
    print(f"data: {n_ref:,} reference, {n_cur:,} current ratings (generated in {elapsed:.1f} s)")
    ref, cur, catalog = data["ref"], data["cur"], data["catalog"]

    # 1. reference stats, once per model version
    _, t_plain = timed(lambda: reference_stats(ref["ratings"]), args.ref_repeat)
    ref_stats, t_full = timed(
        lambda: reference_stats(ref["ratings"], ref["users"], ref["movies"], movie_genres=catalog),
        args.ref_repeat,
    )
    print(f"reference_stats, ratings only:               {fmt(t_plain)}")
    print(f"reference_stats, + user/movie ids + genres:  {fmt(t_full)}")
    results["reference_stats_ratings_only_s"] = statistics.median(t_plain)
    results["reference_stats_full_s"] = statistics.median(t_full)

    with tempfile.TemporaryDirectory() as tmp:
        _, t_save = timed(lambda: ref_stats.save(tmp))
        size = sum(f.stat().st_size for f in Path(tmp).iterdir())
        print(f"save reference ({size / 1e6:.2f} MB on disk):           {fmt(t_save)}")

        # 2. a drift check: read the stored stats, then compare the new ratings
        def check() -> Any:
            loaded = ReferenceStats.load(tmp)
            return compare(
                loaded,
                cur["ratings"],
                cur["users"],
                cur["movies"],
                settings=settings,
                model_rmse_reference=0.80,
                model_rmse_current=0.83,
                movie_genres=catalog,
            )

        result, t_check = timed(check, args.repeat)
        _, t_load = timed(lambda: ReferenceStats.load(tmp), args.repeat)
        _, t_ratings_only = timed(
            lambda: compare(ReferenceStats.load(tmp), cur["ratings"], settings=settings), args.repeat
        )
    print(f"load stats:                                   {fmt(t_load)}")
    print(f"load + compare, ratings only:                 {fmt(t_ratings_only)}")
    print(f"load + compare, + ids + genres (target < 1 s): {fmt(t_check)}")
    print(
        f"  → decision={result.decision} score={result.score:.3f} kl={result.kl_divergence:.4f} "
        f"mean_shift={result.mean_shift:+.3f} median_shift={result.median_shift:+.2f} psi={result.psi:.4f} "
        f"ks={result.ks_statistic:.4f} new_users={result.new_user_share:.3f} "
        f"new_movies={result.new_movie_share:.3f} genres={len(result.genre_drift)}"
    )
    results["load_s"] = statistics.median(t_load)
    results["load_compare_ratings_only_s"] = statistics.median(t_ratings_only)
    results["load_compare_full_s"] = statistics.median(t_check)
    results["result"] = result.to_dict()

    # 3. what a user would otherwise write, on the raw arrays
    if importlib.util.find_spec("evidently") is None:
        print("evidently: not installed, skipped (the DataDriftPreset comparison needs `pip install evidently`)")
        results["evidently_s"] = None
    else:  # pragma: no cover - not installed in the project's environment
        import pandas as pd
        from evidently import Report
        from evidently.presets import DataDriftPreset

        ref_df = pd.DataFrame({"rating": ref["ratings"]})
        cur_df = pd.DataFrame({"rating": cur["ratings"]})
        _, t_ev = timed(lambda: Report([DataDriftPreset()]).run(cur_df, ref_df))
        print(f"evidently DataDriftPreset on rating:          {fmt(t_ev)}")
        results["evidently_s"] = t_ev[0]

    ks, t_ks = timed(lambda: stats.ks_2samp(ref["ratings"], cur["ratings"]))
    edges = np.append(HALF_STAR_BINS - 0.25, 5.25)

    def hist_kl() -> float:
        pc, _ = np.histogram(cur["ratings"], bins=edges)
        pr, _ = np.histogram(ref["ratings"], bins=edges)
        return float(stats.entropy(pc, pr))

    kl_raw, t_ent = timed(hist_kl)
    print(f"scipy ks_2samp on raw arrays:                 {fmt(t_ks)}  (D={ks.statistic:.4f})")
    print(f"np.histogram ×2 + scipy entropy:              {fmt(t_ent)}  (KL={kl_raw:.4f}, unsmoothed)")
    total = t_ks[0] + t_ent[0]
    print(f"scipy baseline total (reads all {n_ref:,} reference ratings each check): {total:.3f} s")
    results["scipy_ks_2samp_s"] = t_ks[0]
    results["scipy_hist_entropy_s"] = t_ent[0]

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
