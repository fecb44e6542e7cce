"""Scoring a model version the way it is served: its top-N from each user's history, on held-out interactions.

A version is two models: explicit ALS for predicted ratings (RMSE, MAE) and a ranking model for the lists
(precision, recall, NDCG, MAP at k, catalogue coverage, average recommendation popularity). Both are scored
beside a most-popular baseline on the same split. Two versions are compared on the same held-out rows with
the same histories (``compare``): per-user NDCG@k of both, and a paired bootstrap over users of the
difference, which the promotion rule reads.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from cinematch.recommender import list_cache
from cinematch.recommender.als import ALSModel
from cinematch.recommender.interactions import histories, lookup, present, unique_ids
from cinematch.recommender.metrics import mae, per_user_ndcg, ranking_metrics, rmse
from cinematch.recommender.protocols import paired_bootstrap
from cinematch.recommender.ranker import Ranker
from cinematch.recommender.split import seeded_user_keys

BOOTSTRAP_SEED = 0
SAMPLE_RULE = "the test users with the smallest seeded hash of their id (a user stays in as the data grows)"


def _col(table: pa.Table, name: str, dtype: type) -> np.ndarray:
    values: np.ndarray = table.column(name).to_numpy().astype(dtype)
    return values


def popular_items(train: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(movie ids, counts) of ``train``, most rated first (ties: lower id first)."""
    ids, counts = unique_ids(_col(train, "movie_id", np.int64))
    order = np.lexsort((ids, -counts))
    return ids[order], counts[order]


@dataclass
class _Evaluated:
    """A ranker's evaluated top-k: per sorted user, the fingerprint of the training history it came from."""

    k: int
    users: np.ndarray
    prints: np.ndarray
    ids: np.ndarray


# The lists each ranker was last evaluated with, by the ranker object (at most two: the challenger and the
# champion). A version's list for a user is a pure function of the version and the user's history, so when the
# champion is compared with the next challenger only users whose training history changed are scored again
# (in a replay or a retrain on new batches, most are not). Kept in memory only: a new process scores everyone.
_EVALUATED: dict[int, tuple[weakref.ref[Ranker], _Evaluated]] = {}
_KEEP_EVALUATED = 2


def served_lists(als: ALSModel, ranker: Ranker | None, train: pa.Table, users: np.ndarray, k: int) -> np.ndarray:
    """The top-k ids per user from ``train``'s histories; users without history get most-popular.

    Versions from before ranking models (``ranker`` None) rank with their ALS model, as they were served. The
    explanations are not computed: scoring reads the ids only, and the served lists get theirs at publish.
    The lists of users whose history is unchanged since this ranker was last evaluated are reused (``_EVALUATED``).
    """
    if ranker is None:
        ids, _ = als.recommend(users, k, exclude_seen=True)
        return ids
    mine = _rows_of(train, np.unique(users))  # a list reads its own user's history only: 20k of 160k users' rows
    hist = histories(mine, ranker.item_ids)
    known = unique_ids(_col(mine, "user_id", np.int64))[0]
    pos, present = lookup(known, users)
    prints = np.where(present, list_cache.fingerprints(mine, known)[pos], np.uint64(0))
    before = _EVALUATED.get(id(ranker))
    stored = before[1] if before is not None and before[0]() is ranker and before[1].k == k else None
    ids = np.full((len(users), k), -1, np.int64)
    todo = np.ones(len(users), bool)
    if stored is not None:
        reuse, at = list_cache.unchanged(stored.users, stored.prints, users, prints)
        reuse &= present & (np.diff(hist.rows(users).indptr) > 0)  # without history: this train's most popular
        ids[reuse] = stored.ids[at[reuse]]
        todo = ~reuse
    if todo.any():
        ids[todo], _, _ = ranker.recommend(hist, users[todo], k, because=False, fallback=popular_items(train)[0])
    _remember(ranker, _Evaluated(k, users, prints, ids))
    return ids


def _remember(ranker: Ranker, lists: _Evaluated) -> None:
    for key in [key for key, (ref, _) in _EVALUATED.items() if ref() is None or key == id(ranker)]:
        del _EVALUATED[key]
    while len(_EVALUATED) >= _KEEP_EVALUATED:
        del _EVALUATED[next(iter(_EVALUATED))]
    _EVALUATED[id(ranker)] = (weakref.ref(ranker), lists)


def evaluation_users(test: pa.Table, max_users: int | None = None, seed: int = 0) -> np.ndarray:
    """The sorted test users whose top-N lists are scored: all of them, or above ``max_users`` a seeded sample.

    The sample keeps the ``max_users`` users with the smallest seeded hash of their id (bottom-k sampling), so a
    user sampled once stays sampled while the data grows (until pushed out by a new user of smaller hash), and
    the champion's lists of unchanged users are reused from its last evaluation (``_EVALUATED``).
    """
    return _sampled(unique_ids(_col(test, "user_id", np.int64))[0], max_users, seed)


