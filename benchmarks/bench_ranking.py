"""Ranking models (issue 15): accuracy by protocol on ml-latest-small, and fit / top-N / fold-in at 25M ratings.

    .venv/bin/python benchmarks/bench_ranking.py [--quick] [--json PATH] [--parts accuracy,ials_alpha1,scale]
                                                 [--steps fit,top_n,norm_bound,implicit,fold_in,ease]

Accuracy (skipped with a message when ../shared/data is absent): explicit ALS (default parameters), most popular,
plain EASE and ``implicit``'s iALS (each with the parameters its family won in the validation search) and the
served model (``tuning.select(train, RankingConfig(), full=True)``), scored by ``evaluation.evaluate_models`` (what
`cinematch evaluate` prints). Protocols: random_per_user on exactly the split of ../shared/ranking-check (per
user, Python ``random.Random(42)`` keys, first round(0.75 n) to train) with every test item relevant and with
rating >= 4; the same protocol on `cinematch evaluate`'s own split (``protocols.split_protocol``, a seeded hash of
(user, movie): same per-user sizes, other rows); temporal (global cut at the 80th percentile of time). One search
per split, reused for both relevance thresholds.

ials_alpha1: iALS with α = 1 (the default served above EASE's bound) fitted by ``implicit`` (conjugate gradient)
and by ``IALS.fit`` (exact alternating solves), same parameters, P@10 / NDCG@10 on the ranking-check split.

Scale, on generated ratings (``scale_config("large")``: 162k users x 62k movies, 25M ratings; cached Parquet
under benchmarks/.data), each step in a fresh child process so that its peak RSS is its own:

* fit: the served ranking model without the search, ``tuning.build(default_choice(...))`` (iALS, α = 1: 62k
  movies exceed EASE's 20k bound); the model is saved under benchmarks/.data for the next steps;
* top_n: ``batch.top_n_table(ranker, ratings, 10)``, every user's top-10 with ``because`` (fold-in included);
* norm_bound: the top-10 of 20,000 users (every k-th) from the served iALS factors on one core, by a full scoring
  (one GEMM over the catalogue per block, seen items masked, ``top_n_chunked``) and by ``norm_bound.top_n_inner``
  (items by factor norm, stopped by the Cauchy-Schwarz bound): seconds, items scored per user, same lists;
* implicit: ``implicit.cpu.als.AlternatingLeastSquares(factors=64)`` on the same matrix, s/iteration, and its
  ``recommend`` for every user; then ``IALS.fit`` with the default parameters on it, s/iteration;
* fold_in: every user's factors against the served item factors: the shared-system solve used at α = 1, and
  the per-user solves needed at α ≠ 1 (timed at α = 4): ``implicit``'s ``recalculate_user`` (models it
  trained) and CineMatch's NumPy batches (what ``IALS`` folds in with); plus the item half of one
  NumPy iALS iteration (the same solve with users and items swapped);
* ease: EASE (DLAE, the served default) fitted and compacted on the 20,000 most rated movies.

--quick: ml-latest-small's first 30 users (ranking-check split only) for accuracy, 100k generated ratings for scale.
"""

from __future__ import annotations

import argparse
import dataclasses
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
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from _common import MOVIELENS, SCRATCH, machine, peak_rss_gb, write_json

STEPS = ("fit", "top_n", "norm_bound", "implicit", "fold_in", "ease")
EASE_ITEMS = 20_000  # RankingConfig().ease_max_items: the largest catalogue EASE is fitted on
QUICK_USERS = 30
METRICS = ("precision_at_10", "recall_at_10", "ndcg_at_10", "map_at_10", "coverage", "avg_rec_popularity")


def load() -> dict[str, float]:
    one, five, fifteen = os.getloadavg()
    return {"1m": round(one, 2), "5m": round(five, 2), "15m": round(fifteen, 2)}


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- accuracy


