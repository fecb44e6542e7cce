"""`cinematch tmdb fetch`: enrich the MovieLens movies of links.csv from TMDB into bronze.tmdb_raw, resumably."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cinematch.core.errors import BadInput, CineMatchError
from cinematch.core.log import get_logger, log_event
from cinematch.core.results import Result
from cinematch.core.settings import Settings
from cinematch.ingest.tmdb.client import APPEND, FetchResult, TmdbClient, max_in_window
from cinematch.storage.audit import new_run_id, record_run, utcnow

log = get_logger(__name__)

ENDPOINT = f"/movie/{{id}}?append_to_response={APPEND}"
DONE_STATUSES = ("ok", "not_found")  # fetched for good; malformed and failed ids are tried again next run
RAW_SCHEMA = pa.schema([
    ("tmdb_id", pa.int64()), ("movie_id", pa.int64()), ("endpoint", pa.string()), ("status", pa.string()),
    ("http_status", pa.int32()), ("reason", pa.string()), ("attempts", pa.int32()),
    ("fetched_at", pa.timestamp("us")), ("payload", pa.string()), ("run_id", pa.string()),
])  # fmt: skip


def read_links(path: Path) -> tuple[pd.DataFrame, int]:
    """``(movie_id, tmdb_id)`` pairs of a MovieLens links.csv, one per TMDB id, and how many rows had no tmdbId."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read links file {path}: {exc}; pass a MovieLens links.csv") from None
    if not {"movieId", "tmdbId"} <= set(frame.columns):
        raise BadInput(
            f"{path} has columns {list(frame.columns)}; expected MovieLens links.csv (movieId,imdbId,tmdbId)"
        )
    movie = pd.to_numeric(frame["movieId"], errors="coerce")
    tmdb = pd.to_numeric(frame["tmdbId"].str.strip().replace("", None), errors="coerce")
    usable = movie.notna() & tmdb.notna() & (tmdb > 0)
    pairs = pd.DataFrame({"movie_id": movie[usable].astype("int64"), "tmdb_id": tmdb[usable].astype("int64")})
    pairs = pairs.sort_values(["tmdb_id", "movie_id"]).drop_duplicates("tmdb_id").reset_index(drop=True)
    return pairs, int((~usable).sum())


def default_links(con: Any, settings: Settings) -> Path | None:
    """The links.csv beside the newest ingested movies file, if there is one."""
    rows = con.execute(
        "select source_file from bronze.movies where source_file is not null group by source_file "
        "order by max(ingested_at) desc limit 5"
    ).fetchall()
    return next((p for (f,) in rows if (p := Path(f).parent / "links.csv").is_file()), None)


def _write_lake(rows: pa.Table, settings: Settings, run_id: str, seq: int) -> list[Path]:
    """One Parquet file per extraction date: written to a temp name, then renamed (readers never see half)."""
    written = []
    dates = pc.strftime(rows["fetched_at"], format="%Y-%m-%d")
    for day in sorted(set(dates.to_pylist())):
        part = rows.filter(pc.equal(dates, day))
        folder = settings.lake_dir / "bronze" / "tmdb_raw" / f"extracted_date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"part-{run_id}-{seq:05d}.parquet"
        tmp = folder / f".{final.name}.tmp"
        pq.write_table(part, tmp)
        os.replace(tmp, final)
        written.append(final)
    return written


def _to_row(result: FetchResult, movie_id: int, run_id: str) -> dict[str, Any]:
    return {"tmdb_id": int(result.tmdb_id), "movie_id": int(movie_id), "endpoint": ENDPOINT.format(id=result.tmdb_id),
            "status": result.status, "http_status": result.http_status, "reason": result.reason,
            "attempts": result.attempts, "fetched_at": result.fetched_at, "payload": result.payload,
            "run_id": run_id}  # fmt: skip


@dataclass(eq=False)
class TmdbFetch(Result):
    """One `cinematch tmdb fetch`: what was asked for and how each id ended, the requests it took."""

    run_id: str
    links: str
    requested: int
    fetched: int
    skipped: int
    no_tmdb_id: int
    not_found: int
    malformed: int
    failed: int
    requests: int
    retries: int
    seconds: float
    rate_limit: float
    max_requests_in_1s: int
    lake_files: int
    failure_reasons: dict[str, int]


@dataclass
class FetchPlan:
    """What one run will fetch: the new ids of ``links`` (``todo``) and what it leaves out."""

    links: Path
    todo: pd.DataFrame
    skipped: int
    no_tmdb_id: int


def plan_fetch(con: Any, settings: Settings, links: Path | None = None, limit: int | None = None) -> FetchPlan:
    """The ids of ``links`` (default: :func:`default_links`) not fetched for good yet, at most ``limit``."""
    if limit is not None and limit < 0:
        raise BadInput(f"--limit must be >= 0, got {limit}")
    links = links or default_links(con, settings)
    if links is None:
        raise BadInput("no links.csv beside the ingested movies file: pass --movies-from-links FILE "
                       "(MovieLens links.csv: movieId,imdbId,tmdbId)")  # fmt: skip
    if not links.is_file():
        raise BadInput(f"links file {links} does not exist: pass a MovieLens links.csv")
    pairs, no_tmdb = read_links(links)
    done = con.sql("select distinct tmdb_id from bronze.tmdb_raw where status in ('ok', 'not_found')")
    todo = pairs[~pairs["tmdb_id"].isin(done.to_arrow_table()["tmdb_id"].to_numpy())]
    skipped = len(pairs) - len(todo)
    return FetchPlan(links, todo if limit is None else todo.head(limit), skipped, no_tmdb)


