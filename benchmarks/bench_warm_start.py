"""Warm-started refits against cold ones: fit time and held-out quality of ALS (test RMSE) and iALS (NDCG@10).

    .venv/bin/python benchmarks/bench_warm_start.py [--ratings N] [--weekly N] [--quick] [--json PATH]

The T2 history of bench_replay.py (``--ratings`` in all, default 25M; a base, then 12 weekly batches of
``--weekly``, default N/50) is generated in memory. The champion is fitted cold on the base and weeks 1-2 (the
models a retrain starts from); the refit's data is the base and weeks 1-7. Both are split by the warehouse's
stable split (80/20 by a salted hash of user, movie and time). On the refit's training part: ALS (rank 32, 12
iterations, the defaults) and the served iALS of T2 (64 factors, regularization 10, α 4, 8 iterations, the choice
its search makes at 25M) are fitted cold, then warm from the champion for 1, 2 and 3 iterations. Quality on the
held-out part: ALS test RMSE on every held-out rating; iALS NDCG@10 (rating >= 4 relevant) of its top-10 from each
user's training history, on the 20,000 sampled test users of ``CINEMATCH_EVAL_MAX_USERS``. Fit seconds are wall
time on this machine (all cores). ``--quick``: 1M ratings.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write_json

QUICK_RATINGS = 1_000_000
WEEKS, CHAMPION_WEEKS, REFIT_WEEKS = 12, 2, 7
IALS_CHOICE = {"factors": 64, "regularization": 10.0, "alpha": 4.0, "iterations": 8, "seed": 42}
WARM = (1, 2, 3)


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def history(ratings: int, weekly: int) -> tuple[Any, Any]:
    """(champion's ratings, refit's ratings): the base and the first 2, then 7, weekly batches."""
    import pyarrow as pa

    from cinematch.datasets.generate import generate_tables
    from cinematch.datasets.generate_config import GenerateConfig

    base = ratings - WEEKS * weekly
    config = GenerateConfig(users=max(2_000, ratings // 154), movies=max(1_500, ratings // 400), ratings=base,
                            weeks=WEEKS, batch_ratings=weekly, drift_week=2, seed=42)  # fmt: skip
    tables = generate_tables(config)
    columns = ["user_id", "movie_id", "rating", "rated_at"]

    def upto(weeks: int) -> pa.Table:
        parts = [tables["ratings"], *(tables[f"batch_w{w}"] for w in range(1, weeks + 1))]
        return pa.concat_tables([t.select(columns).cast(parts[0].select(columns).schema) for t in parts])

    return upto(CHAMPION_WEEKS), upto(REFIT_WEEKS)


def run(ratings: int, weekly: int) -> dict[str, Any]:
    import numpy as np
    import pyarrow as pa

    from cinematch.recommender.als import ALSModel
    from cinematch.recommender.als_params import ALSParams
    from cinematch.recommender.evaluation import evaluation_users, popular_items
    from cinematch.recommender.ials import IALS, IALSParams
    from cinematch.recommender.interactions import histories
    from cinematch.recommender.metrics import ranking_metrics, rmse
    from cinematch.recommender.ranker import Component, Ranker
    from cinematch.recommender.training_set import stable_split
    from cinematch.recommender.tuning import RankingConfig, catalogue

    t0 = time.perf_counter()
    early, data = history(ratings, weekly)
    say(f"generated {early.num_rows:,} and {data.num_rows:,} ratings in {time.perf_counter() - t0:.1f} s")
    before, _ = stable_split(early)
    train, test = stable_split(data)
    cols = [train.column(c).to_numpy() for c in ("user_id", "movie_id", "rating")]
    tu, ti, tr = (test.column(c).to_numpy() for c in ("user_id", "movie_id", "rating"))
    params, ials_params = ALSParams(), IALSParams(**IALS_CHOICE)
    users = evaluation_users(test, 20_000, 42)
    ranked = test.filter(pa.array(np.isin(test.column("user_id").to_numpy(), users)))
    item_ids, _, _ = catalogue(train, RankingConfig())
    hist, popular = histories(train, item_ids), popular_items(train)[0]

    def ndcg(model: IALS) -> float:
        ids, _, _ = Ranker([Component("ials", model)]).recommend(hist, users, 10, because=False, fallback=popular)
        truth = [ranked.column(c).to_numpy() for c in ("user_id", "movie_id", "rating")]
        return float(ranking_metrics(users, ids, *truth, 10, 4.0, len(item_ids))["ndcg_at_10"])

    def timed_fit(label: str, fit: Any, score: Any) -> dict[str, Any]:
        start = time.perf_counter()
        model = fit()
        seconds = time.perf_counter() - start
        row = {"fit": label, "seconds": round(seconds, 2), "quality": round(score(model), 4)}
        say(f"{label}: {row}")
        return row

    champion_cols = [before.column(c).to_numpy() for c in ("user_id", "movie_id", "rating")]
    als_champion = ALSModel.fit(*champion_cols, params)
    before_hist = histories(before)
    ials_champion = IALS.fit(before_hist.binary, before_hist.item_ids, ials_params)
    init = ials_champion.warm_start_factors(item_ids, ials_params)
    assert init is not None

    def als_rmse(model: ALSModel) -> float:
        return rmse(tr, model.predict(tu, ti)[0])

    als_rows = [timed_fit(f"als cold {params.iterations} it", lambda: ALSModel.fit(*cols, params), als_rmse)]
    als_rows += [timed_fit(f"als warm {k} it", lambda k=k: ALSModel.fit(*cols, params, warm=(als_champion, k)),
                           als_rmse) for k in WARM]  # fmt: skip
    ials_rows = [timed_fit(f"ials cold {ials_params.iterations} it",
                           lambda: IALS.fit(hist.binary, item_ids, ials_params), ndcg)]  # fmt: skip
    ials_rows += [timed_fit(f"ials warm {k} it", lambda k=k: IALS.fit(hist.binary, item_ids, ials_params,
                                                                      warm=(init, k)), ndcg) for k in WARM]  # fmt: skip
    return {"champion_ratings": early.num_rows, "refit_ratings": data.num_rows, "train_rows": train.num_rows,
            "test_rows": test.num_rows, "eval_users": len(users), "champion_als_rmse": round(als_rmse(als_champion), 4),
            "als": als_rows, "ials": ials_rows, "ials_params": IALS_CHOICE, "als_params": params.__dict__}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratings", type=int, default=25_000_000)
    parser.add_argument("--weekly", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    ratings = QUICK_RATINGS if args.quick else args.ratings
    weekly = args.weekly or ratings // 50
    doc = {"benchmark": "warm_start", "machine": machine(), "quick": args.quick, "ratings": ratings, "weekly": weekly,
           **run(ratings, weekly)}  # fmt: skip
    write_json(args.json, doc)
    for kind in ("als", "ials"):
        for row in doc[kind]:
            metric = "rmse" if kind == "als" else "ndcg@10"
            print(f"{row['fit']:>16}: {row['seconds']:7.2f} s  {metric} {row['quality']}")


if __name__ == "__main__":
    main()