def _sampled(users: np.ndarray, max_users: int | None, seed: int) -> np.ndarray:
    if max_users is None or len(users) <= max_users:
        return users
    keys = seeded_user_keys(users, seed)
    return np.sort(users[np.argpartition(keys, max_users - 1)[:max_users]])


def _rows_of(test: pa.Table, users: np.ndarray) -> pa.Table:
    """The rows of ``test`` whose user is in the sorted ``users``."""
    mine = present(users, _col(test, "user_id", np.int64))
    return test if mine.all() else test.filter(pa.array(mine))


def _ranked(test: pa.Table, max_users: int | None, seed: int) -> tuple[np.ndarray, pa.Table, dict[str, Any]]:
    """(the users whose lists are scored, their test rows, what the sample was): ``evaluation_users`` and its rows."""
    everyone = unique_ids(_col(test, "user_id", np.int64))[0]
    users = _sampled(everyone, max_users, seed)
    info: dict[str, Any] = {"n_test_users": len(everyone)}
    if len(users) < len(everyone):
        info["eval_user_sample"] = {"users": len(users), "of": len(everyone), "max_users": max_users, "seed": seed,
                                    "rule": SAMPLE_RULE}  # fmt: skip
    return users, _rows_of(test, users), info


def _baseline(train: pa.Table, users: np.ndarray, k: int) -> np.ndarray:
    """Most-popular top-k per user, excluding what the user rated in ``train``."""
    from cinematch.recommender.metrics import MostPopular

    ids, _ = MostPopular(train, users=np.unique(users)).recommend(users, k, exclude_seen=True)
    return ids


def _ranking(
    train: pa.Table, test: pa.Table, users: np.ndarray, ids: np.ndarray, k: int, threshold: float
) -> dict[str, Any]:
    item_ids, counts = unique_ids(_col(train, "movie_id", np.int64))
    return ranking_metrics(users, ids, _col(test, "user_id", np.int64), _col(test, "movie_id", np.int64),
                           _col(test, "rating", np.float64), k, threshold, max(1, len(item_ids)), item_ids,
                           counts)  # fmt: skip