def ranking_check_split(data: pa.Table, seed: int = 42) -> tuple[pa.Table, pa.Table]:
    """Exactly ../shared/ranking-check's split, vectorized: the same Mersenne Twister stream as ``random.Random``.

    The checker draws one ``random()`` per rating, users in ascending id order and each user's ratings in file
    order, sorts each user's ratings by their draw and keeps the first round(0.75 n) in train. NumPy's legacy
    ``RandomState`` set to Python's MT19937 state yields the same doubles (both use genrand_res53).
    """
    import random

    users = data.column("user_id").to_numpy()
    state = random.Random(seed).getstate()[1]
    rs = np.random.RandomState()
    rs.set_state(("MT19937", np.array(state[:624], dtype=np.uint32), state[624]))
    order = np.argsort(users, kind="stable")  # ascending users, file order within a user: the draw order
    keys = np.empty(len(users))
    keys[order] = rs.random_sample(len(users))
    by_key = np.lexsort((keys, users))
    ids, starts, counts = np.unique(users[by_key], return_index=True, return_counts=True)
    rank = np.empty(len(users), np.int64)
    rank[by_key] = np.arange(len(users)) - np.repeat(starts, counts) + 1
    cut = np.round(0.75 * counts)[np.searchsorted(ids, users)]  # half to even, like Python's round
    test = rank > cut
    return data.filter(pa.array(~test)), data.filter(pa.array(test))


def _keys(table: pa.Table) -> np.ndarray:
    return table.column("user_id").to_numpy() * 1_000_000 + table.column("movie_id").to_numpy()


def evaluate_split(name: str, train: pa.Table, test: pa.Table, thresholds: tuple[float, ...]) -> dict[str, Any]:
    """One validation search on ``train``, then every model scored on ``test`` at each relevance threshold."""
    from cinematch.core.settings import Settings
    from cinematch.recommender.evaluation import evaluate_models
    from cinematch.recommender.metrics import rmse
    from cinematch.recommender.training import fit, params_from_settings
    from cinematch.recommender.tuning import RankingConfig, select

    t0, before = time.perf_counter(), load()
    say(f"{name}: explicit ALS")
    als = fit(train, params_from_settings(Settings()))
    predicted, _ = als.predict(test.column("user_id").to_numpy(), test.column("movie_id").to_numpy())
    als_rmse = rmse(test.column("rating").to_numpy(), predicted)
    say(f"{name}: validation search")
    selection = select(train, RankingConfig(), full=True, progress=lambda m: say(f"{name}: {m}"))
    tables = {}
    for threshold in thresholds:
        say(f"{name}: scoring, min rating {threshold}")
        rows = evaluate_models(train, test, als, selection, threshold)
        for row in rows:
            row["rmse"] = als_rmse if row["model"].startswith("als") else None
        tables[f"min_rating_{threshold:g}"] = {r["model"]: r for r in rows}
    return {
        "split": name,
        "n_train": train.num_rows,
        "n_test": test.num_rows,
        "rmse_als": als_rmse,
        "served": selection.ranker.name,
        "choice": selection.choice.as_dict(),
        "search_seconds": round(selection.seconds, 1),
        "seconds": round(time.perf_counter() - t0, 1),
        "load_before": before,
        "load_after": load(),
        "tables": tables,
    }


def accuracy(path: Path, quick: bool) -> dict[str, Any] | None:
    from cinematch.datasets.ratings import read_ratings
    from cinematch.recommender.protocols import split_protocol

    if not path.is_file():
        print(f"accuracy: {path} not found (../shared/data is not part of a clone); skipped")
        return None
    data = read_ratings(path)[0]
    if quick:
        data = data.filter(pa.array(data.column("user_id").to_numpy() <= QUICK_USERS))
    rc_train, rc_test = ranking_check_split(data)
    own_train, own_test, _ = split_protocol(data, "random_per_user", seed=42)
    same = np.array_equal(np.sort(_keys(rc_test)), np.sort(_keys(own_test)))
    shared = len(np.intersect1d(_keys(rc_test), _keys(own_test)))
    split_note = {
        "identical": bool(same),
        "test_rows_ranking_check": rc_test.num_rows,
        "test_rows_split_protocol": own_test.num_rows,
        "test_rows_in_both": shared,
    }
    temporal_train, temporal_test, temporal_info = split_protocol(data, "temporal")
    splits = {"random_per_user": evaluate_split("random_per_user, ranking-check split", rc_train, rc_test, (0.0, 4.0))}
    if not quick:  # each split costs one validation search (minutes at full size)
        splits["random_per_user_evaluate"] = evaluate_split(
            "random_per_user, split_protocol", own_train, own_test, (0.0,)
        )
        splits["temporal"] = evaluate_split("temporal", temporal_train, temporal_test, (0.0,))
        splits["temporal"]["cut_at"] = temporal_info.get("cut_at")
    target = splits["random_per_user"]["tables"]["min_rating_0"]
    served = next(v for k, v in target.items() if k.startswith("served"))
    return {
        "data": f"{path.parent.name}{f' (users <= {QUICK_USERS})' if quick else ''}",
        "quick": quick,
        "ratings": data.num_rows,
        "split_protocol_vs_ranking_check": split_note,
        "splits": splits,
        "target": {
            "served": served,
            "most_popular": target["most_popular"],
            "ease": target.get("ease (Steck 2019)"),
            "ials": target.get("ials (implicit library)"),
            "met": served["precision_at_10"] >= 0.36 and served["ndcg_at_10"] >= 0.41,
        },
    }


