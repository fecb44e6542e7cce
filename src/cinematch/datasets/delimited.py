"""Delimited text (CSV, TSV, `::`, `|`) to string columns, vectorized; a malformed record is kept with a reason.

A record is one non-blank line; in quoted CSV a quoted field may span lines, so a record may too. Lines are found
with NumPy on the file's bytes and fields are split by DuckDB, so there is no Python loop over rows. Nothing makes
the whole file fail except what concerns the whole file (not UTF-8, an unusable header): a record with the wrong
number of fields or broken quotes becomes a row whose ``_fault`` says what is wrong and whose ``_record`` holds
its raw text; its field columns are null. ``row_number`` numbers the data records from 1 (header and blank lines
not counted).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cinematch.core.errors import BadInput

FAULT, RECORD = "_fault", "_record"
INTERNAL = ("row_number", FAULT, RECORD)
UNTERMINATED = "unterminated quote"
MALFORMED_QUOTES = "malformed quoted field"
MAX_HEADER_BYTES = 65_536  # a longer first line is not a header: a wrong file, or one without line breaks
MAX_FIELDS = 1_000
BOM = b"\xef\xbb\xbf"
_QUOTE, _LF, _CR, _SPACE, _TAB = 34, 10, 13, 32, 9


def content_error(message: str, without_content: str) -> BadInput:
    """A BadInput that quotes the file (``message``) with a version that does not (``without_content``).

    A file the user named may be quoted back to them; a file found in the landing folder never is.
    """
    exc = BadInput(message)
    exc.without_content = without_content  # type: ignore[attr-defined]
    return exc


def public_message(exc: BaseException) -> str:
    """The message of ``exc`` without any content of the file it is about."""
    return getattr(exc, "without_content", None) or str(exc)


@dataclass(frozen=True)
class Records:
    """The records of a text file: raw text, and a fault (a reason) or null for each."""

    text: pa.Array
    faults: pa.Array


def _bytes(path: Path, encoding: str) -> np.ndarray:
    if encoding == "utf-8":
        data = np.memmap(path, np.uint8, mode="r") if path.stat().st_size else np.empty(0, np.uint8)
    else:  # Latin-1 files (ml-1m movies.dat, ml-100k u.item): one decode of the whole buffer, not per line
        data = np.frombuffer(path.read_bytes().decode(encoding).encode("utf-8"), np.uint8)
    if data[:3].tobytes() == BOM:
        data = data[3:]
    return data


def _lines(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The bytes without line breaks (LF, or CR LF) and the offsets of each line in them."""
    newlines = np.flatnonzero(buf == _LF)
    starts = np.concatenate(([0], newlines + 1))
    ends = np.concatenate((newlines, [len(buf)]))
    if starts[-1] == len(buf):  # the file ends with a line break: no empty last line
        starts, ends = starts[:-1], ends[:-1]
    nonempty = ends > starts
    cr = ends[nonempty][buf[ends[nonempty] - 1] == _CR] - 1
    keep = np.ones(len(buf), bool)
    keep[newlines] = False
    keep[cr] = False
    clean = buf[keep]
    lengths = ends - starts
    lengths[np.searchsorted(starts, cr, side="right") - 1] -= 1
    return clean, np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)


def _check_utf8(path: Path, clean: np.ndarray, offsets: np.ndarray, lines: pa.Array) -> None:
    try:
        lines.validate(full=True)
    except pa.ArrowInvalid:
        try:  # only on this error path: Python's decoder says where the first bad byte is
            clean.tobytes().decode("utf-8")
            where = ""
        except UnicodeDecodeError as exc:
            where = f" (line {int(np.searchsorted(offsets, exc.start, side='right'))})"
        raise BadInput(f"{path} is not valid UTF-8{where}; re-encode it, e.g. `iconv -f latin1 -t utf-8`") from None


def _blank(clean: np.ndarray, offsets: np.ndarray, lines: pa.Array) -> np.ndarray:
    """Lines that are empty or hold only spaces and tabs."""
    lengths = np.diff(offsets)
    blank: np.ndarray = lengths == 0
    first = np.zeros(len(lengths), np.uint8)
    first[~blank] = clean[offsets[:-1][~blank]]
    maybe = np.flatnonzero(~blank & ((first == _SPACE) | (first == _TAB)))
    if len(maybe):  # rare: only lines that start with white space are trimmed
        trimmed = pc.utf8_trim(lines.take(pa.array(maybe)), " \t")
        blank[maybe[pc.equal(pc.binary_length(trimmed), 0).to_numpy(zero_copy_only=False)]] = True
    return blank


