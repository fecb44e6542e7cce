"""The Airflow glue: the pool, default_args, failure alert and lineage of every DAG, and the task groups DAGs share.

The DAG files and this module are the only places that import Airflow; each task is one call into
``cinematch.pipelines`` (the same steps the CLI runs).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import TriggerRule, task

from cinematch.core.log import get_logger
from cinematch.pipelines import alerts, data_tasks, model_tasks, run_checks

log = get_logger(__name__)

POOL = "cinematch_warehouse"  # writers queue here: DuckDB has one writer


@task(pool=POOL)
def create_futures(
    built: dict[str, Any], params: dict[str, Any] | None = None, run_id: str | None = None
) -> dict[str, Any]:
    assert params is not None  # Airflow passes the DAG's params
    return model_tasks.create_futures(pairs_file=params["pairs_file"], tag=run_id)


@task.short_circuit(pool=POOL, ignore_downstream_trigger_rules=False)
def needs_training(futures: dict[str, Any], params: dict[str, Any] | None = None) -> bool:
    assert params is not None  # Airflow passes the DAG's params
    train: bool = model_tasks.pending_batches(force=params["force_train"])["train"]
    return train


@task(pool=POOL, trigger_rule=TriggerRule.NONE_FAILED)
def find_latest_model(trained: dict[str, Any] | None) -> dict[str, Any]:
    return model_tasks.latest_model()


@task(pool=POOL)
def test_model(latest: dict[str, Any]) -> dict[str, Any]:
    return model_tasks.test_model(latest["version"])


@task(pool=POOL, trigger_rule=TriggerRule.NONE_FAILED)
def validate_run(
    built: dict[str, Any], trained: dict[str, Any] | None, tested: dict[str, Any], dag_id: str = ""
) -> dict[str, Any]:
    return run_checks.validate_run(dag_id, etl=built, training=trained, test=tested)


@task(pool=POOL)
def publish_views(summary: dict[str, Any]) -> dict[str, Any]:
    return data_tasks.publish_views()


@task
def notify(
    summary: dict[str, Any], published: dict[str, Any] | None = None, dag_id: str = "", run_id: str | None = None
) -> dict[str, Any]:
    return alerts.notify(dag_id, summary, run_id, published)


def model_steps(dag_id: str, built: Any, train: Any, trained: Any) -> None:
    """futures → needs_training (short-circuit) → ``train``; ``trained`` → latest model → test → validate →
    publish_views (the champion and the new gold reach the API) → notify.

    ``built``/``trained``: the ETL's and the training's results (XComArgs); ``train``: the task that trains
    (the same as ``trained`` when it returns its result itself).
    """
    # The XComArgs are typed Any: each task is called with an XComArg and receives the dict it resolves to.
    futures: Any = create_futures.override(**lineage("futures"))(built)
    needs_training(futures) >> train
    latest: Any = find_latest_model.override(**lineage("find_model"))(trained)
    tested: Any = test_model.override(**lineage("test_model"))(latest)
    summary: Any = validate_run(built, trained, tested, dag_id=dag_id)
    notify(summary, publish(summary), dag_id=dag_id)


def publish(summary: Any) -> Any:
    """The ``publish_views`` task with its lineage (declared at each parse: the names follow ``CINEMATCH_*``)."""
    return publish_views.override(**lineage("publish"))(summary)


def lineage(step: str) -> dict[str, Any]:
    """``inlets``/``outlets`` (and the ``post_execute`` that completes them) of a task running ``step``.

    ``step`` is one of ``cinematch.pipelines.lineage.STEPS``; pass the result as keyword arguments of ``@task``
    or an operator. Warehouse tables are airflow ``Table`` entities and files ``File`` entities, which the
    OpenLineage provider translates into datasets of the same names the CLI emits (``cinematch://`` assets it
    cannot translate), and which cost nothing to import at parse time. After a successful run the hook swaps the
    outlets for OpenLineage datasets with the COMPLETE facets: the gold tables' column lineage and the model
    version the task returned (only when the provider is enabled). Names follow this parse's ``CINEMATCH_*``.
    """
    from airflow.providers.common.compat.lineage.entities import File, Table

    from cinematch.core.settings import get_settings
    from cinematch.pipelines.lineage import DatasetRef, step_datasets

    try:
        inputs, outputs = step_datasets(step, get_settings())
    except Exception as exc:  # e.g. a malformed CINEMATCH_DATABASE_URL: the DAG still parses, the tasks say why
        log.warning("no lineage declared for %s: %s: %s", step, type(exc).__name__, exc)
        return {}

    def entity(ref: DatasetRef) -> Any:
        if ref.database is not None:
            return Table(cluster=ref.namespace, database=ref.database, name=ref.key)
        return File(url=ref.url or "")

    def complete(context: Any, result: Any = None) -> None:
        try:
            from airflow.providers.openlineage.conf import is_disabled

            if is_disabled():
                return
            from cinematch.pipelines.lineage import complete_outputs

            done = complete_outputs(outputs, get_settings(), result)
            pairs = list(zip(task_outlets, done, strict=True))
            # the provider reads the outlets again for the COMPLETE event: each declared one (equal by value, in
            # case the task was copied) becomes its dataset with facets; other outlets (assets) stay
            outlets = context["task"].outlets
            outlets[:] = [next((d for e, d in pairs if e == o), o) for o in outlets]
        except Exception as exc:  # lineage must never fail a task that succeeded
            log.warning("lineage facets of %s not added: %s: %s", step, type(exc).__name__, exc)

    task_outlets = [entity(r) for r in outputs]
    return {"inlets": [entity(r) for r in inputs], "outlets": task_outlets, "post_execute": complete}


def alert_failure(context: Any) -> None:
    """``on_failure_callback``: an ERROR line naming DAG, task, run, try and error, and the webhook if set.

    The event is ``gate_failed`` when the task raised ``QualityGateFailed`` (a layer's gate or the run checks),
    ``failure`` otherwise.
    """
    try:
        ti = context.get("ti") or context.get("task_instance")
        dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", None)
        task_id = getattr(ti, "task_id", None)
        run_id = context.get("run_id") or getattr(ti, "run_id", None)
        error = context.get("exception")
        text = (f"ALERT cinematch {dag_id}.{task_id} failed (run {run_id}, try {getattr(ti, 'try_number', '?')}): "
                f"{type(error).__name__ if error else 'error'}: {' '.join(str(error or '').split())[:300]}")  # fmt: skip
        log.error(alerts.safe_text(text))
        event = alerts.exception_event(error) if isinstance(error, BaseException) else alerts.FAILURE
        alerts.post(event, text, "airflow", dag_id=dag_id, task_id=task_id, run_id=run_id,
                    error_type=type(error).__name__ if error else None, error=str(error or "")[:1000])  # fmt: skip
    except Exception as exc:  # an alert must never mask the task's own failure
        log.error("alert callback failed: %s: %s", type(exc).__name__, exc)


def default_args(**overrides: Any) -> dict[str, Any]:
    """Shared ``default_args``: retries with exponential backoff, no retry for bad input, the failure alert.

    The first retry waits Airflow's ``[core] default_task_retry_delay`` (AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY,
    300 s unless set), then doubles up to ``max_retry_delay``.
    """
    from airflow.sdk import ExceptionRetryPolicy, RetryAction, RetryRule

    no_retry = RetryRule(
        exception=["cinematch.core.errors.BadInput", "cinematch.core.errors.QualityGateFailed"],
        action=RetryAction.FAIL,
        reason="bad input or a failed quality gate: retrying cannot help, fix the data and rerun",
    )
    args = {
        "owner": "cinematch",
        "retries": 2,
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=30),
        "retry_policy": ExceptionRetryPolicy(rules=[no_retry]),
        "on_failure_callback": alert_failure,
    }
    args.update(overrides)
    return args
