"""A batch is visible completely or not at all, also when `cinematch ingest` is killed midway."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
from tests.conftest import make_ratings

ROWS = 1_500_000


@pytest.fixture(scope="module")
def big_batch(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("kill") / "batch_big.parquet"
    pq.write_table(make_ratings(np.random.default_rng(5), n=ROWS, users=20_000, movies=5_000), path)
    return path


def _counts(home: Path) -> tuple[int, int]:
    db = home / "warehouse.duckdb"
    if not db.exists():
        return 0, 0
    con = duckdb.connect(str(db))  # read-write: replays or discards the WAL like the next command would
    try:
        rows = con.execute("select count(*) from bronze.ratings_buffer").fetchall()[0][0]
        meta = con.execute("select count(*) from bronze.ingestion_metadata").fetchall()[0][0]
    except duckdb.CatalogException:
        return 0, 0
    finally:
        con.close()
    return rows, meta


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_sigkill_leaves_all_or_nothing(tmp_path: Path, big_batch: Path, seed: int) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "CINEMATCH_HOME": str(home)}
    delay = np.random.default_rng(seed).uniform(0.3, 3.0)
    proc = subprocess.Popen([sys.executable, "-m", "cinematch", "ingest", str(big_batch)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rows, meta = _counts(home)
    assert (rows, meta) in ((0, 0), (ROWS, 1)), f"partial batch visible after kill at {delay:.2f}s"
    rerun = subprocess.run([sys.executable, "-m", "cinematch", "ingest", str(big_batch), "--json"], env=env,
                           capture_output=True, text=True)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    assert _counts(home) == (ROWS, 1)
