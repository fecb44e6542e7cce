"""The main job: week by week, new batch → ingest → ETL → drift check → retrain when needed → publish."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from cinematch.core.log import get_logger, log_event
from cinematch.core.results import Result, optional
from cinematch.core.settings import Settings
from cinematch.datasets.generate import generate_dataset
from cinematch.datasets.generate_config import scale_config
from cinematch.ingest.bronze import ingest_file
from cinematch.pipelines import alerts
from cinematch.pipelines.engine import run_etl, train_warehouse
from cinematch.pipelines.lineage_emit import LineageRun, step_run
from cinematch.pipelines.retrain import drift_and_retrain
from cinematch.recommender import registry
from cinematch.recommender.training import params_from_settings
from cinematch.storage.warehouse import write_session

log = get_logger(__name__)

Scale = Literal["small", "medium", "large"]  # the presets of datasets.generate_config.scale_config

NARRATIVE = {
    "insufficient_data": "not enough new data yet: keep buffering",
    "no_drift": "no drift: the champion stays",
    "warning": "early drift signals: watching",
    "retrain": "drift detected: merged the buffer and retrained",
}


@dataclass(eq=False)
class SimulatedWeek(Result):
    """One week of the story: the batch, the drift check's decision, what retraining and promotion did."""

    week: int
    batch_id: str
    records: int
    buffered_records: int
    score: float
    kl_divergence: float
    mean_shift: float
    median_shift: float
    decision: str
    retrained: bool
    new_version: str | None
    promoted: bool
    champion_version: str | None
    published: bool


@dataclass(eq=False)
class Simulation(Result):
    """`cinematch simulate`: where it ran, one row per week, the first and the final champion.

    `cinematch demo` adds the HTML report's path and a few gold rows to show (``report``, ``gold``).
    """

    home: str
    data: str
    seed: int
    scale: str
    weeks: list[SimulatedWeek]
    first_version: str
    champion_version: str | None
    seconds: float
    report: str | None = optional()
    gold: dict[str, list[dict[str, Any]]] | None = optional()


def _publish(con: Any, settings: Settings) -> Mapping[str, Any] | None:
    """Publish serving views when the serving layer is installed (it is an optional extra)."""
    try:
        from cinematch.serving.publish import publish
    except ImportError:
        return None
    return publish(con, settings)


def _names_version(lineage: LineageRun | None, version: str | None) -> None:
    """The model version a step trained, for its lineage event's ``version`` facet on the models folder."""
    if lineage is not None and version is not None:
        lineage.result = {"version": version}


def simulate(
    settings: Settings,
    weeks: int = 3,
    seed: int = 42,
    scale: str = "small",
    say: Callable[[str], None] | None = None,
) -> Simulation:
    """Run the weekly story on generated data in ``settings.home`` and return one row per week.

    Posts to ``CINEMATCH_ALERT_WEBHOOK`` as the DAGs do: each retrain decision, each promotion outcome, and a
    failure (or gate_failed) naming the week before the error propagates.
    """
    stage = {"where": "simulate setup"}
    try:
        return _simulate(settings, weeks, seed, scale, say or (lambda line: None), stage)
    except Exception as exc:
        alerts.post_exception(exc, "simulate", stage["where"], settings)
        raise


def _simulate(
    settings: Settings, weeks: int, seed: int, scale: str, say: Callable[[str], None], stage: dict[str, str]
) -> Simulation:
    started = time.perf_counter()
    data_dir = settings.home_dir / "simulation" / f"seed{seed}-{scale}-{weeks}w"
    config = dataclasses.replace(scale_config(cast(Scale, scale), seed), weeks=weeks)
    summary = generate_dataset(data_dir, config)
    say(f"generated {summary['files']['ratings']['rows']:,} base ratings and {weeks} weekly batches in {data_dir}")

    with write_session(settings, "simulate") as con:
        # the catalogue, then the viewing sessions around the base ratings, then the base ratings
        setup = (
            ("movies.csv", "movies"),
            ("users.csv", "users"),
            ("content.json", "content"),
            ("sessions.csv", "sessions"),
        )
        with step_run(settings, "ingest", [*(data_dir / name for name, _ in setup), data_dir / "ratings.parquet"]):
            for name, kind in setup:
                ingest_file(con, data_dir / name, kind=kind)
            base = ingest_file(con, data_dir / "ratings.parquet", batch_id="base")
        with step_run(settings, "etl"):
            run_etl(con, settings)
        with step_run(settings, "train") as lineage:
            first = train_warehouse(con, settings, params_from_settings(settings))
            _names_version(lineage, first.version)
        alerts.post_training(first, "simulate", settings)
        with step_run(settings, "publish"):
            _publish(con, settings)
        say(f"week 0: {base.inserted:,} base ratings, first model {first.version} (rmse {first.rmse:.4f})")
        rows = []
        for week in range(1, weeks + 1):
            stage["where"] = f"simulate week {week}"
            path = data_dir / f"batch_w{week}.parquet"
            with step_run(settings, "ingest", [path]):
                batch = ingest_file(con, path)
            with step_run(settings, "etl"):
                run_etl(con, settings)
            with step_run(settings, "drift_and_retrain") as lineage:
                cycle = drift_and_retrain(con, settings)
                _names_version(lineage, cycle.training.version if cycle.training else None)
            drift = cycle.drift
            alerts.post_drift(drift, "simulate", settings)
            alerts.post_training(cycle.training, "simulate", settings)
            with step_run(settings, "publish"):
                published = _publish(con, settings)
            training = cycle.training
            row = SimulatedWeek(
                week=week,
                batch_id=batch.batch_id,
                records=batch.inserted,
                buffered_records=drift["n_current"],
                score=round(drift["score"], 4),
                kl_divergence=round(drift["kl_divergence"], 4),
                mean_shift=round(drift["mean_shift"], 4),
                median_shift=drift["median_shift"],
                decision=drift["decision"],
                retrained=cycle.retrained,
                new_version=training.version if training else None,
                promoted=bool(training and training.promoted),
                champion_version=cycle.champion_version,
                published=published is not None,
            )
            rows.append(row)
            line = f"week {week}: {batch.inserted:,} new ratings ({drift['n_current']:,} buffered), drift score " \
                   f"{drift['score']:.2f} -> {drift['decision']}: {NARRATIVE[drift['decision']]}"  # fmt: skip
            if training:
                line += f"; new model {training.version} rmse {training.rmse:.4f} {training.promotion['decision']}"
            say(line)
            log_event(log, "simulation_week", **{k: v for k, v in row.items() if k != "champion_version"})
        champion = registry.champion(con)
    return Simulation(
        home=str(settings.home_dir),
        data=str(data_dir),
        seed=seed,
        scale=scale,
        weeks=rows,
        first_version=first.version,
        champion_version=champion.version if champion else None,
        seconds=round(time.perf_counter() - started, 2),
    )


def demo_home(settings: Settings) -> Path:
    """A fresh home for the demo: HOME itself when it holds no warehouse yet, else a new sibling folder."""
    if not settings.duckdb_path.exists():
        return settings.home_dir
    from cinematch.storage.audit import utcnow

    return settings.home_dir / f"demo-{utcnow():%Y%m%dT%H%M%S}"
