"""The retraining rule: check drift; on `retrain`, merge exactly the checked batches, train, promote if not worse."""

from __future__ import annotations

from dataclasses import dataclass

from cinematch.core.results import Result
from cinematch.core.settings import Settings
from cinematch.drift.check import DriftReport, check_drift
from cinematch.pipelines import mlflow_sync
from cinematch.pipelines.engine import train_warehouse
from cinematch.recommender import registry
from cinematch.recommender.training import TrainingRun, params_from_settings
from cinematch.storage.protocol import Warehouse


@dataclass(eq=False)
class RetrainCycle(Result):
    """One drift check and what it led to: the new version's run when it retrained, and the champion after."""

    drift: DriftReport
    retrained: bool
    training: TrainingRun | None
    champion_version: str | None


def drift_and_retrain(con: Warehouse, settings: Settings) -> RetrainCycle:
    """One cycle of the original DAG: detect drift; on `retrain`, merge the checked batches, train, promote.

    Only the batches the check looked at are merged (exactly once: the training set's primary key), and
    the new model is promoted only if it is not worse than the champion on the same held-out ratings.
    """
    drift = check_drift(con, settings)
    mlflow_sync.after_drift(settings, drift)
    training = None
    if drift["should_retrain"]:
        training = train_warehouse(con, settings, params_from_settings(settings), merge=drift["batch_ids"])
    champion = registry.champion(con)
    return RetrainCycle(drift=drift, retrained=training is not None, training=training,
                        champion_version=champion["version"] if champion else None)  # fmt: skip
