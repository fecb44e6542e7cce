"""Raw tables as the readers return them: canonical column names, row numbers, Parquet sources, a private DuckDB."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cinematch.core.errors import BadInput
from cinematch.datasets.delimited import INTERNAL, content_error

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


def duck() -> duckdb.DuckDBPyConnection:
    """A private in-memory DuckDB in UTC."""
    con = duckdb.connect()
    con.execute("set TimeZone='UTC'")
    return con


def rename_columns(table: pa.Table, wanted: tuple[str, ...], path: Path, optional: tuple[str, ...] = ()) -> pa.Table:
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
        n: int = pq.ParquetFile(self.path).metadata.num_rows
        return n


RawSource: TypeAlias = pa.Table | ParquetSource


def parquet_source(path: Path, wanted: tuple[str, ...]) -> ParquetSource:
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise BadInput(
            f"cannot read Parquet file {path} ({str(exc).splitlines()[0][:120]}); "
            "the file is truncated or corrupt: re-export it"
        ) from None
    # without the pandas metadata, empty_table() does not import pandas (a third of a second per command)
    empty = rename_columns(schema.remove_metadata().empty_table(), wanted, path)
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


def quote_name(name: str) -> str:
    """A column name quoted for DuckDB SQL."""
    return '"' + name.replace('"', '""') + '"'


def with_row_numbers(table: pa.Table) -> pa.Table:
    return table.append_column("row_number", pa.array(np.arange(1, table.num_rows + 1, dtype=np.int64)))
