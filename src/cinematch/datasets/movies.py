"""Movies files: reading MovieLens movies.csv / movies.dat, ml-100k u.item and Parquet, then typing and validating."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cinematch.core.errors import BadInput
from cinematch.datasets.delimited import FAULT, INTERNAL, RECORD, read_delimited
from cinematch.datasets.formats import MOVIES_FORMATS, RATINGS_FORMATS, check_file, detect_format
from cinematch.datasets.raw_tables import duck, rename_columns, with_row_numbers
from cinematch.datasets.values import integer_text

MOVIE_COLUMNS = ("movie_id", "title", "genres", "release_year")

ML100K_GENRES = (
    None, "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip


def _read_parquet(path: Path) -> pa.Table:
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise BadInput(
            f"cannot read Parquet file {path} ({str(exc).splitlines()[0][:120]}); "
            "the file is truncated or corrupt: re-export it"
        ) from None


def read_movies_raw(path: Path, fmt: str = "auto") -> tuple[pa.Table, str]:
    """Read a movies file (MovieLens movies.csv / movies.dat, ml-100k u.item, Parquet) as raw columns."""
    path = Path(path)
    check_file(path)
    fmt = detect_format(path, "movies") if fmt == "auto" else fmt
    if fmt == "parquet":
        table = rename_columns(_read_parquet(path), MOVIE_COLUMNS, path, optional=("genres", "release_year"))
        return with_row_numbers(table), fmt
    if fmt == "movielens_movies":
        table = rename_columns(
            read_delimited(path, ",", header=True, quoted=True), ("movie_id", "title", "genres"), path
        )
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
    con = duck()
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


def read_movies(path: Path, fmt: str = "auto") -> tuple[pa.Table, int]:
    """Typed, valid movies of a file; returns (table, n_invalid)."""
    raw, _ = read_movies_raw(path, fmt)
    good, bad = normalize_movies(raw)
    return good, bad.num_rows
