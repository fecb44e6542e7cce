"""What CineMatch writes to MLflow: a run per training, a registered pyfunc per version, the alias, drift runs.

Every step looks first for what an earlier (interrupted) attempt left, by the ``cinematch_version`` tag or
the drift ``report_id``, so mirroring a version twice never duplicates its run or its registered version.
The caller holds a client from :func:`cinematch.pipelines.mlflow_client.connect`.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cinematch.core.log import get_logger, log_event
from cinematch.pipelines.mlflow_client import (
    CHAMPION_ALIAS,
    DRIFT_EXPERIMENT,
    MODEL_NAME,
    TRAINING_EXPERIMENT,
    VERSION_TAG,
    experiment_id,
    pinned_requirements_known,
    requirements,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.models import ModelSignature

log = get_logger(__name__)

LOGGED_MODEL = "model"  # the run's artifact: the version's pyfunc model, the model files inside it
TAG_LIMIT = 5000  # MLflow caps tag values (8000 characters); a long batch list is cut, the metadata keeps it all
DRIFT_METRICS = ("score", "kl_divergence", "mean_shift", "median_shift", "psi", "ks_statistic", "n_current",
                 "n_reference", "model_rmse_reference", "model_rmse_current", "model_degradation")  # fmt: skip


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
    """Nested dicts as ``prefix.key`` entries (lists and other leaves kept as they are)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            _flat(f"{prefix}.{key}" if prefix else str(key), inner, out)
    else:
        out[prefix] = value
    return out


def run_params(meta: dict[str, Any]) -> dict[str, str]:
    """Both models' hyper-parameters and the split rule, as MLflow params (strings, at most 6000 characters)."""
    ranking = meta.get("ranking") or {}
    flat = _flat("als", meta.get("params", {}), {})
    _flat("ranking", {"model": ranking.get("name"), **(ranking.get("choice") or {})}, flat)
    _flat("split", meta.get("split") or {}, flat)
    flat.update({"engine": meta.get("engine", "local"), "source": meta.get("source", "warehouse")})
    return {k: str(v)[:6000] for k, v in flat.items() if v is not None}


def run_metrics(meta: dict[str, Any]) -> dict[str, float]:
    """RMSE, MAE, the ranking metrics and the most-popular baseline's (``most_popular.*``), plus sizes and time."""
    metrics = dict(meta.get("metrics") or {})
    baseline = (metrics.pop("baseline", None) or {}).get("most_popular") or {}
    flat = _flat("", metrics, {})
    _flat("most_popular", baseline, flat)
    flat.update(
        {"n_train": meta.get("n_train"), "n_test": meta.get("n_test"), "train_seconds": meta.get("train_seconds")}
    )
    return {k: float(v) for k, v in flat.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def run_tags(meta: dict[str, Any]) -> dict[str, str]:
    promotion = meta.get("promotion") or {}
    tags = {VERSION_TAG: meta["version"], "data_checksum": meta.get("data_checksum") or "",
            "batch_ids": ",".join(meta.get("batch_ids") or [])[:TAG_LIMIT],
            "n_batches": str(len(meta.get("batch_ids") or [])), "promotion": promotion.get("decision") or "",
            "ranking_model": (meta.get("ranking") or {}).get("name") or "", "source": meta.get("source", "")}  # fmt: skip
    return {k: v for k, v in tags.items() if v}


def _find_run(client: MlflowClient, experiment: str, key: str, value: str) -> Run | None:
    runs = client.search_runs([experiment], filter_string=f"tags.{key} = '{value}' and attributes.status = 'FINISHED'",
                              max_results=1)  # fmt: skip
    return runs[0] if runs else None


def _log_values(client: MlflowClient, run_id: str, params: dict[str, str], metrics: dict[str, float],
                tags: dict[str, str]) -> None:  # fmt: skip
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
                     params=[Param(k, v) for k, v in params.items()],
                     tags=[RunTag(k, v) for k, v in tags.items()], synchronous=True)  # fmt: skip


