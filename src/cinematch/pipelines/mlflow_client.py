"""The connection to MLflow: on only when CINEMATCH_MLFLOW_TRACKING_URI is set, bounded in time, never printed raw.

``mlflow`` is imported inside :func:`connect` only, so CineMatch without the `mlflow` extra (or with the URI
unset) never loads it. The client is configured to give up quickly: no retries and a request timeout of
``mlflow_timeout_seconds`` (MLflow's own defaults retry for minutes), and a reachability probe bounded by a
wall-clock guard, so an MLflow that is down or blackholed costs a training at most that long.

What could not be mirrored is recorded in ``HOME/mlflow/pending.json``; ``cinematch models sync-mlflow``
catches up from CineMatch's own registry, the source of truth.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata as dist_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cinematch.core.errors import CineMatchError
from cinematch.core.log import get_logger, log_event
from cinematch.core.secrets import redact, scrub
from cinematch.core.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = get_logger(__name__)

TRAINING_EXPERIMENT = "cinematch-training"
DRIFT_EXPERIMENT = "cinematch-drift"
MODEL_NAME = "cinematch"
CHAMPION_ALIAS = "champion"
VERSION_TAG = "cinematch_version"  # on runs and model versions: how a rerun or a sync finds what exists
PENDING_FILE = "pending.json"
REQUIREMENTS = ("cinematch", "numpy", "scipy", "pandas", "pyarrow", "mlflow")  # what loading the pyfunc imports


class MlflowUnavailable(CineMatchError):
    """MLflow is off (no URI) or does not answer. Exit code 2: nothing was changed on the CineMatch side."""

    exit_code = 2


def enabled(settings: Settings) -> bool:
    return settings.mlflow_tracking_uri is not None and bool(settings.mlflow_tracking_uri.get_secret_value())


def tracking_uri(settings: Settings) -> str:
    if settings.mlflow_tracking_uri is None:
        raise MlflowUnavailable("MLflow is off: set CINEMATCH_MLFLOW_TRACKING_URI (see docs/mlflow.md)")
    return settings.mlflow_tracking_uri.get_secret_value()


def shown_uri(settings: Settings) -> str:
    """The tracking URI as it may be printed: its password as ``***``."""
    return redact(tracking_uri(settings)) if enabled(settings) else ""


def safe_text(settings: Settings, text: str) -> str:
    """``text`` (an exception's message) on one line without the URI's credentials, for a log or an error."""
    uri = tracking_uri(settings) if enabled(settings) else ""
    password = urllib.parse.urlsplit(uri).password if "://" in uri else None
    return scrub(redact(" ".join(text.split())), [password])[:300]


def connect(settings: Settings) -> MlflowClient:
    """A client of the configured server that fails fast (no retries, short timeouts) and prints nothing.

    MLflow reads these variables at each request; they are process-wide, which is what a CineMatch process
    that mirrors to one server wants. The run links MLflow prints on stdout would hold the URI's credentials
    (and break ``--json`` output), so they are suppressed.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # before the import: no usage reports, no thread
    try:
        import mlflow
    except ImportError:
        raise MlflowUnavailable(
            "CINEMATCH_MLFLOW_TRACKING_URI is set but mlflow is not installed: pip install 'cinematch[mlflow]'"
        ) from None

    timeout = settings.mlflow_timeout_seconds
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, math.ceil(timeout)))
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # its bars on stderr, at every log_model
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines name URIs and land on stderr
    logging.getLogger("mlflow.pyfunc").addFilter(_quiet)
    uri = tracking_uri(settings)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _quiet(record: logging.LogRecord) -> bool:
    """Drop MLflow's advice against pickled models at every training: CineMatch's model class is pickled by
    reference (its code comes from the installed cinematch), and the warning only adds noise to every run."""
    return "CloudPickle" not in record.getMessage()


def probe(settings: Settings, client: MlflowClient) -> None:
    """Raise :class:`MlflowUnavailable` unless the server answers one cheap request within the timeout.

    The request runs in a daemon thread joined with a deadline: a host that accepts connections but never
    answers costs the timeout, not a hung training (the thread ends by itself with the request's own timeout).
    """
    outcome: list[BaseException | None] = []

    def ask() -> None:
        try:
            client.search_experiments(max_results=1)
            outcome.append(None)
        except BaseException as exc:  # reported to the caller below, whatever it was
            outcome.append(exc)

    worker = threading.Thread(target=ask, name="mlflow-probe", daemon=True)
    worker.start()
    worker.join(settings.mlflow_timeout_seconds)
    if not outcome:
        raise MlflowUnavailable(
            f"MLflow at {shown_uri(settings)} did not answer within {settings.mlflow_timeout_seconds:g} s"
        )
    if outcome[0] is not None:
        raise MlflowUnavailable(
            f"MLflow at {shown_uri(settings)} is unreachable: {safe_text(settings, str(outcome[0]))}"
        )


