"""`cinematch evaluate`: every model beside most-popular on one named protocol, from files or the warehouse."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from cinematch.core.errors import BadInput
from cinematch.core.results import Result
from cinematch.core.settings import Settings
from cinematch.recommender.evaluation import evaluate_models
from cinematch.recommender.protocols import split_protocol
from cinematch.recommender.trainer import LOCAL, Trainer


@dataclass(eq=False)
class ProtocolEvaluation(Result):
    """`cinematch evaluate`: the split, the relevance rule, and one row of scores per model on the test part."""

    protocol: str
    split: dict[str, Any]
    min_rating: float
    k: int
    n_train: int
    n_test: int
    models: list[dict[str, Any]]
    served_model: str
    seconds: float


def _warehouse_ratings(settings: Settings) -> pa.Table:
    from cinematch.storage.warehouse import read_session, table_exists, warehouse_exists

    if not warehouse_exists(settings):  # a read never creates the warehouse
        return pa.table({"user_id": pa.array([], pa.int64())})
    with read_session(settings) as con:
        if not table_exists(con, "silver", "ratings"):
            return pa.table({"user_id": pa.array([], pa.int64())})
        return con.sql("select user_id, movie_id, rating, rated_at from silver.ratings").to_arrow_table()


def evaluate_protocol(
    settings: Settings,
    ratings: Path | None,
    test_file: Path | None,
    protocol: str,
    min_rating: float | None,
    last_n: int = 1,
    note: Callable[[str], None] | None = None,
    trainer: Trainer = LOCAL,
) -> ProtocolEvaluation:
    """Split (or take the given test file), train every model on the train part, score each on the test part.

    The served model is chosen on validation data carved from the train part, as ``train`` does.
    """
    from cinematch.datasets.ratings import read_ratings
    from cinematch.recommender.training import fit, fit_ranker, params_from_settings

    start = time.perf_counter()
    data = read_ratings(Path(ratings))[0] if ratings is not None else _warehouse_ratings(settings)
    if data.num_rows == 0:
        raise BadInput("no ratings to evaluate on: pass --ratings FILE, or ingest and run `cinematch etl` first")
    if test_file is not None:
        train, test, info = data, read_ratings(Path(test_file))[0], {"protocol": "given test file"}
    else:
        options = {"n": last_n} if protocol == "leave_last_n" else {}
        train, test, info = split_protocol(data, protocol, seed=settings.seed, **options)
    threshold = settings.relevance_threshold if min_rating is None else min_rating
    say = note or (lambda _m: None)
    say("explicit ALS")
    als = fit(train, params_from_settings(settings), None, trainer)
    selection = fit_ranker(train, settings, None, True, say, trainer)
    say("scoring")
    rows = evaluate_models(train, test, als, selection, threshold, settings.top_n)
    return ProtocolEvaluation(
        protocol=info.get("protocol", protocol),
        split=info,
        min_rating=threshold,
        k=settings.top_n,
        n_train=train.num_rows,
        n_test=test.num_rows,
        models=rows,
        served_model=selection.ranker.name,
        seconds=round(time.perf_counter() - start, 2),
    )