def signature() -> ModelSignature:
    """Input ``user_id`` and optional ``movie_id`` (pairs: ratings; users alone: top-N), param ``n``."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    from cinematch.pipelines.mlflow_pyfunc import DEFAULT_N

    inputs = Schema([ColSpec("long", "user_id"), ColSpec("long", "movie_id", required=False)])
    return ModelSignature(inputs=inputs, params=ParamSchema([ParamSpec("n", "long", DEFAULT_N)]))


def log_version(client: MlflowClient, meta: dict[str, Any], folder: Path, register: bool) -> str:
    """The training run of a version (params, metrics, tags, and the version as a pyfunc model whose artifacts
    are its model files), registered when ``register``; returns the run id. An earlier finished run of the
    version is reused; an unfinished one is marked FAILED.

    The pyfunc is saved on local disk and uploaded once as the run's ``model`` artifact (the version's files under
    ``model/artifacts/<version>/``); the registered version's source is that artifact. MLflow's ``log_model`` would
    upload the files a second time as a separate logged model and read back every metric's history to link it.
    """
    version = meta["version"]
    experiment = experiment_id(client, TRAINING_EXPERIMENT)
    done = _find_run(client, experiment, VERSION_TAG, version)
    if done is None:
        for stale in client.search_runs([experiment], filter_string=f"tags.{VERSION_TAG} = '{version}'"):
            if stale.info.status != "FINISHED":
                client.set_terminated(stale.info.run_id, status="FAILED")
        run = client.create_run(experiment, run_name=version, tags={VERSION_TAG: version})
        run_id = run.info.run_id
        _log_values(client, run_id, run_params(meta), run_metrics(meta), run_tags(meta))
        with tempfile.TemporaryDirectory(prefix="cinematch-pyfunc-") as tmp:
            save_pyfunc(Path(tmp) / LOGGED_MODEL, folder)
            client.log_artifacts(run_id, str(Path(tmp) / LOGGED_MODEL), LOGGED_MODEL)
        client.set_terminated(run_id, status="FINISHED")
    else:
        run_id = done.info.run_id
    if register and registered_version(client, version) is None:
        _ensure_registered_model(client)
        client.create_model_version(MODEL_NAME, f"runs:/{run_id}/{LOGGED_MODEL}", run_id=run_id,
                                    tags={VERSION_TAG: version}, await_creation_for=0)  # fmt: skip
    log_event(log, "mlflow_version_logged", version=version, run_id=run_id, registered=register)
    return str(run_id)


def save_pyfunc(path: Path, folder: Path) -> None:
    """The version's pyfunc model written to ``path`` (local disk): the model files as its artifact, the pinned
    requirements, the signature. No input example: MLflow would load and run the model to validate it."""
    import mlflow.pyfunc

    from cinematch.pipelines.mlflow_pyfunc import ARTIFACT, CineMatchPyfunc

    with pinned_requirements_known(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*input example was not provided")
        mlflow.pyfunc.save_model(str(path), python_model=CineMatchPyfunc(), artifacts={ARTIFACT: str(folder)},
                                 pip_requirements=requirements(), signature=signature())  # fmt: skip


def _ensure_registered_model(client: MlflowClient) -> None:
    """The registered model, created on first use (the client's calls print nothing, unlike the fluent API's)."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(MODEL_NAME, description="CineMatch versions: top-N lists and predicted ratings")
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise


def registered_versions(client: MlflowClient) -> dict[str, str]:
    """CineMatch version -> MLflow model version number, for every registered version of the model."""
    found: dict[str, str] = {}
    token = None
    while True:
        page = client.search_model_versions(f"name = '{MODEL_NAME}'", max_results=1000, page_token=token)
        found.update({mv.tags[VERSION_TAG]: mv.version for mv in page if VERSION_TAG in (mv.tags or {})})
        token = page.token
        if not token:
            return found


def registered_version(client: MlflowClient, version: str) -> str | None:
    return registered_versions(client).get(version)


def set_champion_alias(client: MlflowClient, champion: str | None) -> str | None:
    """Point the ``champion`` alias at the MLflow version of CineMatch's champion (removed when there is none,
    or when that version is not registered yet); returns the MLflow version number it points at."""
    from mlflow.exceptions import MlflowException

    number = registered_version(client, champion) if champion else None
    if number is not None:
        client.set_registered_model_alias(MODEL_NAME, CHAMPION_ALIAS, number)
    else:
        try:
            client.delete_registered_model_alias(MODEL_NAME, CHAMPION_ALIAS)
        except MlflowException as exc:  # no such model or alias yet: nothing to remove
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise
    log_event(log, "mlflow_alias_set", champion=champion, mlflow_version=number)
    return number


def log_drift(client: MlflowClient, report: dict[str, Any]) -> str:
    """A drift check as a run of its own experiment (found again by its ``report_id``); returns the run id."""
    experiment = experiment_id(client, DRIFT_EXPERIMENT)
    report_id = str(report.get("report_id") or "")
    done = _find_run(client, experiment, "report_id", report_id) if report_id else None
    if done is not None:
        return str(done.info.run_id)
    run = client.create_run(experiment, run_name=f"drift-{report_id}" if report_id else "drift")
    metrics = {k: float(report[k]) for k in DRIFT_METRICS if isinstance(report.get(k), int | float)}
    metrics["should_retrain"] = float(bool(report.get("should_retrain")))
    tags = {"report_id": report_id, "decision": str(report.get("decision") or ""),
            "model_version": str(report.get("model_version") or ""),
            "batch_ids": ",".join(report.get("batch_ids") or [])[:TAG_LIMIT]}  # fmt: skip
    _log_values(client, run.info.run_id, {}, metrics, {k: v for k, v in tags.items() if v})
    client.set_terminated(run.info.run_id, status="FINISHED")
    return str(run.info.run_id)
