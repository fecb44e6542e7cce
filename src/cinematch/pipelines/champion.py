"""Changing the champion by hand (`cinematch models promote|rollback`): registry, batch lists, alias, views.

One step each, in this order: the registry change and the champion's batch recommendations commit together,
the CHAMPION alias follows the commit, then the serving views are republished so a running API serves the new
champion. A training run that promoted its version republishes the same way (:func:`publish_champion`).
"""

from __future__ import annotations

from dataclasses import dataclass

from cinematch.core.errors import CineMatchError
from cinematch.core.settings import Settings
from cinematch.pipelines import mlflow_sync
from cinematch.recommender import registry
from cinematch.recommender.recommendations import write_recommendations
from cinematch.storage.protocol import Warehouse


@dataclass(eq=False)
class ChampionUpdate(registry.ChampionChange):
    """`cinematch models promote|rollback`: the change, the batch lists written for the new champion, and the
    views version published for it (None: no lakehouse to publish from yet)."""

    recommendations: int
    published: str | None


def publish_champion(con: Warehouse, settings: Settings) -> str | None:
    """A change of champion republishes the serving views, so a running API follows it (None: no lakehouse yet)."""
    from cinematch.serving.publish import publish

    try:
        return publish(con, settings).views_version
    except CineMatchError as exc:
        if "nothing to publish yet" in str(exc):
            return None
        raise


def _commit_and_publish(
    con: Warehouse, settings: Settings, change: registry.ChampionChange, recommendations: int
) -> ChampionUpdate:
    """After the transaction: the alias, then the views of the new champion."""
    con.execute("commit")
    registry.write_alias(con, settings)
    mlflow_sync.after_champion_change(settings, change.champion)  # MLflow's alias follows (when MLflow is on)
    return ChampionUpdate(champion=change.champion, previous=change.previous, action=change.action,
                          reason=change.reason, recommendations=recommendations,
                          published=publish_champion(con, settings))  # fmt: skip


def promote_version(con: Warehouse, settings: Settings, version: str) -> ChampionUpdate:
    """Make ``version`` the champion (no "not worse" rule: a manual choice) and refresh its batch lists."""
    con.execute("begin transaction")
    change = registry.promote(con, settings, version, alias=False)
    recommendations = write_recommendations(con, settings, registry.load_model(settings, version), version)
    return _commit_and_publish(con, settings, change, recommendations)


def rollback_champion(con: Warehouse, settings: Settings) -> ChampionUpdate:
    """Return to the previous champion whose files are still there, and refresh its batch lists."""
    con.execute("begin transaction")
    change = registry.rollback(con, settings, alias=False)
    model = registry.load_model(settings, change.champion)
    recommendations = write_recommendations(con, settings, model, change.champion)
    return _commit_and_publish(con, settings, change, recommendations)
