"""Damaged state is detected with one line naming the way back, the way back works, and serving keeps answering."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import httpx2
import pytest
from tests.reliability._homes import (
    cinematch,
    copy_home,
    lake_rows,
    movies_csv,
    ratings_file,
    settings_for,
)
from tests.serving.conftest import ThreadServer

from cinematch.ingest import ingest_file
from cinematch.lakehouse.etl import run_etl
from cinematch.recommender.training import params_from_settings, train_warehouse
from cinematch.serving.views import publish
from cinematch.warehouse import write_session

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    """Two models (the second is champion), the lake written, views published; returns (home, data, versions)."""
    root = tmp_path_factory.mktemp("recovery")
    data = root / "data"
    data.mkdir()
    home = root / "home"
    s = settings_for(home)
    params = params_from_settings(s, rank=8, iterations=5)
    versions = []
    with write_session(s, "test") as con:
        ingest_file(con, movies_csv(data / "movies.csv"), kind="movies")
        for week, start in ((1, "2024-01-01"), (2, "2024-03-01")):
            ingest_file(con, ratings_file(data / f"batch_w{week}.parquet", week, 4000, start))
            run_etl(con, s)
            versions.append(train_warehouse(con, s, params)["version"])
        publish(con, s)
    (data / "pairs.csv").write_text("user_id,movie_id\n1,1\n2,3\n")
    return home, data, versions


def _one_line_error(proc, fix: str) -> None:
    assert proc.returncode in (1, 2), (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert fix in lines[0], lines[0]


@pytest.mark.parametrize("damage", ["deleted", "truncated", "garbled"])
def test_damaged_champion_model_names_rollback(built, tmp_path: Path, damage: str) -> None:
    src, data, (first, second) = built
    home = copy_home(src, tmp_path / "home")
    champion = home / "models" / second
    if damage == "deleted":
        shutil.rmtree(champion)
    elif damage == "truncated":
        factors = champion / "user_factors.npy"
        factors.write_bytes(factors.read_bytes()[:200])
    else:
        (champion / "als_model.json").write_text("{not json")
    pairs = ("predict", "--pairs", str(data / "pairs.csv"), "--out", str(tmp_path / "out.csv"))
    _one_line_error(cinematch(home, *pairs), "cinematch models rollback")
    if damage == "deleted":  # the documented way back
        back = cinematch(home, "models", "rollback", "--json")
        assert back.returncode == 0, back.stderr
        assert json.loads(back.stdout)["champion"] == first
        again = cinematch(home, *pairs, "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["version"] == first


def test_damaged_lake_partition_names_full_refresh(built, tmp_path: Path) -> None:
    src, data, _ = built
    home = copy_home(src, tmp_path / "home")
    damaged = sorted((home / "lake" / "silver" / "ratings").glob("year=2024/month=1/*.parquet"))[0]
    damaged.write_bytes(damaged.read_bytes()[:100])
    with write_session(settings_for(home), "test") as con:  # a new batch in other months: January is reused
        ingest_file(con, ratings_file(data / "batch_w3.parquet", 3, 2000, "2024-07-01"))
    _one_line_error(cinematch(home, "etl"), "cinematch etl --full-refresh")
    fixed = cinematch(home, "etl", "--full-refresh", "--json")
    assert fixed.returncode == 0, fixed.stderr
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        expected = con.execute("select count(*) from silver.ratings").fetchall()[0][0]
    finally:
        con.close()
    assert expected == 10_000
    assert lake_rows(home / "lake" / "silver" / "ratings") == expected


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing"])
def test_damaged_warehouse_is_detected_and_serving_keeps_answering(built, tmp_path: Path, damage: str) -> None:
    src, _, (_, second) = built
    home = copy_home(src, tmp_path / "home")
    db = home / "warehouse.duckdb"
    if damage == "garbage":
        db.write_bytes(b"\x13" * 8192)
    elif damage == "truncated":
        db.write_bytes(db.read_bytes()[:4096])
    else:
        db.unlink()
    with ThreadServer(settings_for(home)) as url:
        resp = httpx2.get(f"{url}/recommendations/1?k=3", timeout=10)
        assert resp.status_code == 200 and resp.json()["model_version"] == second
        assert httpx2.get(f"{url}/health", timeout=10).status_code == 200
    if damage == "missing":
        # nothing to rebuild from: publish refuses (the old views stay), naming the way back
        _one_line_error(cinematch(home, "publish"), "cinematch etl")
        assert (home / "serving" / "CURRENT").is_file()
        return
    _one_line_error(cinematch(home, "status"), "cinematch init")
    db.rename(home / "warehouse.duckdb.damaged")  # the documented way back
    assert cinematch(home, "init").returncode == 0
    status = cinematch(home, "status", "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["total_records"] == 0
