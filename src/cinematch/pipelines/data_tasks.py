"""DAG tasks of the data: ingest landing files, buffer status, bronze to gold, TMDB fetch, publish the views."""

# Library imports happen inside the functions: DAG files import this module at parse time without
# loading DuckDB or touching CINEMATCH_HOME.

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from cinematch.core.log import get_logger, log_event

if TYPE_CHECKING:
    pass
from cinematch.pipelines.task_io import json_ref, resolve_file, task_session, utc_day

log = get_logger(__name__)


BUFFER_ASSET_URI = "cinematch://bronze/ratings_buffer"


def ingest_batch(file: str | None = None, batch_id: str | None = None, kind: str = "ratings") -> dict[str, Any]:
    """Load one file (``file``, optional ``batch_id``) or every new landing file; exactly once by checksum.

    Returns ``batch_ids`` (ratings batches that added rows now), ``movie_batch_ids``, ``skipped`` (already
    loaded), ``rejected`` (files moved to ``landing/rejected`` with the reason) and the totals.
    """
    from cinematch.core.errors import BadInput
    from cinematch.ingest.bronze import ingest_file
    from cinematch.ingest.landing import ingest_landing

    results: Sequence[Mapping[str, Any]]
    with task_session("ingest_batch") as (settings, con):
        if file:
            path = resolve_file(settings, file)
            results = [ingest_file(con, path, batch_id=batch_id or None, kind=kind).to_dict()]
            source = str(path)
        elif batch_id:
            raise BadInput("param batch_id needs param file (the landing folder names batches after their files)")
        else:
            results = ingest_landing(con, settings.landing_dir)
            source = str(settings.landing_dir)
    loaded = [r for r in results if not r.get("skipped") and not r.get("error")]
    ref = {
        "source": source,
        "files": len(results),
        "batch_ids": [r["batch_id"] for r in loaded if r["kind"] == "ratings" and r["inserted"] > 0],
        "movie_batch_ids": [r["batch_id"] for r in loaded if r["kind"] == "movies"],
        "loaded": [{k: r[k] for k in ("batch_id", "kind", "inserted", "quarantined")} for r in loaded],
        "skipped": [r["batch_id"] for r in results if r.get("skipped")],
        "rejected": [{"file": r["moved_to"], "error": r["error"]} for r in results if r.get("error")],
        "inserted": sum(r["inserted"] for r in results),
        "quarantined": sum(r["quarantined"] for r in results),
    }
    log_event(log, "airflow_ingest", source=source, files=ref["files"], new_batches=",".join(ref["batch_ids"]),
              inserted=ref["inserted"], skipped=len(ref["skipped"]), rejected=len(ref["rejected"]))  # fmt: skip
    return json_ref(ref)


def has_new_data(ref: dict[str, Any] | None) -> bool:
    """Whether an ingestion reference added ratings (the short-circuit condition; no warehouse access)."""
    new = bool(ref and ref.get("batch_ids"))
    if not new:
        log_event(log, "no_new_data", reason="no new ratings batch was loaded; downstream tasks are skipped")
    return new


def buffer_status() -> dict[str, Any]:
    """Totals of the bronze buffer and the five newest batches (the original ``check_buffer_status``)."""
    from cinematch.ingest.bronze import buffer_status as status

    with task_session("buffer_status") as (_, con):
        doc = dict(status(con))  # the task's own shape: the newest batches only
    doc["latest_batches"] = [{k: b[k] for k in ("batch_id", "kind", "record_count", "status")}
                             for b in doc.pop("batches")[-5:]]  # fmt: skip
    doc.pop("quarantine_reasons", None)
    log_event(log, "buffer_status", total_records=doc["total_records"], batches=doc["n_batches"],
              quarantined=doc["quarantined_records"])  # fmt: skip
    return json_ref(doc)


def build_silver_gold(logical_date: date | datetime | str | None = None, full_refresh: bool = False) -> dict[str, Any]:
    """Incremental bronze → silver → gold; with a logical date, gold is pinned to the end of that day."""
    from cinematch.lakehouse.etl import logical_end
    from cinematch.pipelines.engine import run_etl

    as_of = logical_end(utc_day(logical_date)) if logical_date is not None else None
    with task_session("build_silver_gold") as (settings, con):
        run = run_etl(con, settings, full_refresh=full_refresh, as_of=as_of)
    checks = [c for layer in run["layers"].values() for c in layer.get("checks", [])]
    gold = run["layers"]["gold"]
    ref = {
        "run_id": run["run_id"],
        "status": run["status"],
        "as_of": run.get("as_of"),
        "new_batches": run["new_batches"],
        "up_to_date": run["up_to_date"],
        "silver_rows": run["layers"]["silver"]["rows"],
        "gold_rows": None if gold.get("skipped") else gold["rows"],
        "checks_run": len(checks),
        "checks_failed": [c["check"] for c in checks if not c["passed"]],
    }
    log_event(log, "airflow_etl", as_of=ref["as_of"], new_batches=len(ref["new_batches"]),
              gold="skipped" if ref["gold_rows"] is None else sum(ref["gold_rows"].values()),
              checks=len(checks))  # fmt: skip
    return json_ref(ref)


def fetch_tmdb(links: str | None = None, limit: int | None = None) -> dict[str, Any]:
    """`cinematch tmdb fetch`: the not-yet-fetched movies of ``links`` (default: beside the movies file)."""
    from cinematch.ingest.tmdb import fetch_tmdb as fetch

    with task_session("fetch_tmdb") as (settings, con):
        doc = fetch(con, settings, links=resolve_file(settings, links) if links else None, limit=limit)
    log_event(log, "airflow_tmdb", fetched=doc["fetched"], skipped=doc["skipped"], failed=doc["failed"])
    return json_ref(doc)


def publish_views() -> dict[str, Any]:
    """`cinematch publish`: the serving views (champion's recommendations, trending, genres, drift) → CURRENT.

    The step after every run that changes what the API serves; a running API swaps the new file in on its next
    check of ``HOME/serving/CURRENT``.
    """
    from cinematch.serving.publish import publish

    with task_session("publish_views") as (settings, con):
        doc = publish(con, settings)
    ref = {k: doc[k] for k in ("views_version", "model_version", "published_at", "users")}
    ref["path"] = doc["path"]
    log_event(log, "airflow_publish", views_version=ref["views_version"], model_version=ref["model_version"],
              users=ref["users"])  # fmt: skip
    return json_ref(ref)
