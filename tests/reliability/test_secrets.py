"""A full cycle with secrets in the environment: none of them appears in any output, log, report or file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.reliability._homes import TRAIN_ARGS, env_for, movies_csv, ratings_file

from cinematch.core.secrets import redact

pytestmark = pytest.mark.reliability

DB_PASSWORD = "Pw-7f3Kq9zXy"
API_KEY = "api-key-91b7c2e4d0"
TMDB_KEY = "tmdb-key-5e8a1f60c3"
SECRETS = (DB_PASSWORD, API_KEY, TMDB_KEY)


def test_redact_hides_url_passwords_and_keys() -> None:
    text = f"postgresql://cm:{DB_PASSWORD}@db:5432/x api_key={API_KEY} X-API-Key: {TMDB_KEY}"
    out = redact(text)
    assert not any(s in out for s in SECRETS)
    assert out.startswith("postgresql://cm:***@db:5432/x")


def test_full_cycle_never_prints_or_stores_a_secret(tmp_path: Path) -> None:
    home = tmp_path / "home"
    data = tmp_path / "data"
    data.mkdir()
    movies = movies_csv(data / "movies.csv")
    w1 = ratings_file(data / "batch_w1.parquet", 1, 3000, "2024-01-01")
    w2 = ratings_file(data / "batch_w2.parquet", 2, 3000, "2024-03-01")
    env = env_for(home, CINEMATCH_API_KEY=API_KEY, CINEMATCH_TMDB_API_KEY=TMDB_KEY, CINEMATCH_LOG_LEVEL="DEBUG",
                  CINEMATCH_DRIFT_MIN_RECORDS="10")  # fmt: skip
    bad_db = f"postgresql://cinematch:{DB_PASSWORD}@127.0.0.1:9/cinematch?connect_timeout=2"
    steps = [
        (("ingest", str(movies), "--kind", "movies"), {}),
        (("ingest", str(w1)), {}),
        (("etl",), {}),
        (("train", *TRAIN_ARGS), {}),
        (("ingest", str(w2)), {}),
        (("etl",), {}),
        (("drift",), {}),
        (("publish",), {}),
        (("report",), {}),
        (("status",), {}),
        (("init",), {"CINEMATCH_DATABASE_URL": bad_db}),  # fails: nothing listens there
        (("status", "--debug"), {"CINEMATCH_DATABASE_URL": bad_db}),
        (("sql", "select 1"), {"CINEMATCH_DATABASE_URL": bad_db}),
    ]
    outputs = []
    codes = []
    for args, extra in steps:
        proc = subprocess.run([sys.executable, "-m", "cinematch", *args, "--json"], env={**env, **extra},
                              capture_output=True, text=True, timeout=180)  # fmt: skip
        codes.append(proc.returncode)
        outputs += [proc.stdout, proc.stderr]
    assert codes[:10] == [0] * 10, list(zip(steps, codes, outputs[1::2], strict=False))
    assert all(c == 1 for c in codes[10:]), codes
    assert any("postgresql://cinematch:***@" in o or "127.0.0.1" in o for o in outputs[21:]), outputs[21:]
    written = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.suffix == ".html" for p in written) and any(p.suffix == ".duckdb" for p in written)
    blobs = [p.read_bytes() for p in written] + [o.encode() for o in outputs]
    for secret in SECRETS:
        leaks = [i for i, blob in enumerate(blobs) if secret.encode() in blob]
        assert not leaks, f"{secret} leaked into {[str(written[i]) if i < len(written) else 'output' for i in leaks]}"
