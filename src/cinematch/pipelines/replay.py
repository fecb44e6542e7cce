"""`cinematch replay`: a real rating history played period by period through the lifecycle, once per policy.

Per replay (its id names the history, start and period length) and policy, a scratch home under
``HOME/replays/<id>/<policy>/`` starts as a copy of the base home (movies and the ratings before the start,
ETL, the first model tuned once on the base, views published). Then for each period:

1. score the champion's published top-10 and its predicted ratings against what users rated in the period
   (stored at once as a ``scored`` row, so a rerun never scores a later champion on it);
2. ingest the period's batch (exactly once), ETL, drift check;
3. the policy's retrain decision (reusing the base's tuned choice), publish; the row becomes ``done``. The user
   views of the publication are written from silver beside the drift check and the retrain
   (serving/early_views.py).

Every step is idempotent or detected as done, so a replay killed anywhere and run again continues where it
stopped with the same metrics. The user's warehouse is written only to copy the rows into ``ops.replay_periods``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cinematch.core.log import get_logger, log_event
from cinematch.core.settings import Settings
from cinematch.ingest.bronze import ingest_file
from cinematch.pipelines.engine import cached_trainer, run_etl, train_warehouse
from cinematch.pipelines.replay_data import PeriodFile, ReplayPlan
from cinematch.pipelines.replay_policy import Policy
from cinematch.pipelines.replay_score import score_period
from cinematch.recommender import registry
from cinematch.recommender.training import params_from_settings
from cinematch.recommender.training_set import unmerged_batches
from cinematch.serving.early_views import early_user_views
from cinematch.serving.publish import publish
from cinematch.storage import records, replay_rows
from cinematch.storage.protocol import Warehouse
from cinematch.storage.warehouse import write_session

log = get_logger(__name__)

BASE = "base"
BASE_DONE = "BASE_DONE"  # in the base home, written last: the version of its first model
FITS = "fits"  # recommender/fit_cache.py: fits shared by the policies
BASE_BATCH = "base"  # the batch id of the ratings before the start
PERIOD_FILE = "PERIOD"  # the number of the period a policy is playing
PLAYED_FILE = "PLAYED"  # every period of the policy is done


def mark_period(home: Path, number: int) -> None:
    """Record which period the policy in ``home`` is playing (read by pipelines/replay_prefetch.py)."""
    tmp = home / f".{PERIOD_FILE}.tmp"
    tmp.write_text(str(number))
    tmp.replace(home / PERIOD_FILE)


def mark_played(home: Path) -> None:
    (home / PLAYED_FILE).write_text("")


def played(home: Path) -> bool:
    return (home / PLAYED_FILE).exists()


def playing(home: Path) -> int:
    try:
        return int((home / PERIOD_FILE).read_text())
    except (OSError, ValueError):
        return 0


def scratch_settings(settings: Settings, home: Path, **overrides: Any) -> Settings:
    """The user's settings for a scratch home: DuckDB there, whatever warehouse the user configured.

    MLflow is off there: a replay's trainings and champions are scratch, never the user's runs or alias.
    """
    values = {name: getattr(settings, name) for name in type(settings).model_fields}
    return type(settings)(**{**values, "home": home, "database_url": None, "api_key": None,
                             "mlflow_tracking_uri": None, **overrides})  # fmt: skip


@contextmanager
def _session(settings: Settings) -> Iterator[Warehouse]:
    with write_session(settings, "replay") as con:
        yield con


def build_base(settings: Settings, plan: ReplayPlan, say: Callable[[str], None]) -> Path:
    """The base home, once per replay: movies and base ratings, ETL, the first model (tuned), views."""
    home = plan.folder / BASE
    done = home / BASE_DONE
    if done.exists():
        return home
    if home.exists():  # a kill while building it: start over
        shutil.rmtree(home)
    base = scratch_settings(settings, home)
    t0 = time.perf_counter()
    with _session(base) as con:
        if plan.movies_file is not None:
            ingest_file(con, plan.movies_file, kind="movies")
        ingest_file(con, plan.base_path, batch_id=BASE_BATCH)
        run_etl(con, base, write_lake=False)
        with early_user_views(con, base) as early:  # written beside the training (serving/early_views.py)
            first = train_warehouse(con, base, params_from_settings(base), tune=True)
            publish(con, base, lists_current=bool(first["promoted"]), early=early)
    done.write_text(first["version"])
    say(f"base: {plan.n_base:,} ratings before {plan.start:%Y-%m-%d}, first model {first['version']} "
        f"(rmse {first['rmse']:.4f}, ndcg@10 {first['ndcg_at_10']:.4f}) in {time.perf_counter() - t0:.0f} s")  # fmt: skip
    return home


def policy_settings(settings: Settings, plan: ReplayPlan, policy: Policy) -> Settings:
    """The policy's home, copied from the base the first time; a drift@T policy retrains at score T."""
    home = plan.policy_home(policy.dirname)
    if not home.exists():
        tmp = home.with_name(f".{home.name}.tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        shutil.copytree(plan.folder / BASE, tmp, symlinks=True, ignore=shutil.ignore_patterns("*.lock", BASE_DONE))
        tmp.rename(home)
    overrides = {"drift_retrain_score": policy.threshold} if policy.threshold is not None else {}
    return scratch_settings(settings, home, **overrides)


def _drift(con: Warehouse, settings: Settings, batch_id: str) -> dict[str, Any]:
    """The drift check of this period: the stored one when a killed run already made it."""
    from cinematch.drift.check import check_drift

    stored = replay_rows.drift_report_with(con, batch_id)
    return stored if stored is not None else dict(check_drift(con, settings))


def run_period(
    con: Warehouse, settings: Settings, plan: ReplayPlan, policy: Policy, period: PeriodFile, key: replay_rows.RowKey
) -> dict[str, Any]:
    """One period of one policy in its home's open warehouse ``con`` (the module docstring's steps); returns its
    ``ops.replay_periods`` row. Each step commits on its own, so a kill anywhere leaves a state a rerun continues."""
    started = time.perf_counter()
    row = replay_rows.get(con, key)
    if row is not None and row["status"] == "done":
        return row
    if row is None:
        row = score_period(con, settings, plan, period, key)
        replay_rows.put(con, row)
    decision: dict[str, Any] = {"drift_score": None, "decision": None, "retrained": False, "new_version": None,
                                "promoted": False, "train_seconds": None}  # fmt: skip
    if period.path is not None:
        ingest_file(con, period.path, batch_id=period.batch_id)
        run_etl(con, settings, write_lake=False)
        # the user views are written from silver beside the drift check, the retrain and the lists
        with early_user_views(con, settings) as early:
            decision.update(_decide(con, settings, plan, policy, period))
            # a retrain made here that promoted has just written the lists from these ratings (not one before a kill)
            current = bool(decision["promoted"]) and decision["train_seconds"] is not None
            publish(con, settings, lists_current=current, early=early)
    charged = decision.pop("charged_seconds", 0.0)
    seconds = row["seconds"] + time.perf_counter() - started + charged
    row.update(decision, status="done", seconds=round(seconds, 3))
    replay_rows.put(con, row)
    return row


def _decide(con: Warehouse, settings: Settings, plan: ReplayPlan, policy: Policy, period: PeriodFile) -> dict[str, Any]:
    """Drift check, then the policy's retrain (or the one a killed run already made for this period)."""
    drift = _drift(con, settings, period.batch_id)
    out: dict[str, Any] = {"drift_score": drift.get("score"), "decision": drift.get("decision")}
    merged = records.merged_batches(con).get(period.batch_id)
    if merged is not None:  # trained before a kill: the version it was merged into is this period's retrain
        out.update(retrained=True, new_version=merged, promoted=registry.champion_alias(settings) == merged,
                   train_seconds=None)  # fmt: skip
        return out
    if not policy.retrains(period.number, bool(drift.get("should_retrain")), bool(unmerged_batches(con))):
        return out
    # the drift policy merges the batches its check looked at; the others everything buffered
    merge = list(drift["batch_ids"]) if policy.kind == "drift" and drift.get("batch_ids") else None
    fits = cached_trainer(settings, plan.folder / FITS)
    run = train_warehouse(con, settings, params_from_settings(settings), merge=merge, fits=fits)
    # a fit another policy made is charged what it cost to make: compute seconds compare honestly
    out.update(retrained=True, new_version=run["version"], promoted=bool(run["promoted"]),
               train_seconds=round(float(run["train_seconds"]) + fits.charged_seconds, 3),
               charged_seconds=fits.charged_seconds)  # fmt: skip
    return out


def replay_policy(
    settings: Settings, plan: ReplayPlan, policy: Policy, say: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Every period of ``policy``, in order, in its own home; returns the period rows."""
    home_settings = policy_settings(settings, plan, policy)
    rows = []
    # one session for all its periods: its home is this policy's alone, so opening (and verifying the file) per
    # period bought nothing and cost 0.2 s each
    with _session(home_settings) as con:
        for period in plan.periods:
            mark_period(home_settings.home, period.number)
            key = replay_rows.RowKey(plan.replay_id, policy.name, period.number, period.start, period.end)
            row = run_period(con, home_settings, plan, policy, period, key)
            rows.append(row)
            ndcg = "-" if row["ndcg_at_10"] is None else f"{row['ndcg_at_10']:.4f}"
            say(f"{policy.name} period {period.number}/{len(plan.periods)} {period.start:%Y-%m-%d}: "
                f"{period.n_ratings:,} ratings, ndcg@10 {ndcg}, drift {row['decision'] or '-'}"
                + (f", retrained {row['new_version']}" if row["retrained"] else ""))  # fmt: skip
    mark_played(home_settings.home)
    log_event(log, "replay_policy_done", replay_id=plan.replay_id, policy=policy.name, periods=len(rows),
              retrains=sum(bool(r["retrained"]) for r in rows))  # fmt: skip
    return rows
