"""PostgreSQL ratings ingestion that validates while the COPY streams: the same tables, nothing partial visible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from tests.conftest import make_ratings

from cinematch.core.errors import BadInput
from cinematch.core.settings import Settings
from cinematch.ingest import postgres as _pgingest
from cinematch.ingest.bronze import ingest_file
from cinematch.storage.postgres import PgConnection
from cinematch.storage.warehouse import write_session

pytestmark = pytest.mark.postgres

# rows 3 and 6 fail a per-row check; rows 5 and 10 repeat row 1 and row 8 repeats row 2's key with another
# rating, each in a later chunk (3 rows per chunk) than the row it repeats: the first occurrence stays
MIXED = """userId,movieId,rating,timestamp
1,10,4.0,1700000000
2,20,3.5,1700000100
3,30,7.0,1700000200
4,40,2.0,1700000300
1,10,4.0,1700000000
5,50,x,1700000400
6,60,1.0,1700000500
2,20,5.0,1700000100
7,70,4.5,1700000600
1,10,4.0,1700000000
"""


class _PieceSpy:
    """Wraps the real ``_Checker.next_piece``: counts pieces handed to the COPY and, after each, what another
    session sees of ``bronze.ratings_buffer``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
        import psycopg

        self.pieces, self.seen = 0, []
        self._other = psycopg.connect(url, autocommit=True)
        real = _pgingest._Checker.next_piece

        def next_piece(checker: _pgingest._Checker) -> memoryview | None:
            piece = real(checker)
            if piece is not None:
                self.pieces += 1
                self.seen.append(self._other.execute("select count(*) from bronze.ratings_buffer").fetchone()[0])
            return piece

        monkeypatch.setattr(_pgingest._Checker, "next_piece", next_piece)

    def close(self) -> None:
        self._other.close()


def test_streamed_chunks_give_the_same_tables_as_staging_first(
    pg_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text(MIXED)
    tables = {
        "bronze.ratings_buffer": "user_id, movie_id, rating, rated_at, batch_id, source_file",
        "bronze.quarantine": "batch_id, reason, row_number, user_id, movie_id, rating, rated_at, raw, source_file",
        "bronze.ingestion_metadata": "batch_id, record_count, quarantined_count, status, checksum, kind",
    }
    monkeypatch.setattr(_pgingest, "CHUNK_ROWS", 3)
    monkeypatch.setenv("CINEMATCH_MAX_BAD_ROW_SHARE", "1")  # half of MIXED is bad on purpose
    seen, results = [], []
    spy = _PieceSpy(monkeypatch, pg_url)
    try:
        for url in (None, pg_url):
            with write_session(Settings(home=tmp_path / ("pg" if url else "duck"), database_url=url)) as con:
                results.append(ingest_file(con, path))
                seen.append({t: con.execute(f"select {c} from {t} order by all").fetchall() for t, c in tables.items()})
    finally:
        spy.close()
    # 4 chunks of 3 rows went to the COPY as they were validated; the repeats found at the end sent the batch
    # again (5 good rows: 2 chunks) after the rollback to the savepoint
    assert spy.pieces == 6
    assert spy.seen == [0] * 6, "rows of an uncommitted batch were visible to another session"
    assert [(r.inserted, r.quarantined) for r in results] == [(5, 5), (5, 5)]
    assert [(r[0], r[1], r[2]) for r in seen[1]["bronze.ratings_buffer"]] == [
        (1, 10, 4.0), (2, 20, 3.5), (4, 40, 2.0), (6, 60, 1.0), (7, 70, 4.5)
    ]  # fmt: skip
    assert [(r[1], r[2]) for r in seen[1]["bronze.quarantine"]] == [
        ("duplicate row in batch", 5), ("duplicate row in batch", 8), ("duplicate row in batch", 10),
        ("rating is not a number", 6), ("rating outside 0.5-5.0", 3),
    ]  # fmt: skip
    assert seen[1] == seen[0]


def test_failure_after_chunks_were_sent_leaves_nothing_and_keeps_earlier_batches(
    pg_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, after, broken = tmp_path / "first.parquet", tmp_path / "after.parquet", tmp_path / "broken.parquet"
    pq.write_table(make_ratings(np.random.default_rng(1), n=2000), first)
    pq.write_table(make_ratings(np.random.default_rng(2), n=3000, users=100), after)
    pq.write_table(make_ratings(np.random.default_rng(3), n=100_000, users=3000, movies=400), broken,
                   row_group_size=5000, compression="zstd")  # fmt: skip
    chunk = pq.ParquetFile(broken).metadata.row_group(19).column(0)  # the last row group: read after 95k rows
    data = bytearray(broken.read_bytes())
    data[chunk.data_page_offset + 40 : chunk.data_page_offset + 240] = bytes(200)
    broken.write_bytes(bytes(data))
    monkeypatch.setattr(_pgingest, "CHUNK_ROWS", 1000)

    con = PgConnection(pg_url)
    spy = _PieceSpy(monkeypatch, pg_url)
    try:
        con.migrate()
        assert ingest_file(con, first, batch_id="first").inserted == 2000
        spy.pieces, spy.seen = 0, []
        with pytest.raises(BadInput, match=r"cannot read .*broken\.parquet.*corrupt or truncated"):
            ingest_file(con, broken, batch_id="broken")
        assert spy.pieces >= 20, f"the file should fail after chunks were sent, not before ({spy.pieces} sent)"
        assert set(spy.seen) == {2000}, "another session saw part of the failing batch"
        state = con.execute(
            """select (select count(*) from bronze.ratings_buffer where batch_id = 'first'),
                      (select count(*) from bronze.ratings_buffer where batch_id <> 'first'),
                      (select count(*) from bronze.quarantine),
                      (select string_agg(batch_id, ',') from bronze.ingestion_metadata)"""
        ).fetchall()[0]
        assert state == (2000, 0, 0, "first")
        # the session is clean again: the next batch loads and the failed one is not recorded anywhere
        assert ingest_file(con, after, batch_id="after").inserted == 3000
        total = con.execute("select count(*), count(distinct batch_id) from bronze.ratings_buffer").fetchall()[0]
        assert total == (5000, 2)
    finally:
        spy.close()
        con.close()
