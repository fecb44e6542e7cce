"""Readers for every ratings and movies format CineMatch accepts, with format auto-detection.

Each reader returns a *raw* Arrow table (values as found, nothing dropped) with a ``row_number``
column; :func:`normalize_ratings` / :func:`normalize_movies` then type and validate it in DuckDB
(vectorized) and split it into good rows and quarantined rows with a reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cinematch.core.errors import BadInput
from cinematch.datasets.delimited import (
    FAULT,
    INTERNAL,
    RECORD,
    Records,
    content_error,
    read_delimited,
    read_lines,
    split_records,
)
from cinematch.datasets.values import integer, integer_text, timestamp_number, timestamp_text

RATINGS_FORMATS = ("parquet", "movielens_csv", "csv", "ml100k", "ml1m", "streaming_csv", "netflix")
MOVIES_FORMATS = ("parquet", "movielens_movies", "ml100k_items", "ml1m_movies")
ALL_FORMATS = ("auto", *sorted(set(RATINGS_FORMATS) | set(MOVIES_FORMATS)))

RATING_COLUMNS = ("user_id", "movie_id", "rating", "rated_at")
MOVIE_COLUMNS = ("movie_id", "title", "genres", "release_year")

# Column-name aliases seen in the wild, mapped onto CineMatch's names.
_ALIASES = {
    "user_id": ("user_id", "userid", "user", "cust_id", "customer_id", "customerid"),
    "movie_id": ("movie_id", "movieid", "item_id", "itemid", "item", "movie"),
    "rating": ("rating", "score", "stars"),
    "rated_at": ("rated_at", "timestamp", "date", "ts", "rated", "time"),
    "title": ("title", "name"),
    "genres": ("genres", "genre"),
    "release_year": ("release_year", "year"),
}

ML100K_GENRES = (
    None, "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

_FIX = "convert it to one of the formats in the README (Parquet or MovieLens ratings.csv) or pass --format"


def _duck() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("set TimeZone='UTC'")
    return con


def _head_text(path: Path, size: int = 65536) -> tuple[bytes, list[str]]:
    """The first bytes of ``path`` (a UTF-8 BOM dropped) and its complete non-blank lines among them."""
    with path.open("rb") as fh:
        raw = fh.read(size)
    full = len(raw) == size
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    text = raw.decode("utf-8", errors="replace")
    lines = [ln.strip("\r") for ln in text.split("\n")]
    if full:
        lines = lines[:-1]  # the last line may be cut in the middle
    return raw, [ln for ln in lines if ln.strip()]


def check_file(path: Path) -> None:
    """Refuse missing, unreadable or empty files with one clear line."""
    if not path.exists():
        raise BadInput(f"file not found: {path}; check the path")
    if path.is_dir():
        raise BadInput(f"{path} is a folder, not a file; pass one batch file (or use --landing)")
    if path.stat().st_size == 0:
        raise BadInput(f"file is empty: {path}; nothing to load")


def _no_lines(path: Path, raw: bytes) -> BadInput:
    """The error for a file whose first 64 KiB hold no complete line, or only CR line breaks."""
    if not raw.strip():
        return BadInput(f"file is empty: {path}; it holds only blank lines, nothing to load")
    if b"\r" in raw and b"\n" not in raw:
        return BadInput(f"{path} uses old Mac line breaks (CR only); convert them to LF, e.g. with `mac2unix`")
    return BadInput(
        f"{path} has no line break in its first {len(raw):,} bytes: it is not a ratings or movies text file "
        f"(a text file has one record per line); {_FIX}"
    )


def _usual_counts(lines: list[str], delim: str) -> set[int]:
    """The most common numbers of fields among the first lines (so one malformed first line is not decisive)."""
    counts = [len(line.split(delim)) for line in lines[:9]]
    top = max(counts.count(c) for c in counts)
    return {c for c in counts if counts.count(c) == top}


def detect_format(path: Path, kind: str = "ratings") -> str:
    """Guess the format of ``path`` from its magic bytes and first lines."""
    check_file(path)
    raw, lines = _head_text(path)
    if raw[:4] == b"PAR1":
        return "parquet"
    if path.suffix.lower() == ".parquet":
        raise BadInput(f"{path} is named .parquet but is not a Parquet file; re-export it as Parquet")
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise BadInput(f"{path} is UTF-16 text; re-encode it as UTF-8, e.g. `iconv -f utf-16 -t utf-8`")
    if b"\x00" in raw[:4096]:
        raise BadInput(f"{path} is a binary file of unknown format; {_FIX}")
    if not lines or (b"\r" in raw.rstrip(b"\r") and b"\n" not in raw):
        raise _no_lines(path, raw)
    first = lines[0]
    fields = set(f.strip().strip('"').lower() for f in first.split(","))
    # a header names the format; headerless formats are told by their most common field count in the first lines
    if {"movieid", "title", "genres"} <= fields:
        return "movielens_movies"
    if {"date", "cust_id", "movie_id", "rating"} <= fields:
        return "streaming_csv"
    if {"userid", "movieid", "rating"} <= fields:
        return "movielens_csv"
    if {"user_id", "movie_id", "rating"} <= fields:
        return "csv"
    if re.fullmatch(r"\d+:\s*", first):
        return "netflix"
    if any("::" in line for line in lines[:9]):
        usual = _usual_counts(lines, "::")
        if 4 in usual:
            return "ml1m"
        if 3 in usual:
            return "ml1m_movies"
    if any("\t" in line for line in lines[:9]) and 4 in _usual_counts(lines, "\t"):
        return "ml100k"
    if "|" in first and len(first.split("|")) >= 20 and first.split("|")[0].strip().isdigit():
        return "ml100k_items"
    parts = [f.strip() for f in first.split(",")]
    if len(parts) == 4 and re.fullmatch(r"\d{4}-\d{2}-\d{2}.*", parts[0]) and parts[1].isdigit():
        return "streaming_csv"
    message = f"cannot recognise the format of {path}{{}}; {_FIX}"
    raise content_error(message.format(f" (first line: {first[:60]!r})"), message.format(""))


def _rename(table: pa.Table, wanted: tuple[str, ...], path: Path, optional: tuple[str, ...] = ()) -> pa.Table:
    """Map aliased column names onto ``wanted``; refuse a table that lacks any of them.

    The reader's own columns (``row_number``, ``_fault``, ``_record``) are kept as they are.
    """
    data = [c for c in table.column_names if c not in INTERNAL]
    lower = {c.lower().strip(): c for c in data}
    out = {}
    for name in wanted:
        src = next((lower[a] for a in _ALIASES[name] if a in lower), None)
        if src is None:
            if name in optional:
                continue
            message = f"{path} lacks a {name!r} column{{}}; expected columns {', '.join(wanted)}"
            raise content_error(message.format(f" (found: {', '.join(data)[:200]})"), message.format(""))
        out[name] = table.column(src)
    out.update({c: table.column(c) for c in INTERNAL if c in table.column_names})
    return pa.table(out)


@dataclass(frozen=True)
class ParquetSource:
    """A Parquet file read by DuckDB itself (no copy through Python): column map and schema."""

    path: Path
    columns: dict[str, str]  # canonical name -> column in the file
    schema: pa.Schema  # with canonical names

    @property
    def num_rows(self) -> int:
        return pq.ParquetFile(self.path).metadata.num_rows


RawSource = pa.Table | ParquetSource


def _parquet_source(path: Path, wanted: tuple[str, ...]) -> ParquetSource:
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise BadInput(
            f"cannot read Parquet file {path} ({str(exc).splitlines()[0][:120]}); "
            "the file is truncated or corrupt: re-export it"
        ) from None
    # without the pandas metadata, empty_table() does not import pandas (a third of a second per command)
    empty = _rename(schema.remove_metadata().empty_table(), wanted, path)
    lower = {c.lower().strip(): c for c in schema.names}
    columns = {name: next(lower[a] for a in _ALIASES[name] if a in lower) for name in empty.column_names}
    return ParquetSource(path, columns, empty.schema)


def register_raw(con: duckdb.DuckDBPyConnection, source: RawSource, name: str = "raw") -> None:
    """Expose a raw source to ``con`` as relation ``name`` with a 1-based ``row_number``."""
    if isinstance(source, ParquetSource):
        cols = ", ".join(f'"{src}" as {dst}' for dst, src in source.columns.items())
        path = str(source.path).replace("'", "''")
        con.execute(
            f"create or replace temp view {name} as select {cols}, file_row_number + 1 as row_number "
            f"from read_parquet('{path}', file_row_number=true)"
        )
    else:
        con.register(name, source)


def _with_row_numbers(table: pa.Table) -> pa.Table:
    return table.append_column("row_number", pa.array(np.arange(1, table.num_rows + 1, dtype=np.int64)))


def _read_parquet(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise BadInput(
            f"cannot read Parquet file {path} ({str(exc).splitlines()[0][:120]}); "
            "the file is truncated or corrupt: re-export it"
        ) from None


def _read_netflix(path: Path) -> pa.Table:
    """Netflix Prize combined_data: a ``MovieID:`` line, then ``CustomerID,Rating,Date`` lines."""
    lines = read_lines(path, quoted=False)
    text = lines.text.filter(pa.array(~lines.blank))
    is_movie = pc.match_substring_regex(text, r"^\s*[0-9]+:\s*$")
    movie = pc.if_else(is_movie, pc.utf8_trim(pc.utf8_trim_whitespace(text), ":"), pa.scalar(None, pa.large_string()))
    movie = pc.fill_null_forward(movie)
    keep = pc.invert(is_movie)
    data = pc.filter(text, keep)
    records = Records(data, pa.nulls(len(data), pa.string()))
    table = split_records(records, ",", ["user_id", "rating", "rated_at"], quoted=False)
    return table.add_column(1, "movie_id", pc.filter(movie, keep).cast(pa.string()))


def read_ratings_raw(path: Path, fmt: str = "auto") -> tuple[RawSource, str]:
    """Read a ratings file of any supported format as raw columns (+ ``row_number``, ``_fault``, ``_record``).

    Parquet is not read here: DuckDB scans it directly when the batch is staged.
    """
    path = Path(path)
    check_file(path)
    fmt = detect_format(path, "ratings") if fmt == "auto" else fmt
    if fmt == "parquet":
        return _parquet_source(path, RATING_COLUMNS), fmt
    if fmt in ("movielens_csv", "csv"):
        table = _rename(read_delimited(path, ",", header=True, quoted=True), RATING_COLUMNS, path)
    elif fmt == "ml100k":
        table = read_delimited(path, "\t", header=False, names=list(RATING_COLUMNS))
    elif fmt == "ml1m":
        table = read_delimited(path, "::", header=False, names=list(RATING_COLUMNS))
    elif fmt == "streaming_csv":
        _, lines = _head_text(path, 4096)
        has_header = bool(lines) and "cust_id" in lines[0].lower()
        names = None if has_header else ["rated_at", "user_id", "movie_id", "rating"]
        table = _rename(read_delimited(path, ",", header=has_header, names=names, quoted=True), RATING_COLUMNS, path)
    elif fmt == "netflix":
        table = _read_netflix(path)
    elif fmt in MOVIES_FORMATS:
        raise BadInput(f"{path} looks like a movies file ({fmt}); load it with --kind movies")
    else:
        raise BadInput(f"unknown ratings format {fmt!r}; choose one of {', '.join(RATINGS_FORMATS)}")
    return table, fmt


def read_movies_raw(path: Path, fmt: str = "auto") -> tuple[pa.Table, str]:
    """Read a movies file (MovieLens movies.csv / movies.dat, ml-100k u.item, Parquet) as raw columns."""
    path = Path(path)
    check_file(path)
    fmt = detect_format(path, "movies") if fmt == "auto" else fmt
    if fmt == "parquet":
        table = _rename(_read_parquet(path), MOVIE_COLUMNS, path, optional=("genres", "release_year"))
        return _with_row_numbers(table), fmt
    if fmt == "movielens_movies":
        table = _rename(read_delimited(path, ",", header=True, quoted=True), ("movie_id", "title", "genres"), path)
    elif fmt == "ml1m_movies":
        table = read_delimited(path, "::", header=False, names=["movie_id", "title", "genres"], encoding="latin-1")
    elif fmt == "ml100k_items":
        names = ["movie_id", "title", "release_date", "video_release_date", "imdb_url"]
        names += [f"g{i}" for i in range(len(ML100K_GENRES))]
        raw = read_delimited(path, "|", header=False, names=names, encoding="latin-1")
        flags = [pc.equal(raw.column(f"g{i}"), "1") for i, g in enumerate(ML100K_GENRES) if g]
        labels = [g for g in ML100K_GENRES if g]
        # Join the flagged genre names with '|' column-wise (vectorized over rows).
        pieces = [pc.if_else(f, pa.scalar(g + "|"), pa.scalar("")) for f, g in zip(flags, labels, strict=True)]
        genres = pc.utf8_rtrim(pc.binary_join_element_wise(*pieces, ""), "|")
        table = pa.table({"movie_id": raw.column("movie_id"), "title": raw.column("title"), "genres": genres,
                          **{c: raw.column(c) for c in INTERNAL}})  # fmt: skip
    elif fmt in RATINGS_FORMATS:
        raise BadInput(f"{path} looks like a ratings file ({fmt}); load it with --kind ratings")
    else:
        raise BadInput(f"unknown movies format {fmt!r}; choose one of {', '.join(MOVIES_FORMATS)}")
    return table, fmt


# Typing and validation in one vectorized query. Reasons are checked in order; the first one wins.
_NORMALIZE_RATINGS = """
with typed as (
    select row_number, {user_id} as user_id, {movie_id} as movie_id, {rating} as rating, {rated_at} as rated_at,
           user_id as user_id_raw, movie_id as movie_id_raw, rating as rating_raw, rated_at as rated_at_raw,
           {fault} as fault
    from raw
),
checked as (
    select
        row_number, user_id, movie_id, rating, rated_at,
        case
            when fault is not null then fault
            when {missing_user_id} then 'missing user_id'
            when user_id is null or user_id <= 0 then 'user_id is not a positive integer'
            when {missing_movie_id} then 'missing movie_id'
            when movie_id is null or movie_id <= 0 then 'movie_id is not a positive integer'
            when {missing_rating} then 'missing rating'
            when rating is null then 'rating is not a number'
            -- isnan() is not used: DuckDB folds it to false from Parquet statistics that ignore NaN
            when not (rating >= 0.5 and rating <= 5.0) then
                case when lower(cast(rating as varchar)) like '%nan%' then 'rating is NaN'
                     else 'rating outside 0.5-5.0' end
            when rating * 2 <> round(rating * 2) then 'rating not on a half step'
            when {missing_rated_at} then 'missing timestamp'
            when rated_at is null then 'unparsable timestamp'
            when rated_at < timestamp '1970-01-01' or rated_at > {latest}
                then 'timestamp out of range'
        end as reason
    from typed
),
final as (
    select row_number, user_id, movie_id, rating, rated_at, reason as final_reason from checked
)
select * from final
"""


def _typed_expressions(schema: pa.Schema) -> dict[str, str]:
    """Per-column casts chosen from the Arrow type, so typed Parquet skips the text round trip."""
    t_rating = schema.field("rating").type
    rating = (
        "cast(rating as double)"
        if pa.types.is_integer(t_rating) or pa.types.is_floating(t_rating) or pa.types.is_decimal(t_rating)
        else "try_cast(trim(cast(rating as varchar)) as double)"
    )
    t_ts = schema.field("rated_at").type
    if pa.types.is_timestamp(t_ts):
        rated_at = "cast(rated_at as timestamp)" if t_ts.tz is None else "(rated_at at time zone 'UTC')"
    elif pa.types.is_date(t_ts):
        rated_at = "cast(rated_at as timestamp)"
    elif pa.types.is_integer(t_ts) or pa.types.is_floating(t_ts) or pa.types.is_decimal(t_ts):
        rated_at = timestamp_number("rated_at")
    else:
        rated_at = timestamp_text("trim(cast(rated_at as varchar))")
    exprs = {
        "user_id": integer("user_id", schema.field("user_id").type),
        "movie_id": integer("movie_id", schema.field("movie_id").type),
        "rating": rating,
        "rated_at": rated_at,
        "fault": FAULT if FAULT in schema.names else "cast(null as varchar)",
    }
    for col in RATING_COLUMNS:
        # Only text can be blank; casting typed columns to text for the check would dominate the run time.
        is_text = pa.types.is_string(schema.field(col).type) or pa.types.is_large_string(schema.field(col).type)
        exprs[f"missing_{col}"] = f"{col}_raw is null" + (f" or trim({col}_raw) = ''" if is_text else "")
    return exprs


def ratings_check_sql(schema: pa.Schema) -> str:
    """The per-row typing and validation query over relation ``raw``: typed columns, ``row_number`` and
    ``final_reason`` (null for good rows; in-batch duplicates are found afterwards, over the whole batch)."""
    latest = f"timestamp '{datetime.now(UTC).replace(tzinfo=None) + timedelta(days=1):%Y-%m-%d %H:%M:%S}'"
    return _NORMALIZE_RATINGS.format(**_typed_expressions(schema), latest=latest)


def unreadable(source: RawSource, exc: Exception) -> BadInput:
    """The error for a batch DuckDB fails to read while staging it (a corrupt or truncated file)."""
    where = source.path if isinstance(source, ParquetSource) else "the batch"
    message = f"cannot read {where}{{}}; the file is corrupt or truncated: re-export it"
    return content_error(message.format(f": {' '.join(str(exc).split())[:160]}"), message.format(""))


def stage_ratings(con: duckdb.DuckDBPyConnection, source: RawSource) -> tuple[int, int]:
    """Type and validate ``source`` into temp table ``_checked`` of ``con``; return (good, quarantined) counts.

    ``_checked`` has the typed columns, ``row_number`` and ``final_reason`` (null for good rows).
    """
    register_raw(con, source)
    con.execute("set TimeZone='UTC'")
    try:
        con.execute(f"create or replace temp table _checked as {ratings_check_sql(source.schema)}")
    except duckdb.Error as exc:
        raise unreadable(source, exc) from None
    _mark_duplicates(con)
    good, bad = con.execute(
        "select count(*) filter (where final_reason is null), count(*) filter (where final_reason is not null) "
        "from _checked"
    ).fetchall()[0]
    return good, bad


def _mark_duplicates(con: duckdb.DuckDBPyConnection) -> None:
    """Quarantine every repeat of an earlier (user, movie, time) row of the batch.

    Sorting 64-bit key hashes in NumPy finds candidates much faster than a multi-column GROUP BY or a
    window over the whole batch; only the few candidate rows are then compared on the exact key.
    """
    hashes = con.sql(
        "select hash(user_id, movie_id, rated_at) as h from _checked where final_reason is null"
    ).fetchnumpy()["h"]
    if len(hashes) < 2:
        return
    ordered = np.sort(hashes)
    repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    if len(repeated) == 0:
        return
    con.register("_repeated", pa.table({"h": pa.array(repeated, pa.uint64())}))
    try:
        con.execute(
            """update _checked set final_reason = 'duplicate row in batch'
               where row_number in (
                   select row_number from (
                       select row_number, row_number() over (
                           partition by user_id, movie_id, rated_at order by row_number) as nth
                       from _checked
                       where final_reason is null
                         and hash(user_id, movie_id, rated_at) in (select h from _repeated)
                   ) where nth > 1)"""
        )
    finally:
        con.unregister("_repeated")


def quarantine_select(schema: pa.Schema) -> str:
    """The quarantined rows of ``_checked`` with their raw values as text, and the raw text of a malformed
    record (``raw``)."""
    raw = f"r.{RECORD}" if RECORD in schema.names else "cast(null as varchar)"
    return f"""
    select c.row_number, c.final_reason as reason, cast(r.user_id as varchar) as user_id,
           cast(r.movie_id as varchar) as movie_id, cast(r.rating as varchar) as rating,
           cast(r.rated_at as varchar) as rated_at, {raw} as raw
    from _checked c join raw r using (row_number)
    where c.final_reason is not null
