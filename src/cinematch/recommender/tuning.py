"""Choosing the served ranking model on validation data carved from the training data (never the test data).

Validation: a per-user random 80/20 split of the training ratings (``random_per_user_split``, fixed seed),
every validation interaction relevant, NDCG@10 over the catalogue minus each user's validation-train items.

Search (``full``): EASE λ over 4 values and session EASE λ over 4 values (both DLAE with dropout 0.25), a
seeded random search of ``IALS_TRIALS`` configurations from a 4 x 4 x 4 x 4 grid of iALS factors,
regularisation, confidence α and iterations, then blend weights of the best of each family (4 x 4 x 2,
including every single model). Candidates whose projected cost on the whole training data (fit and one fold-in
of every user, ``fit_cost.py``) exceeds ``fit_budget_seconds`` are recorded but not fitted: they could not be
retrained within it. The candidate with the best validation NDCG is refitted on all training data
(EASE λ scaled by the ratio of interactions, since XᵀX grows with them). Training data above
``search_max_ratings`` is searched on a seeded sample of whole users (``search_sample``). Without ``full``, the previous
choice is refitted as it is. Every candidate's validation score is returned for the version's metadata.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cinematch.core.log import get_logger, log_event
from cinematch.recommender.ease import EASE, EASEParams
from cinematch.recommender.fit_cost import DataShape, projected_seconds
from cinematch.recommender.ials import IALS, IALSParams
from cinematch.recommender.interactions import Histories, histories, sessions
from cinematch.recommender.metrics import ranking_metrics
from cinematch.recommender.ranker import Component, Ranker
from cinematch.recommender.split import random_per_user_split
from cinematch.recommender.top_n import top_n_from_scores

log = get_logger(__name__)

VALIDATION_FRACTION = 0.2
VALIDATION_SEED = 20_190_513  # fixed: the validation carve-out never depends on CINEMATCH_SEED
EASE_L2 = (50.0, 150.0, 400.0, 1000.0)
SESSION_L2 = (25.0, 75.0, 200.0, 500.0)
DROPOUT = 0.25
IALS_GRID = {
    "factors": (32, 64, 128, 192),
    "regularization": (1.0, 3.0, 10.0, 30.0),
    "alpha": (0.5, 1.0, 2.0, 4.0),
    "iterations": (8, 15, 25, 40),
}
IALS_TRIALS = 12
SESSION_WEIGHTS = (0.0, 0.5, 1.0, 2.0)
IALS_WEIGHTS = (0.0, 0.25, 0.5, 1.0)
RATING_WEIGHTS = (0.0, 0.2)
_CACHE_ELEMENTS = 20_000_000  # validation users x items kept per component while blending


@dataclass(frozen=True)
class RankingConfig:
    """What bounds the search: catalogue size for EASE, stored weights, seed, iALS defaults."""

    ease_max_items: int = 20_000
    ease_min_support: int = 2
    keep_per_item: int = 1024
    seed: int = 42
    search_max_ratings: int = 1_000_000  # above it the search runs on a seeded sample of whole users
    fit_budget_seconds: float = 120.0  # candidates projected above it are not fitted (recommender/fit_cost.py)
    ials: IALSParams = field(default_factory=IALSParams)
    warm_iterations: int = 2  # iterations of an iALS refit started from the previous model's item factors


@dataclass
class Choice:
    """A ranker specification: components with their parameters and weights, and the rating weight β."""

    weights: dict[str, float]
    params: dict[str, dict[str, Any]]
    rating_weight: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"weights": self.weights, "params": self.params, "rating_weight": self.rating_weight}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Choice:
        return cls(dict(doc["weights"]), {k: dict(v) for k, v in doc["params"].items()}, doc.get("rating_weight", 0.0))


@dataclass
class Selection:
    ranker: Ranker
    choice: Choice
    candidates: list[dict[str, Any]]  # every candidate's validation NDCG@10 (empty when not searched)
    catalogue: dict[str, Any]
    seconds: float


def catalogue(train: pa.Table, config: RankingConfig) -> tuple[np.ndarray, bool, dict[str, Any]]:
    """(item ids, EASE allowed, description): items with enough support, and whether EASE fits the bound."""
    items = train.column("movie_id").to_numpy().astype(np.int64)
    ids, counts = np.unique(items, return_counts=True)
    supported = ids[counts >= config.ease_min_support]
    fits = 2 <= len(supported) <= config.ease_max_items
    chosen = supported if fits else ids
    memory_gb = round(len(supported) ** 2 * 4 / 1e9, 2)
    info = {"items": len(chosen), "items_in_train": len(ids), "ease_min_support": config.ease_min_support,
            "ease_max_items": config.ease_max_items, "ease_candidate": bool(fits), "ease_gram_gb": memory_gb}  # fmt: skip
    if not fits:
        log_event(log, "ease_skipped", items=len(supported), bound=config.ease_max_items)
    return chosen, fits, info


def _fit_component(
    kind: str, params: dict[str, Any], hist: Histories, train: pa.Table, config: RankingConfig, warm: Ranker | None
) -> tuple[EASE | IALS, bool]:
    """The fitted component and whether it started from ``warm``'s factors."""
    if kind == "ials":
        chosen = IALSParams(**params)
        previous = next((c.model for c in warm.components if isinstance(c.model, IALS)), None) if warm else None
        init = previous.warm_start_factors(hist.item_ids, chosen) if previous and config.warm_iterations else None
        start = None if init is None else (init, config.warm_iterations)
        return IALS.fit(hist.binary, hist.item_ids, chosen, warm=start), start is not None
    x = hist.binary if kind == "ease" else sessions(train, hist.item_ids)
    return EASE.fit(x, hist.item_ids, EASEParams(**{**params, "keep_per_item": config.keep_per_item})).compact(), False