def fetch_tmdb(
    con: Any,
    settings: Settings,
    links: Path | None = None,
    limit: int | None = None,
    progress: Callable[..., None] | None = None,
    plan: FetchPlan | None = None,
) -> TmdbFetch:
    """Fetch every movie of ``links`` not fetched before; each small batch of responses committed as it arrives.

    Args:
        con: a read-write warehouse connection (``write_session``).
        settings: API key, base URL, rate limit, retries, workers and the home's lake.
        links: a MovieLens links.csv (default: :func:`default_links`); ``limit``: at most this many new ids.
        progress: called with ``advance=1`` per finished id.
        plan: a :func:`plan_fetch` result to run instead of planning here.

    Returns:
        a :class:`TmdbFetch`: counts (``fetched``, ``skipped``, ``no_tmdb_id``, ``not_found``, ``malformed``, ``failed``), ``requests``,
        ``retries``, ``seconds`` and ``max_requests_in_1s`` (measured over this run's requests).
    """
    with TmdbClient(settings) as client:  # refuses first (exit 2) when the key is unset
        plan = plan or plan_fetch(con, settings, links, limit)
        return _run(con, settings, client, plan.links, plan.todo, plan.skipped, plan.no_tmdb_id, progress)


def _run(con: Any, settings: Settings, client: TmdbClient, links: Path, todo: pd.DataFrame, skipped: int,
         no_tmdb: int, progress: Callable[..., None] | None) -> TmdbFetch:  # fmt: skip
    run_id, started, t0 = new_run_id(), utcnow(), time.perf_counter()
    counts = {"ok": 0, "not_found": 0, "malformed": 0, "failed": 0}
    pending: list[dict[str, Any]] = []
    failures: list[str] = []  # the reason of each failed id
    files: list[Path] = []
    log_event(log, "tmdb_fetch_start", run_id=run_id, links=str(links), todo=len(todo), skipped=skipped)

    def flush() -> None:
        if not pending:
            return
        rows = pa.Table.from_pylist(pending, schema=RAW_SCHEMA)
        files.extend(_write_lake(rows, settings, run_id, len(files)))
        con.register("_tmdb_raw_new", rows)
        con.execute("insert into bronze.tmdb_raw select * from _tmdb_raw_new")  # one statement: one commit
        con.unregister("_tmdb_raw_new")
        pending.clear()

    ids = dict(zip(todo["tmdb_id"].tolist(), todo["movie_id"].tolist(), strict=True))
    queue = iter(ids)
    workers = settings.tmdb_workers
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tmdb") as pool:
        running: set[Future[FetchResult]] = set()
        try:
            # at most a few ids in flight, so an interrupted run loses only those
            for tmdb_id in queue:
                running.add(pool.submit(client.fetch_movie, tmdb_id))
                if len(running) >= 2 * workers:
                    finished, running = wait(running, return_when=FIRST_COMPLETED)
                    _collect(finished, ids, run_id, counts, pending, failures, progress)
                    if len(pending) >= settings.tmdb_commit_every:
                        flush()
            while running:
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                _collect(finished, ids, run_id, counts, pending, failures, progress)
                if len(pending) >= settings.tmdb_commit_every:
                    flush()
        finally:
            for future in running:
                future.cancel()
            flush()
    seconds = time.perf_counter() - t0
    reasons = Counter(failures)
    doc = TmdbFetch(
        run_id=run_id,
        links=str(links),
        requested=len(ids),
        fetched=counts["ok"],
        skipped=skipped,
        no_tmdb_id=no_tmdb,
        not_found=counts["not_found"],
        malformed=counts["malformed"],
        failed=counts["failed"],
        requests=client.requests,
        retries=client.retries,
        seconds=round(seconds, 3),
        rate_limit=settings.tmdb_rate_limit,
        max_requests_in_1s=max_in_window(client.limiter.stamps),
        lake_files=len(files),
        failure_reasons=dict(reasons.most_common(5)),
    )
    all_failed = bool(ids) and counts["failed"] == len(ids)
    record_run(
        con, "tmdb", "fetch", started, "failed" if all_failed else "completed", counts["ok"], doc.to_dict(), run_id
    )
    log_event(log, "tmdb_fetch", **{k: v for k, v in doc.items() if k not in ("links", "failure_reasons")})
    if all_failed:  # nothing reached TMDB: a wrong base URL, no network, TMDB down; not a success
        reason, n = reasons.most_common(1)[0]
        raise CineMatchError(
            f"tmdb fetch: all {len(ids):,} requests failed ({reason}"
            + (f" for {n:,} of them" if n < len(ids) else "")
            + "); check CINEMATCH_TMDB_BASE_URL and the network, then rerun (failed ids are retried)"
        )
    return doc


def _collect(finished: set[Future[FetchResult]], ids: dict[int, int], run_id: str, counts: dict[str, int],
             pending: list[dict[str, Any]], failures: list[str],
             progress: Callable[..., None] | None) -> None:  # fmt: skip
    for future in finished:
        result: FetchResult = future.result()  # a 401 raises here and stops the run (after the flush)
        counts[result.status] += 1
        pending.append(_to_row(result, ids[result.tmdb_id], run_id))
        if result.status == "failed":
            failures.append(result.reason or "unknown")
        if progress:
            progress(advance=1)
