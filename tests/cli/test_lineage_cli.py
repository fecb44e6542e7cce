"""OpenLineage events of CLI runs: a file and an HTTP transport, a slow endpoint, and no import when unconfigured."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.openlineage_schema import validate_event
from tests.webhook_recorder import WebhookRecorder


@pytest.fixture
def data(cli, tmp_path: Path) -> Path:
    out = tmp_path / "data"
    made = cli("datasets", "generate", "--out", out, "--users", "200", "--movies", "100", "--ratings", "3000",
               "--weeks", "1", "--seed", "5")  # fmt: skip
    assert made.code == 0, made.stderr
    assert cli("init").code == 0
    return out


def _by_job(events: list[dict], job: str) -> dict[str, dict]:
    return {e["eventType"]: e for e in events if e["job"]["name"] == job}


def _names(event: dict, side: str) -> set[str]:
    return {d["name"] for d in event.get(side, [])}


def test_cli_runs_emit_valid_events_naming_the_tables(cli, home, data: Path, tmp_path: Path) -> None:
    events_file = tmp_path / "lineage" / "events.jsonl"
    env = {"CINEMATCH_OPENLINEAGE_URL": f"file://{events_file}"}
    events_file.parent.mkdir()
    for args in (["ingest", data / "movies.csv", "--kind", "movies"], ["ingest", data / "ratings.parquet"], ["etl"]):
        done = cli(*args, "--json", env=env)
        assert done.code == 0, done.stderr
    trained = cli("train", "--json", env=env)
    assert trained.code == 0, trained.stderr
    failed = cli("ingest", tmp_path / "missing.csv", env=env)
    assert failed.code == 2

    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    checked = {url.rsplit("/", 1)[-1] for event in events for url in validate_event(event)}  # facet names
    assert {"ColumnLineageDatasetFacet", "DatasetVersionDatasetFacet", "ErrorMessageRunFacet"} <= checked
    assert {e["job"]["namespace"] for e in events} == {"cinematch"}
    assert {e["job"]["name"] for e in events} == {"cinematch.ingest", "cinematch.etl", "cinematch.train"}
    warehouse = f"duckdb://{socket.gethostname()}{home.duckdb_path.resolve().as_posix()}"
    assert {d["namespace"] for e in events for d in e.get("inputs", []) + e.get("outputs", [])} == {
        warehouse, f"file://{socket.gethostname()}"}  # fmt: skip

    etl = _by_job(events, "cinematch.etl")
    assert set(etl) == {"START", "COMPLETE"} and etl["START"]["run"]["runId"] == etl["COMPLETE"]["run"]["runId"]
    assert {"warehouse.bronze.ratings_buffer", "warehouse.bronze.movies"} <= _names(etl["START"], "inputs")
    assert {"warehouse.silver.ratings", "warehouse.gold.movie_kpis"} <= _names(etl["COMPLETE"], "outputs")
    gold = {d["name"]: d for d in etl["COMPLETE"]["outputs"]}
    fields = gold["warehouse.gold.trending_movies"]["facets"]["columnLineage"]["fields"]
    assert [(f["name"], f["field"]) for f in fields["title"]["inputFields"]] == [("warehouse.silver.movies", "title")]
    assert {(f["name"], f["field"]) for f in fields["avg_rating"]["inputFields"]} == {
        ("warehouse.silver.ratings", "rating")}  # fmt: skip

    train = _by_job(events, "cinematch.train")
    models = {d["name"]: d for d in train["COMPLETE"]["outputs"]}[home.models_dir.resolve().as_posix().lstrip("/")]
    assert models["facets"]["version"]["datasetVersion"] == trained.json["version"]
    assert "warehouse.silver.ratings" in _names(train["START"], "inputs")

    # ingest names the file it read; a failed run ends with FAIL and the error, its START before it
    ingests = [e for e in events if e["job"]["name"] == "cinematch.ingest"]
    assert [e["eventType"] for e in ingests] == ["START", "COMPLETE", "START", "COMPLETE", "START", "FAIL"]
    assert _names(ingests[0], "inputs") == {(data / "movies.csv").resolve().as_posix().lstrip("/")}
    assert "file not found" in ingests[-1]["run"]["facets"]["errorMessage"]["message"]


def test_http_endpoint_receives_the_events_and_a_slow_one_never_fails_the_command(cli, data: Path) -> None:
    assert cli("ingest", data / "movies.csv", "--kind", "movies").code == 0
    with WebhookRecorder(status=200) as endpoint:
        done = cli("etl", "--json", env={"CINEMATCH_OPENLINEAGE_URL": endpoint.url.removesuffix("/hook")})
    assert done.code == 0, done.stderr
    assert [e["eventType"] for e in endpoint.received] == ["START", "COMPLETE"]
    assert endpoint.received[1]["job"]["name"] == "cinematch.etl"

    # an endpoint that answers after 30 s: one timeout (1 s here), one warning, the command succeeds
    with WebhookRecorder(status=200, delay=30) as slow:
        started = time.perf_counter()
        slowed = cli("etl", "--json", env={"CINEMATCH_OPENLINEAGE_URL": slow.url.removesuffix("/hook"),
                                           "CINEMATCH_OPENLINEAGE_TIMEOUT_SECONDS": "1"})  # fmt: skip
        seconds = time.perf_counter() - started
    assert slowed.code == 0, slowed.stderr
    assert json.loads(slowed.stdout)["up_to_date"] is True
    assert slowed.stderr.count("openlineage event not sent") == 1 and len(slow.received) == 1  # COMPLETE dropped
    assert seconds < 25


def test_unconfigured_cli_never_imports_openlineage(home) -> None:
    script = """