class Warmup:
    """Connect to and probe MLflow in a background thread while a training runs.

    An unreachable server is known by the time the model is ready, and the connection (and, in a CLI process,
    the import of MLflow's pyfunc support) overlaps the training. The thread does no heavy work of its own: on
    2 cores, any CPU it used would be taken from the training.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client: MlflowClient | None = None
        self.error: BaseException | None = None
        self.probed = threading.Event()
        threading.Thread(target=self._run, name="mlflow-warmup", daemon=True).start()

    def _run(self) -> None:
        try:
            client = connect(self.settings)
            client.search_experiments(max_results=1)
            import mlflow.pyfunc  # noqa: F401  (imported by the mirror after the training)

            self.client = client
        except BaseException as exc:  # handed to the caller of ready()
            self.error = exc
        finally:
            self.probed.set()

    def ready(self) -> MlflowClient:
        """The probed client, waiting at most the timeout for the probe; raises :class:`MlflowUnavailable`."""
        if not self.probed.wait(self.settings.mlflow_timeout_seconds):
            raise MlflowUnavailable(
                f"MLflow at {shown_uri(self.settings)} did not answer within {self.settings.mlflow_timeout_seconds:g} s"
            )
        if isinstance(self.error, MlflowUnavailable):  # e.g. the extra is not installed
            raise self.error
        if self.client is None:
            raise MlflowUnavailable(
                f"MLflow at {shown_uri(self.settings)} is unreachable: {safe_text(self.settings, str(self.error))}"
            )
        return self.client


def requirements() -> list[str]:
    """The packages the pyfunc needs where it is loaded, pinned to this environment's versions (no inference:
    MLflow would otherwise inspect the model in a subprocess at every training)."""
    out = []
    for name in REQUIREMENTS:
        try:
            out.append(f"{name}=={dist_metadata.version(name)}")
        except dist_metadata.PackageNotFoundError:
            out.append(name)
    return out


@contextmanager
def pinned_requirements_known() -> Iterator[None]:
    """While saving a model, MLflow's check of its requirements against this environment sees only ours.

    MLflow checks the requirements by first mapping every installed distribution to its modules, a scan of all
    their file lists (2.3 s in CineMatch's venv with Airflow and Spark: 9% of a training on 1M ratings). The
    requirements come from this environment's own versions (:func:`requirements`), so the check cannot fail;
    its map is seeded with just these packages for the call and put back to unset afterwards, so any later use
    of the map in this process scans as usual. Nothing else changes (an MLflow without the map: no effect).
    """
    from mlflow.utils import requirements_utils as ru

    seeded = getattr(ru, "_MODULES_TO_PACKAGES", False) is None
    if seeded:
        vars(ru)["_MODULES_TO_PACKAGES"] = {name: [name] for name in REQUIREMENTS}  # (MLflow types it None)
    try:
        yield
    finally:
        if seeded:
            ru._MODULES_TO_PACKAGES = None
            ru._PACKAGES_TO_MODULES = None


def experiment_id(client: MlflowClient, name: str) -> str:
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found is not None else client.create_experiment(name)


# ------------------------------------------------------------------ what is still to mirror
def pending_path(settings: Settings) -> Path:
    return settings.home_dir / "mlflow" / PENDING_FILE


def read_pending(settings: Settings) -> dict[str, Any]:
    """``versions`` (names), ``drift`` (report documents) and ``alias`` (bool) not yet mirrored."""
    path = pending_path(settings)
    doc: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    return {"versions": list(doc.get("versions", [])), "drift": list(doc.get("drift", [])),
            "alias": bool(doc.get("alias", False))}  # fmt: skip


def write_pending(settings: Settings, doc: dict[str, Any]) -> None:
    """Replace the pending record atomically (removed when nothing is left)."""
    path = pending_path(settings)
    if not doc["versions"] and not doc["drift"] and not doc["alias"]:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def add_pending(
    settings: Settings, version: str | None = None, drift: dict[str, Any] | None = None, alias: bool = False
) -> None:
    doc = read_pending(settings)
    if version is not None and version not in doc["versions"]:
        doc["versions"].append(version)
    if drift is not None:
        doc["drift"].append(drift)
    doc["alias"] = doc["alias"] or alias
    write_pending(settings, doc)


def give_up(settings: Settings, what: str, exc: BaseException) -> None:
    """The one warning of a mirror that failed: the run itself carries on."""
    log_event(log, "mlflow_unavailable", level=logging.WARNING, what=what, uri=shown_uri(settings),
              error=safe_text(settings, f"{type(exc).__name__}: {exc}"), catch_up="cinematch models sync-mlflow")  # fmt: skip