def build(
    choice: Choice,
    train: pa.Table,
    item_ids: np.ndarray,
    config: RankingConfig,
    info: dict[str, Any],
    warm: Ranker | None = None,
) -> Ranker:
    """Fit the chosen components on ``train`` and assemble the ranker; ``warm``: the model whose iALS item factors
    an iALS refit of the same parameters starts from (``config.warm_iterations`` iterations; EASE is closed-form),
    recorded as ``info["catalogue"]["warm_start"]`` when one did."""
    hist = histories(train, item_ids)
    fitted = {kind: _fit_component(kind, choice.params[kind], hist, train, config, warm)
              for kind, w in choice.weights.items() if w != 0}  # fmt: skip
    if warm is not None and any(started for _, started in fitted.values()):
        info.setdefault("catalogue", {})["warm_start"] = {"iterations": config.warm_iterations,
                                                          "from_items": warm.n_items}  # fmt: skip
    comps = [Component(kind, model, choice.weights[kind]) for kind, (model, _) in fitted.items()]
    return Ranker(comps, choice.rating_weight, info)


class _Validation:
    """Validation users, their histories and held-out items, and NDCG@10 of a score matrix."""

    def __init__(self, train: pa.Table, item_ids: np.ndarray, seed: int) -> None:
        vtrain, vtest, _ = random_per_user_split(train, VALIDATION_FRACTION, seed=seed)
        self.train = vtrain
        self.hist = histories(vtrain, item_ids)
        users = np.unique(vtest.column("user_id").to_numpy())
        budget = max(1, _CACHE_ELEMENTS // max(1, len(item_ids)))
        if len(users) > budget:  # a seeded sample of validation users bounds the cached score matrices
            users = np.sort(np.random.default_rng(seed).choice(users, budget, replace=False))
        self.users = users
        self.test = vtest
        self.x = self.hist.rows(users)
        self.r = self.hist.rating_rows(users)
        self.seen = (np.repeat(np.arange(len(users)), np.diff(self.x.indptr)), self.x.indices)

    def ndcg(self, scores: np.ndarray) -> float:
        s = scores.copy()
        s[self.seen] = -np.inf
        idx, _ = top_n_from_scores(s, 10)
        ids = np.where(idx >= 0, self.hist.item_ids[np.maximum(idx, 0)], -1)
        t = self.test
        m = ranking_metrics(self.users, ids, t.column("user_id").to_numpy(), t.column("movie_id").to_numpy(),
                            t.column("rating").to_numpy(), 10, 0.0, len(self.hist.item_ids))  # fmt: skip
        return float(m["ndcg_at_10"])

    def fit(self, kind: str, params: dict[str, Any]) -> EASE | IALS:
        """One component fitted on this fold's validation-train part (uncompacted: only compared here)."""
        if kind == "ials":
            return IALS.fit(self.hist.binary, self.hist.item_ids, IALSParams(**params))
        x = self.hist.binary if kind == "ease" else sessions(self.train, self.hist.item_ids)
        return EASE.fit(x, self.hist.item_ids, EASEParams(**params))


def _z(s: np.ndarray) -> np.ndarray:
    """Per-user z-scores, in ``s`` itself (a component's fresh score matrix), as the served blend computes them."""
    return Ranker._standardized(s, *Ranker._scale(s), 1.0)


Blend = tuple[float, float, float, float]  # (rating weight β, ease, session_ease, ials)


def _blend_grid(kinds: set[str]) -> list[Blend]:
    """Every blend of the available families (each single model included), ease weight fixed at 1 when present."""
    out = []
    for beta, ws, wi in itertools.product(RATING_WEIGHTS, SESSION_WEIGHTS, IALS_WEIGHTS):
        we = 1.0 if "ease" in kinds else 0.0
        if we == 0 and ws == 0:
            continue
        out.append((beta, we, ws if "session_ease" in kinds else 0.0, wi if "ials" in kinds else 0.0))
    out += [(0.0, 0.0, 0.0, 1.0)] if "ials" in kinds else []
    return sorted({b for b in out if any(b[1:])})  # a blend needs a model: iALS alone has no all-zero weights


def _blend_scores(val: _Validation, models: dict[str, EASE | IALS], grid: list[Blend]) -> dict[Blend, float]:
    """Validation NDCG@10 of every blend, from cached per-user z-scores of each component."""
    z = {(kind, beta): _z(Ranker([Component(kind, m)], beta).scores(val.x, val.r))
         for kind, m in models.items() for beta in (RATING_WEIGHTS if kind != "ials" else (0.0,))}  # fmt: skip
    out = {}
    for blend in grid:
        beta, *weights = blend
        parts = [(w, z[(k, beta if k != "ials" else 0.0)]) for k, w in zip(KIND_ORDER, weights, strict=True) if w]
        if beta and all(k == "ials" for k, w in zip(KIND_ORDER, weights, strict=True) if w):
            continue
        total = parts[0][1] if len(parts) == 1 else sum(w * s for w, s in parts)
        assert isinstance(total, np.ndarray)  # a sum of two or more score arrays
        out[blend] = val.ndcg(total)
    return out


KIND_ORDER = ("ease", "session_ease", "ials")


def search_sample(train: pa.Table, max_ratings: int, seed: int) -> pa.Table:
    """``train`` itself when it holds at most ``max_ratings``, else the ratings of a seeded random order of whole
    users taken while their ratings add up to at most ``max_ratings`` (at least one user).

    Every candidate of the search is fitted on this sample, so its cost stops growing with the data; the chosen
    EASE λ is then scaled to the whole training set by the ratio of interactions, as for the validation part.
    """
    if train.num_rows <= max_ratings:
        return train
    users, counts = np.unique(train.column("user_id").to_numpy(), return_counts=True)
    order = np.random.default_rng(seed).permutation(len(users))
    keep = max(1, int(np.searchsorted(np.cumsum(counts[order]), max_ratings, side="right")))
    chosen = pa.array(np.sort(users[order[:keep]]))
    sample = train.filter(pc.is_in(train.column("user_id"), value_set=chosen))
    log_event(log, "ranking_search_sample", ratings=sample.num_rows, of=train.num_rows, users=keep,
              of_users=len(users))  # fmt: skip
    return sample


def search(
    train: pa.Table, item_ids: np.ndarray, ease_ok: bool, config: RankingConfig, progress: Callable[[str], None]
) -> tuple[Choice, list[dict[str, Any]], int]:
    """The full validation search: the best choice, every candidate's score, the validation-train rows.

    Each family's parameters are chosen on one validation fold; the blend weights on the mean NDCG of two
    folds (the best of each family refitted on the second), which halves the noise of that last choice.
    """
    sample = search_sample(train, config.search_max_ratings, config.seed)
    folds = [_Validation(sample, item_ids, VALIDATION_SEED), _Validation(sample, item_ids, VALIDATION_SEED + 1)]
    val = folds[0]
    shape = DataShape.of(train, len(item_ids))
    candidates: list[dict[str, Any]] = []
    best: dict[str, tuple[float, dict[str, Any], EASE | IALS]] = {}
    over: list[tuple[float, str, dict[str, Any]]] = []  # (projected seconds, kind, params) not fitted

    def record(kind: str, params: dict[str, Any], fit_anyway: bool = False) -> None:
        cost = projected_seconds(kind, params, shape)
        if cost > config.fit_budget_seconds and not fit_anyway:
            over.append((cost, kind, params))
            candidates.append({"model": kind, "params": params, "ndcg_at_10": None, "projected_seconds": round(cost, 3),
                               "skipped": f"projected {cost:.0f} s > fit budget {config.fit_budget_seconds:.0f} s"})  # fmt: skip
            progress(f"{kind} {params} skipped: projected {cost:.0f} s on the training data")
            return
        model = val.fit(kind, params)
        score = val.ndcg(Ranker([Component(kind, model)]).scores(val.x, val.r))
        candidates.append({"model": kind, "params": params, "ndcg_at_10": round(score, 5),
                           "projected_seconds": round(cost, 3)})  # fmt: skip
        progress(f"{kind} {params} validation ndcg@10 {score:.4f}")
        if kind not in best or score > best[kind][0]:
            best[kind] = (score, params, model)

    if ease_ok:
        for kind, l2_grid in (("ease", EASE_L2), ("session_ease", SESSION_L2)):
            for l2 in l2_grid:
                record(kind, {"l2": l2, "dropout": DROPOUT})
    rng = np.random.default_rng(config.seed)
    grid = list(itertools.product(*IALS_GRID.values()))
    for j in rng.choice(len(grid), size=min(IALS_TRIALS, len(grid)), replace=False):
        record("ials", {**dict(zip(IALS_GRID, grid[j], strict=True)), "seed": config.seed})
    if not best:  # nothing fits the budget: the cheapest candidate is fitted and served
        _, kind, params = min(over, key=lambda c: c[0])
        candidates[:] = [c for c in candidates if c.get("params") is not params]
        record(kind, params, fit_anyway=True)

    blends = _blend_grid(set(best))
    first = _blend_scores(val, {k: v[2] for k, v in best.items()}, blends)
    second = _blend_scores(folds[1], {k: folds[1].fit(k, v[1]) for k, v in best.items()}, blends)
    scored = {b: (first[b] + second[b]) / 2 for b in first}
    for blend, score in scored.items():
        beta, *weights = blend
        used = {k: w for k, w in zip(KIND_ORDER, weights, strict=True) if w}
        candidates.append({"model": "+".join(used) if len(used) == 1 else f"blend({'+'.join(used)})",
                           "weights": used, "rating_weight": beta, "ndcg_at_10": round(score, 5),
                           "folds": [round(first[blend], 5), round(second[blend], 5)]})  # fmt: skip
    (beta, *weights), top = max(scored.items(), key=lambda kv: (kv[1], -len(kv[0])))
    used = {k: w for k, w in zip(KIND_ORDER, weights, strict=True) if w}
    choice = Choice(used, {k: dict(best[k][1]) for k in used}, beta)
    # λ was tuned on the validation-train part: scale it to the whole training data's interactions
    ratio = train.num_rows / max(1, val.train.num_rows)
    for kind, params in choice.params.items():
        if kind != "ials":
            params["l2"] = round(params["l2"] * ratio, 3)
    log_event(log, "ranking_selected", model="+".join(used), validation_ndcg=round(top, 5),
              candidates=len(candidates))  # fmt: skip
    return choice, candidates, val.train.num_rows


def default_choice(ease_ok: bool, config: RankingConfig) -> Choice:
    """What is served without a search: the best configuration on ml-latest-small's validation split."""
    if ease_ok:
        return Choice({"ease": 1.0, "session_ease": 1.0}, {"ease": {"l2": 300.0, "dropout": DROPOUT},
                      "session_ease": {"l2": 150.0, "dropout": DROPOUT}}, 0.2)  # fmt: skip
    return Choice({"ials": 1.0}, {"ials": asdict(config.ials)})


def select(
    train: pa.Table,
    config: RankingConfig,
    previous: dict[str, Any] | None = None,
    full: bool = True,
    progress: Callable[[str], None] | None = None,
    warm: Ranker | None = None,
) -> Selection:
    """Choose (searching on validation when ``full`` or nothing was chosen before) and fit the served ranker.

    ``warm``: the champion's ranker; a refit of its choice (not a search) starts its iALS from it (``build``)."""
    start = time.perf_counter()
    item_ids, ease_ok, info = catalogue(train, config)
    candidates: list[dict[str, Any]] = []
    note = progress or (lambda _msg: None)
    reuse = previous is not None and not full
    if reuse and previous is not None:
        choice = Choice.from_dict(previous)
        if not ease_ok and any(k != "ials" for k in choice.weights):
            choice = default_choice(False, config)
    elif full:
        choice, candidates, info["validation_train_rows"] = search(train, item_ids, ease_ok, config, note)
    else:
        choice = default_choice(ease_ok, config)
    if "ials" in choice.params:
        choice.params["ials"] = asdict(replace(IALSParams(**choice.params["ials"]), seed=config.seed))
    ranker = build(choice, train, item_ids, config, {"catalogue": info}, warm if reuse else None)
    seconds = time.perf_counter() - start
    return Selection(ranker, choice, candidates, info, seconds)
