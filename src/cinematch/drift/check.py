"""Drift checks against the champion's training data, the stored decision, and the retraining cycle."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from cinematch.core.errors import BadInput
from cinematch.core.log import get_logger, log_event
from cinematch.core.results import Result, optional
from cinematch.core.settings import Settings
from cinematch.drift.genres import MovieGenres
from cinematch.drift.reference import ReferenceStats
from cinematch.drift.stats import DriftResult, compare, reference_stats
from cinematch.recommender import registry
from cinematch.recommender.metrics import rmse
from cinematch.recommender.training_set import ratings_of, unmerged_batches
from cinematch.storage.audit import new_run_id, utcnow
from cinematch.storage.protocol import Warehouse
from cinematch.storage.warehouse import batch_table

log = get_logger(__name__)

REFERENCE_DIR = "reference"
CONTRACT_KEYS = ("kl_divergence", "mean_shift", "median_shift", "score", "should_retrain", "decision")


def _movie_genres(con: Warehouse) -> MovieGenres | None:
    movies = con.sql("select movie_id, genres from silver.movies order by movie_id").to_arrow_table()
    if movies.num_rows == 0:
        return None
    return MovieGenres.from_arrays(movies.column("movie_id").to_numpy(), movies.column("genres"))


def champion_reference(con: Warehouse, settings: Settings, champion: registry.ModelRecord) -> ReferenceStats:
    """Reference statistics of the champion's training data: computed once per version, then read from disk.

    Counted by the warehouse (ratings per distinct movie and rating, the distinct users), not read row by row:
    at 22.5M ratings the rows' read and binning took 5 s of a retrain week."""
    folder = registry.model_dir(settings, champion.version) / REFERENCE_DIR
    if (folder / "reference.json").is_file():
        return ReferenceStats.load(folder)
    batch_table(con, "_reference_batches", list(champion["batch_ids"]))
    trained = "from silver.ratings where batch_id in (select batch_id from _reference_batches)"
    counted = con.sql(f"select movie_id, rating, count(*) as n {trained} group by movie_id, rating").to_arrow_table()
    users = con.sql(f"select distinct user_id {trained}").to_arrow_table()
    if counted.num_rows == 0:
        raise BadInput(f"the champion {champion['version']} has no training data left in silver; retrain it")
    stats = reference_stats(
        counted.column("rating").to_numpy(),
        users.column("user_id").to_numpy(),
        counted.column("movie_id").to_numpy(),
        movie_genres=_movie_genres(con),
        weights=counted.column("n").to_numpy(),
    )
    stats.save(folder)
    log_event(log, "reference_stats_stored", version=champion["version"], n=stats.n)
    return stats


@dataclass(eq=False)
class DriftReport(Result):
    """A drift check: its statistics and decision (``result``, whose fields the JSON holds at the top level, the
    contract's keys first), and, for a warehouse check, the stored report's id, the champion and the batches."""

    result: DriftResult
    report_id: str | None = optional()
    model_version: str | None = optional()
    batch_ids: list[str] | None = optional()
    reference: str | None = optional()  # drift between two files: their paths
    current: str | None = optional()

    def _fields(self) -> Iterator[tuple[str, Any]]:
        stats = self.result.to_dict()
        yield from ((k, stats[k]) for k in CONTRACT_KEYS)
        yield from ((k, v) for k, v in stats.items() if k not in CONTRACT_KEYS)
        yield from ((k, v) for k, v in super()._fields() if k != "result")


def check_drift(con: Warehouse, settings: Settings) -> DriftReport:
    """Compare the buffered batches not yet trained on with the champion's training data; store the report."""
    champion = registry.champion(con)
    if champion is None:
        raise BadInput(
            "no champion model yet: run `cinematch train` first (or compare files with --reference/--current)"
        )
    reference = champion_reference(con, settings, champion)
    batches = unmerged_batches(con)
    current = ratings_of(con, batches)
    rmse_current = None
    if current.num_rows:
        model = registry.load_model(settings, champion["version"])
        predicted, _ = model.predict(current.column("user_id").to_numpy(), current.column("movie_id").to_numpy())
        rmse_current = rmse(current.column("rating").to_numpy(), predicted)
    result = compare(
        reference,
        current.column("rating").to_numpy(),
        current.column("user_id").to_numpy(),
        current.column("movie_id").to_numpy(),
        settings=settings,
        model_rmse_reference=champion["metrics"].get("rmse"),
        model_rmse_current=rmse_current,
        movie_genres=_movie_genres(con),
    )
    report_id = new_run_id()
    doc = DriftReport(result, report_id=report_id, model_version=champion["version"], batch_ids=batches)
    con.execute(
        "insert into ops.drift_reports values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            report_id, utcnow(), champion["version"], json.dumps(batches), result.n_reference, result.n_current,
            result.kl_divergence, result.mean_shift, result.median_shift, result.psi, result.ks_statistic,
            result.score, result.model_rmse_reference, result.model_rmse_current, result.model_degradation,
            result.decision, result.should_retrain, json.dumps(doc.to_dict(), default=str),
        ],
    )  # fmt: skip
    log_event(log, "drift_checked", decision=result.decision, score=round(result.score, 4), n_current=result.n_current,
              batches=len(batches))  # fmt: skip
    return doc


def drift_files(settings: Settings, reference_path: Path, current_path: Path) -> DriftReport:
    """Data drift between two ratings files of any supported format, without a warehouse."""
    from cinematch.datasets.ratings import read_ratings

    ref, _ = read_ratings(Path(reference_path))
    cur, _ = read_ratings(Path(current_path))

    def cols(t: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (t.column("rating").to_numpy(), t.column("user_id").to_numpy(), t.column("movie_id").to_numpy())

    result = compare(reference_stats(*cols(ref)), *cols(cur), settings=settings)
    return DriftReport(result, reference=str(reference_path), current=str(current_path))