"""


def normalize_ratings(raw: RawSource, ordered: bool = True) -> tuple[pa.Table, pa.Table]:
    """Type and validate raw ratings; return (good rows, quarantined rows with a reason).

    Staging runs in a private in-memory DuckDB: much faster than temp tables of a file database.
    """
    con = _duck()
    order = " order by row_number" if ordered else ""
    try:
        stage_ratings(con, raw)
        good = con.sql(
            f"select user_id, movie_id, rating, rated_at from _checked where final_reason is null{order}"
        ).to_arrow_table()
        bad = con.sql(quarantine_select(raw.schema) + " order by c.row_number").to_arrow_table()
    finally:
        con.close()
    return good, bad


_NORMALIZE_MOVIES = """
with src as (
    select row_number, cast(movie_id as varchar) as movie_id_raw, cast(title as varchar) as title_raw,
           {genres} as genres_raw, {year} as year_raw, {fault} as fault, {record} as record
    from raw
),
typed as (
    select
        *,
        {movie_id} as movie_id,
        trim(regexp_replace(trim(title_raw), '\\s*\\((\\d{{4}})\\)\\s*$', '')) as title,
        coalesce(try_cast(year_raw as integer),
                 try_cast(regexp_extract(trim(title_raw), '\\((\\d{{4}})\\)\\s*$', 1) as integer)) as release_year,
        list_filter(list_transform(string_split(coalesce(genres_raw, ''), '|'), lambda g: trim(g)),
                    lambda g: g <> '' and g <> '(no genres listed)') as genres
    from src
),
checked as (
    select *,
        case
            when fault is not null then fault
            when movie_id is null or movie_id <= 0 then 'movie_id is not a positive integer'
            when title_raw is null or trim(title_raw) = '' then 'missing title'
        end as base_reason
    from typed
)
select *, coalesce(base_reason, case when row_number() over (
        partition by movie_id, base_reason is null order by row_number desc) > 1
    then 'duplicate movie_id in batch (the last row wins)' end) as reason
