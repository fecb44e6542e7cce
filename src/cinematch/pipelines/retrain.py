"""The retraining rule: check drift; on `retrain`, merge exactly the checked batches, train, promote if not worse."""

from __future__ import annotations

from typing import Any

import duckdb

from cinematch.core.settings import Settings
from cinematch.drift.check import check_drift
from cinematch.pipelines.engine import train_warehouse
from cinematch.recommender import registry
from cinematch.recommender.training import params_from_settings


def drift_and_retrain(con: duckdb.DuckDBPyConnection, settings: Settings) -> dict[str, Any]:
    """One cycle of the original DAG: detect drift; on `retrain`, merge the checked batches, train, promote.

    Only the batches the check looked at are merged (exactly once: the training set's primary key), and
    the new model is promoted only if it is not worse than the champion on the same held-out ratings.
    """
    drift = check_drift(con, settings)
    out: dict[str, Any] = {"drift": drift, "retrained": False, "training": None}
    if drift["should_retrain"]:
        out["training"] = train_warehouse(con, settings, params_from_settings(settings), merge=drift["batch_ids"])
        out["retrained"] = True
    champion = registry.champion(con)
    out["champion_version"] = champion["version"] if champion else None
    return out
