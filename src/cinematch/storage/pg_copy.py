"""Arrow in and out of PostgreSQL with COPY: binary for fixed-width rows, CSV otherwise; no Python loop per row."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

CHUNK_ROWS = 65_536
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01, PostgreSQL's binary epoch, in µs after 1970-01-01
_PG_EPOCH_DAYS = 10_957
BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
BINARY_TRAILER = b"\xff\xff"

# information_schema data_type → (numpy big-endian dtype, Arrow type the column is cast to first)
_BINARY_TYPES: dict[str, tuple[str, pa.DataType]] = {
    "bigint": (">i8", pa.int64()),
    "integer": (">i4", pa.int32()),
    "smallint": (">i2", pa.int16()),
    "double precision": (">f8", pa.float64()),
    "real": (">f4", pa.float32()),
    "boolean": ("u1", pa.uint8()),
    "timestamp without time zone": (">i8", pa.timestamp("us")),
    "date": (">i4", pa.date32()),
}
_TEXT_TYPES = ("text", "character varying")

# result type name (pg_type.typname) → Arrow type of a query result column
ARROW_TYPES: dict[str, pa.DataType] = {
    "int8": pa.int64(), "int4": pa.int32(), "int2": pa.int16(), "oid": pa.int64(),
    "float8": pa.float64(), "float4": pa.float32(), "bool": pa.bool_(), "date": pa.date32(),
    "timestamp": pa.timestamp("us"), "timestamptz": pa.timestamp("us", tz="UTC"),
    "text": pa.string(), "varchar": pa.string(), "bpchar": pa.string(), "name": pa.string(),
    "json": pa.string(), "jsonb": pa.string(), "uuid": pa.string(),
}  # fmt: skip

# Arrow type → PostgreSQL column type, for TEMP tables that hold registered Arrow data
_PG_TYPES: dict[str, str] = {"int64": "bigint", "int32": "integer", "int16": "smallint", "double": "double precision",
                             "float": "real", "bool": "boolean", "string": "text", "large_string": "text",
                             "date32[day]": "date"}  # fmt: skip


def pg_type(t: pa.DataType) -> str:
    """The PostgreSQL column type for an Arrow type (unknown types become text)."""
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pg_type(t.value_type) + "[]"
    if pa.types.is_timestamp(t):
        return "timestamptz" if t.tz else "timestamp"
    if pa.types.is_dictionary(t):
        return pg_type(t.value_type)
    return _PG_TYPES.get(str(t), "text")


# --- into PostgreSQL -----------------------------------------------------------------------------------------


def copy_in(cur: Any, table: str, data: pa.Table, target_types: Sequence[str] | None = None) -> int:
    """Append ``data`` (columns in the order of ``table``'s column list) to ``table`` with COPY.

    ``target_types`` are the target columns' information_schema types; when every column is fixed-width and
    non-null, or a constant string (ingestion: batch id, source file), the rows go as binary COPY built with
    numpy (PostgreSQL then parses nothing). Anything else goes as CSV written by pyarrow.
    """
    cols = ", ".join(f'"{c}"' for c in data.column_names)
    layout = _binary_layout(data, target_types) if target_types else None
    if layout is not None:
        with cur.copy(f"copy {table} ({cols}) from stdin (format binary)") as copy:
            for chunk in _binary_chunks(data, *layout):
                copy.write(chunk)
        return int(data.num_rows)
    data = _csv_ready(data)
    options = pacsv.WriteOptions(include_header=False, batch_size=CHUNK_ROWS, quoting_style="needed")
    with cur.copy(f"copy {table} ({cols}) from stdin (format csv)") as copy:
        for batch in data.to_batches(max_chunksize=CHUNK_ROWS * 2):
            buf = io.BytesIO()
            pacsv.write_csv(pa.Table.from_batches([batch], schema=data.schema), buf, options)
            copy.write(buf.getbuffer())
    return int(data.num_rows)


def _binary_layout(data: pa.Table, target_types: Sequence[str]) -> tuple[np.dtype, list[Any]] | None:
    """A numpy record dtype for one COPY BINARY tuple and each column's values, or None if rows vary in size.

    A column's values are a numpy array, or one value when the column is constant (a one-value dictionary, or
    the same string in every row): it is written into the reused buffer once.
    """
    if len(target_types) != data.num_columns or data.num_rows == 0:
        return None
    fields: list[tuple[str, str]] = [("n", ">i2")]
    values: list[Any] = []
    for i, (col, pgt) in enumerate(zip(data.columns, target_types, strict=True)):
        if col.null_count:
            return None
        constant = pa.types.is_dictionary(col.type) and col.num_chunks == 1 and len(col.chunk(0).dictionary) == 1
        if constant:
            col = pa.chunked_array([col.chunk(0).dictionary])
        elif pa.types.is_dictionary(col.type):
            col = pc.cast(col, col.type.value_type)
        if pgt in _BINARY_TYPES:
            np_type, arrow_type = _BINARY_TYPES[pgt]
            try:
                arr = pc.cast(col, arrow_type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return None
            if pa.types.is_timestamp(arrow_type):
                arr = pc.subtract(pc.cast(arr, pa.int64()), _PG_EPOCH_US)
            elif pa.types.is_date32(arrow_type):
                arr = pc.subtract(pc.cast(arr, pa.int32()), _PG_EPOCH_DAYS)
            fields += [(f"l{i}", ">i4"), (f"v{i}", np_type)]
            values.append(np.asarray(arr.to_numpy()[0], np_type) if constant else arr.to_numpy())
        elif pgt in _TEXT_TYPES and (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            lo, hi = pc.min_max(col).values()
            if lo != hi:
                return None
            raw = lo.as_py().encode()
            if not raw or raw.endswith(b"\x00"):
                return None
            fields += [(f"l{i}", ">i4"), (f"v{i}", f"S{len(raw)}")]
            values.append(raw)
        else:
            return None
    return np.dtype(fields), values


def _binary_chunks(data: pa.Table, dtype: np.dtype, values: list[Any]) -> Iterator[memoryview | bytes]:
    # One buffer reused for every chunk: allocating fresh memory per chunk costs more than filling it.
    n = data.num_rows
    buf = _filled(np.empty(min(CHUNK_ROWS, n), dtype), data.num_columns, values)
    per_row = [(f"v{i}", v) for i, v in enumerate(values) if not (isinstance(v, bytes) or np.ndim(v) == 0)]
    yield BINARY_HEADER
    for start in range(0, n, len(buf)):
        m = min(len(buf), n - start)
        for name, v in per_row:
            buf[name][:m] = v[start : start + m]
        yield buf[:m].data.cast("B")
    yield BINARY_TRAILER


def _filled(buf: np.ndarray, n_columns: int, values: list[Any]) -> np.ndarray:
    """``buf`` with every tuple's field count, field lengths and constant values set (per-row values are not)."""
    buf["n"] = n_columns
    for i, v in enumerate(values):
        buf[f"l{i}"] = buf.dtype[f"v{i}"].itemsize
        if isinstance(v, bytes) or np.ndim(v) == 0:
            buf[f"v{i}"] = v
    return buf


