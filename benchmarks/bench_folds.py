"""ALS accuracy on the standard MovieLens-100k folds (u1-u5 base/test), or 5 seeded folds of ml-latest-small.

    .venv/bin/python benchmarks/bench_folds.py --ml100k DIR      # DIR holds u1.base, u1.test ... u5.test
    .venv/bin/python benchmarks/bench_folds.py                   # ml-latest-small from ../shared/data, 5 folds

Every fold trains CineMatch ALS with the default parameters (`ALSParams()`), then reports RMSE, MAE, precision@10,
recall@10 and NDCG@10 (relevance = rating >= 4.0) beside a most-popular baseline on the same fold; the mean over
the folds is what published results report (Surprise SVD 0.934, SVD++ 0.919 on ml-100k).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))
from _common import MOVIELENS

from cinematch.datasets.ratings import read_ratings
from cinematch.recommender.als import ALSModel
from cinematch.recommender.als_params import ALSParams
from cinematch.recommender.metrics import evaluate, most_popular_baseline

KEYS = ("rmse", "mae", "precision_at_10", "recall_at_10", "ndcg_at_10")


def ml100k_folds(directory: Path) -> list[tuple[pa.Table, pa.Table]]:
    """The five u{i}.base / u{i}.test pairs of an ml-100k folder, read like `cinematch train --ratings/--test`."""
    missing = [f"u{i}.{s}" for i in range(1, 6) for s in ("base", "test") if not (directory / f"u{i}.{s}").is_file()]
    if missing:
        raise SystemExit(f"{directory} lacks {', '.join(missing)}; point --ml100k at the unpacked ml-100k folder")
    return [(read_ratings(directory / f"u{i}.base")[0], read_ratings(directory / f"u{i}.test")[0]) for i in range(1, 6)]


def seeded_folds(path: Path, k: int = 5, seed: int = 42) -> list[tuple[pa.Table, pa.Table]]:
    """k disjoint test folds of a ratings file (each rating tested exactly once), seeded."""
    data = read_ratings(path)[0]
    fold = np.random.default_rng(seed).permutation(data.num_rows) % k
    return [(data.filter(pa.array(fold != i)), data.filter(pa.array(fold == i))) for i in range(k)]


def run_folds(folds: list[tuple[pa.Table, pa.Table]], params: ALSParams) -> dict[str, Any]:
    """Per-fold and mean metrics of ALS and of the most-popular baseline."""
    rows = []
    for train, test in folds:
        cols = [train.column(c).to_numpy() for c in ("user_id", "movie_id", "rating")]
        model = ALSModel.fit(cols[0], cols[1], cols[2].astype(np.float32), params)
        als = evaluate(model, train, test)
        pop = most_popular_baseline(train, test)
        rows.append({"als": {k: als[k] for k in KEYS}, "most_popular": {k: pop[k] for k in KEYS[2:]}})
    mean = {
        side: {k: float(np.mean([r[side][k] for r in rows])) for k in rows[0][side]} for side in ("als", "most_popular")
    }
    return {"folds": rows, "mean": mean, "params": params.__dict__}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ml100k", type=Path, help="folder with u1.base ... u5.test (MovieLens 100k)")
    ap.add_argument("--movielens", type=Path, default=MOVIELENS, help="ratings file split into 5 seeded folds")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--quick", action="store_true", help="accepted for `make bench-quick`: the folds are small")
    args = ap.parse_args(argv)
    if args.ml100k:
        label, folds = "ml-100k u1-u5", ml100k_folds(args.ml100k)
    elif args.movielens.is_file():
        label, folds = f"{args.movielens.parent.name}, 5 seeded folds", seeded_folds(args.movielens)
    else:
        print(f"no data: pass --ml100k DIR, or put ml-latest-small at {args.movielens}", file=sys.stderr)
        return 0
    out = {"data": label, **run_folds(folds, ALSParams())}
    for i, row in enumerate(out["folds"], 1):
        a, p = row["als"], row["most_popular"]
        print(f"fold {i}: RMSE {a['rmse']:.4f}  P@10 {a['precision_at_10']:.4f} (popular {p['precision_at_10']:.4f})"
              f"  NDCG@10 {a['ndcg_at_10']:.4f} (popular {p['ndcg_at_10']:.4f})")  # fmt: skip
    a, p = out["mean"]["als"], out["mean"]["most_popular"]
    print(f"{label} mean: RMSE {a['rmse']:.4f} MAE {a['mae']:.4f} P@10 {a['precision_at_10']:.4f} "
          f"R@10 {a['recall_at_10']:.4f} NDCG@10 {a['ndcg_at_10']:.4f} | most popular P@10 {p['precision_at_10']:.4f} "
          f"NDCG@10 {p['ndcg_at_10']:.4f}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
