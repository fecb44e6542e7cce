"""Property test of the ingestion boundary (issue 16) over generated MovieLens ratings.csv and ml-100k u.data files.

Files mix good records with malformed ones (short rows, extra fields, trailing tabs, unterminated quotes), quoted
and multi-line quoted fields, extreme and non-integer numbers, blank lines, a UTF-8 BOM and CR LF line breaks.
For every file, `ingest_file` (what `cinematch ingest` runs; BadInput is exit 2, anything else exit 1):

* ends with exit 0 or 2, never 1;
* on exit 0, inserted + quarantined is the number of records the generator wrote (non-blank lines; a quoted field
  spanning lines makes one record), and quarantined is the number of bad ones among them;
* on exit 2, the warehouse file is byte for byte what it was, and the refusal concerns the whole file (no
  records, a bad share above the limit, or a headerless file whose first lines show no format);
* never claims that an ASCII file is not UTF-8.

Seeded and bounded (200 examples), so CI sees the same files every run; each fault class is asserted to occur
among them. A file loaded before (as when hypothesis replays a failing example) is skipped by the ingestion, so
the counts stored for it then are checked instead: a failure replays as a failure, not as a flaky test.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from cinematch.core.errors import BadInput, CineMatchError
from cinematch.core.settings import Settings
from cinematch.ingest.bronze import ingest_file
from cinematch.storage.warehouse import write_session

FAULTS = ("short_row", "extra_field", "trailing_tab", "unterminated_quote", "quoted_field", "multiline_field",
          "bom", "crlf", "blank_lines", "no_final_newline", "fractional_id", "exponent_id", "nonpositive_id",
          "huge_id", "huge_timestamp", "huge_rating", "bad_rating")  # fmt: skip
PROPERTY = settings(derandomize=True, max_examples=200, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
# A fixed seed: derandomize alone seeds from the test's source, so any edit of it would draw other files (one
# seed drew no unterminated quote at all). This one draws every fault class in at least 20 of the 200 files, and
# files with a stray quote before two quoted fields spanning lines that load (which were once counted one too many).
SEED = 8

GOOD_IDS = st.integers(1, 5000).map(str)
GOOD_RATINGS = st.sampled_from(["0.5", "1", "2.5", "3.0", "4.5", "5"])
BAD_IDS = {"fractional_id": ["1.5", "2.25"], "exponent_id": ["1e3", "2E2"], "nonpositive_id": ["0", "-4", "-0"],
           "huge_id": ["99999999999999999999", "9223372036854775808", "18446744073709551616"]}  # fmt: skip
BAD_TIMES = ["99999999999999999999", "-99999999999999999999", "4611686018427387904", "1e300", "-1"]
BAD_RATINGS = {"huge_rating": ["1e300", "-1e300", "99999999999999999999"], "bad_rating": ["nan", "inf", "7", "x"]}


@dataclass
class Case:
    """A generated file, its records, how many of them are bad, and the fault classes it holds."""

    name: str
    data: bytes
    records: int
    bad: int
    faults: set[str] = field(default_factory=set)


@st.composite
def _record(draw: st.DrawFn, n: int, sep: str, csv: bool, unterminated_ok: bool) -> tuple[str, str | None, bool]:
    """Record ``n`` (one line, or two for a multi-line quoted field), good or with one fault: (text, fault, bad).

    Good records differ in their timestamps, so that none is a duplicate of another.
    """
    values = [draw(GOOD_IDS), draw(GOOD_IDS), draw(GOOD_RATINGS), str(1_600_000_000 + n)]
    kind = draw(st.sampled_from(["good", "good", "good", "id", "time", "rating", "structure"]))
    fault = None
    if kind == "id":
        fault = draw(st.sampled_from(sorted(BAD_IDS)))
        values[draw(st.integers(0, 1))] = draw(st.sampled_from(BAD_IDS[fault]))
    elif kind == "time":
        fault = "huge_timestamp"
        values[3] = draw(st.sampled_from(BAD_TIMES))
    elif kind == "rating":
        fault = draw(st.sampled_from(sorted(BAD_RATINGS)))
        values[2] = draw(st.sampled_from(BAD_RATINGS[fault]))
    elif kind == "structure":
        options = ["short_row", "extra_field", "quoted_field"]
        options += (
            (["multiline_field"] + (["unterminated_quote"] if unterminated_ok else [])) if csv else ["trailing_tab"]
        )
        fault = draw(st.sampled_from(options))
        i = draw(st.integers(0, 3))
        if fault == "short_row":
            values = values[: draw(st.integers(1, 3))]
        elif fault == "extra_field":
            values.append(draw(st.sampled_from(["9", "", "extra"])))
        elif fault == "trailing_tab":
            values[3] += "\t"
        elif fault == "quoted_field":  # well-formed quoting in CSV (a good record); in u.data quotes are text
            values[i] = f'"{values[i]}"'
            return sep.join(values), fault, not csv
        elif fault == "unterminated_quote":  # the quote opens a field and no later line closes it
            values[i] = '"' + values[i]
        else:  # a quoted field over two lines: one record (not a number, so it is quarantined)
            values[2] = '"4.5\nstars"'
    return sep.join(values), fault, fault is not None


@st.composite
def files(draw: st.DrawFn) -> Case:
    """A MovieLens ratings.csv (header, commas, RFC 4180 quotes) or ml-100k u.data (tabs, no header, no quotes).

    At most one unterminated quote per file: two would pair into one record, as RFC 4180 reads them.
    """
    csv = draw(st.booleans())
    sep = "," if csv else "\t"
    faults: set[str] = set()
    lines: list[str] = []
    if draw(st.integers(0, 4)) == 0:
        lines.append("")
    if csv:
        lines.append(
            draw(st.sampled_from(["userId,movieId,rating,timestamp", '"userId","movieId","rating","timestamp"']))
        )
    n, bad = draw(st.integers(0, 30)), 0
    for i in range(n):
        if draw(st.integers(0, 9)) == 0:
            lines.append(draw(st.sampled_from(["", "  ", "\t", " \t "])))
            faults.add("blank_lines")
        record, fault, is_bad = draw(_record(i, sep, csv, "unterminated_quote" not in faults))
        lines.append(record)
        faults |= {fault} if fault else set()
        bad += is_bad
    newline = "\n"
    if draw(st.booleans()):
        newline = "\r\n"
        faults.add("crlf")
    text = newline.join(lines)
    if draw(st.integers(0, 3)):
        text += newline
    elif n:
        faults.add("no_final_newline")
    data = text.encode()
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
        faults.add("bom")
    return Case("ratings.csv" if csv else "u.data", data, n, bad, faults)


def _digest(path: Path) -> list[tuple[str, str]]:
    """The warehouse file and its write-ahead log, byte for byte (as hashes)."""
    files = sorted(path.parent.glob(path.name + "*"))
    return [(p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in files]


def test_ingestion_never_fails_unexpectedly_and_counts_every_record(tmp_path: Path) -> None:
    settings_ = Settings(home=tmp_path / "home", database_url=None)
    seen: Counter[str] = Counter()
    outcomes: Counter[int] = Counter()
    examples = iter(range(10**6))

    @seed(SEED)
    @PROPERTY
    @given(case=files(), limit=st.sampled_from([0.05, 0.5, 1.0]))
    def check(con: duckdb.DuckDBPyConnection, case: Case, limit: float) -> None:
        i = next(examples)
        path = tmp_path / f"in{i}" / case.name
        path.parent.mkdir()
        path.write_bytes(case.data)
        before = _digest(settings_.duckdb_path)
        code, message, res = 0, "", None
        try:
            res = ingest_file(con, path, batch_id=f"b{i}", max_bad_share=limit)
        except BadInput as exc:
            code, message = 2, str(exc)
        except CineMatchError as exc:
            code, message = 1, str(exc)
        except Exception as exc:  # the CLI's last resort: "unexpected ...", exit 1
            code, message = 1, f"unexpected {type(exc).__name__}: {exc}"
        assert code in (0, 2), f"exit {code}: {message}"
        assert "utf-8" not in message.lower(), f"an ASCII file was called not UTF-8: {message}"
        if code == 2:
            assert _digest(settings_.duckdb_path) == before, f"a refused file changed the warehouse: {message}"
            # refused only for what concerns the whole file: no records, too many bad ones, or (u.data has no
            # header) a format its first lines do not show
            justified = case.records == 0 or case.bad / case.records > limit
            assert justified or ("cannot recognise" in message and case.name == "u.data"), (message, case)
        elif res is not None:
            counts = (res.inserted, res.quarantined)
            if res.skipped:  # the same content was loaded before (by hypothesis replaying a failing example, too):
                # its stored counts are checked, so that a replay fails as the first call did
                sql = "select record_count, quarantined_count from bronze.ingestion_metadata where batch_id = ?"
                counts = con.execute(sql, [res.batch_id]).fetchone()
            assert counts[0] + counts[1] == case.records, (res, counts, case)
            assert counts[1] == case.bad, (res, counts, case)
        seen.update(case.faults)
        outcomes[code] += 1

    with write_session(settings_, "ingest") as con:  # one session, as one long `cinematch ingest` would hold
        check(con)
    missing = [f for f in FAULTS if not seen[f]]
    assert not missing, f"fault classes never generated: {missing}"
    assert outcomes[0] >= 20 and outcomes[2] >= 20, outcomes


@pytest.mark.parametrize("csv", [True, False])
def test_the_record_count_of_the_generator_is_the_readers(tmp_path: Path, csv: bool) -> None:
    """The generator's count is not trusted blindly: a hand-made file of each shape, counted by hand."""
    if csv:
        text = 'userId,movieId,rating,timestamp\r\n1,2,"4.5\n",5\n\n3,"4",1,1700000000\n5,6\n7,8,"9,1\n'
        expected = 4
    else:
        text = "1\t2\t3\t1700000000\t\n  \n1\t2\n\t\t\t\n1.5\t2\t3\t4"
        expected = 3  # lines of spaces or tabs only are blank: no records
    path = tmp_path / ("ratings.csv" if csv else "u.data")
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    with write_session(Settings(home=tmp_path / "home", database_url=None)) as con:
        res = ingest_file(con, path, max_bad_share=1.0)
    assert res.inserted + res.quarantined == expected
