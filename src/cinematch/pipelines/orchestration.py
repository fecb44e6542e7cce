"""Task-level helpers for the Airflow DAGs: one library call under the write lock, a small JSON reference back."""

# Every function builds its settings when called (never at import), takes the warehouse write lock, calls the
# library function the CLI calls and returns JSON-serializable references (batch ids, model versions, counts),
# never data. Library and Airflow imports happen inside the functions, so DAG files can import this module at
# parse time without loading DuckDB or touching CINEMATCH_HOME.

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cinematch.core.log import get_logger, log_event

if TYPE_CHECKING:
    import duckdb

    from cinematch.core.settings import Settings

log = get_logger(__name__)

BUFFER_ASSET_URI = "cinematch://bronze/ratings_buffer"
POOL = "cinematch_warehouse"
FUTURES_PAIRS = 200


# --- plumbing ------------------------------------------------------------------------------------------------


def _settings() -> Settings:
    from cinematch.core.settings import get_settings

    return get_settings()


@contextmanager
def _session(task: str) -> Iterator[tuple[Settings, duckdb.DuckDBPyConnection]]:
    """Settings plus the exclusive home lock and a read-write connection, named for the lock holder."""
    from cinematch.storage.warehouse import write_session

    settings = _settings()
    with write_session(settings, f"airflow {task}") as con:
        yield settings, con


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _ref(doc: dict[str, Any]) -> dict[str, Any]:
    """A JSON round trip: what goes into XCom is plain JSON, whatever the library returned."""
    return json.loads(json.dumps(doc, default=_plain))


def _json(value: Any) -> dict:
    """A JSON column as a dict (DuckDB returns text, PostgreSQL already decoded)."""
    return value if isinstance(value, dict) else json.loads(value or "{}")


def _as_date(value: date | datetime | str) -> date:
    """The UTC calendar day of a logical date (Airflow passes an aware datetime, tests may pass a string)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value).date()
    return value


def _resolve_file(settings: Settings, file: str) -> Path:
    """Absolute paths as given; relative ones are read from the landing folder (never the working directory)."""
    path = Path(file).expanduser()
    if path.is_absolute():
        return path
    if not (settings.landing_dir / path).resolve().is_relative_to(settings.landing_dir.resolve()):
        from cinematch.core.errors import BadInput

        raise BadInput(
            f"relative file {file!r} leaves the landing folder; pass an absolute path or a landing file name"
        )
    return settings.landing_dir / path


# --- ingestion -----------------------------------------------------------------------------------------------


def ingest_batch(file: str | None = None, batch_id: str | None = None, kind: str = "ratings") -> dict[str, Any]:
    """Load one file (``file``, optional ``batch_id``) or every new landing file; exactly once by checksum.

    Returns ``batch_ids`` (ratings batches that added rows now), ``movie_batch_ids``, ``skipped`` (already
    loaded), ``rejected`` (files moved to ``landing/rejected`` with the reason) and the totals.
    """
    from cinematch.core.errors import BadInput
    from cinematch.ingest.bronze import ingest_file, ingest_landing

    with _session("ingest_batch") as (settings, con):
        if file:
            path = _resolve_file(settings, file)
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
    return _ref(ref)


def has_new_data(ref: dict[str, Any] | None) -> bool:
    """Whether an ingestion reference added ratings (the short-circuit condition; no warehouse access)."""
    new = bool(ref and ref.get("batch_ids"))
    if not new:
        log_event(log, "no_new_data", reason="no new ratings batch was loaded; downstream tasks are skipped")
    return new


def buffer_status() -> dict[str, Any]:
    """Totals of the bronze buffer and the five newest batches (the original ``check_buffer_status``)."""
    from cinematch.ingest.bronze import buffer_status as status

    with _session("buffer_status") as (_, con):
        doc = status(con)
    doc["latest_batches"] = [{k: b[k] for k in ("batch_id", "kind", "record_count", "status")}
                             for b in doc.pop("batches")[-5:]]  # fmt: skip
    doc.pop("quarantine_reasons", None)
    log_event(log, "buffer_status", total_records=doc["total_records"], batches=doc["n_batches"],
              quarantined=doc["quarantined_records"])  # fmt: skip
    return _ref(doc)


# --- lakehouse -----------------------------------------------------------------------------------------------


def build_silver_gold(logical_date: date | datetime | str | None = None, full_refresh: bool = False) -> dict[str, Any]:
    """Incremental bronze → silver → gold; with a logical date, gold is pinned to the end of that day."""
    from cinematch.lakehouse.etl import logical_end, run_etl

    as_of = logical_end(_as_date(logical_date)) if logical_date is not None else None
    with _session("build_silver_gold") as (settings, con):
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
    return _ref(ref)


def fetch_tmdb(links: str | None = None, limit: int | None = None) -> dict[str, Any]:
    """`cinematch tmdb fetch`: the not-yet-fetched movies of ``links`` (default: beside the movies file)."""
    from cinematch.ingest.tmdb import fetch_tmdb as fetch

    with _session("fetch_tmdb") as (settings, con):
        doc = fetch(con, settings, links=_resolve_file(settings, links) if links else None, limit=limit)
    log_event(log, "airflow_tmdb", fetched=doc["fetched"], skipped=doc["skipped"], failed=doc["failed"])
    return _ref(doc)


# --- models --------------------------------------------------------------------------------------------------


def current_model() -> dict[str, Any]:
    """The champion's version and registered metrics (``version`` None before the first model)."""
    from cinematch.recommender import registry

    with _session("current_model") as (_, con):
        champ = registry.champion(con)
    ref = {"version": champ["version"] if champ else None,
           "rmse": champ["metrics"].get("rmse") if champ else None}  # fmt: skip
    log_event(log, "current_model", version=ref["version"], rmse=ref["rmse"])
    return ref


