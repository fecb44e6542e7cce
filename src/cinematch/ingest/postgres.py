"""PostgreSQL ratings ingestion: DuckDB validates a batch chunk by chunk while earlier chunks stream into COPY.

Validating the whole batch before sending its first row left one of the two CPUs idle while DuckDB worked and
the server waited, then the other way round. Here a thread reads and checks the batch in chunks (the same
per-row checks and reasons as ``ratings.stage_ratings``) and hands the good rows, as COPY BINARY tuples, to the
one COPY of the caller's transaction. The in-batch duplicate check needs the whole batch: it runs once the last
chunk is read, while the COPY is still sending. When it finds repeats (rare), the transaction rolls back to a
savepoint taken before the COPY and the batch is read and sent again without them (with the same checks text,
so both passes agree), and ``bronze.ratings_buffer`` and ``bronze.quarantine`` end up exactly as with staging
first. Only the key hashes (8 bytes per row) are held. Nothing is visible to others before the caller commits,
and any failure (a corrupt file, a dead server, a kill) leaves the caller's transaction to roll back.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, cast

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cinematch.core.errors import CineMatchError
from cinematch.core.log import get_logger, log_event
from cinematch.datasets.ratings import quarantine_select, ratings_check_sql, unreadable
from cinematch.datasets.raw_tables import RawSource, register_raw
from cinematch.storage import pg_copy as _pgcopy
from cinematch.storage.protocol import CopyWarehouse, Warehouse

log = get_logger(__name__)

TABLE = "bronze.ratings_buffer"
COLUMNS = ("user_id", "movie_id", "rating", "rated_at", "batch_id", "source_file", "ingested_at")
CHUNK_ROWS = 131_072  # rows DuckDB validates per step: ~16 MB of COPY tuples
AHEAD = 2  # chunks validated ahead of the COPY (memory bound; a failed COPY stops the reader soon)
THREADS = 1  # DuckDB threads of the checker: the other CPU of a small machine is the server's, busy with the COPY
DUPLICATE = "duplicate row in batch"
_TYPED = ["user_id", "movie_id", "rating", "rated_at"]
_END = object()


class _Checker:
    """The producer thread: good rows of each chunk become COPY pieces; bad rows and key hashes are kept.

    With ``exclude`` (row numbers of known duplicates) it is the second pass: those rows are left out and
    nothing else is computed.
    """

    def __init__(self, raw: RawSource, checks: str, meta: dict[str, Any], types: list[str],
                 exclude: np.ndarray | None = None) -> None:  # fmt: skip
        self.raw, self.checks, self.types, self.exclude = raw, checks, types, exclude
        self.constants = [pa.array([meta["batch_id"]], pa.string()), pa.array([meta["source_file"]], pa.string()),
                          pa.array([meta["ingested_at"]], pa.timestamp("us"))]  # fmt: skip
        self.pieces: queue.Queue[memoryview | object] = queue.Queue(AHEAD)  # COPY pieces, then _END
        self.stop = threading.Event()
        self.rows = 0  # good rows handed to the COPY
        self.hashes: list[np.ndarray] = []
        self.bad: list[pa.Table] = []  # row_number, final_reason
        self.duplicates = np.empty(0, np.int64)  # row numbers of in-batch repeats
        self.quarantine: pa.Table | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            local = duckdb.connect()
            try:
                local.execute(f"set TimeZone='UTC'; set threads={THREADS}")
                register_raw(local, self.raw)
                checks = self.checks  # the same text in both passes
                if self.exclude is None:
                    sql = f"select *, hash(user_id, movie_id, rated_at) as _h from ({checks})"
                else:
                    local.register("_exclude", pa.table({"row_number": self.exclude}))
                    sql = (f"select * from ({checks}) where final_reason is null"
                           " and row_number not in (select row_number from _exclude)")  # fmt: skip
                try:
                    for batch in local.sql(sql).to_arrow_reader(CHUNK_ROWS):
                        if self.stop.is_set():
                            return
                        self._chunk(batch)
                    if self.exclude is None:
                        self._find_duplicates(local, checks)
                        self.quarantine = self._quarantine(local)
                except (duckdb.Error, pa.ArrowException, OSError) as exc:  # the Arrow stream raises OSError
                    raise unreadable(self.raw, exc) from None
            finally:
                local.close()
        except BaseException as exc:  # handed to the COPY side, which raises it inside the transaction
            self.error = exc
        finally:
            self._put(_END)

    def next_piece(self) -> memoryview | None:
        """The next chunk's COPY tuples; None once every chunk is sent; raises what failed the checker."""
        piece = self.pieces.get()
        if piece is _END:
            if self.error is not None:
                raise self.error
            return None
        return cast(memoryview, piece)  # anything but _END is a piece

    def _put(self, item: Any) -> None:
        while not self.stop.is_set():
            try:
                self.pieces.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _chunk(self, batch: pa.RecordBatch) -> None:
        reasons = batch.column("final_reason")
        good = batch  # the usual case: every row passed, no copy
        if reasons.null_count < batch.num_rows:
            ok = pc.is_null(reasons)
            good = batch.filter(ok)
            self.bad.append(pa.Table.from_batches([batch.filter(pc.invert(ok))]).select(["row_number", "final_reason"]))
        if good.num_rows == 0:
            return
        if self.exclude is None:
            self.hashes.append(good.column("_h").to_numpy())
        zeros = pa.array(np.zeros(good.num_rows, np.int8))
        consts = [pa.DictionaryArray.from_arrays(zeros, c) for c in self.constants]
        rows = pa.table([*(good.column(c) for c in _TYPED), *consts], names=list(COLUMNS))
        piece = _pgcopy.binary_rows(rows, self.types)
        if piece is None:
            raise CineMatchError(f"validated ratings do not fit {TABLE}'s column types {self.types}")
        self._put(piece)
        self.rows += good.num_rows

    def _find_duplicates(self, local: duckdb.DuckDBPyConnection, checks: str) -> None:
        """Repeats of an earlier (user, movie, time) row: candidates by 64-bit hash, then the exact key (the
        candidates' rows are read again: the good rows are not kept)."""
        if not self.hashes:
            return
        ordered = np.sort(np.concatenate(self.hashes))
        repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
        if len(repeated) == 0:
            return
        local.register("_repeated", pa.table({"h": pa.array(repeated, pa.uint64())}))
        found = local.sql(
            f"""select row_number from (
                    select row_number, row_number() over (partition by user_id, movie_id, rated_at
                                                          order by row_number) as nth
                    from ({checks})
                    where final_reason is null and hash(user_id, movie_id, rated_at) in (select h from _repeated)
                ) where nth > 1 order by row_number"""
        )
        self.duplicates = found.fetchnumpy()["row_number"].astype(np.int64)

    def _quarantine(self, local: duckdb.DuckDBPyConnection) -> pa.Table | None:
        """The quarantined rows as ``ratings.normalize_ratings`` returns them (raw values as text)."""
        schema = pa.schema([("row_number", pa.int64()), ("final_reason", pa.string())])
        parts = [t.cast(schema) for t in self.bad]
        if len(self.duplicates):
            parts.append(pa.table([pa.array(self.duplicates), pa.array([DUPLICATE] * len(self.duplicates))],
                                  schema=schema))  # fmt: skip
        if not parts:
            return None
        local.register("_checked", pa.concat_tables(parts))
        return local.sql(quarantine_select(self.raw.schema) + " order by c.row_number").to_arrow_table()


