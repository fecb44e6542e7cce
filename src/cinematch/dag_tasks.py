"""Tasks the DAGs share: the publish step and the model steps of etl_train_test_pipeline and its Spark variant."""

from __future__ import annotations

from typing import Any

from airflow.sdk import TriggerRule, task

from cinematch.pipelines import orchestration as orch


@task(pool=orch.POOL)
def create_futures(built: dict, params: dict | None = None, run_id: str | None = None) -> dict:
    return orch.create_futures(pairs_file=params["pairs_file"], tag=run_id)


@task.short_circuit(pool=orch.POOL, ignore_downstream_trigger_rules=False)
def needs_training(futures: dict, params: dict | None = None) -> bool:
    return orch.pending_batches(force=params["force_train"])["train"]


@task(pool=orch.POOL, trigger_rule=TriggerRule.NONE_FAILED)
def find_latest_model(trained: dict | None) -> dict:
    return orch.latest_model()


@task(pool=orch.POOL)
def test_model(latest: dict) -> dict:
    return orch.test_model(latest["version"])


@task(pool=orch.POOL, trigger_rule=TriggerRule.NONE_FAILED)
def validate_run(built: dict, trained: dict | None, tested: dict, dag_id: str = "") -> dict:
    return orch.validate_run(dag_id, etl=built, training=trained, test=tested)


@task(pool=orch.POOL)
def publish_views(summary: dict) -> dict:
    return orch.publish_views()


@task
def notify(summary: dict, published: dict | None = None, dag_id: str = "", run_id: str | None = None) -> dict:
    return orch.notify(dag_id, summary, run_id, published)


def model_steps(dag_id: str, built: Any, train: Any, trained: Any) -> None:
    """futures → needs_training (short-circuit) → ``train``; ``trained`` → latest model → test → validate →
    publish_views (the champion and the new gold reach the API) → notify.

    ``built``/``trained``: the ETL's and the training's results (XComArgs); ``train``: the task that trains
    (the same as ``trained`` when it returns its result itself).
    """
    needs_training(create_futures(built)) >> train
    tested = test_model(find_latest_model(trained))
    summary = validate_run(built, trained, tested, dag_id=dag_id)
    notify(summary, publish_views(summary), dag_id=dag_id)
