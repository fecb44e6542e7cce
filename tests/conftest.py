"""Shared fixtures: a fresh home per test, tiny ratings files, a CLI runner, and the real components' lifecycles."""

from __future__ import annotations

import gc
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cinematch.core.settings import Settings


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A fresh CINEMATCH_HOME for the test (also exported for subprocesses)."""
    path = tmp_path / "home"
    monkeypatch.setenv("CINEMATCH_HOME", str(path))
    for var in ("CINEMATCH_DATABASE_URL", "CINEMATCH_ENGINE", "CINEMATCH_API_KEY", "CINEMATCH_MLFLOW_TRACKING_URI"):
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


def in_ci() -> bool:
    """Whether the suite runs in CI (``CI=true``, set by .ci/run), where a missing component is a failure."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(available: bool, what: str) -> None:
    """Skip the test when ``what`` is missing on this machine, but fail it in CI: tests there never skip."""
    if available:
        return
    if in_ci():
        pytest.fail(f"missing in CI (CI=true): {what}; .ci/run must install it", pytrace=False)
    pytest.skip(f"missing on this machine: {what}")


def stop_spark() -> None:
    """Stop the active Spark session and shut its py4j gateway down, while pytest's streams are still open.

    Left to interpreter exit, py4j closes its connections from ``__del__`` and logs that at INFO; Airflow's
    logging config sends root records to the stdout pytest had captured, closed by then, hence the
    "--- Logging error ---" traceback after a run. Later py4j records stay off the root logger.
    """
    if "pyspark" not in sys.modules:
        return
    from pyspark import SparkContext

    active = SparkContext._active_spark_context
    if active is not None:
        active.stop()
    gateway = SparkContext._gateway
    if gateway is not None:
        gateway.shutdown()
        SparkContext._gateway = None
        SparkContext._jvm = None
    del gateway
    gc.collect()  # the connections' __del__ runs now, not at interpreter exit
    logging.getLogger("py4j").propagate = False


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A private PostgreSQL server for the whole session (as the `postgres` OS user when running as root)."""
    from cinematch.storage.pgserver import ServerUnavailable, find_bindir, start_local_server

    require(find_bindir() is not None, "PostgreSQL server binaries (/usr/lib/postgresql/15/bin, CINEMATCH_PG_BINDIR)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        require(False, "psycopg (pip install -e '.[postgres]')")
    try:
        url, stop = start_local_server()
    except ServerUnavailable as exc:
        pytest.fail(f"could not start the local PostgreSQL server: {exc}")
    try:
        yield url
    finally:
        stop()


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh database per test."""
    import uuid

    import psycopg

    from cinematch.storage.pgserver import create_database

    name = f"t_{uuid.uuid4().hex[:12]}"
    url = create_database(pg_server, name)
    yield url
    with psycopg.connect(pg_server, autocommit=True) as con:
        con.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture(scope="session", autouse=True)
def _spark_stopped_at_exit() -> Iterator[None]:
    """Whatever started Spark (a fixture, the engine, a DAG task), the session ends with it shut down cleanly."""
    yield
    stop_spark()


@pytest.fixture(autouse=True)
def _cinematch_logging_reset() -> Iterator[None]:
    """A test that runs the CLI in-process configures the ``cinematch`` logger (own handler, no propagation);
    undo it afterwards, so that later tests' ``caplog`` sees cinematch events whatever ran before them."""
    from cinematch.core import log as _log

    logger = logging.getLogger("cinematch")
    saved = (list(logger.handlers), logger.level, logger.propagate, _log._CONFIGURED)
    yield
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]
    _log._CONFIGURED = saved[3]


@pytest.fixture(scope="session")
def served_home(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    from tests.served import build_home  # imported here: tests.served imports this conftest

    from cinematch.serving.publish import publish
    from cinematch.storage.warehouse import write_session

    settings = build_home(tmp_path_factory.mktemp("serving"))
    with write_session(settings, "publish") as con:
        publish(con, settings)
    return settings
