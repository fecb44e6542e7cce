"""Exactly-once ingestion: audit rows, quarantine, skips, refusals and the landing folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.conftest import make_ratings

from cinematch.core.errors import BadInput
from cinematch.core.settings import Settings
from cinematch.ingest.bronze import buffer_status, default_batch_id, ingest_file, validate_batch_id
from cinematch.ingest.landing import ingest_landing
from cinematch.storage.warehouse import write_session


def counts(con) -> tuple[int, int, int]:
    return tuple(
        con.execute(
            "select (select count(*) from bronze.ratings_buffer), (select count(*) from bronze.quarantine), "
            "(select count(*) from bronze.ingestion_metadata)"
        ).fetchall()[0]
    )


def test_ingest_once_then_skip(home: Settings, tiny_ratings: Path) -> None:
    with write_session(home) as con:
        first = ingest_file(con, tiny_ratings)
        assert (first.batch_id, first.inserted, first.quarantined, first.skipped) == (
            "batch_w1",
            500,
            0,
            False,
        )
        again = ingest_file(con, tiny_ratings)
        assert again.skipped and again.inserted == 0
        assert counts(con) == (500, 0, 1)
        meta = con.execute("select record_count, status, source, kind from bronze.ingestion_metadata").fetchall()
        assert meta == [(500, "completed", str(tiny_ratings.resolve()), "ratings")]
        assert con.execute("select distinct batch_id, source_file from bronze.ratings_buffer").fetchall() == [
            ("batch_w1", str(tiny_ratings.resolve()))
        ]
        runs = con.execute("select pipeline, rows, duration_seconds > 0 from ops.pipeline_runs").fetchall()
        assert runs == [("ingest", 500, True)]


def test_same_content_under_another_id_is_skipped(home: Settings, tiny_ratings: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.parquet"
    shutil.copy(tiny_ratings, copy)
    with write_session(home) as con:
        ingest_file(con, tiny_ratings)
        res = ingest_file(con, copy)
        assert res.skipped and "batch_w1" in res.notes
        assert counts(con) == (500, 0, 1)


def test_same_batch_id_with_different_content_is_refused(
    home: Settings, tiny_ratings: Path, tmp_path: Path, rng
) -> None:
    other = tmp_path / "other.parquet"
    pq.write_table(make_ratings(rng, n=20), other)
    with write_session(home) as con:
        ingest_file(con, tiny_ratings)
        with pytest.raises(BadInput, match="already loaded from different content"):
            ingest_file(con, other, batch_id="batch_w1")
        assert counts(con) == (500, 0, 1)


def test_bad_rows_are_quarantined_with_reason(home: Settings, tmp_path: Path) -> None:
    path = tmp_path / "mixed.parquet"
    pq.write_table(
        pa.table(
            {
                "user_id": [1, 2, None, 4, 5, 1],
                "movie_id": [10, 20, 30, 40, 50, 10],
                "rating": [4.0, 7.0, 3.0, float("nan"), -1.0, 4.0],
                "rated_at": pa.array([1_700_000_000] * 6, pa.int64()),
            }
        ),
        path,
    )
    with write_session(home) as con:
        res = ingest_file(con, path, max_bad_share=1.0)
        assert (res.inserted, res.quarantined) == (1, 5)
        reasons = dict(con.execute("select reason, count(*) from bronze.quarantine group by 1").fetchall())
        assert reasons == {
            "rating outside 0.5-5.0": 2,
            "missing user_id": 1,
            "rating is NaN": 1,
            "duplicate row in batch": 1,
        }
        status = buffer_status(con)
        assert status["total_records"] == 1 and status["quarantined_records"] == 5
        assert status["batches"][0]["quarantined_count"] == 5


@pytest.mark.parametrize("bad", ["../x", "a;drop table", "", "x" * 200, "a b", "a/b"])
def test_unsafe_batch_ids(bad: str) -> None:
    with pytest.raises(BadInput, match="unsafe batch id"):
        validate_batch_id(bad)


def test_default_batch_id_from_file_name() -> None:
    assert default_batch_id(Path("/x/batch_w3.parquet")) == "batch_w3"
    assert default_batch_id(Path("combined_data_1.txt")) == "combined_data_1"
    assert default_batch_id(Path("we ird;name.csv")) == "we_ird_name"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"not,a\nknown,format\n", "cannot recognise"),
        (b"PAR1garbage", "truncated or corrupt"),
    ],
)
def test_refused_files_leave_the_warehouse_unchanged(
    home: Settings, tiny_ratings: Path, tmp_path: Path, content: bytes, message: str
) -> None:
    bad = tmp_path / "bad.parquet" if content.startswith(b"PAR1") else tmp_path / "bad.csv"
    bad.write_bytes(content)
    with write_session(home) as con:
        ingest_file(con, tiny_ratings)
        before = counts(con)
        with pytest.raises(BadInput, match=message):
            ingest_file(con, bad)
        assert counts(con) == before


def test_truncated_parquet_is_refused(home: Settings, tiny_ratings: Path, tmp_path: Path) -> None:
    data = tiny_ratings.read_bytes()
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(data[: len(data) // 2])
    with write_session(home) as con, pytest.raises(BadInput, match="truncated or corrupt"):
        ingest_file(con, cut)


def test_wrong_types_are_quarantined(home: Settings, tmp_path: Path) -> None:
    path = tmp_path / "typed.parquet"
    pq.write_table(
        pa.table(
            {
                "user_id": ["u1", "2"],
                "movie_id": ["3", "4"],
                "rating": ["good", "4.5"],
                "rated_at": ["2024-01-01", "yesterday"],
            }
        ),
        path,
    )
    with write_session(home) as con:
        res = ingest_file(con, path, max_bad_share=1.0)
        assert (res.inserted, res.quarantined) == (0, 2)
        assert sorted(r[0] for r in con.execute("select reason from bronze.quarantine").fetchall()) == [
            "unparsable timestamp",
            "user_id is not a positive integer",
        ]


def test_failure_inside_the_transaction_rolls_back(
    home: Settings, tiny_ratings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cinematch.ingest.bronze as ingest_mod

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    with write_session(home) as con:
        monkeypatch.setattr(ingest_mod, "record_run", boom)
        with pytest.raises(RuntimeError):
            ingest_file(con, tiny_ratings)
        assert counts(con) == (0, 0, 0)
        monkeypatch.undo()
        assert ingest_file(con, tiny_ratings).inserted == 500


def test_landing_loads_new_files_and_moves_them(home: Settings, tmp_path: Path, rng) -> None:
    landing = home.landing_dir
    landing.mkdir(parents=True)
    pq.write_table(make_ratings(rng, n=40), landing / "batch_w1.parquet")
    pq.write_table(make_ratings(np.random.default_rng(9), n=30), landing / "batch_w2.parquet")
    (landing / "junk.csv").write_text("nothing useful here\n")
    with write_session(home) as con:
        results = ingest_landing(con, landing)
        assert [r["batch_id"] for r in results] == ["batch_w1", "batch_w2", "junk"]
        assert [r["inserted"] for r in results] == [40, 30, 0]
        assert "error" in results[2]
        assert sorted(p.name for p in (landing / "processed").iterdir()) == [
            "batch_w1.parquet",
            "batch_w2.parquet",
        ]
        assert (landing / "rejected" / "junk.csv").exists()
        assert (landing / "rejected" / "junk.csv.reason.txt").read_text().startswith("cannot recognise")
        assert ingest_landing(con, landing) == []  # nothing new: a clean no-op
        assert counts(con)[0] == 70


def test_movies_kind(home: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CINEMATCH_MAX_BAD_ROW_SHARE", "0.5")  # one bad row in two
    path = tmp_path / "movies.csv"
    path.write_text("movieId,title,genres\n1,Toy Story (1995),Animation|Children\nx,Bad,Drama\n")
    with write_session(home) as con:
        res = ingest_file(con, path, kind="movies")
        assert (res.inserted, res.quarantined) == (1, 1)
        assert con.execute("select title, genres, release_year from bronze.movies").fetchall() == [
            ("Toy Story", ["Animation", "Children"], 1995)
        ]
