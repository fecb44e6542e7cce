"""Training runs: train both models on the training set, evaluate, register, promote only if not worse."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from cinematch.core.errors import BadInput, CineMatchError
from cinematch.core.log import get_logger, log_event
from cinematch.core.results import Result, optional
from cinematch.core.settings import Settings
from cinematch.recommender import registry
from cinematch.recommender.als import ALSModel
from cinematch.recommender.als_params import ALSParams
from cinematch.recommender.evaluation import compare, evaluate_version
from cinematch.recommender.metrics import rmse
from cinematch.recommender.protocols import write_lists
from cinematch.recommender.ranker import Ranker
from cinematch.recommender.recommendations import write_recommendations
from cinematch.recommender.trainer import LOCAL, Trainer
from cinematch.recommender.training_set import (
    SPLIT_RULE,
    data_checksum,
    merge_batches,
    ratings_of,
    stable_split,
    training_batches,
    unmerged_batches,
)
from cinematch.recommender.tuning import RankingConfig, Selection
from cinematch.storage.protocol import Warehouse

log = get_logger(__name__)


RESULT_KEYS = ("rmse", "mae", "precision_at_10", "recall_at_10", "ndcg_at_10", "map_at_10", "coverage",
               "avg_rec_popularity", "ranking_model", "baseline")  # fmt: skip


def ranking_config(settings: Settings) -> RankingConfig:
    return RankingConfig(ease_max_items=settings.ease_max_items, ease_min_support=settings.ease_min_support,
                         keep_per_item=settings.ease_keep_per_item, seed=settings.seed,
                         search_max_ratings=settings.ranking_search_max_ratings,
                         fit_budget_seconds=settings.ranking_fit_budget_seconds,
                         warm_iterations=settings.warm_start_iterations)  # fmt: skip


def params_from_settings(settings: Settings, **overrides: Any) -> ALSParams:
    base: dict[str, Any] = {"rank": settings.als_rank, "reg": settings.als_reg, "iterations": settings.als_iterations,
            "seed": settings.seed, "rank_popularity": settings.als_rank_popularity}  # fmt: skip
    base.update({k: v for k, v in overrides.items() if v is not None})
    params = ALSParams(**base)
    params.validate()
    return params


def warm_starts(settings: Settings, train: pa.Table) -> bool:
    """Whether a retrain on ``train`` starts both models from the champion's factors (``warm_start_iterations``
    iterations): from ``warm_start_min_ratings`` training ratings. Smaller fits start from seeded factors, so the
    same rows always give the same models (the replay's policies share such fits, and they take seconds)."""
    return bool(settings.warm_start_iterations) and train.num_rows >= settings.warm_start_min_ratings


def fit(
    table: pa.Table,
    params: ALSParams,
    progress: Callable[[int, float], None] | None = None,
    trainer: Trainer = LOCAL,
    warm: tuple[ALSModel, int] | None = None,
) -> ALSModel:
    if table.num_rows == 0:
        raise BadInput("no ratings to train on: ingest a batch and run `cinematch etl` first")
    return trainer.fit_ratings(table, params, progress, warm)


def fit_ranker(
    train: pa.Table,
    settings: Settings,
    previous: dict[str, Any] | None = None,
    tune: bool = True,
    progress: Callable[[str], None] | None = None,
    trainer: Trainer = LOCAL,
    champion: Ranker | None = None,
) -> Selection:
    """The ranking model served with this version: chosen on validation data (``tune``) or refitted as before;
    a refit starts its iALS from the ``champion``'s item factors when ``warm_starts``."""
    if train.num_rows == 0:
        raise BadInput("no ratings to train on: ingest a batch and run `cinematch etl` first")
    warm = champion if warm_starts(settings, train) else None
    return trainer.fit_ranking(train, ranking_config(settings), previous, tune or previous is None, progress, warm)


def _rmse_on(model: ALSModel, test: pa.Table) -> float:
    predicted, _ = model.predict(test.column("user_id").to_numpy(), test.column("movie_id").to_numpy())
    return rmse(test.column("rating").to_numpy(), predicted)


@dataclass(eq=False)
class ModelScores(Result):
    """A trained version and its scores on the held-out rows (the same keys as its registry metrics)."""

    version: str
    rmse: float | None
    mae: float | None
    precision_at_10: float | None
    recall_at_10: float | None
    ndcg_at_10: float | None
    map_at_10: float | None
    coverage: float | None
    avg_rec_popularity: float | None
    ranking_model: str | None
    baseline: dict[str, Any] | None
    train_seconds: float
    n_test: int | None
    n_train: int


@dataclass(eq=False)
class TrainingRun(ModelScores):
    """`cinematch train` on the warehouse: the version, whether it was promoted and why, the batches merged."""

    promoted: bool
    champion_version: str | None
    promotion: dict[str, Any]
    merged_batches: list[str]
    batch_ids: list[str]
    published: str | None = optional()  # the views version published for a promoted version (the CLI)


@dataclass(eq=False)
class FileTrainingRun(ModelScores):
    """`cinematch train --ratings FILE`: the version saved (not registered) and where its lists were written."""

    registered: bool
    lists_out: str | None


def _scores(version: str, metrics: dict[str, Any], seconds: float) -> dict[str, Any]:
    return {"version": version, **{k: metrics.get(k) for k in RESULT_KEYS}, "train_seconds": round(seconds, 3),
            "n_test": metrics.get("n_test")}  # fmt: skip


def _ranking_metadata(selection: Selection, tuned: bool) -> dict[str, Any]:
    return {"name": selection.ranker.name, "choice": selection.choice.as_dict(), "tuned": tuned,
            "candidates": selection.candidates, "catalogue": selection.catalogue,
            "seconds": round(selection.seconds, 3)}  # fmt: skip


def _previous_choice(settings: Settings, current: registry.ModelRecord | None) -> dict[str, Any] | None:
    if current is None:
        return None
    try:
        meta = registry.load_metadata(settings, current.version)
    except CineMatchError:
        return None
    return (meta.get("ranking") or {}).get("choice")


def train_warehouse(
    con: Warehouse,
    settings: Settings,
    params: ALSParams,
    merge: list[str] | None = None,
    progress: Callable[[int, float], None] | None = None,
    tune: bool = False,
    note: Callable[[str], None] | None = None,
    trainer: Trainer = LOCAL,
) -> TrainingRun:
    """Train both models on the training set plus ``merge`` (default: every batch not trained on yet), register.

    The ranking model is searched on validation data when ``tune`` (or when no earlier choice exists) and
    otherwise refitted with the champion's choice. The challenger is compared with the champion on every
    held-out rating of the stable split (unseen by both; the top-N lists of at most ``eval_max_users`` test users,
    a seeded sample), from the same current training histories, and
    promoted only if neither its top-10 NDCG (paired bootstrap over users) nor its RMSE is worse beyond
    tolerance; the decision and both models' scores on those rows are stored in its row.
    """
    registry.write_alias(con, settings)  # heals an alias left behind by a kill between commit and alias write
    to_merge = unmerged_batches(con) if merge is None else merge
    batch_ids = sorted(set(training_batches(con)) | set(to_merge))
    data = ratings_of(con, batch_ids, with_batch=False)
    train, test = stable_split(data)
    if train.num_rows == 0 or test.num_rows == 0:
        raise BadInput(f"too few ratings to train and evaluate ({data.num_rows}); ingest more data first")
    current = registry.champion(con)
    previous = _previous_choice(settings, current)
    champion_model = registry.load_model(settings, current["version"]) if current is not None else None
    champion_ranker = registry.load_ranker(settings, current["version"]) if current is not None else None
    warm = (champion_model, settings.warm_start_iterations) if champion_model and warm_starts(settings, train) else None
    t0 = time.perf_counter()
    model = fit(train, params, progress, trainer, warm)
    als_seconds = time.perf_counter() - t0
    selection = fit_ranker(train, settings, previous, tune, note, trainer, champion_ranker)
    seconds = time.perf_counter() - t0
    k, threshold = settings.top_n, settings.relevance_threshold
    sample = {"max_users": settings.eval_max_users, "seed": settings.seed}
    metrics, _, lists = evaluate_version(model, selection.ranker, train, test, k, threshold, **sample)

    champion_rmse, ranking = None, None
    if current is not None:
        assert champion_model is not None  # loaded above with the champion
        champ = (champion_model, champion_ranker)
        ranking = compare((model, selection.ranker), champ, train, test, k, threshold, challenger_lists=lists,
                          **sample)  # fmt: skip
        champion_rmse = ranking["champion_rmse_same_rows"]
    version = registry.new_version()
    promotion = registry.decide_promotion(metrics["rmse"], champion_rmse, settings.promotion_tolerance,
                                          current["version"] if current else None, ranking,
                                          settings.promotion_ndcg_tolerance)  # fmt: skip
    promotion["eval_rows"] = test.num_rows
    promotion["eval_data"] = ("every held-out rating of the stable split (top-N: of the test users, or a seeded sample "
                              f"of {settings.eval_max_users:,} when there are more); histories: the current training "
                              "split")  # fmt: skip
    metadata = {
        "params": asdict(params),
        "metrics": metrics,
        "ranking": _ranking_metadata(selection, bool(selection.candidates)),
        "batch_ids": batch_ids,
        "data_checksum": data_checksum(data),
        "n_train": train.num_rows,
        "n_test": test.num_rows,
        "train_seconds": seconds,
        "als_seconds": als_seconds,
        "promotion": promotion,
        "source": "warehouse",
        "engine": trainer.engine,
        "split": SPLIT_RULE,
    }
    registry.save_version(settings, model, metadata, version, selection.ranker)
    registry.remember_ranker(settings, version, selection.ranker)  # publish and the next comparison load it
    con.execute("begin transaction")
    try:
        merged = merge_batches(con, to_merge, version)
        registry.register(con, settings, version, metadata, "candidate" if promotion["decision"] == "promoted"
                          else "rejected")  # fmt: skip
        if promotion["decision"] == "promoted":
            registry._set_champion(con, settings, version, "auto", promotion["reason"], alias=False)
            write_recommendations(con, settings, model, version, ranker=selection.ranker)
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    registry.write_alias(con, settings)  # only now: a kill before the commit leaves the old alias
    registry.prune_files(con, settings, settings.model_keep_versions)
    champ_row = registry.champion(con)
    log_event(log, "model_trained", version=version, rmse=round(metrics["rmse"], 4),
              ndcg=round(metrics["ndcg_at_10"], 4), ranking_model=selection.ranker.name,
              decision=promotion["decision"], seconds=round(seconds, 2), n_train=train.num_rows)  # fmt: skip
    return TrainingRun(**_scores(version, metrics, seconds), n_train=train.num_rows,
                       promoted=promotion["decision"] == "promoted",
                       champion_version=champ_row["version"] if champ_row else None, promotion=promotion,
                       merged_batches=merged, batch_ids=batch_ids)  # fmt: skip


def train_files(
    settings: Settings,
    ratings_path: Path,
    test_path: Path | None,
    params: ALSParams,
    progress: Callable[[int, float], None] | None = None,
    lists_out: Path | None = None,
    min_rating: float | None = None,
    note: Callable[[str], None] | None = None,
    trainer: Trainer = LOCAL,
) -> FileTrainingRun:
    """Train and evaluate on files of any supported format; the warehouse is not touched.

    With no test file, the stable 80/20 split of the ratings file is used. The ranking model is always
    searched on validation data carved from the training file. The version is saved (``source: files``) but
    not registered, so it never becomes champion. ``lists_out`` receives the evaluated top-N lists.
    """
    from cinematch.datasets.ratings import read_ratings

    data, _ = read_ratings(Path(ratings_path))
    if test_path is not None:
        train, test = data, read_ratings(Path(test_path))[0]
    else:
        train, test = stable_split(data)
    threshold = settings.relevance_threshold if min_rating is None else min_rating
    t0 = time.perf_counter()
    model = fit(train, params, progress, trainer)
    selection = fit_ranker(train, settings, None, True, note, trainer)
    seconds = time.perf_counter() - t0
    metrics, users, lists = evaluate_version(model, selection.ranker, train, test, settings.top_n, threshold)
    if lists_out is not None:
        write_lists(lists_out, users, lists)
    version = registry.new_version()
    metadata = {"params": asdict(params), "metrics": metrics, "ranking": _ranking_metadata(selection, bool(selection.candidates)),
                "source": "files", "ratings_file": str(ratings_path),
                "test_file": str(test_path) if test_path else None, "n_train": train.num_rows,
                "n_test": test.num_rows, "train_seconds": seconds,
                "split": {"rule": "given test file"} if test_path else SPLIT_RULE}  # fmt: skip
    registry.save_version(settings, model, metadata, version, selection.ranker)
    return FileTrainingRun(**_scores(version, metrics, seconds), n_train=train.num_rows, registered=False,
                           lists_out=str(lists_out) if lists_out else None)  # fmt: skip
