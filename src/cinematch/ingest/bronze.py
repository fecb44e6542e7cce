"""Exactly-once batch ingestion into bronze, with quarantine and an audit row per batch."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from cinematch.core.errors import BadInput
from cinematch.core.log import get_logger, log_event
from cinematch.core.results import Result
from cinematch.core.settings import get_settings
from cinematch.datasets.movies import normalize_movies, read_movies_raw
from cinematch.datasets.ratings import normalize_ratings, read_ratings_raw
from cinematch.datasets.viewing import INSERTS as VIEWING_INSERTS
from cinematch.datasets.viewing import VIEWING_KINDS, normalize_viewing, read_viewing_raw
from cinematch.ingest.postgres import ratings_stream
from cinematch.storage.audit import record_run, utcnow
from cinematch.storage.protocol import Warehouse
from cinematch.storage.warehouse import query_rows

log = get_logger(__name__)

# letters, digits, '_', '-' and single dots inside (never '..', never a leading or trailing dot)
BATCH_ID_RE = re.compile(r"(?!.*\.\.)[A-Za-z0-9_-](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9_-])?")
KINDS = ("ratings", "movies", *VIEWING_KINDS)


@dataclass
class IngestResult(Result):
    """What one `ingest` did; the JSON output of `cinematch ingest`."""

    batch_id: str
    kind: str
    inserted: int
    quarantined: int
    skipped: bool
    checksum: str
    source_file: str
    format: str | None = None
    seconds: float = 0.0
    rows_per_second: float | None = None
    notes: str | None = None


def validate_batch_id(batch_id: str) -> str:
    """Batch ids become file names and SQL values: letters, digits, `_`, `-` and single dots inside only."""
    if not BATCH_ID_RE.fullmatch(batch_id or ""):
        raise BadInput(
            f"unsafe batch id {batch_id!r}: use 1-128 letters, digits, '_', '-' or single inner dots "
            "(e.g. --batch-id batch_w3)"
        )
    return batch_id


def default_batch_id(path: Path) -> str:
    """The file name without its extension: `ratings.2024-01.csv` → `ratings.2024-01`.

    Characters a batch id cannot hold become `_`, as do runs of dots; leading and trailing dots are dropped.
    """
    stem = re.sub(r"\.{2,}", "_", re.sub(r"[^A-Za-z0-9._-]", "_", Path(path).stem))
    return stem.strip(".")[:128].rstrip(".") or "batch"


def file_checksum(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _existing(con: Warehouse, batch_id: str, checksum: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    by_id = query_rows(con, "select * from bronze.ingestion_metadata where batch_id = ?", [batch_id])
    by_sum = query_rows(
        con,
        "select * from bronze.ingestion_metadata where checksum = ? and status = 'completed' limit 1",
        [checksum],
    )
    return (by_id[0] if by_id else None), (by_sum[0] if by_sum else None)


_INSERTS = {
    "ratings": (
        "insert into bronze.ratings_buffer select user_id, movie_id, rating, rated_at, $batch, $file, $at from _good",
        """insert into bronze.quarantine
           select $batch, reason, row_number, user_id, movie_id, rating, rated_at, raw, $file, $at from _bad""",
    ),
    "movies": (
        "insert into bronze.movies select movie_id, title, genres, release_year, $batch, $file, $at from _good",
        """insert into bronze.quarantine
           select $batch, reason, row_number, null, movie_id, null, null, raw, $file, $at from _bad""",
    ),
    **VIEWING_INSERTS,  # users, sessions, content (cinematch.datasets.viewing)
}


def _insert(con: Warehouse, kind: str, meta: dict[str, Any], good: pa.Table, bad: pa.Table) -> None:
    """Append validated rows to bronze and the rest to quarantine (inside the caller's transaction)."""
    con.register("_good", good)
    con.register("_bad", bad)
    params = {"batch": meta["batch_id"], "file": meta["source_file"], "at": meta["ingested_at"]}
    try:
        for sql in _INSERTS[kind]:
            con.execute(sql, params)
    finally:
        con.unregister("_good")
        con.unregister("_bad")


def check_bad_share(
    path: Path, n_good: int, n_bad: int, limit: float, reasons: Callable[[], list[tuple[str, int]]]
) -> None:
    """Refuse a batch whose share of quarantined rows is above ``limit``: a mostly broken file is a wrong file
    (another format, a truncated export), not a file with a few bad rows. ``reasons`` gives (reason, count)
    pairs, asked for only to word the refusal."""
    total = n_good + n_bad
    if total == 0 or n_bad / total <= limit:
        return
    counted = sorted(reasons(), key=lambda rc: (-rc[1], rc[0]))  # a handful of distinct reasons
    top = ", ".join(f"{reason!r} x{count:,}" for reason, count in counted[:2])
    raise BadInput(
        f"refused {path}: {n_bad:,} of {total:,} records are bad ({n_bad / total:.1%}: {top}), more than "
        f"CINEMATCH_MAX_BAD_ROW_SHARE={limit:g} allows; nothing was loaded: fix the file, or raise "
        "CINEMATCH_MAX_BAD_ROW_SHARE to load its good rows and quarantine the rest"
    )


def ingest_file(
    con: Warehouse,
    path: Path,
    batch_id: str | None = None,
    kind: str = "ratings",
    fmt: str = "auto",
    max_bad_share: float | None = None,
) -> IngestResult:
    """Load one batch file into bronze exactly once.

    Re-ingesting content already loaded is a no-op (``skipped``); a known ``batch_id`` with different
    content is refused. Good rows, quarantined rows and the audit row commit in one transaction, so a
    batch is visible completely or not at all, also when the process is killed midway. A batch with a
    larger share of quarantined rows than ``max_bad_share`` (default: ``CINEMATCH_MAX_BAD_ROW_SHARE``) is
    refused whole.
    """
    started = time.perf_counter()
    started_at = utcnow()
    path = Path(path)
    limit = get_settings().max_bad_row_share if max_bad_share is None else max_bad_share
    batch_id = validate_batch_id(batch_id if batch_id is not None else default_batch_id(path))
    if kind not in KINDS:
        raise BadInput(f"unknown --kind {kind!r}; choose one of {', '.join(KINDS)}")
    if not path.exists():
        raise BadInput(f"file not found: {path}; check the path")
    if path.is_dir():
        raise BadInput(f"{path} is a folder, not a file; pass one batch file (or use --landing)")
    checksum = file_checksum(path)
    source_file = str(path.resolve())
    by_id, by_sum = _existing(con, batch_id, checksum)
    if by_id is not None and by_id["status"] == "completed":
        if by_id["checksum"] == checksum:
            log_event(log, "ingest_skipped", batch_id=batch_id, reason="already loaded")
            return IngestResult(
                batch_id,
                kind,
                0,
                0,
                True,
                checksum,
                source_file,
                notes="batch already loaded with the same content",
            )
        raise BadInput(
            f"batch {batch_id} was already loaded from different content (checksum {by_id['checksum'][:12]}); "
            "give the new file its own --batch-id"
        )
    if by_sum is not None:
        note = f"same content already loaded as batch {by_sum['batch_id']}"
        log_event(log, "ingest_skipped", batch_id=batch_id, reason=note)
        return IngestResult(by_sum["batch_id"], kind, 0, 0, True, checksum, source_file, notes=note)

    stream = None
    if kind in VIEWING_KINDS:
        raw, fmt_used = read_viewing_raw(path, kind)
        good, bad = normalize_viewing(raw, kind)
    elif kind == "movies":
        raw, fmt_used = read_movies_raw(path, fmt)
        good, bad = normalize_movies(raw)
    else:
        raw, fmt_used = read_ratings_raw(path, fmt)
        # a warehouse that takes COPY (PostgreSQL) validates inside the transaction while the rows stream
        # (ingest/postgres.py); any other validates here first, as for every other kind
        stream = ratings_stream(con)
        good, bad = (None, None) if stream is not None else normalize_ratings(raw, ordered=False)
    n_good, n_bad = (good.num_rows, bad.num_rows) if good is not None and bad is not None else (raw.num_rows, 0)
    n_rows = n_good + n_bad
    if n_rows == 0:
        raise BadInput(f"{path} has a header but no rows; nothing to load")
    if bad is not None:  # before the transaction: a refused batch writes nothing
        counts = lambda: [(c["values"], c["counts"]) for c in pc.value_counts(bad.column("reason")).to_pylist()]  # noqa: E731
        check_bad_share(path, n_good, n_bad, limit, counts)

    ingested_at = utcnow()
    meta = {"batch_id": batch_id, "source_file": source_file, "ingested_at": ingested_at}
    con.execute("begin transaction")
    try:
        if by_id is not None:  # an earlier failed attempt: its audit row is replaced
            con.execute("delete from bronze.ingestion_metadata where batch_id = ?", [batch_id])
        if stream is not None:
            n_good, n_bad = stream(raw, meta, _INSERTS["ratings"][1])
            reasons = "select reason, count(*) from bronze.quarantine where batch_id = ? group by reason"
            check_bad_share(path, n_good, n_bad, limit, lambda: con.execute(reasons, [batch_id]).fetchall())
        else:
            assert good is not None and bad is not None  # validated before the transaction
            _insert(con, kind, meta, good, bad)
        seconds = time.perf_counter() - started
        rps = n_rows / seconds if seconds > 0 else None
        notes = json.dumps({"format": fmt_used, "rows_read": n_rows})
        con.execute(
            "insert into bronze.ingestion_metadata values (?, ?, ?, ?, 'completed', ?, ?, ?, ?, ?, ?)",
            [batch_id, ingested_at, n_good, n_bad, checksum, source_file, kind, notes, seconds, rps],
        )
        record_run(
            con,
            "ingest",
            kind,
            started_at,
            "completed",
            n_good,
            {"batch_id": batch_id, "quarantined": n_bad, "format": fmt_used},
        )
        con.execute("commit")
    except BaseException as exc:
        con.execute("rollback")
        if getattr(exc, "sqlstate", None) in ("23505", "40001"):
            # PostgreSQL: a concurrent ingestion of this batch committed first (ingestion_metadata's key).
            return _lost_race(con, batch_id, kind, checksum, source_file)
        raise
    log_event(
        log,
        "ingest_completed",
        batch_id=batch_id,
        kind=kind,
        inserted=n_good,
        quarantined=n_bad,
        seconds=round(seconds, 3),
        rows_per_second=round(rps or 0),
    )
    return IngestResult(
        batch_id,
        kind,
        n_good,
        n_bad,
        False,
        checksum,
        source_file,
        fmt_used,
        round(seconds, 4),
        round(rps, 1) if rps else None,
    )


def _lost_race(con: Warehouse, batch_id: str, kind: str, checksum: str, source_file: str) -> IngestResult:
    """The outcome when another process loaded ``batch_id`` while this one was loading it: a skip or a refusal."""
    by_id, by_sum = _existing(con, batch_id, checksum)
    if by_id is not None and by_id["checksum"] == checksum:
        log_event(log, "ingest_skipped", batch_id=batch_id, reason="loaded concurrently by another process")
        return IngestResult(batch_id, kind, 0, 0, True, checksum, source_file,
                            notes="batch already loaded with the same content (by a concurrent ingestion)")  # fmt: skip
    if by_sum is not None:
        note = f"same content already loaded as batch {by_sum['batch_id']} (by a concurrent ingestion)"
        log_event(log, "ingest_skipped", batch_id=batch_id, reason=note)
        return IngestResult(by_sum["batch_id"], kind, 0, 0, True, checksum, source_file, notes=note)
    raise BadInput(
        f"batch {batch_id} was loaded concurrently from different content; give the new file its own --batch-id"
    )


@dataclass(eq=False)
class BufferStatus(Result):
    """The bronze buffer: totals, every batch's audit row (oldest first) and the quarantine reasons."""

    total_records: int
    quarantined_records: int
    movies: int
    n_batches: int
    batches: list[dict[str, Any]]
    quarantine_reasons: list[dict[str, Any]]

    @classmethod
    def empty(cls) -> BufferStatus:
        """The status of a home with no warehouse yet."""
        return cls(0, 0, 0, 0, [], [])


def buffer_status(con: Warehouse) -> BufferStatus:
    """Totals and ingestion history (the original `check_buffer_status`)."""
    total_row = con.execute("select count(*) from bronze.ratings_buffer").fetchone()
    quarantined_row = con.execute("select count(*) from bronze.quarantine").fetchone()
    movies_row = con.execute("select count(distinct movie_id) from bronze.movies").fetchone()
    assert total_row is not None and quarantined_row is not None and movies_row is not None  # counts: one row each
    total, quarantined, movies = total_row[0], quarantined_row[0], movies_row[0]
    batches = query_rows(
        con,
        """select batch_id, kind, record_count, quarantined_count, status, ingestion_date, checksum, source,
                  duration_seconds, rows_per_second
           from bronze.ingestion_metadata order by ingestion_date, batch_id""",
    )
    for b in batches:
        b["ingestion_date"] = b["ingestion_date"].isoformat()
    reasons = query_rows(
        con, "select reason, count(*) as n from bronze.quarantine group by reason order by n desc, reason"
    )
    return BufferStatus(total, quarantined, movies, len(batches), batches, reasons)
