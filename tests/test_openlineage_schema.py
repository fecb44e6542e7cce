"""The offline OpenLineage validator (tests/openlineage_schema.py) accepts a valid event and rejects invalid ones."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from tests.openlineage_schema import SchemaError, validate_event

PRODUCER = "https://github.com/cinematch/tests"


def _event() -> dict[str, Any]:
    """A valid COMPLETE event built with openlineage-python's own classes and serialised by its Serde."""
    from openlineage.client.event_v2 import Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import column_lineage_dataset, error_message_run, job_type_job
    from openlineage.client.serde import Serde

    column = column_lineage_dataset.Fields(
        inputFields=[column_lineage_dataset.InputField(namespace="duckdb://h/w.duckdb", name="w.s.r", field="rating")]
    )
    lineage = column_lineage_dataset.ColumnLineageDatasetFacet(fields={"avg_rating": column})
    job_type = job_type_job.JobTypeJobFacet(processingType="BATCH", integration="CINEMATCH", jobType="JOB")
    error = error_message_run.ErrorMessageRunFacet(message="boom", programmingLanguage="python")
    event = RunEvent(
        eventType=RunState.COMPLETE,
        eventTime="2024-03-24T10:00:00+00:00",
        run=Run(runId="0190a2c4-7b1e-7e5a-9d1c-3f6b2a8e4d10", facets={"errorMessage": error}),
        job=Job(namespace="cinematch", name="cinematch.etl", facets={"jobType": job_type}),
        outputs=[OutputDataset(namespace="duckdb://h/w.duckdb", name="w.gold.kpis", facets={"columnLineage": lineage})],
        producer=PRODUCER,
    )
    return Serde.to_dict(event)


def test_a_valid_event_passes_and_each_facet_is_checked_against_its_class() -> None:
    checked = validate_event(_event())
    assert sorted(url.rsplit("/", 1)[-1] for url in checked) == [
        "ColumnLineageDatasetFacet", "ErrorMessageRunFacet", "JobTypeJobFacet"]  # fmt: skip
    assert all(url.startswith("https://openlineage.io/spec/facets/") for url in checked)


def _airflow_facet(**task: Any) -> dict[str, Any]:
    """The provider's ``airflow`` run facet as the Airflow 3 provider emits it (no start_date, no pool)."""
    return {
        "_producer": PRODUCER,
        "_schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunFacet",
        "dag": {"dag_id": "d", "fileloc": "/dags/d.py", "owner": "cinematch", "timetable": {}},
        "dagRun": {"dag_id": "d", "run_id": "manual__2024", "run_type": "manual"},
        "taskInstance": {"try_number": 1, "map_index": -1},
        "task": {"task_id": "t", "operator_class": "PythonOperator", **task},
        "taskUuid": "0190a2c4-7b1e-7e5a-9d1c-3f6b2a8e4d11",
    }


def test_the_providers_facet_is_checked_against_its_schema_with_its_known_deviations_only() -> None:
    event = _event()
    event["run"]["facets"]["airflow"] = _airflow_facet(retry_exponential_backoff=2.0)
    assert "airflow/providers/openlineage/facets/AirflowRunFacet.json#/$defs/AirflowRunFacet" in validate_event(event)


def _columns(event: dict[str, Any]) -> dict[str, Any]:
    return event["outputs"][0]["facets"]["columnLineage"]


def _broken(change: str) -> dict[str, Any]:
    event = copy.deepcopy(_event())
    if change == "no eventTime":
        del event["eventTime"]
    elif change == "a date without a time":
        event["eventTime"] = "2024-03-24"
    elif change == "a runId that is not a UUID":
        event["run"]["runId"] = "run-42"
    elif change == "no job name":
        del event["job"]["name"]
    elif change == "an unknown eventType":
        event["eventType"] = "FINISHED"
    elif change == "columnLineage without fields":
        del _columns(event)["fields"]
    elif change == "an inputField without its field":
        del _columns(event)["fields"]["avg_rating"]["inputFields"][0]["field"]
    elif change == "inputFields not an array":
        _columns(event)["fields"]["avg_rating"]["inputFields"] = {"field": "rating"}
    elif change == "a dataset facet among the run facets":
        event["run"]["facets"]["columnLineage"] = _columns(event)
    elif change == "a facet without _producer":
        event["run"]["facets"]["mine"] = {"_schemaURL": "https://example.com/Mine.json"}
    elif change == "an airflow facet missing what the provider's schema requires":
        event["run"]["facets"]["airflow"] = {"_producer": PRODUCER, "_schemaURL": "https://example.com/RunFacet"}
    elif change == "an airflow facet whose retry_exponential_backoff is a string":
        event["run"]["facets"]["airflow"] = _airflow_facet(retry_exponential_backoff="often")
    return event


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("no eventTime", "eventTime: required"),
        ("a date without a time", "has to contain time"),
        ("a runId that is not a UUID", r"\.run: Run: badly formed hexadecimal UUID"),
        ("no job name", r"\.job\.name: required by Job"),
        ("an unknown eventType", "'FINISHED' is not one of"),
        ("columnLineage without fields", r"columnLineage\.fields: required by ColumnLineageDatasetFacet"),
        ("an inputField without its field", r"inputFields\[0\]\.field: required by InputField"),
        ("inputFields not an array", "inputFields: must be an array"),
        ("a dataset facet among the run facets", "ColumnLineageDatasetFacet is not a RunFacet"),
        ("a facet without _producer", r"mine\._producer: required string"),
        ("an airflow facet missing what the provider's schema requires", "AirflowRunFacet: 'dag' is a required"),
        ("an airflow facet whose retry_exponential_backoff is a string", "'often' is not of type 'boolean'"),
    ],
)
def test_an_invalid_event_is_rejected(change: str, reason: str) -> None:
    with pytest.raises(SchemaError, match=reason):
        validate_event(_broken(change))


def test_a_producers_own_facet_is_checked_as_an_envelope_only() -> None:
    event = _event()
    event["run"]["facets"]["mine"] = {"_producer": PRODUCER, "_schemaURL": "https://example.com/Mine.json", "x": 1}
    assert "https://example.com/Mine.json" not in validate_event(event)
