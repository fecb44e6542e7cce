"""Shared fixtures: a fresh home per test, tiny ratings files, and a CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cinematch.settings import Settings


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A fresh CINEMATCH_HOME for the test (also exported for subprocesses)."""
    path = tmp_path / "home"
    monkeypatch.setenv("CINEMATCH_HOME", str(path))
    for var in ("CINEMATCH_DATABASE_URL", "CINEMATCH_ENGINE", "CINEMATCH_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    return Settings(home=path)


def make_ratings(
    rng: np.random.Generator, n: int = 500, users: int = 50, movies: int = 80, start: str = "2024-01-01"
) -> pa.Table:
    """Unique (user, movie) pairs with half-star ratings and timestamps over ~10 weeks."""
    keys = rng.choice(users * movies, size=n, replace=False)
    base = np.datetime64(start, "s").astype(np.int64)
    ts = base + rng.integers(0, 70 * 86400, size=n)
    return pa.table(
        {
            "user_id": pa.array(keys // movies + 1, pa.int64()),
            "movie_id": pa.array(keys % movies + 1, pa.int64()),
            "rating": pa.array(rng.integers(1, 11, size=n) / 2.0),
            "rated_at": pa.array(ts * 1_000_000, pa.timestamp("us")),
        }
    )


@pytest.fixture
def tiny_ratings(tmp_path: Path, rng: np.random.Generator) -> Path:
    path = tmp_path / "batch_w1.parquet"
    pq.write_table(make_ratings(rng), path)
    return path


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self):
        return json.loads(self.stdout)


@pytest.fixture
def cli(home: Settings):
    """Run `cinematch ...` as a subprocess, as users and outside checks do."""

    def run(*args: str, env: dict | None = None, timeout: float = 300) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "cinematch", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "CINEMATCH_HOME": str(home.home), **(env or {})},
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run
