"""Users/sessions CSV and content JSON: flattening with known output, unknown fields kept, every quarantine reason."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from cinematch.core.errors import BadInput
from cinematch.core.settings import Settings
from cinematch.datasets.content_json import flatten
from cinematch.datasets.generate_files import write_viewing
from cinematch.datasets.viewing import normalize_viewing, read_viewing_raw, viewing_kind
from cinematch.ingest.bronze import ingest_file
from cinematch.ingest.landing import kind_of
from cinematch.storage.warehouse import write_session

NESTED = [
    {"movie_id": 1, "title": "Heat", "runtime_minutes": 100, "release_date": "1995-12-15", "genres": ["Action", "Crime"],
     "production": {"studio": "Acme", "country": "us", "budget_usd": 60000000, "company": {"name": "Acme Holdings"}},
     "cast": [{"name": "Al", "character": "Vincent", "meta": {"age": 55}}, {"name": "Bob", "character": None}],
     "tagline": "A Los Angeles crime saga"},
    {"movie_id": 2, "title": "Quiet", "production": None, "cast": []},
]  # fmt: skip


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_flatten_nested_records_to_known_columns(tmp_path: Path) -> None:
    path = _write(tmp_path / "content.json", json.dumps(NESTED))
    raw, fmt = read_viewing_raw(path, "content")
    assert fmt == "content_json"
    assert raw.column_names == [
        "movie_id", "title", "runtime_minutes", "release_date", "genres", "production__studio",
        "production__country", "production__budget_usd", "production__company__name", "cast__name",
        "cast__character", "cast__meta__age", "tagline", "row_number",
    ]  # fmt: skip
    good, bad = normalize_viewing(raw, "content")
    assert bad.num_rows == 0
    first, second = good.to_pylist()
    assert {k: v for k, v in first.items() if k != "extra"} == {
        "movie_id": 1, "title": "Heat", "runtime_minutes": 100.0, "release_date": date(1995, 12, 15),
        "genres": ["Action", "Crime"], "languages": None, "production__studio": "Acme", "production__country": "US",
        "production__budget_usd": 60000000.0, "cast__name": ["Al", "Bob"], "cast__character": ["Vincent", None],
    }  # fmt: skip
    # fields outside the known schema are kept, flattened, in `extra`
    assert json.loads(first["extra"]) == {
        "production__company__name": "Acme Holdings", "cast__meta__age": [55, None], "tagline": "A Los Angeles crime saga"
    }  # fmt: skip
    # a null object gives null children; an empty array gives empty lists, in `extra` too (nulls are left out)
    assert second["production__studio"] is None and second["cast__name"] == []
    assert json.loads(second["extra"]) == {"cast__meta__age": []}


def test_flatten_arrow_struct_of_arrays() -> None:
    table = pa.table({"a": pa.array([{"b": {"c": 1}, "d": [{"e": "x"}, {"e": "y"}]}, None])})
    flat = flatten(table)
    assert flat.column_names == ["a__b__c", "a__d__e"]
    assert flat.to_pylist() == [{"a__b__c": 1, "a__d__e": ["x", "y"]}, {"a__b__c": None, "a__d__e": None}]


def test_json_lines_and_mixed_types(tmp_path: Path) -> None:
    lines = [{"movie_id": 5, "title": "A"}, {"movie_id": "x", "title": "B"}, {"movie_id": 6, "extra_key": {"k": 1}}]
    path = _write(tmp_path / "content.jsonl", "\n".join(json.dumps(r) for r in lines) + "\n")
    good, bad = normalize_viewing(read_viewing_raw(path, "content")[0], "content")
    assert good.column("movie_id").to_pylist() == [5, 6]
    assert json.loads(good.column("extra")[1].as_py()) == {"extra_key__k": 1}
    assert bad.to_pylist()[0]["reason"] == "movie_id is not a positive integer"
    assert bad.to_pylist()[0]["movie_id"] == "x"  # the value as found, not its JSON text


def test_content_quarantine_reasons(tmp_path: Path) -> None:
    records = [{"movie_id": 0}, {"movie_id": 2, "runtime_minutes": -5}, {"movie_id": 3, "release_date": "soon"},
               {"movie_id": 4, "production": {"budget_usd": "lots"}}, {"movie_id": 7, "title": "first"},
               {"movie_id": 7, "title": "last"}]  # fmt: skip
    good, bad = normalize_viewing(read_viewing_raw(_write(tmp_path / "c.json", json.dumps(records)), "content")[0],
                                  "content")  # fmt: skip
    assert [(r["row_number"], r["reason"]) for r in bad.to_pylist()] == [
        (1, "movie_id is not a positive integer"),
        (2, "runtime_minutes is not a positive number"),
        (3, "unparsable release_date"),
        (4, "production__budget_usd is not a non-negative number"),
        (5, "duplicate movie_id in batch (the last row wins)"),
    ]
    assert good.to_pylist()[0]["title"] == "last"
    assert json.loads(bad.to_pylist()[1]["raw"])["runtime_minutes"] == -5


SESSIONS = """session_id,user_id,movie_id,started_at,watch_seconds,device,bitrate_kbps
s1,1,10,2024-01-01T10:00:00Z,600,TV,3000
s2,0,10,2024-01-01T10:00:00Z,600,tv,
s3,1,abc,2024-01-01T10:00:00Z,600,tv,
,1,10,2024-01-01T10:00:00Z,600,tv,
s5,1,10,,600,tv,
s6,1,10,yesterday,600,tv,
s7,1,10,1850-01-01,600,tv,
s8,1,10,2024-01-01,,tv,
s9,1,10,2024-01-01,ten,tv,
s10,1,10,2024-01-01,-30,tv,
s1,2,11,1704103200,59.5,web,4500
"""


def test_sessions_quarantine_reasons_and_extra(tmp_path: Path) -> None:
    path = _write(tmp_path / "sessions.csv", SESSIONS)
    assert viewing_kind(path) == "sessions" and kind_of(path) == "sessions"
    good, bad = normalize_viewing(read_viewing_raw(path, "sessions")[0], "sessions")
    assert [(r["row_number"], r["reason"]) for r in bad.to_pylist()] == [
        (1, "duplicate session_id in batch (the last row wins)"),
        (2, "user_id is not a positive integer"),
        (3, "movie_id is not a positive integer"),
        (4, "missing session_id"),
        (5, "missing started_at"),
        (6, "unparsable started_at"),
        (7, "started_at out of range"),
        (8, "missing watch_seconds"),
        (9, "watch_seconds is not a number"),
        (10, "negative watch_seconds"),
    ]
    assert good.to_pylist() == [
        {"session_id": "s1", "user_id": 2, "movie_id": 11, "started_at": datetime(2024, 1, 1, 10, 0),
         "watch_seconds": 59.5, "device": "web", "extra": '{"bitrate_kbps":"4500"}'}
    ]  # fmt: skip


def test_users_quarantine_reasons_and_aliases(tmp_path: Path) -> None:
    text = "user_id,signup_at,country,age_band,subscription\n1,2023-05-01,us,25-34,Premium\nx,2023-05-01,,,\n" \
           "2,someday,,,\n3,2023-05-01 10:00:00,gb,,free\n3,2023-06-01,gb,,basic\n"  # fmt: skip
    path = _write(tmp_path / "users.csv", text)
    assert viewing_kind(path) == "users"
    good, bad = normalize_viewing(read_viewing_raw(path, "users")[0], "users")
    assert [r["reason"] for r in bad.to_pylist()] == [
        "user_id is not a positive integer", "unparsable signup_date", "duplicate user_id in batch (the last row wins)"
    ]  # fmt: skip
    assert good.to_pylist() == [
        {"user_id": 1, "signup_date": date(2023, 5, 1), "country": "US", "age_group": "25-34",
         "subscription": "premium", "extra": None},
        {"user_id": 3, "signup_date": date(2023, 6, 1), "country": "GB", "age_group": None,
         "subscription": "basic", "extra": None},
    ]  # fmt: skip


def test_missing_required_column_and_malformed_json_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="lacks a 'watch_seconds' column"):
        read_viewing_raw(_write(tmp_path / "s.csv", "session_id,user_id,movie_id,started_at\ns,1,1,2024-01-01\n"),
                         "sessions")  # fmt: skip
    with pytest.raises(BadInput, match="cannot parse .* as content JSON"):
        read_viewing_raw(_write(tmp_path / "c.json", '[{"movie_id": 1,'), "content")


def test_ingest_is_exactly_once_with_audit_and_quarantine(
    home: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CINEMATCH_MAX_BAD_ROW_SHARE", "1")  # a file made of bad rows, one of each reason
    path = _write(tmp_path / "sessions.csv", SESSIONS)
    with write_session(home) as con:
        first = ingest_file(con, path, kind="sessions")
        again = ingest_file(con, path, kind="sessions", batch_id="other_name")
        assert (first.inserted, first.quarantined, first.skipped) == (1, 10, False)
        assert again.skipped and again.batch_id == "sessions"
        assert con.execute("select count(*) from bronze.sessions").fetchall() == [(1,)]
        audit = con.execute("select kind, record_count, quarantined_count, status from bronze.ingestion_metadata")
        assert audit.fetchall() == [("sessions", 1, 10, "completed")]
        reasons = con.execute("select reason, user_id, movie_id from bronze.quarantine where row_number = 3")
        assert reasons.fetchall() == [("movie_id is not a positive integer", "1", "abc")]


def test_generated_viewing_files_match_the_ratings(tmp_path: Path) -> None:
    from cinematch.datasets.generate import generate_tables
    from cinematch.datasets.generate_config import GenerateConfig

    tables = generate_tables(GenerateConfig(users=100, movies=100, ratings=2000, weeks=1, seed=5))
    files = write_viewing(tables, tmp_path, seed=5)
    (tmp_path / "again").mkdir()
    again = write_viewing(tables, tmp_path / "again", seed=5)
    assert (tmp_path / "sessions.csv").read_bytes() == (tmp_path / "again" / "sessions.csv").read_bytes()
    assert files["sessions"]["rows"] == again["sessions"]["rows"] == 600
    good, bad = normalize_viewing(read_viewing_raw(tmp_path / "sessions.csv", "sessions")[0], "sessions")
    assert bad.num_rows == 0
    ratings = tables["ratings"]
    pairs = set(zip(ratings.column("user_id").to_pylist(), ratings.column("movie_id").to_pylist(), strict=True))
    assert set(zip(good.column("user_id").to_pylist(), good.column("movie_id").to_pylist(), strict=True)) <= pairs
    content, bad = normalize_viewing(read_viewing_raw(tmp_path / "content.json", "content")[0], "content")
    assert bad.num_rows == 0 and content.num_rows == tables["movies"].num_rows
    assert json.loads(content.column("extra")[0].as_py())["availability__regions"] == ["US", "GB"]
