"""OpenLineage events of CLI runs: START, then COMPLETE or FAIL, with the datasets of cinematch.pipelines.lineage.

Configured by ``CINEMATCH_OPENLINEAGE_URL`` (``http(s)://...``: the HTTP transport, no retries, a timeout of
``CINEMATCH_OPENLINEAGE_TIMEOUT_SECONDS``; ``file:///path``: the file transport, one JSON event per line appended)
or, without it, by ``OPENLINEAGE_CONFIG`` (an openlineage.yml, read by the client). Unconfigured, :func:`run` does
nothing and openlineage is never imported, so the CLI starts as fast as before.

The pipeline commands (``simulate``, ``demo``, ``replay``) are one run each; ``simulate`` and ``demo`` also
emit each step they run (ingest, ETL, training, drift check and retrain, publish) as a run of its own job
(``cinematch.simulate.etl``) whose ``parent`` facet names the command's run, as Airflow's tasks name their
DAG run. A replay's steps run in scratch homes that are not the user's warehouse: the replay is one run that
reads the history's files and writes ``ops.replay_periods``.

Lineage never fails a command: an event that cannot be sent logs one warning, and the run's later events are
dropped (a down endpoint costs one timeout, not one per event).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from cinematch.core.log import get_logger, log_event
from cinematch.core.secrets import redact
from cinematch.core.settings import Settings
from cinematch.pipelines.lineage import complete_outputs, file_ref, input_dataset, output_dataset, step_datasets

__all__ = ["CLI_STEPS", "PIPELINE_COMMANDS", "LineageRun", "client_config", "command_run", "run", "step_run"]

log = get_logger(__name__)

PRODUCER = "https://github.com/cinematch/cinematch"  # URI of what produces the events (the spec wants one)

# the CLI commands that read or write the warehouse, and their step of cinematch.pipelines.lineage.STEPS
CLI_STEPS = {"ingest": "ingest", "etl": "etl", "train": "train", "drift": "drift", "publish": "publish",
             "tmdb fetch": "tmdb"}  # fmt: skip
# the CLI commands that run a whole pipeline, and their step (replay: the history's files in, its table out)
PIPELINE_COMMANDS = {"simulate": "pipeline", "demo": "pipeline", "replay": "replay"}
# options naming a file a command reads instead of the warehouse or the landing folder (tmdb's links: as well)
FILE_OPTIONS = ("file", "ratings", "movies", "reference", "current", "links")

# the pipeline command's run while it runs: the parent of the steps it emits (step_run)
_PARENT: ContextVar[LineageRun | None] = ContextVar("cinematch_lineage_parent", default=None)


def client_config(settings: Settings) -> dict[str, Any] | None:
    """The openlineage client's transport config for ``settings``; None: not configured (see the module doc)."""
    url = settings.openlineage_url
    if url and url.startswith("file://"):
        return {"transport": {"type": "file", "log_file_path": url.removeprefix("file://"), "append": True}}
    if url:
        timeout = settings.openlineage_timeout_seconds
        no_retry = {"total": 0, "connect": 0, "read": 0, "status": 0}
        return {"transport": {"type": "http", "url": url, "timeout": timeout, "retry": no_retry}}
    if os.environ.get("OPENLINEAGE_CONFIG"):
        return {}  # the client reads the file itself
    return None