def print_accuracy(acc: dict[str, Any]) -> None:
    note = acc["split_protocol_vs_ranking_check"]
    print(f"accuracy on {acc['data']}, {acc['ratings']:,} ratings; top-10 over every movie unrated in train")
    print(
        f"split_protocol('random_per_user', seed=42) vs ranking-check's split: identical={note['identical']}, "
        f"{note['test_rows_in_both']:,} of {note['test_rows_ranking_check']:,} test rows in both"
    )
    head = (
        f"  {'model':<44} {'P@10':>7} {'R@10':>7} {'NDCG@10':>8} {'MAP@10':>7} {'cover':>6} {'avg pop':>8} {'RMSE':>7}"
    )
    for split in acc["splits"].values():
        for key, rows in split["tables"].items():
            print(
                f"{split['split']}, {key.replace('_', ' ')} (load {split['load_before']['1m']}-"
                f"{split['load_after']['1m']}, search {split['search_seconds']} s):"
            )
            print(head)
            for name, r in rows.items():
                rm = f"{r['rmse']:.4f}" if r.get("rmse") is not None else ""
                print(
                    f"  {name:<44} {r['precision_at_10']:>7.4f} {r['recall_at_10']:>7.4f} {r['ndcg_at_10']:>8.4f} "
                    f"{r['map_at_10']:>7.4f} {r['coverage']:>6.3f} {r['avg_rec_popularity']:>8.1f} {rm:>7}"
                )
        print(f"  served choice: {json.dumps(split['choice'])}")
    t = acc["target"]["served"]
    verdict = "not judged on a sample" if acc["quick"] else "met" if acc["target"]["met"] else "MISSED"
    print(
        f"target (served, ranking-check split, every test item relevant): P@10 {t['precision_at_10']:.4f} >= 0.36, "
        f"NDCG@10 {t['ndcg_at_10']:.4f} >= 0.41: {verdict}"
    )


def unit_confidence(path: Path, quick: bool) -> dict[str, Any] | None:
    """iALS with α = 1 (the default served above EASE's bound): ``implicit``'s conjugate-gradient fit against
    CineMatch's exact alternating solves (``IALS.fit``), same parameters, on the ranking-check split."""
    from threadpoolctl import threadpool_limits

    from cinematch.datasets.ratings import read_ratings
    from cinematch.recommender.ials import IALS, IALSParams, _library_model
    from cinematch.recommender.interactions import histories
    from cinematch.recommender.metrics import ranking_metrics
    from cinematch.recommender.ranker import Component, Ranker

    if not path.is_file():
        return None
    data = read_ratings(path)[0]
    if quick:
        data = data.filter(pa.array(data.column("user_id").to_numpy() <= QUICK_USERS))
    train, test = ranking_check_split(data)
    hist = histories(train)
    users = np.unique(test.column("user_id").to_numpy())
    truth = [test.column(c).to_numpy() for c in ("user_id", "movie_id", "rating")]
    out: dict[str, Any] = {"load_before": load()}
    for params in (IALSParams(), IALSParams(factors=128, iterations=25)):
        library = _library_model(params)
        with threadpool_limits(limits=1, user_api="blas"):
            t0 = time.perf_counter()
            library.fit(hist.binary, show_progress=False)
            library_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        own = IALS.fit(hist.binary, hist.item_ids, params)
        own_s = time.perf_counter() - t0
        key = f"factors_{params.factors}_iterations_{params.iterations}"
        out[key] = {"params": dataclasses.asdict(params)}
        for name, model, seconds in (
            ("implicit", IALS(params, hist.item_ids, np.asarray(library.item_factors), "implicit"), library_s),
            (own.trainer, own, own_s),
        ):
            ids, _, _ = Ranker([Component("ials", model)]).recommend(hist, users, 10, because=False)
            m = ranking_metrics(users, ids, *truth, 10, 0.0, len(hist.item_ids))
            out[key][name] = {"precision_at_10": m["precision_at_10"], "ndcg_at_10": m["ndcg_at_10"], "fit_s": seconds}
    out["load_after"] = load()
    return out