def latest_model() -> dict[str, Any]:
    """The newest ``version_*`` folder by name (as the original found it) and the current champion."""
    from cinematch.recommender import registry

    with _session("latest_model") as (settings, con):
        champ = registry.champion(con)
        folders = sorted(
            p.name for p in settings.models_dir.glob("version_*") if registry.VERSION_RE.fullmatch(p.name)
        ) if settings.models_dir.is_dir() else []  # fmt: skip
    ref = {"version": folders[-1] if folders else None, "champion": champ["version"] if champ else None,
           "n_versions": len(folders)}  # fmt: skip
    log_event(log, "latest_model", **ref)
    return ref


def pending_batches(force: bool = False) -> dict[str, Any]:
    """Silver batches no model was trained on yet, and whether training is due (the train step's guard).

    Training is due when there is no champion yet, when batches were merged into silver since the champion,
    or when ``force`` is set; otherwise a rerun would only register a duplicate version.
    """
    from cinematch.recommender import registry
    from cinematch.recommender.training import unmerged_batches

    with _session("pending_batches") as (_, con):
        batches = unmerged_batches(con)
        champ = registry.champion(con)
    due = bool(force or batches or champ is None)
    reason = ("forced by param force_train" if force else f"{len(batches)} new batch(es) since the champion"
              if batches else "no champion yet" if champ is None
              else f"nothing new since champion {champ['version']}")  # fmt: skip
    log_event(log, "training_due" if due else "training_skipped", reason=reason)
    return {"batch_ids": batches, "champion": champ["version"] if champ else None, "train": due, "reason": reason}


def train_model(force: bool = False) -> dict[str, Any]:
    """Train on the training set plus every unmerged batch, register the version, promote if not worse.

    With nothing new since the champion (and no ``force``) no version is registered: the champion is returned
    with ``skipped`` true, so a rerun never adds a duplicate model.
    """
    from cinematch.recommender import registry
    from cinematch.recommender.training import params_from_settings, train_warehouse, unmerged_batches

    with _session("train_model") as (settings, con):
        champ = registry.champion(con)
        if champ is not None and not force and not unmerged_batches(con):
            log_event(log, "training_skipped", reason="nothing new since the champion", version=champ["version"])
            return {"version": champ["version"], "skipped": True, "reason": "nothing new since the champion"}
        result = train_warehouse(con, settings, params_from_settings(settings))
    return _training_ref(result)