def _stream(pg: Any, checker: _Checker) -> None:
    """One COPY of ``checker``'s pieces while its thread produces them."""
    thread = threading.Thread(target=checker.run, name="cinematch-ingest-check", daemon=True)
    thread.start()
    try:
        with pg.cursor() as cur, cur.copy(f"copy {TABLE} ({', '.join(COLUMNS)}) from stdin (format binary)") as copy:
            copy.write(_pgcopy.BINARY_HEADER)
            while (piece := checker.next_piece()) is not None:
                copy.write(piece)
            copy.write(_pgcopy.BINARY_TRAILER)
    finally:
        checker.stop.set()
        thread.join()


RatingsStream = Callable[[RawSource, dict[str, Any], str], tuple[int, int]]


def ratings_stream(con: Warehouse) -> RatingsStream | None:
    """How ``con`` takes a ratings batch when it takes rows through COPY (PostgreSQL): validated while the COPY
    streams, inside the caller's transaction (:func:`load_ratings`, given ``raw``, the batch's ``meta`` and the
    quarantine insert). None when it does not (DuckDB): the batch is validated first, as every other kind."""
    if not isinstance(con, CopyWarehouse):
        return None
    return lambda raw, meta, quarantine_sql: load_ratings(con, raw, meta, quarantine_sql)


def load_ratings(con: CopyWarehouse, raw: RawSource, meta: dict[str, Any], quarantine_sql: str) -> tuple[int, int]:
    """Validate ``raw`` and append its good rows to ``bronze.ratings_buffer`` with COPY while it is read, and the
    rest to ``bronze.quarantine`` with ``quarantine_sql`` (reading ``_bad``), inside the caller's transaction on
    ``con`` (a PgConnection). Returns (rows loaded, rows quarantined)."""
    known = dict(con.table_columns(TABLE))
    types = [known.get(c, "") for c in COLUMNS]
    pg = con.raw()
    checks = ratings_check_sql(raw.schema)  # one text for both passes: "now" in the checks stays put
    pg.execute("savepoint cm_ratings")
    checker = _Checker(raw, checks, meta, types)
    _stream(pg, checker)
    n_good = checker.rows
    if len(checker.duplicates):  # known only once the whole batch was read: send it again without them
        pg.execute("rollback to savepoint cm_ratings")
        second = _Checker(raw, checks, meta, types, exclude=checker.duplicates)
        _stream(pg, second)
        n_good = second.rows
        log_event(log, "ingest_resent_without_duplicates", duplicates=len(checker.duplicates), rows=n_good)
    bad = checker.quarantine
    if bad is not None:
        con.register("_bad", bad)
        try:
            params = {"batch": meta["batch_id"], "file": meta["source_file"], "at": meta["ingested_at"]}
            con.execute(quarantine_sql, params)
        finally:
            con.unregister("_bad")
    return n_good, 0 if bad is None else bad.num_rows