import sys
from cinematch.cli import main
try:
    main(["etl", "--json"])
except SystemExit as exc:
    print("EXIT", exc.code, any(m.startswith(("openlineage", "cinematch.pipelines.lineage")) for m in sys.modules))
"""
    env = {k: v for k, v in os.environ.items() if "OPENLINEAGE" not in k}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.stdout.split()[-3:] == ["EXIT", "0", "False"], proc.stderr[-2000:]


def test_simulate_is_one_run_and_each_step_a_child_run_of_it(cli, home, tmp_path: Path) -> None:
    """`cinematch simulate`: its run, and each step it ran as a run of its own job whose parent facet names it."""
    events_file = tmp_path / "events.jsonl"
    done = cli("simulate", "--weeks", "1", "--json", env={"CINEMATCH_OPENLINEAGE_URL": f"file://{events_file}"},
               timeout=600)  # fmt: skip
    assert done.code == 0, done.stderr[-2000:]
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    for event in events:
        validate_event(event)
    parent = _by_job(events, "cinematch.simulate")
    assert set(parent) == {"START", "COMPLETE"}
    run_id = parent["START"]["run"]["runId"]
    assert events[0] == parent["START"] and events[-1] == parent["COMPLETE"]  # the steps run inside it
    steps = [e for e in events if e["job"]["name"] != "cinematch.simulate"]
    jobs = [e["job"]["name"] for e in steps if e["eventType"] == "COMPLETE"]
    assert jobs == [f"cinematch.simulate.{s}" for s in ("ingest", "etl", "train", "publish", "ingest", "etl",
                                                        "drift_and_retrain", "publish")]  # fmt: skip
    assert [e["eventType"] for e in steps] == ["START", "COMPLETE"] * len(jobs)
    for event in steps:
        facet = event["run"]["facets"]["parent"]
        assert facet["run"]["runId"] == run_id
        assert (facet["job"]["namespace"], facet["job"]["name"]) == ("cinematch", "cinematch.simulate")
        assert facet["root"]["run"]["runId"] == run_id
    data = Path(done.json["data"]).resolve().as_posix().lstrip("/")
    ingests = [e for e in steps if e["job"]["name"] == "cinematch.simulate.ingest" and e["eventType"] == "START"]
    assert f"{data}/ratings.parquet" in _names(ingests[0], "inputs")
    assert _names(ingests[1], "inputs") == {f"{data}/batch_w1.parquet"}
    assert "warehouse.bronze.ratings_buffer" in _names(ingests[1], "outputs")
    train = next(e for e in steps if e["job"]["name"] == "cinematch.simulate.train" and e["eventType"] == "COMPLETE")
    versions = [d["facets"]["version"]["datasetVersion"] for d in train["outputs"] if "version" in d["facets"]]
    assert versions == [done.json["first_version"]]
    etl = next(e for e in steps if e["job"]["name"] == "cinematch.simulate.etl" and e["eventType"] == "COMPLETE")
    assert "columnLineage" in {d["name"]: d for d in etl["outputs"]}["warehouse.gold.movie_kpis"]["facets"]
