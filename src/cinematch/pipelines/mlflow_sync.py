"""Mirroring CineMatch to MLflow: hooks after a training, a champion change and a drift check, and the catch-up.

The hooks are no-ops (and import nothing of MLflow) unless CINEMATCH_MLFLOW_TRACKING_URI is set. When MLflow
is down they give up within ``mlflow_timeout_seconds``, log one warning, record what was not mirrored and
return: CineMatch's own registry is the source of truth and a training never fails for MLflow.
:func:`sync` (`cinematch models sync-mlflow`) catches up from that registry: every version with its files
that MLflow lacks is logged and registered, pending drift checks and file trainings are logged, and the
``champion`` alias is put on CineMatch's champion.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from cinematch.core.log import get_logger, log_event
from cinematch.core.results import Result
from cinematch.core.settings import Settings
from cinematch.pipelines import mlflow_client as mc
from cinematch.recommender import registry
from cinematch.storage.protocol import Warehouse

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = get_logger(__name__)


def prepare(settings: Settings) -> mc.Warmup | None:
    """Start connecting to MLflow while the training runs (None when MLflow is off)."""
    return mc.Warmup(settings) if mc.enabled(settings) else None


def _mirror(
    settings: Settings,
    what: str,
    action: Callable[[MlflowClient, ModuleType], None],
    pending: dict[str, Any],
    warm: mc.Warmup | None = None,
) -> None:
    """``action(client, mlflow_log)`` on a probed client (``warm``'s, or a new one); never raises.

    MLflow's own errors, the network's, a missing extra: each only delays the mirror (one warning, and
    ``pending`` recorded for `cinematch models sync-mlflow`).
    """
    try:
        from cinematch.pipelines import mlflow_log

        if warm is not None:
            client = warm.ready()
        else:
            client = mc.connect(settings)
            mc.probe(settings, client)
        action(client, mlflow_log)
    except Exception as exc:
        mc.give_up(settings, what, exc)
        mc.add_pending(settings, **pending)


def after_training(
    settings: Settings, version: str, registered: bool, champion: str | None, warm: mc.Warmup | None = None
) -> None:
    """Mirror a training run (registered: also its model version and the alias); never raises."""
    if not mc.enabled(settings):
        return

    def action(client: MlflowClient, mlflow_log: ModuleType) -> None:
        meta = registry.load_metadata(settings, version)
        mlflow_log.log_version(client, meta, registry.model_dir(settings, version), register=registered)
        if registered:
            mlflow_log.set_champion_alias(client, champion)

    # a registered version may have moved the champion: the alias is pending too
    _mirror(settings, f"training run {version}", action, {"version": version, "alias": registered}, warm)


def after_champion_change(settings: Settings, champion: str | None) -> None:
    """Move the MLflow ``champion`` alias after a promote or rollback; never raises."""
    if not mc.enabled(settings):
        return
    _mirror(settings, f"champion alias {champion}", lambda client, ml: ml.set_champion_alias(client, champion),
            {"alias": True})  # fmt: skip


def after_drift(settings: Settings, report: Mapping[str, Any]) -> None:
    """Log a drift check as a run of the drift experiment; never raises."""
    if not mc.enabled(settings):
        return
    doc: dict[str, Any] = json.loads(json.dumps(dict(report), default=str))
    _mirror(settings, f"drift check {doc.get('report_id')}", lambda client, ml: ml.log_drift(client, doc),
            {"drift": doc})  # fmt: skip


@dataclass(eq=False)
class MlflowSync(Result):
    """`cinematch models sync-mlflow`: what was mirrored now, what was there already, where the alias points."""

    tracking_uri: str  # credentials as ***
    registered: list[str]  # versions logged and registered by this sync
    already_registered: int
    without_files: list[str]  # versions whose model files retention removed: not registrable
    file_runs: list[str]  # pending `train --ratings` runs logged (never registered)
    drift_runs: int
    champion: str | None
    champion_mlflow_version: str | None


def sync(con: Warehouse | None, settings: Settings) -> MlflowSync:
    """Catch MLflow up with CineMatch (idempotent); raises :class:`MlflowUnavailable` when it is off or down."""
    client = mc.connect(settings) if mc.enabled(settings) else None
    if client is None:
        raise mc.MlflowUnavailable("MLflow is off: set CINEMATCH_MLFLOW_TRACKING_URI to sync (see docs/mlflow.md)")
    mc.probe(settings, client)
    from cinematch.pipelines import mlflow_log

    pending = mc.read_pending(settings)
    rows = sorted(registry.list_models(con), key=lambda r: r.version) if con is not None else []
    known = {r.version for r in rows}
    champion = next((r.version for r in rows if r.is_champion), None)
    try:
        there = mlflow_log.registered_versions(client)
        todo = [r.version for r in rows if r.version not in there]
        without = [v for v in todo if not registry.has_files(settings, v)]
        done = [v for v in todo if v not in without]
        for version in done:
            meta = registry.load_metadata(settings, version)
            mlflow_log.log_version(client, meta, registry.model_dir(settings, version), register=True)
        file_runs = [v for v in pending["versions"] if v not in known and registry.has_files(settings, v)]
        for version in file_runs:
            meta = registry.load_metadata(settings, version)
            mlflow_log.log_version(client, meta, registry.model_dir(settings, version), register=False)
        for report in pending["drift"]:
            mlflow_log.log_drift(client, report)
        number = mlflow_log.set_champion_alias(client, champion)
    except Exception as exc:
        raise mc.MlflowUnavailable(
            f"MLflow sync stopped ({mc.safe_text(settings, f'{type(exc).__name__}: {exc}')}); "
            "rerun `cinematch models sync-mlflow` when MLflow is back"
        ) from None
    _forget(settings, pending)
    result = MlflowSync(tracking_uri=mc.shown_uri(settings), registered=done, already_registered=len(rows) - len(todo),
                        without_files=without, file_runs=file_runs, drift_runs=len(pending["drift"]),
                        champion=champion, champion_mlflow_version=number)  # fmt: skip
    log_event(log, "mlflow_synced", registered=len(done), already=result.already_registered,
              drift_runs=result.drift_runs, champion=champion, mlflow_version=number)  # fmt: skip
    return result


def _forget(settings: Settings, handled: dict[str, Any]) -> None:
    """Remove what this sync handled from the pending record, keeping what a concurrent run added meanwhile."""
    now = mc.read_pending(settings)
    ids = {json.dumps(d, sort_keys=True) for d in handled["drift"]}
    mc.write_pending(settings, {"versions": [v for v in now["versions"] if v not in handled["versions"]],
                                "drift": [d for d in now["drift"] if json.dumps(d, sort_keys=True) not in ids],
                                "alias": now["alias"] and not handled["alias"]})  # fmt: skip