class LineageRun:
    """One run of a step: its events share a run id; a failed send turns the rest of them off."""

    def __init__(self, settings: Settings, config: dict[str, Any], step: str, job: str, files: Sequence[Path],
                 parent: LineageRun | None = None) -> None:  # fmt: skip
        from openlineage.client import OpenLineageClient
        from openlineage.client.uuid import generate_new_uuid

        self.settings, self.step, self.job, self.parent = settings, step, job, parent
        self.client = OpenLineageClient(config=config) if config else OpenLineageClient()
        self.run_id = str(generate_new_uuid())  # UUIDv7, as the spec recommends
        self.inputs, self.outputs = step_datasets(step, settings)
        if files:  # the files read; TMDB's links file is read besides the API
            kept = self.inputs if step == "tmdb" else []
            self.inputs = kept + [file_ref(path) for path in files]
        self.result: Any = None  # the run's result document (the CLI sets it): the model version it names
        self.failed = False

    def emit(self, event_type: str, outputs: list[Any] | None = None, error: BaseException | None = None) -> None:
        """Send one event (``START``, ``COMPLETE`` or ``FAIL``); never raises."""
        if self.failed or (self.parent is not None and self.parent.failed):
            return
        try:
            self.client.emit(self._event(event_type, outputs, error))
        except Exception as exc:  # transports raise what their libraries raise (requests, OSError, ...)
            self.failed = True
            log.warning("openlineage event not sent (lineage is off for the rest of this run): %s",
                        redact(f"{type(exc).__name__}: {exc}")[:300])  # fmt: skip

    def _event(self, event_type: str, outputs: list[Any] | None, error: BaseException | None) -> Any:
        from datetime import UTC, datetime

        from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
        from openlineage.client.facet_v2 import JobFacet, error_message_run, job_type_job, parent_run

        run_facets: dict[str, Any] = {}
        if (parent := self.parent) is not None:
            namespace = parent.settings.openlineage_namespace
            run_facets["parent"] = parent_run.ParentRunFacet(
                run=parent_run.Run(runId=parent.run_id), job=parent_run.Job(namespace=namespace, name=parent.job),
                root=parent_run.Root(run=parent_run.RootRun(runId=parent.run_id),
                                     job=parent_run.RootJob(namespace=namespace, name=parent.job)))  # fmt: skip
        if error is not None:
            message = redact(f"{type(error).__name__}: {error}")[:2000]
            run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=message, programmingLanguage="python"
            )
        job_facets: dict[str, JobFacet] = {"jobType": job_type_job.JobTypeJobFacet(processingType="BATCH", integration="CINEMATCH",
                                                               jobType="JOB")}  # fmt: skip
        return RunEvent(
            eventType=RunState[event_type],
            eventTime=datetime.now(UTC).isoformat(),
            run=Run(runId=self.run_id, facets=run_facets),
            job=Job(namespace=self.settings.openlineage_namespace, name=self.job, facets=job_facets),
            producer=PRODUCER,
            inputs=[input_dataset(ref) for ref in self.inputs],
            outputs=outputs if outputs is not None else [output_dataset(ref) for ref in self.outputs],
        )

    def complete(self) -> None:
        """COMPLETE, the outputs with their column lineage and the model version ``.result`` names."""
        try:
            outputs = complete_outputs(self.outputs, self.settings, self.result)
        except Exception as exc:  # a facet that cannot be built must not lose the event
            log_event(log, "lineage_facets_skipped", step=self.step, error=f"{type(exc).__name__}: {exc}"[:300])
            outputs = None
        self.emit("COMPLETE", outputs)


@contextmanager
def run(
    settings: Settings, step: str, job: str, files: Sequence[Path] = (), parent: LineageRun | None = None
) -> Iterator[LineageRun | None]:
    """START before the body; after it COMPLETE (with ``.result`` if the body set it) or FAIL, and re-raise.

    ``files``: the files the run reads instead of its step's usual inputs (``cinematch ingest FILE``);
    ``parent``: the pipeline run this one is a step of. Yields None, and emits nothing, when lineage is not
    configured or cannot start.
    """
    config = client_config(settings)
    lineage: LineageRun | None = None
    if config is not None:
        try:
            lineage = LineageRun(settings, config, step, job, files, parent)
        except Exception as exc:  # a bad transport config or a missing package: the command still runs
            log.warning("openlineage is configured but cannot start: %s", redact(f"{type(exc).__name__}: {exc}")[:300])
    if lineage is None:
        yield None
        return
    lineage.emit("START")
    try:
        yield lineage
    except BaseException as exc:
        lineage.emit("FAIL", error=exc)
        raise
    lineage.complete()


@contextmanager
def command_run(
    settings: Callable[[], Settings], command: str, params: Mapping[str, Any]
) -> Iterator[LineageRun | None]:
    """:func:`run` for the CLI command ``command`` (``etl``, ``tmdb fetch``) called with ``params``.

    Commands that are no step of :data:`CLI_STEPS` and unconfigured lineage (checked on the environment, before
    any settings are read) yield None at once.
    """
    step = CLI_STEPS.get(command) or PIPELINE_COMMANDS.get(command)
    if step is None or not any(os.environ.get(v) for v in ("CINEMATCH_OPENLINEAGE_URL", "OPENLINEAGE_CONFIG")):
        yield None
        return
    files = [Path(params[k]) for k in FILE_OPTIONS if params.get(k)]
    with run(settings(), step, f"cinematch.{command.replace(' ', '_')}", files) as lineage:
        token = _PARENT.set(lineage) if command in PIPELINE_COMMANDS else None
        try:
            yield lineage
        finally:
            if token is not None:
                _PARENT.reset(token)


@contextmanager
def step_run(settings: Settings, step: str, files: Sequence[Path] = ()) -> Iterator[LineageRun | None]:
    """A step of the running pipeline command as a run of job ``{command's job}.{step}``, its parent that run.

    ``settings``: the home the step works in (the demo's own home). Outside a pipeline command with lineage
    on, nothing is emitted (and openlineage is not imported).
    """
    parent = _PARENT.get()
    if parent is None:
        yield None
        return
    with run(settings, step, f"{parent.job}.{step}", files, parent) as lineage:
        yield lineage