def _odd_quotes(clean: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Lines with an odd number of double quotes: each opens or closes a quoted field that spans lines."""
    odd = np.zeros(len(offsets) - 1, bool)
    nonempty = np.flatnonzero(np.diff(offsets) > 0)
    if len(nonempty):
        odd[nonempty] = np.bitwise_xor.reduceat((clean == _QUOTE).view(np.uint8), offsets[nonempty]).astype(bool)
    return odd


@dataclass(frozen=True)
class Lines:
    """The lines of a file and how they group into records.

    A line with an odd number of quotes opens a quoted field that the next such line closes, so the lines
    between them belong to one record. A line ``alone`` opened a quote that closes nowhere (or only into a
    malformed record): it is a record of its own with an unterminated quote, and pairing goes on after it.
    """

    text: pa.Array
    blank: np.ndarray
    odd: np.ndarray
    alone: np.ndarray

    @cached_property
    def _alone(self) -> np.ndarray:
        """``alone``, and the line whose quote is still open at the end of the file (the lines after it have an
        even number of quotes each, so they are records of their own again)."""
        toggles = self.odd & ~self.alone
        if not toggles.sum() & 1:
            return self.alone
        alone = self.alone.copy()
        alone[np.flatnonzero(toggles)[-1]] = True
        return alone

    @cached_property
    def _kept(self) -> tuple[np.ndarray | None, np.ndarray]:
        """(lines kept or None for all, whether each kept line starts a record)."""
        toggles = self.odd & ~self._alone
        if toggles.any():
            open_after = np.cumsum(toggles) & 1
            starts = np.concatenate(([True], open_after[:-1] == 0))
        else:
            starts = np.ones(len(toggles), bool)
        keep = ~(self.blank & starts)  # a blank line inside a quoted field is part of its record
        return (None, starts) if keep.all() else (keep, starts[keep])

    def records(self) -> Records:
        keep, starts = self._kept
        text = self.text if keep is None else self.text.filter(pa.array(keep))
        first = np.flatnonzero(starts)
        if len(first) < len(text):  # some records span lines: join them (each list holds one record's lines)
            joined = pa.LargeListArray.from_arrays(np.append(first, len(text)), text)
            text = pc.binary_join(joined, pa.scalar("\n", pa.large_string()))
        alone = (self._alone if keep is None else self._alone[keep])[first]
        if not alone.any():
            return Records(text, pa.nulls(len(first), pa.string()))
        return Records(text, pc.if_else(pa.array(alone), pa.scalar(UNTERMINATED), pa.scalar(None, pa.string())))


def read_lines(path: Path, quoted: bool, encoding: str = "utf-8") -> Lines:
    """The lines of ``path`` (LF or CR LF line breaks, a UTF-8 BOM ignored); quotes count only with ``quoted``."""
    clean, offsets = _lines(_bytes(path, encoding))
    text = pa.LargeStringArray.from_buffers(len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(clean))
    _check_utf8(path, clean, offsets, text)
    blank = _blank(clean, offsets, text)
    odd = _odd_quotes(clean, offsets) if quoted and (clean == _QUOTE).any() else np.zeros(len(blank), bool)
    return Lines(text, blank, odd, np.zeros(len(blank), bool))


def _hex(delim: str) -> str:
    return f"\\x{{{ord(delim):02X}}}"


def split_records(records: Records, delim: str, names: list[str], quoted: bool) -> pa.Table:
    """Split records into ``names`` columns (+ ``row_number``, ``_fault``, ``_record``), in DuckDB.

    Quoted fields (``quoted``, a one-character ``delim``) follow RFC 4180 (``"a, b"``, a doubled quote inside);
    a quote inside an unquoted field is kept as text.
    """
    k = len(names)
    rows = pa.array(np.arange(1, len(records.text) + 1, dtype=np.int64))
    table = pa.table({"row_number": rows, "rec": records.text, "fault": records.faults})
    d = "'" + delim.replace("'", "''") + "'"
    parts = f"string_split(rec, {d})"
    if quoted and len(delim) == 1:
        h = _hex(delim)
        # the usual quoting ("a","b") wraps whole fields holding no quote or delimiter: drop the quotes, split
        simple = f'"[^"{h}]*"|[^"{h}]*'
        field = f'"(?:[^"]|"")*"|(?:[^"{h}][^{h}]*)?'
        unquote = "lambda x: case when starts_with(x, '\"') then replace(x[2:-2], '\"\"', '\"') else x end"
        parts = f"""case when not contains(rec, '"') then {parts}
            when regexp_full_match(rec, '(?:{simple})(?:{h}(?:{simple}))*')
            then string_split(replace(rec, '"', ''), {d})
            when regexp_full_match(rec, '(?:{field})(?:{h}(?:{field}))*')
            then list_transform(regexp_extract_all(rec || {d}, '({field}){h}', 1), {unquote}) end"""
    plural = "field" if k == 1 else "fields"
    columns = ", ".join(f"case when _fault is null then p[{i + 1}] end as c{i}" for i in range(k))
    sql = f"""select {columns}, row_number, _fault, case when _fault is not null then rec end as {RECORD} from (
        select row_number, rec, p, coalesce(fault, case when p is null then '{MALFORMED_QUOTES}'
            when len(p) <> {k} then 'expected {k} {plural}, found ' || len(p) end) as _fault
        from (select row_number, rec, fault, case when fault is null then {parts} end as p from _records))"""
    con = duckdb.connect()
    try:
        con.register("_records", table)
        out = con.sql(sql).to_arrow_table()
    finally:
        con.close()
    return out.rename_columns([*names, *INTERNAL])


def _header(path: Path, text: str, fault: str | None, delim: str, quoted: bool) -> list[str]:
    if len(text.encode()) > MAX_HEADER_BYTES:
        raise BadInput(
            f"the first line of {path} is {len(text.encode()):,} bytes long, not a header: the file is not a "
            "CSV with a header, or has no line breaks; check the file"
        )
    if fault is not None:
        raise BadInput(f"the header line of {path} has an {fault}; fix the header")
    try:
        names = next(csv.reader([text], delimiter=delim)) if quoted and len(delim) == 1 else text.split(delim)
    except csv.Error as exc:  # a lone CR inside the header line
        raise BadInput(f"cannot read the header line of {path} ({exc}); fix the header") from None
    if len(names) > MAX_FIELDS:
        raise BadInput(f"the header of {path} has {len(names):,} fields; this is not a ratings, movies or viewing file")
    return _unique([n.strip() or f"column{i + 1}" for i, n in enumerate(names)])


def _unique(names: list[str]) -> list[str]:
    """Header names made unique (``a, a`` -> ``a, a_2``) and kept off the internal column names."""
    out: list[str] = []
    for name in names:
        candidate, i = name, 1
        while candidate in out or candidate in INTERNAL:
            i += 1
            candidate = f"{name}_{i}"
        out.append(candidate)
    return out


def _spans(lines: Lines, delim: str, names: list[str], quoted: bool) -> np.ndarray:
    """For each line with an odd number of quotes but the last: whether it, the next such line and the lines
    between them make one well-formed record (a quoted field spanning lines)."""
    opens = np.flatnonzero(lines.odd)
    if len(opens) < 2:
        return np.zeros(len(opens), bool)
    sizes = opens[1:] - opens[:-1] + 1  # candidate record j: lines opens[j] .. opens[j + 1]
    bounds = np.concatenate(([0], np.cumsum(sizes)))
    picked = np.arange(bounds[-1]) + np.repeat(opens[:-1] - bounds[:-1], sizes)
    joined = pa.LargeListArray.from_arrays(bounds, lines.text.take(pa.array(picked)))
    text = pc.binary_join(joined, pa.scalar("\n", pa.large_string()))
    check = split_records(Records(text, pa.nulls(len(text), pa.string())), delim, names, quoted)
    return np.append(check.column(FAULT).is_null().to_numpy(zero_copy_only=False), False)


def _standalone(spans: np.ndarray) -> np.ndarray:
    """Which quote-opening lines stand alone, reading the file in order (``spans`` as from :func:`_spans`).

    In order, a line that opens a quote pairs with the next such line when the two make a well-formed record
    (``spans``), and reading goes on after the closing line; otherwise it stands alone and reading goes on with
    the next line. In a run of consecutive ``spans`` entered with no quote open, the 1st, 3rd, 5th... open and
    each is closed by the line after it, so the pairing is found without a loop. Each stray quote is decided
    in its place: settling all failed records at once would misjudge the pairs after the first stray quote.
    """
    index = np.arange(len(spans))
    run_start = np.maximum.accumulate(np.where(spans & ~np.concatenate(([False], spans[:-1])), index, 0))
    opener = spans & ((index - run_start) % 2 == 0)
    closer = np.concatenate(([False], opener[:-1]))
    alone: np.ndarray = ~opener & ~closer
    return alone


def read_delimited(
    path: Path,
    delim: str,
    header: bool,
    names: list[str] | None = None,
    quoted: bool = False,
    encoding: str = "utf-8",
) -> pa.Table:
    """Read a delimited text file as string columns named by its header (``header``) or by ``names``.

    A quoted field may span lines only when the record it makes is well formed; otherwise the line that opened
    it stands alone (unterminated quote) and reading goes on with the next line, so one stray quote costs its
    own line and not the lines after it.
    """
    lines = read_lines(path, quoted, encoding)
    odd = np.flatnonzero(lines.odd)
    if header:  # the header is its first non-blank line: a quote it opens is unterminated
        first = np.flatnonzero(~lines.blank)
        if len(first) == 0:
            raise BadInput(f"file is empty: {path}; nothing to load")
        fault = UNTERMINATED if lines.odd[first[0]] else None
        names = names or _header(path, lines.text[int(first[0])].as_py(), fault, delim, quoted)
    assert names is not None, "names are needed for a file without a header"
    if len(odd):
        spans = _spans(lines, delim, list(names), quoted)
        if header and odd[0] == first[0]:
            spans[0] = False
        alone = np.zeros(len(lines.odd), bool)
        alone[odd[_standalone(spans)]] = True
        lines = Lines(lines.text, lines.blank, lines.odd, alone)
    records = lines.records()
    skip = 1 if header else 0
    return split_records(Records(records.text.slice(skip), records.faults.slice(skip)), delim, list(names), quoted)
