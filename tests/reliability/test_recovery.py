"""Damaged state is detected with one line naming the way back, the way back works, and serving keeps answering."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import duckdb
import httpx2
import numpy as np
import pytest
from tests.reliability._homes import (
    cinematch,
    copy_home,
    lake_rows,
    movies_csv,
    ratings_file,
    settings_for,
)
from tests.web.conftest import ThreadServer

from cinematch.ingest.bronze import ingest_file
from cinematch.lakehouse.etl import run_etl
from cinematch.recommender.training import params_from_settings, train_warehouse
from cinematch.serving.publish import publish
from cinematch.storage.warehouse import write_session

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


# Issue 16, point 10: damage inside the data blocks of a warehouse file that DuckDB still opens.
HINT = "move it aside, then `cinematch init` and re-ingest the batch files"
SCHEMAS = ("bronze", "silver", "gold", "ops", "serving")


def _blocks_by_schema(db: Path) -> tuple[int, dict[str, list[int]]]:
    """The block size and, per schema, the ids of the blocks holding its tables' data."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        size = con.execute("select block_size from pragma_database_size()").fetchall()[0][0]
        blocks: dict[str, set[int]] = {s: set() for s in SCHEMAS}
        for schema, table in con.execute("select schema_name, table_name from duckdb_tables()").fetchall():
            rows = con.execute(
                f"select distinct block_id from pragma_storage_info('{schema}.{table}') where block_id >= 0"
            ).fetchall()
            blocks[schema] |= {b for (b,) in rows}
    finally:
        con.close()
    return size, {s: sorted(b) for s, b in blocks.items()}


def _damage(db: Path, kind: str, seed: int = 16) -> None:
    """Bit flips at 25 seeded offsets (5 per schema), a zeroed 4 KiB page per schema, or a cut at half the size."""
    raw = bytearray(db.read_bytes())
    if kind == "truncated":
        db.write_bytes(bytes(raw[: len(raw) // 2]))
        return
    size, blocks = _blocks_by_schema(db)
    rng = np.random.default_rng(seed)
    for schema in SCHEMAS:
        assert blocks[schema], f"no data blocks in {schema}: the home is too small for this test"
        for _ in range(5 if kind == "bit flips" else 1):
            start = 3 * 4096 + int(rng.choice(blocks[schema])) * size  # after the file's three headers
            if kind == "bit flips":
                offset = start + int(rng.integers(8, size))  # past the block's own checksum
                raw[offset] ^= 1 << int(rng.integers(0, 8))
            else:  # a page that holds data (a block's unused tail is zeros already)
                pages = [start + 8 + i * 4096 for i in range((size - 8) // 4096)]
                used = [p for p in pages if any(raw[p : p + 4096])]
                page = int(rng.choice(used))
                raw[page : page + 4096] = bytes(4096)
    db.write_bytes(bytes(raw))


def _fingerprint(home: Path) -> tuple[str, bool]:
    db = home / "warehouse.duckdb"
    return hashlib.sha256(db.read_bytes()).hexdigest(), db.with_suffix(".duckdb.wal").exists()


@pytest.mark.parametrize("kind", ["bit flips", "zeroed pages", "truncated"])
def test_damaged_data_blocks_stop_every_command_with_the_hint(built, tmp_path: Path, kind: str) -> None:
    src, data, _ = built
    home = copy_home(src, tmp_path / "home")
    batch = ratings_file(data.parent / f"batch_w9_{kind[0]}.parquet", 9, 1000, "2024-05-01")
    _damage(home / "warehouse.duckdb", kind)
    before = _fingerprint(home)
    writers = [("ingest", str(batch)), ("etl",), ("train", "--rank", "4", "--iterations", "2"), ("drift",),
               ("publish",), ("models", "rollback")]  # fmt: skip
    for args in writers:  # each checks the tables it writes first: it never commits into the damaged file
        proc = cinematch(home, *args)
        _one_line_error(proc, HINT)
        assert proc.returncode == 1 and "is damaged" in proc.stderr and "unexpected" not in proc.stderr, proc.stderr
        assert _fingerprint(home) == before, f"{args[0]} wrote into the damaged file"
    # a query over every silver row (DuckDB's own checksum error) names the way back too
    con = duckdb.connect(str(src / "warehouse.duckdb"), read_only=True)
    silver = [
        t for (t,) in con.execute("select table_name from duckdb_tables() where schema_name = 'silver'").fetchall()
    ]
    con.close()
    proc = cinematch(
        home, "sql", "select " + " + ".join(f"(select count(hash(t)) from silver.{t} as t)" for t in silver)
    )
    _one_line_error(proc, HINT)
    assert proc.returncode == 1
    for args in (("status",), ("sql", "select count(*) from bronze.ingestion_metadata")):
        proc = cinematch(home, *args)  # reads that miss the damaged blocks may answer; nothing else
        if proc.returncode != 0:
            _one_line_error(proc, HINT)
    if kind == "truncated":
        assert proc.returncode == 1  # every open checks the size
    assert _fingerprint(home) == before


# the writing command that changes each schema (warehouse.WRITES)
WRITER_OF = {"bronze": "ingest", "silver": "etl", "gold": "etl", "ops": "drift", "serving": "publish"}


def test_each_seeded_bit_flip_is_refused_before_writing(built, tmp_path: Path) -> None:
    """24 copies, each with one bit flipped at its own seeded offset inside a data block of one schema: the
    command that writes to that schema refuses before writing, and the file stays byte-for-byte the same."""
    from cinematch.core.errors import CineMatchError

    src, _, _ = built
    pristine = (src / "warehouse.duckdb").read_bytes()
    size, blocks = _blocks_by_schema(src / "warehouse.duckdb")
    rng = np.random.default_rng(1016)
    offsets = set()
    for i in range(24):
        schema = SCHEMAS[i % len(SCHEMAS)]
        block = int(rng.choice(blocks[schema]))
        offset = 3 * 4096 + block * size + int(rng.integers(8, size))  # past the block's own checksum
        offsets.add(offset)
        raw = bytearray(pristine)
        raw[offset] ^= 1 << int(rng.integers(0, 8))
        home = tmp_path / f"home{i}"
        home.mkdir()
        (home / "warehouse.duckdb").write_bytes(bytes(raw))
        before = hashlib.sha256(raw).hexdigest()
        refused = pytest.raises(CineMatchError, match=f"block {block} fails its checksum.*{HINT.split(',')[0]}")
        with refused, write_session(settings_for(home), WRITER_OF[schema]):
            pass
        assert hashlib.sha256((home / "warehouse.duckdb").read_bytes()).hexdigest() == before, (schema, offset)
        assert not (home / "warehouse.duckdb.wal").exists()
    assert len(offsets) == 24