def print_unit_confidence(u: dict[str, Any]) -> None:
    print(f"iALS with α = 1 on the ranking-check split, every test item relevant (load {u['load_before']['1m']}):")
    for key, r in u.items():
        if key.startswith("factors_"):
            p = r["params"]
            cells = "; ".join(
                f"{name}: P@10 {v['precision_at_10']:.4f} NDCG@10 {v['ndcg_at_10']:.4f} fit {v['fit_s']:.2f} s"
                for name, v in r.items()
                if name != "params"
            )
            print(f"  {p['factors']} factors, λ {p['regularization']:g}, {p['iterations']} iterations: {cells}")


# --------------------------------------------------------------------------------------------- scale


def scale_data(quick: bool) -> Path:
    """Generated base ratings (no weekly batches), cached as Parquet."""
    from cinematch.datasets.generate import generate_tables
    from cinematch.datasets.generate_config import scale_config

    config = dataclasses.replace(scale_config("small" if quick else "large", 42), weeks=0)
    path = SCRATCH / f"ranking_{config.ratings}_{config.seed}.parquet"
    if not path.exists():
        SCRATCH.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        table = generate_tables(config)["ratings"]
        tmp = path.with_name(f".{path.name}.tmp")
        pq.write_table(table, tmp)
        tmp.rename(path)
        say(f"generated {table.num_rows:,} ratings in {time.perf_counter() - t0:.1f} s -> {path}")
    return path


def _ratings(path: Path) -> pa.Table:
    return pq.read_table(path, columns=["user_id", "movie_id", "rating", "rated_at"])


def step_fit(data: Path, model_dir: Path) -> dict[str, Any]:
    from cinematch.recommender.tuning import RankingConfig, build, catalogue, default_choice

    train = _ratings(data)
    rss_loaded = peak_rss_gb()
    config = RankingConfig()
    t0, c0 = time.perf_counter(), time.process_time()
    item_ids, ease_ok, info = catalogue(train, config)
    choice = default_choice(ease_ok, config)
    ranker = build(choice, train, item_ids, config, {"catalogue": info})
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = peak_rss_gb()
    ranker.save(model_dir)
    return {
        "seconds": seconds,
        "cpu_s": cpu,
        "peak_rss_gb": peak,
        "rss_after_load_gb": rss_loaded,
        "model": ranker.name,
        "choice": choice.as_dict(),
        "items": len(item_ids),
        "ratings": train.num_rows,
    }


def step_top_n(data: Path, model_dir: Path) -> dict[str, Any]:
    from cinematch.recommender.batch import top_n_table
    from cinematch.recommender.ranker import Ranker

    ratings = _ratings(data)
    ranker = Ranker.load(model_dir)
    rss_loaded = peak_rss_gb()
    t0, c0 = time.perf_counter(), time.process_time()
    table = top_n_table(ranker, ratings, 10)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    because = table.column("because").to_numpy(zero_copy_only=False)
    users = len(np.unique(table.column("user_id").to_numpy()))
    return {
        "seconds": seconds,
        "cpu_s": cpu,
        "peak_rss_gb": peak_rss_gb(),
        "rss_after_load_gb": rss_loaded,
        "users": users,
        "rows": table.num_rows,
        "rows_with_because": int((because != "").sum()),
        "example": table.slice(0, 3).to_pylist(),
    }