def binary_rows(data: pa.Table, target_types: Sequence[str]) -> memoryview | None:
    """``data``'s rows as COPY BINARY tuples (no header or trailer) in a buffer of their own, for a COPY that is
    fed piece by piece (framed by ``BINARY_HEADER`` and ``BINARY_TRAILER``); None when the rows vary in size."""
    layout = _binary_layout(data, target_types)
    if layout is None:
        return None
    dtype, values = layout
    buf = _filled(np.empty(data.num_rows, dtype), data.num_columns, values)
    for i, v in enumerate(values):
        if not (isinstance(v, bytes) or np.ndim(v) == 0):
            buf[f"v{i}"] = v
    return buf.data.cast("B")


def _pg_array_literal(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    """list<string> → PostgreSQL array text (``{"a","b"}``), vectorised with pyarrow compute."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    values = pc.cast(arr.flatten(), pa.string())
    escaped = pc.replace_substring(pc.replace_substring(values, "\\", "\\\\"), '"', '\\"')
    quoted = pc.if_else(pc.is_null(values), pa.scalar("NULL"), pc.binary_join_element_wise('"', escaped, '"', ""))
    offsets = pc.subtract(arr.offsets, arr.offsets[0])
    relisted = pa.ListArray.from_arrays(offsets, quoted, mask=arr.is_null())
    return pc.binary_join_element_wise("{", pc.binary_join(relisted, ","), "}", "")


def _csv_ready(data: pa.Table) -> pa.Table:
    """Columns pyarrow's CSV writer cannot write the way PostgreSQL reads them: lists, dictionaries, booleans."""
    for i, f in enumerate(data.schema):
        if pa.types.is_list(f.type) or pa.types.is_large_list(f.type):
            data = data.set_column(i, f.name, _pg_array_literal(data.column(i)))
        elif pa.types.is_dictionary(f.type):
            data = data.set_column(i, f.name, pc.cast(data.column(i), f.type.value_type))
        elif pa.types.is_boolean(f.type):
            data = data.set_column(i, f.name, pc.if_else(data.column(i), "t", "f"))
    return data


# --- out of PostgreSQL ---------------------------------------------------------------------------------------


def copy_out(cur: Any, query: str, params: Any, desc: list[tuple[str, str]]) -> pa.Table:
    """Stream ``query``'s rows as CSV (``COPY ... TO STDOUT``) and parse them with pyarrow into typed columns."""
    buf = io.BytesIO()
    with cur.copy(f"copy ({query}) to stdout (format csv)", params) as copy:
        for chunk in copy:
            buf.write(chunk)
    names = [n for n, _ in desc]
    types = {n: ARROW_TYPES.get(t, pa.string()) for n, t in desc}
    payload = buf.getvalue()
    if not payload:
        return pa.table({n: pa.array([], types[n]) for n in names})
    # numeric is read as text, then cast to int64 when integral (DuckDB's sum of bigint) or float64
    read_types = [pa.string() if t == "numeric" else types[n] for n, t in desc]
    table = pacsv.read_csv(
        io.BytesIO(payload),
        read_options=pacsv.ReadOptions(column_names=[f"c{i}" for i in range(len(names))], block_size=1 << 24),
        convert_options=pacsv.ConvertOptions(
            column_types={f"c{i}": t for i, t in enumerate(read_types)},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t"],
            false_values=["f"],
        ),
    ).rename_columns(names)
    for i, (n, t) in enumerate(desc):
        if t == "numeric":
            table = table.set_column(i, n, numeric_column(table.column(i)))
    return table


def numeric_column(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """numeric text → int64 when every value is integral, else float64 (the types DuckDB would give)."""
    try:
        return pc.cast(col, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pc.cast(col, pa.float64())


def scalar_result(desc: list[tuple[str, str]]) -> bool:
    """Whether every result column can travel through CSV (arrays and unknown types cannot)."""
    return all(t in ARROW_TYPES or t == "numeric" for _, t in desc)


def rows_to_arrow(desc: list[tuple[str, str]], rows: list[tuple[Any, ...]]) -> pa.Table:
    """Fetched rows → Arrow, typed from the result description (arrays become lists)."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in desc]
    arrays = {}
    for (name, type_name), values in zip(desc, columns, strict=True):
        if type_name in ARROW_TYPES:
            arrays[name] = pa.array(values, ARROW_TYPES[type_name])
        elif type_name.startswith("_") and type_name[1:] in ARROW_TYPES:
            arrays[name] = pa.array(values, pa.list_(ARROW_TYPES[type_name[1:]]))
        else:
            arrays[name] = pa.array(values)
    return pa.table(arrays)
