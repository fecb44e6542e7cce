"""Ratings files: reading every ratings format to raw columns, then typing and validating them in DuckDB.

Each reader returns a *raw* Arrow table (values as found, nothing dropped) with a ``row_number``
column; :func:`normalize_ratings` then types and validates it in DuckDB (vectorized) and splits it into good
rows and quarantined rows with a reason.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cinematch.core.errors import BadInput
from cinematch.datasets.delimited import (
    FAULT,
    RECORD,
    Records,
    content_error,
    read_delimited,
    read_lines,
    split_records,
)
from cinematch.datasets.formats import MOVIES_FORMATS, RATINGS_FORMATS, check_file, detect_format, head_text
from cinematch.datasets.raw_tables import (
    ParquetSource,
    RawSource,
    duck,
    parquet_source,
    register_raw,
    rename_columns,
)
from cinematch.datasets.values import integer, timestamp_number, timestamp_text

RATING_COLUMNS = ("user_id", "movie_id", "rating", "rated_at")


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
        return parquet_source(path, RATING_COLUMNS), fmt
    if fmt in ("movielens_csv", "csv"):
        table = rename_columns(read_delimited(path, ",", header=True, quoted=True), RATING_COLUMNS, path)
    elif fmt == "ml100k":
        table = read_delimited(path, "\t", header=False, names=list(RATING_COLUMNS))
    elif fmt == "ml1m":
        table = read_delimited(path, "::", header=False, names=list(RATING_COLUMNS))
    elif fmt == "streaming_csv":
        _, lines = head_text(path, 4096)
        has_header = bool(lines) and "cust_id" in lines[0].lower()
        names = None if has_header else ["rated_at", "user_id", "movie_id", "rating"]
        table = rename_columns(
            read_delimited(path, ",", header=has_header, names=names, quoted=True), RATING_COLUMNS, path
        )
    elif fmt == "netflix":
        table = _read_netflix(path)
    elif fmt in MOVIES_FORMATS:
        raise BadInput(f"{path} looks like a movies file ({fmt}); load it with --kind movies")
    else:
        raise BadInput(f"unknown ratings format {fmt!r}; choose one of {', '.join(RATINGS_FORMATS)}")
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
    con = duck()
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


def read_ratings(path: Path, fmt: str = "auto") -> tuple[pa.Table, int]:
    """Typed, valid ratings of a file (for `train --ratings` and `drift --reference`); returns (table, n_invalid)."""
    raw, _ = read_ratings_raw(path, fmt)
    good, bad = normalize_ratings(raw)
    if good.num_rows == 0:
        raise BadInput(f"{path} holds no valid ratings ({bad.num_rows} invalid rows); check the file")
    return good, bad.num_rows