def step_norm_bound(data: Path, model_dir: Path) -> dict[str, Any]:
    """Full scoring against norm bounds for the same users' top-10, one core (BLAS single-threaded)."""
    from threadpoolctl import threadpool_limits

    from cinematch.recommender import norm_bound
    from cinematch.recommender.ials import IALS
    from cinematch.recommender.interactions import histories
    from cinematch.recommender.ranker import Ranker
    from cinematch.recommender.top_n import SCORE_ELEMENTS, top_n_chunked

    ranker = Ranker.load(model_dir)
    model = next(c.model for c in ranker.components if c.kind == "ials")
    assert isinstance(model, IALS)
    x = histories(_ratings(data), model.item_ids).binary
    x = x[:: max(1, x.shape[0] // 20_000)][:20_000]
    factors, y = model.user_factors(x), model.item_factors
    scored: list[int] = []
    stage = norm_bound._score_stage

    def counting(index: Any, users: Any, group: Any, lo: int, hi: int, *rest: Any) -> None:
        scored.append(len(group) * (hi - lo))
        stage(index, users, group, lo, hi, *rest)

    norm_bound._score_stage = counting
    with threadpool_limits(limits=1, user_api="blas"):
        t0 = time.perf_counter()
        full = []
        for rows in np.array_split(np.arange(x.shape[0]), -(-x.shape[0] * y.shape[0] // SCORE_ELEMENTS)):
            scores = factors[rows] @ y.T
            xb = x[rows]
            scores[np.repeat(np.arange(len(rows)), np.diff(xb.indptr)), xb.indices] = -np.inf
            full.append(top_n_chunked(scores, 10)[0])
        full_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        index = norm_bound.NormIndex.build(y)
        bound = [norm_bound.top_n_inner(index, factors[rows], x[rows], 10)[0]
                 for rows in np.array_split(np.arange(x.shape[0]), -(-x.shape[0] // 8_000))]  # fmt: skip
        bound_s = time.perf_counter() - t0
    same = (np.vstack(full) == np.vstack(bound)).all(axis=1)
    return {
        "users": x.shape[0],
        "items": y.shape[0],
        "factors": y.shape[1],
        "full_s": full_s,
        "norm_bound_s": bound_s,
        "speedup": full_s / bound_s,
        "items_scored_per_user": sum(scored) / x.shape[0],
        "same_lists_share": float(same.mean()),
    }


def _binary(data: Path) -> Any:
    from cinematch.recommender.interactions import histories

    return histories(_ratings(data)).binary


def step_implicit(data: Path, _model_dir: Path) -> dict[str, Any]:
    """``implicit``'s ALS and CineMatch's ``IALS.fit`` (both α = 1, 64 factors, 15 iterations) on the same matrix."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from cinematch.recommender.ials import IALS, IALSParams

    x = _binary(data)
    stamps: list[float] = []
    with threadpool_limits(limits=1, user_api="blas"):  # as implicit asks (it warns on a threaded BLAS)
        model = AlternatingLeastSquares(factors=64, random_state=42)
        t0 = time.perf_counter()
        model.fit(x, show_progress=False, callback=lambda *_: stamps.append(time.perf_counter()))
        fit_s = time.perf_counter() - t0
        per_iter = np.diff([t0, *stamps])
        t1 = time.perf_counter()
        ids, _ = model.recommend(np.arange(x.shape[0]), x, N=10)
        rec_s = time.perf_counter() - t1
    own_stamps: list[float] = []
    t0 = time.perf_counter()
    own = IALS.fit(x, np.arange(x.shape[1]), IALSParams(), progress=lambda _i: own_stamps.append(time.perf_counter()))
    own_s = time.perf_counter() - t0
    own_iter = np.diff([t0, *own_stamps])
    return {
        "users": x.shape[0],
        "items": x.shape[1],
        "interactions": int(x.nnz),
        "iterations": len(per_iter),
        "fit_s": fit_s,
        "s_per_iter": float(statistics.median(per_iter)),
        "recommend_all_s": rec_s,
        "recommended": int((ids >= 0).sum()),
        "own_trainer": own.trainer,
        "own_fit_s": own_s,
        "own_s_per_iter": float(statistics.median(own_iter)),
        "peak_rss_gb": peak_rss_gb(),
    }


def step_fold_in(data: Path, model_dir: Path) -> dict[str, Any]:
    """Every user's factors against the served model's item factors, by each solver CineMatch has.

    α = 1 (the served default): every user shares one system, solved for all at once (``_shared_system``).
    α ≠ 1 needs one k x k solve per user: CineMatch's NumPy padded batches over the cores (what ``IALS`` uses),
    timed at α = 4 on the same factors beside ``implicit``'s ``recalculate_user`` (its per-user Cholesky solves,
    all cores), with the item half of one NumPy iALS iteration (the same solve, users and items swapped).
    """
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from cinematch.recommender.ials import IALS
    from cinematch.recommender.interactions import histories
    from cinematch.recommender.ranker import Ranker
    from cinematch.recommender.tuning import RankingConfig

    ranker = Ranker.load(model_dir)
    model = next((c.model for c in ranker.components if c.kind == "ials"), None)
    if not isinstance(model, IALS):  # small catalogues serve EASE: fit the default iALS for the comparison
        hist = histories(_ratings(data), ranker.item_ids)
        model = IALS.fit(hist.binary, hist.item_ids, RankingConfig().ials)
    x = histories(_ratings(data), model.item_ids).binary

    def solver(**changes: Any) -> IALS:
        return IALS(dataclasses.replace(model.params, **changes), model.item_ids, model.item_factors, "bench")

    def library(alpha: float, rows: Any) -> tuple[float, np.ndarray]:
        p = model.params
        lib = AlternatingLeastSquares(factors=p.factors, regularization=p.regularization, alpha=alpha,
                                      random_state=p.seed)  # fmt: skip
        lib.item_factors = model.item_factors
        t0 = time.perf_counter()
        with threadpool_limits(limits=1, user_api="blas"):
            out = np.asarray(lib.recalculate_user(np.arange(rows.shape[0]), rows))
        return time.perf_counter() - t0, out

    def timed_factors(m: IALS, rows: Any) -> tuple[float, np.ndarray]:
        t0 = time.perf_counter()
        out = m.user_factors(rows)
        return time.perf_counter() - t0, out

    def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a - b).max() / np.abs(b).max())

    shared_s, shared = timed_factors(solver(alpha=1.0, reg_per_rating=False), x)
    sample = x[: min(5_000, x.shape[0])]  # implicit's own per-user solve at α = 1, for agreement
    agreement = rel_diff(shared[: sample.shape[0]], library(1.0, sample)[1])
    lib_s, p_lib = library(4.0, x)
    own_s, p_own = timed_factors(solver(alpha=4.0, reg_per_rating=False), x)
    items = IALS(dataclasses.replace(model.params, alpha=4.0, reg_per_rating=True), np.arange(x.shape[0]), p_own, "x")
    items_s, _ = timed_factors(items, x.T.tocsr())
    return {
        "users": x.shape[0],
        "items": x.shape[1],
        "interactions": int(x.nnz),
        "factors": model.params.factors,
        "served_alpha": model.params.alpha,
        "shared_system_s": shared_s,
        "shared_vs_implicit_max_rel_diff": agreement,
        "implicit_recalculate_user_s": lib_s,
        "numpy_fold_in_s": own_s,
        "numpy_vs_implicit_max_rel_diff": rel_diff(p_own, p_lib),
        "numpy_item_side_s": items_s,
        "numpy_iteration_s": own_s + items_s,
        "finite": bool(np.isfinite(p_lib).all() and np.isfinite(p_own).all()),
        "peak_rss_gb": peak_rss_gb(),
    }


def step_ease(data: Path, _model_dir: Path) -> dict[str, Any]:
    import psutil

    from cinematch.recommender.ease import EASE, EASEParams
    from cinematch.recommender.interactions import histories
    from cinematch.recommender.tuning import RankingConfig, default_choice

    ratings = _ratings(data)
    movies, counts = np.unique(ratings.column("movie_id").to_numpy(), return_counts=True)
    keep = np.sort(movies[np.argsort(-counts, kind="stable")[:EASE_ITEMS]])
    x = histories(ratings, keep).binary
    del ratings
    pa.default_memory_pool().release_unused()
    rss_before = psutil.Process().memory_info().rss / 1024**3  # what the fit starts from (the peak is higher)
    params = EASEParams(**default_choice(True, RankingConfig()).params["ease"])
    t0 = time.perf_counter()
    model = EASE.fit(x, keep, params)
    fit_s = time.perf_counter() - t0
    rss_fit = peak_rss_gb()
    t0 = time.perf_counter()
    compact = model.compact()
    compact_s = time.perf_counter() - t0
    n = len(keep)
    return {
        "items": n,
        "users": x.shape[0],
        "interactions": int(x.nnz),
        "params": dataclasses.asdict(params),
        "n2_float32_gb": n * n * 4 / 1024**3,
        "rss_before_fit_gb": rss_before,
        "fit_s": fit_s,
        "peak_rss_fit_gb": rss_fit,
        "compact_s": compact_s,
        "peak_rss_gb": peak_rss_gb(),
        "kept_per_item": min(params.keep_per_item, n),
        "nonzero_after_compaction": int((compact.weights != 0).sum()),
    }


def run_step(step: str, data: Path, model_dir: Path) -> dict[str, Any]:
    spec = json.dumps({"step": step, "data": str(data), "model": str(model_dir)})
    before = load()
    say(f"scale: {step}")
    proc = subprocess.run([sys.executable, __file__, "--child", spec], stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        return {"failed": proc.returncode, "load_before": before, "load_after": load()}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**out, "load_before": before, "load_after": load()}


def scale(quick: bool, steps: list[str]) -> dict[str, Any]:
    data = scale_data(quick)
    meta = pq.read_metadata(data)
    out: dict[str, Any] = {"data": str(data.name), "ratings": meta.num_rows}
    model_dir = SCRATCH / f"ranking_model_{meta.num_rows}"  # written by the fit step, read by top_n and fold_in
    if {"top_n", "norm_bound", "fold_in"} & set(steps) and "fit" not in steps and not model_dir.is_dir():
        steps = ["fit", *steps]
    for step in STEPS:
        if step in steps:
            out[step] = run_step(step, data, model_dir)
    return out


def print_scale(s: dict[str, Any]) -> None:
    def ld(r: dict[str, Any]) -> str:
        return f"load {r['load_before']['1m']}-{r['load_after']['1m']}"

    print(f"scale: {s['ratings']:,} generated ratings ({s['data']})")
    if "seconds" in s.get("fit", {}):
        f = s["fit"]
        print(
            f"  fit served ranking model ({f['model']}, {f['items']:,} movies, no search): "
            f"{f['seconds']:.1f} s (CPU {f['cpu_s']:.0f} s), "
            f"peak RSS {f['peak_rss_gb']:.2f} GB (after loading the ratings {f['rss_after_load_gb']:.2f}) "
            f"[target <= 60 s, <= 12 GB] ({ld(f)})"
        )
    if "seconds" in s.get("top_n", {}):
        t = s["top_n"]
        print(
            f"  top-10 with because for {t['users']:,} users: {t['seconds']:.1f} s (CPU {t['cpu_s']:.0f} s), "
            f"{t['rows']:,} rows "
            f"({t['rows_with_because']:,} with because), peak RSS {t['peak_rss_gb']:.2f} GB [target <= 60 s] ({ld(t)})"
        )
    if "s_per_iter" in s.get("implicit", {}):
        i = s["implicit"]
        print(
            f"  implicit AlternatingLeastSquares(factors=64), {i['interactions']:,} interactions: "
            f"{i['s_per_iter']:.2f} s/iter ({i['iterations']} iters, fit {i['fit_s']:.1f} s); recommend N=10 for "
            f"{i['users']:,} users {i['recommend_all_s']:.1f} s. Same matrix, CineMatch IALS.fit (α = 1, trainer "
            f"{i['own_trainer']}): {i['own_s_per_iter']:.2f} s/iter (fit {i['own_fit_s']:.1f} s); "
            f"peak RSS {i['peak_rss_gb']:.2f} GB ({ld(i)})"
        )
    if "norm_bound_s" in s.get("norm_bound", {}):
        b = s["norm_bound"]
        print(
            f"  top-10 of {b['users']:,} users over {b['items']:,} items ({b['factors']} factors), one core: full "
            f"scoring {b['full_s']:.2f} s, norm bounds {b['norm_bound_s']:.2f} s ({b['speedup']:.1f}x; "
            f"{b['items_scored_per_user']:,.0f} items scored per user; same lists for {b['same_lists_share']:.2%})"
        )
    if "numpy_fold_in_s" in s.get("fold_in", {}):
        d = s["fold_in"]
        print(
            f"  fold-in of {d['users']:,} users, {d['factors']} factors, served α = {d['served_alpha']:g}: one shared "
            f"system {d['shared_system_s']:.1f} s (max relative difference to implicit's per-user solve "
            f"{d['shared_vs_implicit_max_rel_diff']:.1e}); per-user solves at α = 4: implicit recalculate_user "
            f"{d['implicit_recalculate_user_s']:.1f} s, CineMatch NumPy batches {d['numpy_fold_in_s']:.1f} s (max "
            f"relative difference {d.get('numpy_vs_implicit_max_rel_diff', float('nan')):.1e}); "
            f"NumPy item side {d['numpy_item_side_s']:.1f} s, so one NumPy iALS iteration ~ "
            f"{d['numpy_iteration_s']:.1f} s ({ld(d)})"
        )
    if "fit_s" in s.get("ease", {}):
        e = s["ease"]
        print(
            f"  EASE (DLAE) on the {e['items']:,} most rated movies, {e['users']:,} users: fit {e['fit_s']:.1f} s "
            f"(peak RSS {e['peak_rss_fit_gb']:.2f} GB), compaction {e['compact_s']:.1f} s (peak RSS "
            f"{e['peak_rss_gb']:.2f} GB); one n x n float32 = {e['n2_float32_gb']:.2f} GB, "
            f"RSS when the fit starts {e['rss_before_fit_gb']:.2f} GB ({ld(e)})"
        )
    for step, r in s.items():
        if isinstance(r, dict) and "failed" in r:
            print(f"  {step}: FAILED (exit {r['failed']})")


# --------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="30 users of ml-latest-small, 100k generated ratings")
    ap.add_argument(
        "--parts", default="accuracy,ials_alpha1,scale", help="comma-separated: accuracy, ials_alpha1, scale"
    )
    ap.add_argument("--steps", default=",".join(STEPS), help=f"scale steps: {', '.join(STEPS)}")
    ap.add_argument("--movielens", type=Path, default=MOVIELENS, help="ml-latest-small ratings.csv")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        step = {
            "fit": step_fit,
            "top_n": step_top_n,
            "norm_bound": step_norm_bound,
            "implicit": step_implicit,
            "fold_in": step_fold_in,
            "ease": step_ease,
        }[spec["step"]]
        out = step(Path(spec["data"]), Path(spec["model"]))
        usage = resource.getrusage(resource.RUSAGE_SELF)
        out["process_cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1)  # load, setup and step, every thread
        print(json.dumps(out, default=str))
        return 0
    parts = args.parts.split(",")
    doc: dict[str, Any] = {"benchmark": "ranking", "machine": machine(), "quick": args.quick, "load_start": load()}
    if "accuracy" in parts:
        doc["accuracy"] = accuracy(args.movielens, args.quick)
        if doc["accuracy"]:
            print_accuracy(doc["accuracy"])
    if "ials_alpha1" in parts:
        doc["ials_alpha1"] = unit_confidence(args.movielens, args.quick)
        if doc["ials_alpha1"]:
            print_unit_confidence(doc["ials_alpha1"])
    if "scale" in parts:
        doc["scale"] = scale(args.quick, [s for s in args.steps.split(",") if s])
        print_scale(doc["scale"])
    doc["load_end"] = load()
    write_json(args.json, doc)
    failed = any(isinstance(r, dict) and "failed" in r for r in doc.get("scale", {}).values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
