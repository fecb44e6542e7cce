"""Content as JSON lines: a malformed line is quarantined with its raw text, a reason and its line number."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cinematch.core.errors import BadInput
from cinematch.core.settings import Settings
from cinematch.ingest.bronze import ingest_file
from cinematch.storage.warehouse import write_session


def _lines(n: int, start: int = 1) -> list[str]:
    return [
        json.dumps({"movie_id": i, "title": f"t{i}", "production": {"studio": "S"}}) for i in range(start, start + n)
    ]


def _ingest(home: Settings, path: Path) -> tuple[tuple[int, int], list[tuple], list[tuple]]:
    """(inserted, quarantined), bronze.content (movie_id, title, studio) and bronze.quarantine rows."""
    with write_session(home) as con:
        res = ingest_file(con, path, kind="content")
        content = con.execute("select movie_id, title, production__studio from bronze.content order by movie_id")
        rows = content.fetchall()
        quarantine = con.execute("select row_number, reason, raw, movie_id from bronze.quarantine order by row_number")
        return (res.inserted, res.quarantined), rows, quarantine.fetchall()


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ('{"movie_id": 99, "title": "cut off', "not valid JSON"),
        ("[1,2]", "not a JSON object"),
        ("42", "not a JSON object"),
        ('"just text"', "not a JSON object"),
    ],
)
def test_one_bad_line_is_quarantined_and_the_rest_loads(home: Settings, tmp_path: Path, bad: str, reason: str) -> None:
    good = _lines(40)
    path = tmp_path / "content.jsonl"
    path.write_text("\n".join([*good[:16], bad, *good[16:]]) + "\n")  # the bad line is line 17
    counts, rows, quarantine = _ingest(home, path)
    assert counts == (40, 1)
    assert [r[0] for r in rows] == list(range(1, 41))
    assert rows[0] == (1, "t1", "S")  # good lines are flattened and typed as before
    assert quarantine == [(17, reason, bad, None)]


def test_a_bad_first_line_that_is_an_array_does_not_make_the_file_an_array(home: Settings, tmp_path: Path) -> None:
    path = tmp_path / "content.jsonl"
    path.write_text("\n".join(['[{"movie_id": 1000}]', *_lines(30)]) + "\n")
    counts, rows, quarantine = _ingest(home, path)
    assert counts == (30, 1) and len(rows) == 30
    assert quarantine == [(1, "not a JSON object", '[{"movie_id": 1000}]', None)]


def test_good_rows_keep_their_line_numbers_past_blank_lines(home: Settings, tmp_path: Path) -> None:
    """Blank lines are skipped, not quarantined; row numbers stay physical line numbers (shown by a later error)."""
    good = _lines(40)
    zero = json.dumps({"movie_id": 0})  # a bad value on a line after blank lines
    path = tmp_path / "content.jsonl"
    path.write_text("\n\n" + "\n".join(good[:10]) + "\n   \n" + "\n".join(good[10:]) + "\n" + zero + "\n\n")
    counts, rows, quarantine = _ingest(home, path)
    assert counts == (40, 1) and len(rows) == 40
    assert [(r[0], r[1], r[3]) for r in quarantine] == [(44, "movie_id is not a positive integer", "0")]
    path.write_text("\n\n" + "\n".join(good[:10]) + "\n   \nnot json\n" + "\n".join(good[10:]) + "\n" + zero + "\n")
    home2 = Settings(home=home.home.parent / "home2")
    counts, _, quarantine = _ingest(home2, path)
    assert counts == (40, 2)
    assert [(r[0], r[1]) for r in quarantine] == [(14, "not valid JSON"), (45, "movie_id is not a positive integer")]


def test_bom_and_crlf_line_endings(home: Settings, tmp_path: Path) -> None:
    path = tmp_path / "content.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join([*_lines(25), "{oops}", *_lines(5, start=26)]).encode() + b"\r\n")
    counts, rows, quarantine = _ingest(home, path)
    assert counts == (30, 1)
    assert rows[0] == (1, "t1", "S") and rows[-1] == (30, "t30", "S")
    assert quarantine == [(26, "not valid JSON", "{oops}", None)]  # no CR kept in the raw text


def test_a_mostly_bad_file_is_refused_whole(home: Settings, tmp_path: Path) -> None:
    path = tmp_path / "content.jsonl"
    path.write_text("\n".join([*_lines(5), *["not json"] * 4, *["[]"] * 3]) + "\n")
    with write_session(home) as con:
        with pytest.raises(BadInput, match=r"7 of 12 records are bad .*'not valid JSON' x4, 'not a JSON object' x3"):
            ingest_file(con, path, kind="content")
        for table in ("bronze.content", "bronze.quarantine", "bronze.ingestion_metadata"):
            assert con.execute(f"select count(*) from {table}").fetchall() == [(0,)], table


def test_a_mostly_bad_file_exits_2_through_the_cli(cli, tmp_path: Path) -> None:
    path = tmp_path / "content.jsonl"
    path.write_text("\n".join([*_lines(3), "{", "}"]) + "\n")
    res = cli("ingest", path, "--kind", "content")
    assert res.code == 2, res.stderr
    assert "2 of 5 records are bad" in res.stderr and "Traceback" not in res.stderr


def test_a_file_with_no_json_object_line_is_one_whole_file_error(tmp_path: Path, home: Settings) -> None:
    path = tmp_path / "content.jsonl"
    path.write_text("movie_id,title\n1,Heat\n")
    with write_session(home) as con, pytest.raises(BadInput, match="cannot parse .* as content JSON"):
        ingest_file(con, path, kind="content")


def test_arrays_still_load_and_a_broken_array_is_refused_whole(home: Settings, tmp_path: Path) -> None:
    records = [{"movie_id": i, "title": f"t{i}", "production": {"studio": "S"}} for i in range(1, 31)]
    path = tmp_path / "content.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(records, indent=2).encode())  # pretty-printed, after a BOM
    counts, rows, quarantine = _ingest(home, path)
    assert counts == (30, 0) and rows[-1] == (30, "t30", "S") and quarantine == []
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(records, indent=2)[:-20])
    with write_session(home) as con, pytest.raises(BadInput, match="cannot parse .*broken.json as content JSON"):
        ingest_file(con, broken, kind="content")


def test_pretty_printed_objects_one_after_another_still_load(home: Settings, tmp_path: Path) -> None:
    path = tmp_path / "content.json"
    path.write_text("\n".join(json.dumps({"movie_id": i, "title": f"t{i}"}, indent=2) for i in range(1, 4)) + "\n")
    counts, rows, _ = _ingest(home, path)
    assert counts == (3, 0) and [r[:2] for r in rows] == [(1, "t1"), (2, "t2"), (3, "t3")]
