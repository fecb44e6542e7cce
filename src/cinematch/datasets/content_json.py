"""Nested content JSON: reading an array or JSON lines (a bad line quarantined) and flattening it to columns.

Flattening scheme (content JSON): nested objects become columns named ``parent__child`` (recursively, so
``production.company.name`` is ``production__company__name``); arrays of scalars stay list columns; arrays of
objects become one list column per field, ``cast: [{name, character}]`` -> ``cast__name``, ``cast__character``
(struct of arrays, element order kept).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cinematch.core.errors import BadInput
from cinematch.datasets.delimited import FAULT, INTERNAL, RECORD, content_error, read_lines
from cinematch.datasets.raw_tables import duck, quote_name, with_row_numbers

SEP = "__"


def flatten(table: pa.Table) -> pa.Table:
    """Flatten nested columns: objects to ``parent__child``, arrays of objects to one list per field."""
    out: dict[str, pa.Array] = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        _flatten_into(out, name, col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
    return pa.table(out) if out else table


def _flatten_into(out: dict[str, pa.Array], name: str, arr: pa.Array) -> None:
    t = arr.type
    if pa.types.is_struct(t):
        # StructArray.flatten() folds the parent's nulls into each child
        for field, child in zip(t, arr.flatten(), strict=True):
            _flatten_into(out, f"{name}{SEP}{field.name}", child)
    elif pa.types.is_list(t) and pa.types.is_struct(t.value_type):
        values = arr.values
        for field, child in zip(t.value_type, values.flatten(), strict=True):
            relisted = pa.ListArray.from_arrays(arr.offsets, child, mask=arr.is_null())
            _flatten_into(out, f"{name}{SEP}{field.name}", relisted)
    else:
        out[name] = arr


def _read_json(path: Path, shown: Path | None = None, fmt: str = "auto") -> pa.Table:
    """The records of a JSON file (``fmt``: DuckDB's ``auto``, ``array``...); errors name ``shown`` (or ``path``)."""
    con = duck()
    try:
        src = f"read_json(?, format='{fmt}', records=true, sample_size=-1)"
        described = con.execute(f"describe select * from {src}", [str(path)]).fetchall()
        # a key whose values mix types is typed JSON: its scalars are taken as plain text ('"x"' -> 'x')
        cols = ", ".join(
            f"({quote_name(n)} ->> '$') as {quote_name(n)}" if t == "JSON" else quote_name(n) for n, t, *_ in described
        )
        return con.sql(f"select {cols} from {src}", params=[str(path)]).to_arrow_table()
    except duckdb.Error as exc:
        message = f"cannot parse {shown or path} as content JSON{{}}; give an array of objects or JSON lines"
        raise content_error(message.format(f" ({' '.join(str(exc).split())[:160]})"), message.format("")) from None
    finally:
        con.close()


def _line_faults(text: pa.Array) -> pa.Array:
    """For each line: why it is not one JSON object ("not valid JSON", "not a JSON object"), or null."""
    con = duck()
    try:
        con.register("_lines", pa.table({"i": pa.array(np.arange(len(text), dtype=np.int64)), "t": text}))
        sql = """select case when not json_valid(t) then 'not valid JSON'
                            when json_type(t) <> 'OBJECT' then 'not a JSON object' end as fault
                 from _lines order by i"""
        return con.sql(sql).to_arrow_table().column("fault").combine_chunks()
    finally:
        con.close()


def _good_lines(path: Path, text: pa.Array) -> pa.Table:
    """Read the given JSON lines (all objects) exactly as a file holding only them."""
    joined = pc.binary_join(
        pa.LargeListArray.from_arrays(pa.array([0, len(text)]), text), pa.scalar("\n", pa.large_string())
    )
    with tempfile.TemporaryDirectory(prefix="cinematch-content-") as tmp:
        lines = Path(tmp) / "good.jsonl"
        lines.write_bytes(joined[0].as_buffer().to_pybytes())
        return _read_json(lines, shown=path, fmt="newline_delimited")


def _shape(table: pa.Table, row_numbers: np.ndarray | None) -> pa.Table:
    """Flattened columns, JSON keys named like the reader's own columns kept apart, then ``row_number``."""
    table = flatten(table)
    table = table.rename_columns([f"{c}_" if c in INTERNAL else c for c in table.column_names])
    if row_numbers is None or len(row_numbers) != table.num_rows:
        return with_row_numbers(table)
    return table.append_column("row_number", pa.array(row_numbers.astype(np.int64)))


def read_content(path: Path) -> pa.Table:
    """A content JSON array (one bad element refuses the file) or JSON lines (a bad line is quarantined).

    A JSON-lines row is numbered by its physical line; a line that is not one JSON object becomes a row with a
    ``_fault`` and its raw text in ``_record``. A file with no JSON object on any line is refused whole.
    """
    lines = read_lines(path, quoted=False)  # LF or CR LF, a BOM dropped, UTF-8 checked
    kept = np.flatnonzero(~lines.blank)
    if not len(kept):
        raise BadInput(f"file is empty: {path}; it holds only blank lines, nothing to load")
    text = lines.text.take(pa.array(kept))
    with path.open("rb") as fh:  # the first character decides, not a Python copy of a long first line
        starts_array = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"["
    if starts_array:
        try:  # format 'array' given: DuckDB's own detection misses an array after a UTF-8 BOM
            return _shape(_read_json(path, fmt="array"), None)
        except BadInput:
            if len(kept) == 1 or _line_faults(text.slice(0, 1))[0].as_py() == "not valid JSON":
                raise  # a (pretty-printed or single-line) array: the whole file is wrong
    faults = _line_faults(text)
    numbers = kept + 1
    if faults.null_count == len(faults):
        return _shape(_read_json(path), numbers)
    try:  # objects spread over several lines each (pretty-printed): a stream DuckDB reads whole
        return _shape(_read_json(path), None)
    except BadInput:
        if faults.null_count == 0:
            raise
    ok = faults.is_null().to_numpy(zero_copy_only=False)
    good = _shape(_good_lines(path, text.filter(pa.array(ok))), numbers[ok])
    n_bad = int((~ok).sum())
    bad = {c: pa.nulls(n_bad, good.schema.field(c).type) for c in good.column_names}
    bad["row_number"] = pa.array(numbers[~ok].astype(np.int64))
    good = good.append_column(FAULT, pa.nulls(good.num_rows, pa.string()))
    good = good.append_column(RECORD, pa.nulls(good.num_rows, pa.string()))
    bad[FAULT] = faults.filter(pa.array(~ok)).cast(pa.string())
    bad[RECORD] = text.filter(pa.array(~ok)).cast(pa.string())
    return pa.concat_tables([good, pa.table(bad)]).sort_by("row_number")


def content_records(path: Path) -> list[dict[str, Any]]:
    """The records of a content JSON file (array or JSON lines), for tests and tools."""
    text = Path(path).read_text(encoding="utf-8").strip()
    return json.loads(text) if text.startswith("[") else [json.loads(ln) for ln in text.splitlines() if ln.strip()]
