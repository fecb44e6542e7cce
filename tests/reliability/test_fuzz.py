"""Hostile input: every reader and `ingest_file` either succeed or raise the documented BadInput, nothing else.

Hypothesis generates garbage bytes, text in every supported layout with wrong field counts, huge, negative and
NaN numbers, odd encodings, and Parquet tables of right and wrong shapes. Bounded: a fixed number of examples,
derandomized (the same examples in CI every run).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cinematch.core.errors import BadInput
from cinematch.datasets.formats import ALL_FORMATS, detect_format
from cinematch.datasets.movies import read_movies
from cinematch.datasets.ratings import read_ratings
from cinematch.ingest.bronze import ingest_file
from cinematch.storage.warehouse import init_schema

pytestmark = pytest.mark.reliability

FUZZ = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip

NAMES = ("ratings.csv", "u.data", "ratings.dat", "combined_data_1.txt", "batch.parquet", "movies.csv", "u.item",
         "movies.dat", "stream.csv", "batch")  # fmt: skip
HEADERS = ("userId,movieId,rating,timestamp", "user_id,movie_id,rating,rated_at", "DATE,CUST_ID,MOVIE_ID,RATING",
           "movieId,title,genres", "", "a,b,c")  # fmt: skip
DELIMS = (",", "\t", "::", "|")

numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "NaN", "inf", "-inf", "1e309", "-0", "4.5", "5", "0.5", "1e11", "99999999999999999999"]),
)
fields = st.one_of(numbers, st.text(max_size=12), st.sampled_from(["", '"', '""', "2005-09-06", "1:", "\\N", "null"]))


@st.composite
def text_files(draw: st.DrawFn) -> tuple[str, bytes]:
    """A file in one of the supported layouts, with the wrong number of fields now and then."""
    delim = draw(st.sampled_from(DELIMS))
    rows = draw(st.lists(st.lists(fields, min_size=0, max_size=25), max_size=8))
    lines = [delim.join(r) for r in rows]
    header = draw(st.sampled_from(HEADERS))
    text = "\n".join(([header] if header else []) + lines) + draw(st.sampled_from(["", "\n", "\r\n"]))
    encoding = draw(st.sampled_from(["utf-8", "latin-1", "utf-16"]))
    return draw(st.sampled_from(NAMES)), text.encode(encoding, errors="replace")


def _column(draw: st.DrawFn, n: int) -> pa.Array:
    kind = draw(st.sampled_from(["int", "float", "str", "ts", "bool", "null", "list"]))
    if kind == "int":
        return pa.array(
            draw(st.lists(st.integers(-(2**63), 2**63 - 1) | st.none(), min_size=n, max_size=n)), pa.int64()
        )
    if kind == "float":
        return pa.array(draw(st.lists(st.floats() | st.none(), min_size=n, max_size=n)), pa.float64())
    if kind == "str":
        return pa.array(draw(st.lists(fields | st.none(), min_size=n, max_size=n)), pa.string())
    if kind == "ts":
        values = draw(st.lists(st.integers(-(2**62), 2**62) | st.none(), min_size=n, max_size=n))
        return pa.array(values, pa.timestamp("us"))
    if kind == "bool":
        return pa.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    if kind == "list":
        return pa.array(draw(st.lists(st.lists(st.text(max_size=5), max_size=3), min_size=n, max_size=n)))
    return pa.nulls(n)


@st.composite
def parquet_tables(draw: st.DrawFn) -> pa.Table:
    """Tables with the right column names (or aliases, or junk) and arbitrary types and values."""
    pool = ["user_id", "movie_id", "rating", "rated_at", "userId", "movieId", "timestamp", "title", "genres",
            "release_year", "junk"]  # fmt: skip
    names = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=6, unique=True))
    n = draw(st.integers(0, 12))
    return pa.table({name: _column(draw, n) for name in names})


def _reads(path: Path) -> None:
    """Every reader entry point on one file: success or BadInput only."""
    for call in (
        lambda: detect_format(path),
        lambda: read_ratings(path),
        lambda: read_movies(path),
        *(lambda f=f: read_ratings(path, f) for f in ALL_FORMATS if f != "auto"),
        *(lambda f=f: read_movies(path, f) for f in ALL_FORMATS if f != "auto"),
    ):
        try:
            call()
        except BadInput as exc:
            assert str(exc) and "\n" not in str(exc).strip(), f"not a one-line message: {exc!r}"


def _write(data: bytes, name: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="fuzz-"))
    path = folder / name
    path.write_bytes(data)
    return path


@FUZZ
@given(data=st.binary(max_size=600), name=st.sampled_from(NAMES))
def test_readers_on_garbage_bytes(data: bytes, name: str) -> None:
    _reads(_write(data, name))


@FUZZ
@given(case=text_files())
def test_readers_on_text_layouts(case: tuple[str, bytes]) -> None:
    name, data = case
    _reads(_write(data, name))


@FUZZ
@given(table=parquet_tables(), truncate=st.integers(0, 3))
def test_readers_on_parquet_shapes(table: pa.Table, truncate: int) -> None:
    path = _write(b"", "batch.parquet")
    pq.write_table(table, path)
    if truncate:  # a cut-off or damaged file
        data = path.read_bytes()
        path.write_bytes(data[: len(data) * truncate // 4])
    _reads(path)


def _counts(con: duckdb.DuckDBPyConnection) -> tuple[int, ...]:
    return tuple(
        con.execute(f"select count(*) from {t}").fetchall()[0][0]
        for t in ("bronze.ratings_buffer", "bronze.quarantine", "bronze.ingestion_metadata", "bronze.movies")
    )


@settings(FUZZ, max_examples=80)
@given(
    source=st.one_of(parquet_tables(), text_files()),
    kind=st.sampled_from(["ratings", "movies"]),
    batch_id=st.one_of(st.none(), st.text(max_size=10), st.sampled_from(["../x", "a/b", "ok_1", "x" * 200])),
)
def test_ingest_file_is_all_or_nothing_on_any_input(source: pa.Table | tuple, kind: str, batch_id: str | None) -> None:
    if isinstance(source, pa.Table):
        path = _write(b"", "batch.parquet")
        pq.write_table(source, path)
    else:
        path = _write(source[1], source[0])
    con = duckdb.connect()
    try:
        init_schema(con)
        before = _counts(con)
        try:
            res = ingest_file(con, path, batch_id=batch_id, kind=kind)
        except BadInput as exc:
            assert "\n" not in str(exc).strip()
            assert _counts(con) == before, "a refused file changed the warehouse"
            return
        buffer, quarantine, audit, movies = _counts(con)
        assert audit == 1
        meta = con.execute("select record_count, quarantined_count, batch_id from bronze.ingestion_metadata").fetchall()
        n, q, stored_id = meta[0]
        assert stored_id == res.batch_id and n == res.inserted and q == res.quarantined == quarantine
        assert (buffer if kind == "ratings" else movies) == n
        if kind == "ratings":  # every stored rating passed the documented checks
            bad = con.execute(
                "select count(*) from bronze.ratings_buffer where not (rating between 0.5 and 5.0) "
                "or rating * 2 <> round(rating * 2) or isnan(rating)"
            ).fetchall()[0][0]
            assert bad == 0
    finally:
        con.close()


def test_fuzz_strategies_reach_both_outcomes() -> None:
    """The generators are not degenerate: a well-formed example loads, a garbage one is refused."""
    good = _write(b"userId,movieId,rating,timestamp\n1,2,4.5,1260759144\n", "ratings.csv")
    table, invalid = read_ratings(good)
    assert (table.num_rows, invalid) == (1, 0) and math.isclose(table.column("rating")[0].as_py(), 4.5)
    with pytest.raises(BadInput):
        read_ratings(_write(b"\x00\x01garbage", "ratings.csv"))
