"""The CLI contract: --json prints one document, errors are one line with exit 2, no tracebacks."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_ingest_status_json(cli, tiny_ratings: Path) -> None:
    res = cli("ingest", tiny_ratings, "--json")
    assert res.code == 0, res.stderr
    assert {"batch_id", "inserted", "quarantined", "skipped"} <= set(res.json)
    assert res.json["inserted"] == 500 and res.json["skipped"] is False
    again = cli("ingest", tiny_ratings, "--json")
    assert again.json["skipped"] is True
    status = cli("status", "--json").json
    assert status["total_records"] == 500 and status["quarantined_records"] == 0
    assert [set(b) >= {"batch_id", "record_count", "status", "ingestion_date"} for b in status["batches"]] == [True]


@pytest.mark.parametrize(
    "args",
    [
        ("ingest", "/nonexistent/file.parquet"),
        ("ingest", "{tiny}", "--batch-id", "../escape"),
        ("ingest", "{tiny}", "--batch-id", "a;drop table x"),
        ("ingest", "{tiny}", "--kind", "nonsense"),
        ("ingest",),
        ("no-such-command",),
        ("sql", "delete from bronze.ratings_buffer"),
    ],
)
def test_bad_input_is_one_line_exit_2(cli, tiny_ratings: Path, args: tuple) -> None:
    args = tuple(str(tiny_ratings) if a == "{tiny}" else a for a in args)
    res = cli(*args, "--json")
    assert res.code == 2, (res.code, res.stderr)
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert res.stdout == ""


def test_debug_shows_traceback(cli) -> None:
    res = cli("ingest", "/nonexistent.parquet", "--debug")
    assert res.code == 2 and "Traceback" in res.stderr


def test_sql_rows_as_objects(cli, tiny_ratings: Path) -> None:
    cli("ingest", tiny_ratings)
    res = cli("sql", "select count(*) as n, 1 as one from bronze.ratings_buffer", "--json")
    assert res.code == 0, res.stderr
    assert res.json == [{"n": 500, "one": 1}]


def test_sql_cannot_write_files(cli, tmp_path: Path) -> None:
    target = tmp_path / "escape.csv"
    res = cli("sql", f"copy (select 1) to '{target}'")
    assert res.code == 2 and not target.exists()


def test_init_is_idempotent(cli) -> None:
    assert cli("init", "--json").code == 0
    assert cli("init", "--json").json["initialized"] is True


def test_landing_no_files_is_clean(cli) -> None:
    res = cli("ingest", "--landing", "--json")
    assert res.code == 0 and res.json["files"] == []