from checked
"""


def normalize_movies(raw: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Type and validate raw movies; titles lose their ``(YYYY)`` which becomes ``release_year``."""
    cols = set(raw.column_names)
    if "genres" in cols and pa.types.is_list(raw.schema.field("genres").type):
        genres = "array_to_string(genres, '|')"
    else:
        genres = "cast(genres as varchar)" if "genres" in cols else "null"
    sql = _NORMALIZE_MOVIES.format(
        genres=genres,
        year="release_year" if "release_year" in cols else "null",
        fault=FAULT if FAULT in cols else "cast(null as varchar)",
        record=RECORD if RECORD in cols else "cast(null as varchar)",
        movie_id=integer_text("trim(movie_id_raw)"),
    )
    con = _duck()
    try:
        con.register("raw", raw)
        con.execute(f"create temp table checked as {sql}")
        good = con.sql(
            "select movie_id, title, genres, release_year from checked where reason is null order by movie_id"
        ).to_arrow_table()
        bad = con.sql(
            """select row_number, reason, movie_id_raw as movie_id, title_raw as title, genres_raw as genres,
                      coalesce(record, to_json({'title': title_raw, 'genres': genres_raw})::varchar) as raw
               from checked where reason is not null order by row_number"""
        ).to_arrow_table()
    finally:
        con.close()
    return good, bad


def read_ratings(path: Path, fmt: str = "auto") -> tuple[pa.Table, int]:
    """Typed, valid ratings of a file (for `train --ratings` and `drift --reference`); returns (table, n_invalid)."""
    raw, _ = read_ratings_raw(path, fmt)
    good, bad = normalize_ratings(raw)
    if good.num_rows == 0:
        raise BadInput(f"{path} holds no valid ratings ({bad.num_rows} invalid rows); check the file")
    return good, bad.num_rows


def read_movies(path: Path, fmt: str = "auto") -> tuple[pa.Table, int]:
    """Typed, valid movies of a file; returns (table, n_invalid)."""
    raw, _ = read_movies_raw(path, fmt)
    good, bad = normalize_movies(raw)
    return good, bad.num_rows
