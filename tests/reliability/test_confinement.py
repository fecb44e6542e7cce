"""`cinematch sql` cannot write or escape, and ids from users or the API never reach outside CINEMATCH_HOME."""

from __future__ import annotations

import os
from pathlib import Path

import httpx2
import numpy as np
import pyarrow.parquet as pq
import pytest
from tests.conftest import make_ratings
from tests.reliability._homes import cinematch, settings_for
from tests.web.conftest import ThreadServer

from cinematch.core.errors import BadInput
from cinematch.core.settings import Settings
from cinematch.ingest.bronze import ingest_file, validate_batch_id
from cinematch.pipelines.task_io import resolve_file
from cinematch.recommender import registry
from cinematch.storage.query import run_readonly
from cinematch.storage.warehouse import write_session

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path]:
    root = tmp_path_factory.mktemp("confine")
    batch = root / "batch_w1.parquet"
    pq.write_table(make_ratings(np.random.default_rng(3), n=200), batch)
    settings = settings_for(root / "home")
    with write_session(settings, "test") as con:
        ingest_file(con, batch)
    (root / "outside").mkdir()
    return settings, root / "outside"


def _attacks(outside: Path, batch: Path) -> list[str]:
    o = str(outside)
    return [
        "create table bronze.t as select 1",
        "insert into bronze.ratings_buffer select * from bronze.ratings_buffer",
        "update bronze.ingestion_metadata set record_count = 0",
        "delete from bronze.ratings_buffer",
        "drop table bronze.ratings_buffer",
        "select 1; drop table bronze.ratings_buffer",
        f"copy bronze.ratings_buffer to '{o}/leak.csv'",
        f"copy (select 1) to '{o}/leak.parquet' (format parquet)",
        f"export database '{o}/export'",
        f"attach '{o}/other.duckdb' as other",
        "attach ':memory:' as m; create table m.x(a int)",
        "install httpfs",
        "load httpfs",
        "select * from read_csv('/etc/passwd')",
        "select * from read_text('/etc/passwd')",
        "select * from glob('/etc/*')",
        f"select * from read_parquet('{batch}')",
        "set enable_external_access = true",
        "reset enable_external_access",
        "pragma enable_profiling",
        "set threads = 1",
        "create secret (type s3, key_id 'a', secret 'b')",
    ]


def test_sql_refuses_every_write_and_escape(loaded: tuple[Settings, Path]) -> None:
    settings, outside = loaded
    batch = outside.parent / "batch_w1.parquet"
    before = run_readonly(settings, "select count(*) as n, sum(rating) as s from bronze.ratings_buffer")
    for attack in _attacks(outside, batch):
        with pytest.raises(BadInput) as info:
            run_readonly(settings, attack)
        assert "\n" not in str(info.value), attack
    assert run_readonly(settings, "select count(*) as n, sum(rating) as s from bronze.ratings_buffer") == before
    assert before[0]["n"] == 200
    assert list(outside.iterdir()) == []  # nothing written outside
    assert {p.name for p in settings.home_dir.iterdir()} <= {"warehouse.duckdb", ".lock", "warehouse.duckdb.wal"}


def test_sql_still_answers_reads(loaded: tuple[Settings, Path]) -> None:
    settings, _ = loaded
    rows = run_readonly(settings, "select batch_id, record_count from bronze.ingestion_metadata")
    assert rows == [{"batch_id": "batch_w1", "record_count": 200}]


def test_sql_cli_refusals_are_one_line_exit_2(loaded: tuple[Settings, Path]) -> None:
    settings, outside = loaded
    for attack in (f"copy bronze.ratings_buffer to '{outside}/x.csv'",):
        proc = cinematch(settings.home_dir, "sql", attack, "--json")
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1
        assert "Traceback" not in proc.stderr and "root:x:0" not in proc.stderr
    assert list(outside.iterdir()) == []


def test_ids_that_look_like_paths_are_refused(loaded: tuple[Settings, Path]) -> None:
    settings, outside = loaded
    batch = str(outside.parent / "batch_w1.parquet")
    before = sorted(p.name for p in outside.parent.iterdir())
    for args in (("models", "promote", "../../x"), ("ingest", batch, "--batch-id", "../x")):
        proc = cinematch(settings.home_dir, *args, "--json")
        assert proc.returncode == 2, (proc.returncode, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    for version in ("../../x", "version_20240101T000000_000000Z/../../../x", "/etc/passwd", ""):
        with pytest.raises(BadInput):
            registry.model_dir(settings, version)
    for batch_id in ("../x", "a/b", "..\\x", ".", "x" * 129, "a b"):
        with pytest.raises(BadInput):
            validate_batch_id(batch_id)
    assert sorted(p.name for p in outside.parent.iterdir()) == before


def test_file_names_become_safe_batch_ids(tmp_path: Path) -> None:
    """A landing file's name becomes its batch id: separators and dots cannot climb out of HOME."""
    settings = settings_for(tmp_path / "home")
    settings.landing_dir.mkdir(parents=True)
    pq.write_table(make_ratings(np.random.default_rng(4), n=50), settings.landing_dir / "x%2f..%2fevil name;x.parquet")
    proc = cinematch(settings.home_dir, "ingest", "--landing", "--json")
    assert proc.returncode == 0, proc.stderr
    moved = Path(__import__("json").loads(proc.stdout)["files"][0]["moved_to"])
    assert moved.resolve().is_relative_to(settings.home_dir)
    ids = run_readonly(settings, "select batch_id from bronze.ingestion_metadata")
    assert ids == [{"batch_id": "x_2f__2fevil_name_x"}]  # the whole stem; unsafe characters and '..' as _
    assert sorted(os.listdir(tmp_path)) == ["home"]


def test_dag_params_cannot_climb_out_of_landing(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "home")
    assert resolve_file(settings, "batch_w1.parquet") == settings.landing_dir / "batch_w1.parquet"
    for bad in ("../../etc/passwd", "../warehouse.duckdb", "sub/../../x"):
        with pytest.raises(BadInput):
            resolve_file(settings, bad)


def test_api_path_parameters_never_reach_files(tmp_path: Path) -> None:
    """Path parameters are typed integers: traversal attempts are 404/422 JSON errors, never file contents."""
    settings = settings_for(tmp_path / "home")
    with ThreadServer(settings) as url:
        for path in ("/recommendations/..%2F..%2Fetc%2Fpasswd", "/recommendations/../../etc/passwd",
                     "/movies/..%2F..%2Fwarehouse.duckdb", "/%2e%2e/%2e%2e/etc/passwd", "/movies/1%00/performance",
                     "/recommendations/1?k=../../etc/passwd", "/static/../../../etc/passwd"):  # fmt: skip
            resp = httpx2.get(url + path, timeout=10)
            assert resp.status_code in (404, 422), (path, resp.status_code)
            assert "root:x:0" not in resp.text and "Traceback" not in resp.text
            assert resp.headers["content-type"].startswith("application/json"), path
