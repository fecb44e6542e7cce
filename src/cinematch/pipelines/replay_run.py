"""The whole replay: prepare the history, build the base once, play each policy, keep the rows, judge the policies."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cinematch.core.log import get_logger, log_event
from cinematch.core.results import Result, optional
from cinematch.core.settings import Settings
from cinematch.datasets.periods import parse_every
from cinematch.pipelines.replay import FITS, build_base
from cinematch.pipelines.replay_data import prepare
from cinematch.pipelines.replay_policy import Policy
from cinematch.pipelines.replay_workers import default_workers, play_policies
from cinematch.storage import replay_rows
from cinematch.storage.warehouse import write_session

log = get_logger(__name__)

# the per-period fields the JSON document shows, in this order
PERIOD_FIELDS = (
    "policy", "period", "period_start", "period_end", "model_version", "n_ratings", "n_users", "hit_rate_at_10",
    "ndcg_at_10", "coverage", "fallback_share", "rmse", "n_rmse", "n_unknown", "drift_score", "decision",
    "retrained", "new_version", "promoted", "seconds",
)  # fmt: skip


@dataclass(eq=False)
class ReplayRun(Result):
    """One `cinematch replay`: every period of every policy, a summary per policy, and the verdict."""

    replay_id: str
    folder: str
    start: datetime
    every: str
    n_base: int
    n_invalid: int
    policies: list[str]
    periods: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    verdict: str
    seconds: float
    base_seconds: float  # building the base home with its tuned first model (0 when an earlier run built it)
    report: str | None = optional()


def summarize(policy: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A policy's mean NDCG@10 and hit rate@10 over the scored periods (each period weighs the same), its mean
    RMSE, its retrains and its compute seconds."""
    scored = [r for r in rows if r["ndcg_at_10"] is not None]
    rmses = [r["rmse"] for r in rows if r["rmse"] is not None]

    def mean(key: str) -> float | None:
        return sum(r[key] for r in scored) / len(scored) if scored else None

    return {
        "policy": policy,
        "periods": len(rows),
        "scored_periods": len(scored),
        "mean_ndcg_at_10": mean("ndcg_at_10"),
        "mean_hit_rate_at_10": mean("hit_rate_at_10"),
        "mean_rmse": sum(rmses) / len(rmses) if rmses else None,
        "retrains": sum(bool(r["retrained"]) for r in rows),
        "compute_seconds": round(sum(r["seconds"] or 0.0 for r in rows), 3),
    }


def verdict(summary: list[dict[str, Any]]) -> str:
    """One line: drift-triggered retraining against always-retrain when both ran, else each policy in brief."""
    by = {s["policy"]: s for s in summary}
    drift = next((s for s in summary if s["policy"] == "drift"), None) or next(
        (s for s in summary if s["policy"].startswith("drift@")), None
    )
    always = by.get("always")
    if drift and always and always["mean_ndcg_at_10"] and always["retrains"]:
        kept = (drift["mean_ndcg_at_10"] or 0.0) / always["mean_ndcg_at_10"]
        share = drift["retrains"] / always["retrains"]
        return (f"drift-triggered retraining ({drift['policy']}) kept {kept:.0%} of always-retrain's mean NDCG@10 "
                f"with {share:.0%} of its retrains ({drift['retrains']} vs {always['retrains']})")  # fmt: skip
    parts = []
    for s in summary:
        ndcg = "n/a" if s["mean_ndcg_at_10"] is None else f"{s['mean_ndcg_at_10']:.4f}"
        parts.append(f"{s['policy']}: mean NDCG@10 {ndcg} over {s['scored_periods']} periods, {s['retrains']} retrains")
    return "; ".join(parts)


def last_weeks_start(ratings: Path, weeks: int = 3) -> datetime:
    """The UTC midnight that leaves ``weeks`` whole weeks up to the history's last day (the demo's start)."""
    import pyarrow.compute as pc

    from cinematch.datasets.periods import as_utc
    from cinematch.datasets.ratings import read_ratings

    table, _ = read_ratings(ratings)
    last = as_utc(pc.max(table.column("rated_at")).as_py())
    midnight = datetime.combine(last.date(), datetime.min.time(), tzinfo=last.tzinfo)
    return midnight + timedelta(days=1 - 7 * weeks)


def run_replay(
    settings: Settings,
    ratings: Path,
    movies: Path | None,
    start: datetime,
    every: str,
    policies: list[Policy],
    say: Callable[[str], None] | None = None,
    report: bool = True,
    workers: int | None = None,
) -> ReplayRun:
    """Replay ``ratings`` from ``start`` in periods of ``every`` under each policy (see pipelines/replay.py).

    ``workers`` policies play at once in their own processes (default: one per core, see replay_workers).
    """
    echo = say is not None
    say = say or (lambda line: None)
    t0 = time.perf_counter()
    plan = prepare(settings, ratings, movies, start, parse_every(every))
    say(f"replay {plan.replay_id}: {plan.n_base:,} base ratings, {len(plan.periods)} periods of {plan.every} "
        f"from {plan.start:%Y-%m-%d}" + (f" ({plan.n_invalid:,} invalid rows skipped)" if plan.n_invalid else ""))  # fmt: skip
    t_base = time.perf_counter()
    build_base(settings, plan, say)
    base_seconds = round(time.perf_counter() - t_base, 2)
    workers = default_workers(len(policies)) if workers is None else workers
    rows = play_policies(settings, plan, policies, say, workers, echo)
    shutil.rmtree(plan.folder / FITS, ignore_errors=True)  # shared fits serve only a replay in progress
    with write_session(settings, "replay") as con:
        replay_rows.put_many(con, rows)
    summary = [summarize(p.name, [r for r in rows if r["policy"] == p.name]) for p in policies]
    line = verdict(summary)
    periods = [{k: r[k] for k in PERIOD_FIELDS} for r in rows]
    path = None
    if report:
        from cinematch.pipelines.replay_report import write_replay_report

        path = str(
            write_replay_report(
                plan.folder / "report.html", plan.replay_id, rows, summary, line, settings.drift_retrain_score
            )
        )
    log_event(log, "replay_done", replay_id=plan.replay_id, policies=len(policies), periods=len(plan.periods),
              seconds=round(time.perf_counter() - t0, 2))  # fmt: skip
    return ReplayRun(
        replay_id=plan.replay_id, folder=str(plan.folder), start=plan.start, every=str(plan.every),
        n_base=plan.n_base, n_invalid=plan.n_invalid, policies=[p.name for p in policies], periods=periods,
        summary=summary, verdict=line, seconds=round(time.perf_counter() - t0, 2), base_seconds=base_seconds,
        report=path,
    )  # fmt: skip
