"""Two writers on one home at once: they queue behind the home lock (or one is refused cleanly); nothing lost or doubled."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import httpx2
import pytest
from tests.reliability._homes import env_for, movies_csv, ratings_file, settings_for
from tests.web.conftest import ThreadServer

from cinematch.ingest.bronze import ingest_file
from cinematch.lakehouse.etl import run_etl
from cinematch.recommender.training import params_from_settings, train_warehouse
from cinematch.serving.publish import publish
from cinematch.storage.warehouse import write_session

pytestmark = pytest.mark.reliability


def _start(home: Path, *args: str) -> subprocess.Popen:
    env = env_for(home, CINEMATCH_LOG_LEVEL="INFO")
    return subprocess.Popen([sys.executable, "-m", "cinematch", *args, "--json"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _counts(home: Path) -> tuple[int, int, int]:
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute(
            """select (select count(*) from bronze.ratings_buffer), (select count(*) from bronze.ingestion_metadata),
                      (select count(*) from bronze.quarantine)"""
        ).fetchall()[0]
    finally:
        con.close()


def test_two_ingests_of_one_batch_load_it_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    batch = ratings_file(tmp_path / "batch_w1.parquet", 5, 120_000, "2024-01-01", bad_every=101)
    procs = [_start(home, "ingest", str(batch)) for _ in range(2)]
    outs = [(p.wait(timeout=180), *p.communicate()) for p in procs]
    assert all(code == 0 for code, _, _ in outs), outs
    docs = sorted((json.loads(out) for _, out, _ in outs), key=lambda d: d["skipped"])
    quarantined = len(range(0, 120_000, 101))
    assert [d["skipped"] for d in docs] == [False, True]
    assert docs[0]["inserted"] == 120_000 - quarantined and docs[0]["quarantined"] == quarantined
    assert _counts(home) == (120_000 - quarantined, 1, quarantined)
    # the second one waited for the first: it said so in its log (when it started while the first held the lock)
    waited = [err for _, _, err in outs if "waiting_for_lock" in err]
    assert len(waited) <= 1


def test_etl_during_ingest_loses_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    s = settings_for(home)
    with write_session(s, "test") as con:
        ingest_file(con, movies_csv(tmp_path / "movies.csv"), kind="movies")
        ingest_file(con, ratings_file(tmp_path / "batch_w1.parquet", 1, 3000, "2024-01-01"))
    big = ratings_file(tmp_path / "batch_w2.parquet", 2, 150_000, "2024-03-01")
    ingest = _start(home, "ingest", str(big))
    etl = _start(home, "etl", "--no-lake")
    assert ingest.wait(timeout=180) == 0, ingest.communicate()
    assert etl.wait(timeout=180) == 0, etl.communicate()
    again = subprocess.run([sys.executable, "-m", "cinematch", "etl", "--no-lake", "--json"], env=env_for(home),
                           capture_output=True, text=True, timeout=180)  # fmt: skip
    assert again.returncode == 0, again.stderr
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        silver = con.execute("select count(*) from silver.ratings").fetchall()[0][0]
        kpis = con.execute("select sum(n_ratings) from gold.movie_kpis").fetchall()[0][0]
    finally:
        con.close()
    assert silver == kpis == 153_000


def test_lock_timeout_is_one_clear_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    s = settings_for(home)
    with write_session(s, "test"):  # this test holds the writer lock
        proc = subprocess.run([sys.executable, "-m", "cinematch", "init"],
                              env=env_for(home, CINEMATCH_LOCK_TIMEOUT_SECONDS="0.5"),
                              capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "another cinematch command" in proc.stderr
    assert "wait for it to finish" in proc.stderr and "Traceback" not in proc.stderr


def test_publish_during_api_reads_never_serves_empty(tmp_path: Path) -> None:
    home = tmp_path / "home"
    s = settings_for(home)
    with write_session(s, "test") as con:
        ingest_file(con, movies_csv(tmp_path / "movies.csv"), kind="movies")
        ingest_file(con, ratings_file(tmp_path / "batch_w1.parquet", 1, 4000, "2024-01-01"))
        run_etl(con, s, write_lake=False)
        train_warehouse(con, s, params_from_settings(s, rank=8, iterations=5))
        publish(con, s)
    failures: list[str] = []
    seen: set[str] = set()
    stop = threading.Event()
    with ThreadServer(s) as url:

        def read() -> None:
            with httpx2.Client(base_url=url, timeout=10) as client:
                while not stop.is_set():
                    resp = client.get("/recommendations/1", params={"k": 5})
                    body = resp.json()
                    if resp.status_code != 200 or len(body.get("recommendations", body.get("items", []))) == 0:
                        failures.append(f"{resp.status_code} {resp.text[:200]}")
                    seen.add(str(client.get("/health").json()))

        readers = [threading.Thread(target=read) for _ in range(2)]
        for t in readers:
            t.start()
        for _ in range(3):
            proc = subprocess.run([sys.executable, "-m", "cinematch", "publish", "--json"], env=env_for(home),
                                  capture_output=True, text=True, timeout=120)  # fmt: skip
            assert proc.returncode == 0, proc.stderr
        stop.set()
        for t in readers:
            t.join(timeout=30)
    assert not failures, failures[:3]
    assert len(seen) >= 1
