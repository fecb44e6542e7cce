"""DAG tasks of the models: whether training is due, train, find and test the latest model, futures."""

# Library imports happen inside the functions: DAG files import this module at parse time without
# loading DuckDB or touching CINEMATCH_HOME.

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cinematch.core.log import get_logger, kv, log_event

if TYPE_CHECKING:
    pass
from cinematch.pipelines.task_io import json_ref, resolve_file, run_tag, task_session, write_csv

log = get_logger(__name__)


FUTURES_PAIRS = 200


def current_model() -> dict[str, Any]:
    """The champion's version and registered metrics (``version`` None before the first model)."""
    from cinematch.recommender import registry

    with task_session("current_model") as (_, con):
        champ = registry.champion(con)
    ref = {"version": champ["version"] if champ else None,
           "rmse": champ["metrics"].get("rmse") if champ else None}  # fmt: skip
    log_event(log, "current_model", version=ref["version"], rmse=ref["rmse"])
    return ref


def latest_model() -> dict[str, Any]:
    """The newest ``version_*`` folder by name (as the original found it) and the current champion."""
    from cinematch.recommender import registry

    with task_session("latest_model") as (settings, con):
        champ = registry.champion(con)
        folders = sorted(
            p.name for p in settings.models_dir.glob("version_*") if registry.VERSION_RE.fullmatch(p.name)
        ) if settings.models_dir.is_dir() else []  # fmt: skip
    ref = {"version": folders[-1] if folders else None, "champion": champ["version"] if champ else None,
           "n_versions": len(folders)}  # fmt: skip
    log.info(kv("latest_model", **ref))
    return ref


def pending_batches(force: bool = False) -> dict[str, Any]:
    """Silver batches no model was trained on yet, and whether training is due (the train step's guard).

    Training is due when there is no champion yet, when batches were merged into silver since the champion,
    or when ``force`` is set; otherwise a rerun would only register a duplicate version.
    """
    from cinematch.recommender import registry
    from cinematch.recommender.training_set import unmerged_batches

    with task_session("pending_batches") as (_, con):
        batches = unmerged_batches(con)
        champ = registry.champion(con)
    due = bool(force or batches or champ is None)
    reason = ("forced by param force_train" if force else f"{len(batches)} new batch(es) since the champion"
              if batches else "no champion yet" if champ is None
              else f"nothing new since champion {champ['version']}")  # fmt: skip
    log_event(log, "training_due" if due else "training_skipped", reason=reason)
    return {"batch_ids": batches, "champion": champ["version"] if champ else None, "train": due, "reason": reason}


def train_model(force: bool = False) -> dict[str, Any]:
    """Train on the training set plus every unmerged batch, register the version, promote if not worse.

    With nothing new since the champion (and no ``force``) no version is registered: the champion is returned
    with ``skipped`` true, so a rerun never adds a duplicate model.
    """
    from cinematch.pipelines.engine import train_warehouse
    from cinematch.recommender import registry
    from cinematch.recommender.training import params_from_settings
    from cinematch.recommender.training_set import unmerged_batches

    with task_session("train_model") as (settings, con):
        champ = registry.champion(con)
        if champ is not None and not force and not unmerged_batches(con):
            log_event(log, "training_skipped", reason="nothing new since the champion", version=champ["version"])
            return {"version": champ["version"], "skipped": True, "reason": "nothing new since the champion"}
        result = train_warehouse(con, settings, params_from_settings(settings))
    return training_ref(result)


def training_ref(result: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("version", "rmse", "mae", "precision_at_10", "recall_at_10", "ndcg_at_10", "n_test", "n_train",
            "promoted", "champion_version", "merged_batches", "train_seconds")  # fmt: skip
    ref = {k: result.get(k) for k in keys}
    ref["skipped"] = False
    ref["promotion"] = result["promotion"]["decision"]
    return json_ref(ref)


def test_model(version: str | None) -> dict[str, Any]:
    """Evaluate ``version`` on the held-out ratings of its training batches (the stable 80/20 split).

    The split is the one training used, so the metrics must reproduce the registered ones; a model trained from
    files (no batch list) is evaluated on the held-out part of the current training set.
    """
    from cinematch.recommender import registry
    from cinematch.recommender.metrics import evaluate
    from cinematch.recommender.training_set import ratings_of, stable_split, training_batches

    if version is None:
        log_event(log, "test_skipped", reason="no model to test")
        return {"version": None, "skipped": True}
    with task_session("test_model") as (settings, con):
        metadata = registry.load_metadata(settings, version)
        batch_ids = metadata.get("batch_ids") or training_batches(con)
        data = ratings_of(con, batch_ids)
    train, test = stable_split(data, seed=settings.seed)
    model = registry.load_model(settings, version)
    metrics = evaluate(model, train, test, k=settings.top_n, threshold=settings.relevance_threshold)
    registered = (metadata.get("metrics") or {}).get("rmse")
    ref = {"version": version, "skipped": False, **metrics, "registered_rmse": registered,
           "reproduces_registry": registered is not None and abs(metrics["rmse"] - registered) < 1e-6}  # fmt: skip
    log_event(log, "model_tested", version=version, rmse=round(metrics["rmse"], 4), n_test=metrics["n_test"],
              reproduces_registry=ref["reproduces_registry"])  # fmt: skip
    return json_ref(ref)


def create_futures(
    pairs_file: str | None = None, tag: str | None = None, n_pairs: int = FUTURES_PAIRS
) -> dict[str, Any]:
    """The original "futures": champion predictions for (user, movie[, date]) pairs.

    Without ``pairs_file`` a pairs file is generated from the buffer: the ``n_pairs`` newest ratings in
    ``bronze.ratings_buffer`` as ``user_id,movie_id,date``, so predictions sit next to ratings users really gave.
    Files go to ``HOME/futures/<tag>-pairs.csv`` and ``<tag>-predictions.csv``. Before the first model only the
    pairs file is written.
    """
    from cinematch.recommender import registry
    from cinematch.recommender.recommendations import predict_pairs
    from cinematch.storage.records import newest_buffer_ratings

    with task_session("create_futures") as (settings, con):
        folder = settings.home_dir / "futures"
        folder.mkdir(parents=True, exist_ok=True)
        name = run_tag(tag)
        if pairs_file:
            pairs = resolve_file(settings, pairs_file)
        else:
            pairs = folder / f"{name}-pairs.csv"
            rows = newest_buffer_ratings(con, n_pairs)
            write_csv(pairs, ("user_id", "movie_id", "date"), rows)
    if registry.champion_alias(settings) is None:
        log_event(log, "futures_pairs_only", pairs=str(pairs), reason="no champion yet")
        return {"pairs_file": str(pairs), "predictions": None, "version": None, "reason": "no champion yet"}
    doc = predict_pairs(settings, pairs, folder / f"{name}-predictions.csv")
    log_event(log, "futures_predicted", version=doc["version"], pairs=doc["pairs"], fallbacks=doc["fallbacks"])
    return json_ref({"pairs_file": str(pairs), "predictions": doc["out"], **doc})