def _training_ref(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("version", "rmse", "mae", "precision_at_10", "recall_at_10", "ndcg_at_10", "n_test", "n_train",
            "promoted", "champion_version", "merged_batches", "train_seconds")  # fmt: skip
    ref = {k: result.get(k) for k in keys}
    ref["skipped"] = False
    ref["promotion"] = result["promotion"]["decision"]
    return _ref(ref)


def test_model(version: str | None) -> dict[str, Any]:
    """Evaluate ``version`` on the held-out ratings of its training batches (the stable 80/20 split).

    The split is the one training used, so the metrics must reproduce the registered ones; a model trained from
    files (no batch list) is evaluated on the held-out part of the current training set.
    """
    from cinematch.recommender import registry
    from cinematch.recommender.metrics import evaluate
    from cinematch.recommender.training import ratings_of, stable_split, training_batches

    if version is None:
        log_event(log, "test_skipped", reason="no model to test")
        return {"version": None, "skipped": True}
    with _session("test_model") as (settings, con):
        metadata = registry.load_metadata(settings, version)
        batch_ids = metadata.get("batch_ids") or training_batches(con)
        data = ratings_of(con, batch_ids)
    train, test = stable_split(data, seed=settings.seed)
    model = registry.load_model(settings, version)
    metrics = evaluate(model, train, test, k=settings.top_n, threshold=settings.relevance_threshold)
    registered = (metadata.get("metrics") or {}).get("rmse")
    ref = {"version": version, "skipped": False, **metrics, "registered_rmse": registered,
           "reproduces_registry": registered is not None and abs(metrics["rmse"] - registered) < 1e-6}  # fmt: skip
    log_event(log, "model_tested", version=version, rmse=round(metrics["rmse"], 4), n_test=metrics["n_test"],
              reproduces_registry=ref["reproduces_registry"])  # fmt: skip
    return _ref(ref)


def _run_tag(tag: str | None) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", tag or datetime.now(UTC).strftime("%Y%m%dT%H%M%S"))[:100]


def _write_csv(path: Path, header: tuple[str, ...], rows: list[tuple]) -> None:
    """Write rows as CSV via a temp file and a rename (the warehouse may be PostgreSQL: no server-side COPY)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    tmp.replace(path)


def create_futures(pairs_file: str | None = None, tag: str | None = None, n_pairs: int = FUTURES_PAIRS) -> dict:
    """The original "futures": champion predictions for (user, movie[, date]) pairs.

    Without ``pairs_file`` a pairs file is generated from the buffer: the ``n_pairs`` newest ratings in
    ``bronze.ratings_buffer`` as ``user_id,movie_id,date``, so predictions sit next to ratings users really gave.
    Files go to ``HOME/futures/<tag>-pairs.csv`` and ``<tag>-predictions.csv``. Before the first model only the
    pairs file is written.
    """
    from cinematch.recommender import registry
    from cinematch.recommender.training import predict_pairs

    with _session("create_futures") as (settings, con):
        folder = settings.home_dir / "futures"
        folder.mkdir(parents=True, exist_ok=True)
        name = _run_tag(tag)
        if pairs_file:
            pairs = _resolve_file(settings, pairs_file)
        else:
            pairs = folder / f"{name}-pairs.csv"
            rows = con.execute(
                """select user_id, movie_id, cast(rated_at as date) from bronze.ratings_buffer
                   order by rated_at desc, user_id, movie_id limit ?""",
                [int(n_pairs)],
            ).fetchall()
            _write_csv(pairs, ("user_id", "movie_id", "date"), rows)
    if registry.champion_alias(settings) is None:
        log_event(log, "futures_pairs_only", pairs=str(pairs), reason="no champion yet")
        return {"pairs_file": str(pairs), "predictions": None, "version": None, "reason": "no champion yet"}
    doc = predict_pairs(settings, pairs, folder / f"{name}-predictions.csv")
    log_event(log, "futures_predicted", version=doc["version"], pairs=doc["pairs"], fallbacks=doc["fallbacks"])
    return _ref({"pairs_file": str(pairs), "predictions": doc["out"], **doc})


# --- drift ---------------------------------------------------------------------------------------------------

DRIFT_KEYS = ("report_id", "model_version", "batch_ids", "decision", "should_retrain", "score", "kl_divergence",
              "mean_shift", "median_shift", "psi", "ks_statistic", "n_current", "n_reference",
              "model_degradation", "reasons")  # fmt: skip


def check_drift(expected_version: str | None = None) -> dict[str, Any]:
    """Drift of the unmerged batches against the champion's training data; the report is stored.

    Before the first model there is nothing to compare with: the decision is ``no_champion`` with
    ``should_retrain`` true, so the retrain branch trains the first model on the buffer.
    """
    from cinematch.drift.check import check_drift as drift_check
    from cinematch.recommender import registry
    from cinematch.recommender.training import unmerged_batches

    with _session("check_drift") as (settings, con):
        champ = registry.champion(con)
        if champ is None:
            batches = unmerged_batches(con)
            log_event(log, "drift_decision", decision="no_champion", should_retrain=True, batches=len(batches))
            return {"report_id": None, "model_version": None, "batch_ids": batches, "decision": "no_champion",
                    "should_retrain": True, "score": None}  # fmt: skip
        if expected_version and champ["version"] != expected_version:
            log_event(log, "champion_changed", expected=expected_version, actual=champ["version"])
        doc = drift_check(con, settings)
    return _ref({k: doc.get(k) for k in DRIFT_KEYS})


def drift_decision(ref: dict[str, Any]) -> dict[str, Any]:
    """The stored decision of a drift report (``ops.drift_reports``), logged with its scores."""
    if ref.get("report_id") is None:
        decision = {k: ref.get(k) for k in ("report_id", "decision", "should_retrain", "score")}
    else:
        from cinematch.storage.warehouse import query_rows

        with _session("drift_decision") as (_, con):
            rows = query_rows(
                con,
                """select report_id, decision, should_retrain, score, kl_divergence, mean_shift, median_shift,
                          n_current, model_version from ops.drift_reports where report_id = ?""",
                [ref["report_id"]],
            )
        if not rows:
            from cinematch.core.errors import CineMatchError

            raise CineMatchError(f"drift report {ref['report_id']} is not in ops.drift_reports; rerun detect_drift")
        decision = _ref(rows[0])
    log_event(log, "drift_decision", **decision)
    from cinematch.pipelines import alerts

    alerts.post_drift({**decision, "batch_ids": ref.get("batch_ids")}, "airflow")
    return decision


def merge_and_retrain(batch_ids: list[str]) -> dict[str, Any]:
    """Merge exactly the drift-checked batches into the training set, train, promote if not worse.

    Idempotent: when every batch is already merged (a retried or rerun task), the version they were merged
    into is returned with ``skipped`` true and nothing is trained.
    """
    from cinematch.recommender.training import ensure_tables, params_from_settings, train_warehouse

    with _session("merge_and_retrain") as (settings, con):
        ensure_tables(con)
        merged = dict(con.execute("select batch_id, model_version from ops.training_batches").fetchall())
        if batch_ids and all(b in merged for b in batch_ids):
            version = merged[batch_ids[-1]]
            log_event(log, "retrain_skipped", reason="batches already merged", version=version)
            return {"version": version, "skipped": True, "reason": "batches already merged", "merged_batches": []}
        result = train_warehouse(con, settings, params_from_settings(settings), merge=list(batch_ids))
    return _training_ref(result)


# --- end of run ----------------------------------------------------------------------------------------------


def _check(checks: list[dict], name: str, passed: bool, detail: Any = None) -> None:
    checks.append({"check": name, "passed": bool(passed), "detail": detail})


def _validate_ingest(con: duckdb.DuckDBPyConnection, ref: dict, checks: list[dict]) -> None:
    for r in ref["rejected"]:
        _check(checks, "ingest.no_rejected_files", False, f"{r['file']}: {r['error']}")
    for b in ref["loaded"]:
        table = "bronze.ratings_buffer" if b["kind"] == "ratings" else f"bronze.{b['kind']}"  # movies, users, ...
        rows = con.execute(
            f"""select m.status, m.record_count, (select count(*) from {table} where batch_id = m.batch_id)
                from bronze.ingestion_metadata m where m.batch_id = ?""",
            [b["batch_id"]],
        ).fetchall()
        ok = bool(rows) and rows[0][0] == "completed" and rows[0][1] == rows[0][2] == b["inserted"]
        _check(checks, f"ingest.{b['batch_id']}.rows_match_audit", ok, rows[0] if rows else "no audit row")


def _validate_etl(con: duckdb.DuckDBPyConnection, ref: dict, checks: list[dict]) -> None:
    """Read this run's own audit rows: gold is one shared table that a concurrent run may already have rebuilt."""
    _check(checks, "etl.completed", ref["status"] == "completed", ref["status"])
    _check(checks, "etl.quality_checks_passed", not ref["checks_failed"], ref["checks_failed"] or ref["checks_run"])
    steps = {step: (status, rows, _json(details)) for step, status, rows, details in con.execute(
        "select step, status, rows, details from ops.pipeline_runs where pipeline = 'etl' and run_id = ?",
        [ref["run_id"]]).fetchall()}  # fmt: skip
    silver = steps.get("silver")
    _check(checks, "etl.silver_recorded", silver is not None and silver[0] == "completed" and silver[1] > 0,
           silver[:2] if silver else "no ops.pipeline_runs row")  # fmt: skip
    if ref["gold_rows"] is not None:
        gold = steps.get("gold")
        recorded = gold[2].get("rows") if gold else None
        _check(checks, "etl.gold_recorded", gold is not None and gold[0] == "completed" and recorded == ref["gold_rows"],
               recorded or "no ops.pipeline_runs row")  # fmt: skip
        _check(checks, "etl.gold.movie_kpis_not_empty", ref["gold_rows"].get("movie_kpis", 0) > 0, ref["gold_rows"])


def _validate_training(con: duckdb.DuckDBPyConnection, ref: dict, checks: list[dict]) -> None:
    if ref.get("skipped"):
        _check(checks, "training.skipped_cleanly", True, ref.get("reason"))
        return
    rows = con.execute("select status from ops.model_registry where version = ?", [ref["version"]]).fetchall()
    _check(checks, "training.version_registered", bool(rows), ref["version"])
    # a later run may have replaced this champion already, so "was promoted" is champion or retired now
    expected = ("champion", "retired") if ref.get("promoted") else ("rejected",)
    _check(checks, "training.promotion_recorded", bool(rows) and rows[0][0] in expected, rows[0][0] if rows else None)


def _validate_test(ref: dict, checks: list[dict]) -> None:
    if ref.get("skipped"):
        return
    rmse = ref.get("rmse")
    _check(checks, "test.rmse_finite", rmse is not None and math.isfinite(rmse) and 0 <= rmse <= 5, rmse)
    _check(checks, "test.held_out_not_empty", (ref.get("n_test") or 0) > 0, ref.get("n_test"))


def _validate_drift(con: duckdb.DuckDBPyConnection, ref: dict, checks: list[dict]) -> None:
    if ref.get("report_id") is None:
        _check(checks, "drift.no_champion_yet", True, ref.get("decision"))
        return
    rows = con.execute("select decision from ops.drift_reports where report_id = ?", [ref["report_id"]]).fetchall()
    _check(checks, "drift.report_stored", bool(rows) and rows[0][0] == ref["decision"], ref["decision"])


def validate_run(
    pipeline: str,
    ingest: dict | None = None,
    etl: dict | None = None,
    training: dict | None = None,
    test: dict | None = None,
    drift: dict | None = None,
) -> dict[str, Any]:
    """Check a run's results against the warehouse (row counts, gates, registry); raise naming what failed.

    Only durable records of this run are compared (audit rows, registry rows, drift reports), so concurrent runs
    (a backfill beside the daily run) cannot fail it. References of skipped tasks arrive as None. A failure is a
    ``QualityGateFailed``: not retried, it alerts.
    """
    from cinematch.core.errors import QualityGateFailed

    checks: list[dict] = []
    with _session("validate_run") as (_, con):
        if ingest:
            _validate_ingest(con, ingest, checks)
        if etl:
            _validate_etl(con, etl, checks)
        if training:
            _validate_training(con, training, checks)
        if drift:
            _validate_drift(con, drift, checks)
    if test:
        _validate_test(test, checks)
    failed = [c for c in checks if not c["passed"]]
    summary = {"pipeline": pipeline, "passed": not failed, "n_checks": len(checks), "checks": checks,
               "batch_ids": (ingest or {}).get("batch_ids"), "inserted": (ingest or {}).get("inserted"),
               "as_of": (etl or {}).get("as_of"), "model_version": (training or test or {}).get("version"),
               "drift_decision": (drift or {}).get("decision")}  # fmt: skip
    log_event(log, "run_validated", pipeline=pipeline, checks=len(checks), failed=len(failed))
    if failed:
        first = failed[0]
        raise QualityGateFailed(
            f"{pipeline}: {len(failed)} of {len(checks)} run check(s) failed, first {first['check']} "
            f"({first['detail']}); see the task log and fix the input before rerunning"
        )
    return _ref(summary)


# --- serving and alerts --------------------------------------------------------------------------------------


def publish_views() -> dict[str, Any]:
    """`cinematch publish`: the serving views (champion's recommendations, trending, genres, drift) → CURRENT.

    The step after every run that changes what the API serves; a running API swaps the new file in on its next
    check of ``HOME/serving/CURRENT``.
    """
    from cinematch.serving.publish import publish

    with _session("publish_views") as (settings, con):
        doc = publish(con, settings)
    ref = {k: doc[k] for k in ("views_version", "model_version", "published_at", "users")}
    ref["path"] = doc["path"]
    log_event(log, "airflow_publish", views_version=ref["views_version"], model_version=ref["model_version"],
              users=ref["users"])  # fmt: skip
    return _ref(ref)


def announce_training(ref: dict[str, Any]) -> dict[str, Any]:
    """Post ``champion_promoted`` or ``promotion_refused`` for a training task's result; returns it unchanged."""
    from cinematch.pipelines import alerts

    alerts.post_training(ref, "airflow")
    return ref


def notify(
    pipeline: str, summary: dict[str, Any] | None, run_id: str | None = None, published: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Log the success of a run and post it (event ``success``) to ``CINEMATCH_ALERT_WEBHOOK`` when one is set."""
    from cinematch.pipelines import alerts

    summary = summary or {}
    text = (f"cinematch {pipeline} succeeded (run {run_id}): {summary.get('n_checks', 0)} checks passed"
            + "".join(f", {k} {summary[k]}" for k in ("batch_ids", "inserted", "as_of", "model_version",
                                                      "drift_decision") if summary.get(k) not in (None, []))
            + (f", published {published['views_version']}" if published else ""))  # fmt: skip
    log_event(log, "pipeline_succeeded", pipeline=pipeline, run_id=run_id, message=text)
    sent = alerts.post(alerts.SUCCESS, text, "airflow", pipeline=pipeline, run_id=run_id, summary=summary,
                       views_version=(published or {}).get("views_version"))  # fmt: skip
    return {"pipeline": pipeline, "status": "success", "message": text, "webhook": sent}


def alert_failure(context: Any) -> None:
    """``on_failure_callback``: an ERROR line naming DAG, task, run, try and error, and the webhook if set.

    The event is ``gate_failed`` when the task raised ``QualityGateFailed`` (a layer's gate or the run checks),
    ``failure`` otherwise.
    """
    try:
        from cinematch.pipelines import alerts

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