def evaluate_version(
    als: ALSModel,
    ranker: Ranker | None,
    train: pa.Table,
    test: pa.Table,
    k: int = 10,
    threshold: float = 4.0,
    max_users: int | None = None,
    seed: int = 0,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """(metrics, users, lists): the version's served lists for the test users, scored, beside most-popular.

    Relevance: a test rating >= ``threshold`` (0: every test interaction). Metrics are averaged over users with
    a relevant test item; coverage and popularity are over every list. Above ``max_users`` test users the lists
    are scored on a seeded sample of them (``evaluation_users``: the held-out-users practice of Liang et al. 2018
    and Steck 2019 on ML-20M, 10k users each); RMSE and MAE always cover every test rating.
    """
    users, ranked, sample = _ranked(test, max_users, seed)
    ids = served_lists(als, ranker, train, users, k)
    predicted, _ = als.predict(_col(test, "user_id", np.int64), _col(test, "movie_id", np.int64))
    truth = _col(test, "rating", np.float64)
    ranking = _ranking(train, ranked, users, ids, k, threshold)
    baseline = _ranking(train, ranked, users, _baseline(train, users, k), k, threshold)
    metrics = {
        "rmse": rmse(truth, predicted),
        "mae": mae(truth, predicted),
        **{key: value for key, value in ranking.items() if key != "n_users_evaluated"},
        "n_test": int(test.num_rows),
        "n_users_evaluated": ranking["n_users_evaluated"],
        **sample,
        "relevance_min_rating": threshold,
        "k": k,
        "ranking_model": ranker.name if ranker is not None else "als",
        "baseline": {"most_popular": baseline},
    }
    return metrics, users, ids


def compare(
    challenger: tuple[ALSModel, Ranker | None],
    champion: tuple[ALSModel, Ranker | None],
    train: pa.Table,
    test: pa.Table,
    k: int = 10,
    threshold: float = 4.0,
    challenger_lists: np.ndarray | None = None,
    max_users: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Both versions on the same held-out rows from the same histories: NDCG@k, RMSE and the paired bootstrap.

    ``challenger_lists``: the challenger's top-k for the sorted test users when already computed (the lists
    ``evaluate_version`` returns for the same ``train``, ``test``, k and sample), so they are not scored twice.
    NDCG is over the same users as ``evaluate_version`` (``max_users``, ``seed``); RMSE over every test rating.
    """
    users, ranked, _ = _ranked(test, max_users, seed)
    tu, ti, tr = _col(test, "user_id", np.int64), _col(test, "movie_id", np.int64), _col(test, "rating", np.float64)
    ru, ri, rr = (_col(ranked, name, dtype) for name, dtype in (("user_id", np.int64), ("movie_id", np.int64),
                                                                ("rating", np.float64)))  # fmt: skip
    if challenger_lists is not None and challenger_lists.shape != (len(users), k):
        raise ValueError(f"challenger lists of shape {challenger_lists.shape} for {len(users)} test users at k={k}")
    per_user = []
    for (als, ranker), given in zip((challenger, champion), (challenger_lists, None), strict=True):
        ids = given if given is not None else served_lists(als, ranker, train, users, k)
        per_user.append(per_user_ndcg(users, ids, ru, ri, rr, k, threshold))
    (u1, a), (u2, b) = per_user
    if not np.array_equal(u1, u2) or len(a) == 0:
        return {"eval_users": 0, "challenger_ndcg": float("nan"), "champion_ndcg": float("nan"),
                "ndcg_diff": 0.0, "ndcg_diff_low": 0.0, "ndcg_diff_high": 0.0}  # fmt: skip
    diff, low, high = paired_bootstrap(a, b, seed=BOOTSTRAP_SEED)
    rmses = [rmse(tr, m.predict(tu, ti)[0]) for m, _ in (challenger, champion)]
    return {
        "eval_users": len(a),
        "eval_rows": int(test.num_rows),
        "ranked_rows": int(ranked.num_rows),
        "challenger_ndcg": float(np.mean(a)),
        "champion_ndcg": float(np.mean(b)),
        "ndcg_diff": float(diff),
        "ndcg_diff_low": float(low),
        "ndcg_diff_high": float(high),
        "challenger_rmse_same_rows": rmses[0],
        "champion_rmse_same_rows": rmses[1],
    }


def _row(name: str, metrics: dict[str, Any]) -> dict[str, Any]:
    keys = ("precision_at_10", "recall_at_10", "ndcg_at_10", "map_at_10", "coverage", "avg_rec_popularity",
            "n_users_evaluated")  # fmt: skip
    return {"model": name, **{key: metrics.get(key) for key in keys}}


def evaluate_models(
    train: pa.Table,
    test: pa.Table,
    als: ALSModel,
    selection: Any,
    threshold: float,
    k: int = 10,
) -> list[dict[str, Any]]:
    """Most-popular, explicit ALS, plain EASE, ``implicit``'s iALS and the served model on one split.

    EASE (Steck's zero-diagonal closed form) and iALS use the best parameters of their family in the served
    model's validation search (``selection.candidates``), refitted on all of ``train``: nothing is tuned on test.
    """
    from cinematch.recommender.ease import EASE, EASEParams
    from cinematch.recommender.ials import IALS, IALSParams
    from cinematch.recommender.ranker import Component

    users = unique_ids(_col(test, "user_id", np.int64))[0]
    rows = [_row("most_popular", _ranking(train, test, users, _baseline(train, users, k), k, threshold))]
    als_ids, _ = als.recommend(users, k, exclude_seen=True)
    rows.append(_row("als (explicit ratings)", _ranking(train, test, users, als_ids, k, threshold)))
    served = selection.ranker
    hist = histories(train, served.item_ids)
    popular = popular_items(train)[0]
    best: dict[str, dict[str, Any]] = {}
    for cand in selection.candidates:
        if "params" not in cand or cand.get("ndcg_at_10") is None:  # a blend, or over the fit budget
            continue
        if cand["model"] not in best or cand["ndcg_at_10"] > best[cand["model"]]["ndcg_at_10"]:
            best[cand["model"]] = cand
    ratio = train.num_rows / max(1, int(selection.catalogue.get("validation_train_rows") or train.num_rows))
    references: list[tuple[str, Any]] = []
    if "ease" in best:
        ease_params = EASEParams(l2=best["ease"]["params"]["l2"] * ratio, dropout=0.0)
        references.append(("ease (Steck 2019)", EASE.fit(hist.binary, served.item_ids, ease_params).compact()))
    if "ials" in best:
        ials_params = IALSParams(**best["ials"]["params"])
        references.append(("ials (implicit library)", IALS.fit(hist.binary, served.item_ids, ials_params)))
    for name, model in references:
        ranker = Ranker([Component("ials" if isinstance(model, IALS) else "ease", model)])
        ids, _, _ = ranker.recommend(hist, users, k, because=False, fallback=popular)
        rows.append(_row(name, _ranking(train, test, users, ids, k, threshold)))
    ids, _, _ = served.recommend(hist, users, k, because=False, fallback=popular)
    rows.append(_row(f"served: {served.name}", _ranking(train, test, users, ids, k, threshold)))
    return rows
