"""Issue 16's ingestion boundary on PostgreSQL: malformed lines, strict ids and extreme values give the same rows
and quarantine reasons as on DuckDB, and a mostly broken batch is refused there too with nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cinematch.core.errors import BadInput
from cinematch.core.settings import Settings
from cinematch.ingest.bronze import ingest_file
from cinematch.storage.warehouse import write_session

pytestmark = pytest.mark.postgres

TABLES = {
    "bronze.ratings_buffer": "user_id, movie_id, rating, rated_at, batch_id",
    "bronze.quarantine": "batch_id, reason, row_number, user_id, movie_id, rating, rated_at, raw",
    "bronze.ingestion_metadata": "batch_id, record_count, quarantined_count, status, kind",
}


def _good(n: int, start: int = 0) -> list[str]:
    return [f"{i % 30 + 1},{i + 1},{i % 10 / 2 + 0.5},{1_600_000_000 + i}" for i in range(start, start + n)]


def test_malformed_lines_ids_and_extremes_match_duckdb(pg_url: str, tmp_path: Path) -> None:
    text = tmp_path / "ratings.2024-01.csv"
    text.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(["userId,movieId,rating,timestamp", *_good(60), "1,1029",
        "1,1061,3.0,1260759182,9", '1,1129,"2.0,1260759185', "1.5,7,4.0,1600000000", "2,1e3,4.0,1600000000",
        "0,7,4.0,1600000000", "3,7,4.0,99999999999999999999", *_good(40, start=60)]).encode() + b"\r\n")  # fmt: skip
    typed = tmp_path / "typed.parquet"
    pq.write_table(pa.table({
        "user_id": pa.array([*range(1, 31), 2**63], pa.uint64()), "movie_id": pa.array([5] * 31, pa.int64()),
        "rating": [4.0] * 31, "rated_at": pa.array([1_600_000_000] * 30 + [2**62], pa.int64())}), typed)  # fmt: skip
    seen = []
    for url in (None, pg_url):
        with write_session(Settings(home=tmp_path / ("pg" if url else "duck"), database_url=url)) as con:
            results = [ingest_file(con, text, max_bad_share=0.1), ingest_file(con, typed, max_bad_share=0.1)]
            seen.append(({t: con.execute(f"select {c} from {t} order by all").fetchall() for t, c in TABLES.items()},
                         [(r.batch_id, r.inserted, r.quarantined) for r in results]))  # fmt: skip
    assert seen[1] == seen[0]
    tables, results = seen[1]
    assert results == [("ratings.2024-01", 100, 7), ("typed", 30, 1)]
    assert sorted((r[1], r[7]) for r in tables["bronze.quarantine"]) == [
        ("expected 4 fields, found 2", "1,1029"), ("expected 4 fields, found 5", "1,1061,3.0,1260759182,9"),
        ("movie_id is not a positive integer", None), ("timestamp out of range", None),
        ("unterminated quote", '1,1129,"2.0,1260759185'),
        *[("user_id is not a positive integer", None)] * 3,  # '1.5', '0' and the uint64 2^63
    ]  # fmt: skip


def test_a_mostly_bad_batch_is_refused_and_leaves_nothing(pg_url: str, tmp_path: Path) -> None:
    first, bad = tmp_path / "first.csv", tmp_path / "bad.csv"
    first.write_text("\n".join(["userId,movieId,rating,timestamp", *_good(20, start=100)]) + "\n")
    bad.write_text("\n".join(["userId,movieId,rating,timestamp", *_good(80), *["x,1,4.0,1600000000"] * 20]) + "\n")
    settings = Settings(home=tmp_path / "pg", database_url=pg_url)
    with write_session(settings) as con:
        ingest_file(con, first)
        before = {t: con.execute(f"select {c} from {t} order by all").fetchall() for t, c in TABLES.items()}
        with pytest.raises(BadInput, match=r"20 of 100 records are bad \(20\.0%: 'user_id is not a positive"):
            ingest_file(con, bad)
        assert {t: con.execute(f"select {c} from {t} order by all").fetchall() for t, c in TABLES.items()} == before
        assert ingest_file(con, bad, max_bad_share=0.25).inserted == 80  # the session is clean after the refusal
